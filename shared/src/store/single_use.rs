//! Single-use ids on DynamoDB (client assertion `jti`s, DPoP proof `jti`s) burned in the
//! same round trip as the count, and the registered JWKs of `private_key_jwt`.
//!
//! A `jti` is burned by a marker item (`<code>#jti#<sha256>` for assertions,
//! `<code>#dpop#<sha256>` for DPoP proofs, with a TTL) written in the same
//! `TransactWriteItems` as the count. A transaction returns no values, so the count is an
//! optimistic write against the last image of the customer item this instance saw:
//! conditioned on that image's window, count, revocation epoch and `admin_version`, its
//! success means the new image is known exactly (rate-limit headers, the record, scopes,
//! epoch); a stale image fails with the current one (`ALL_OLD`), which becomes the next
//! attempt's expectation. Without an image, or when the image refuses the request (it may be
//! stale), the markers are put first and the plain counting `UpdateItem` follows; its image
//! is remembered. Steady state: 1 call; an instance's first request for a customer: 2.
//!
//! Registered JWKs live in an item of their own (`<code>#jwks`, so the customer item stays
//! under 1 KB) and are cached per instance; the counting write re-checks that the key is
//! still registered, so a stale cache can only refuse.

use super::dynamo::{Condition, Counted, DynamoStore};
use super::item::{self, Item, bucket_attr, from_item};
use super::{Counting, Effect, Judgement, RegisteredKeys, SingleUse, StoreError, UseKind};
use super::{judge, registered};
use crate::api_key::{hex, sha256};
use crate::model::CustomerCode;
use crate::rate_limit::{Admission, window_start};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use std::collections::HashMap;

/// Registered JWKs are re-read at least this often per instance.
const JWKS_CACHE_SECONDS: u64 = 300;
/// Optimistic attempts before the two-call path (markers, then the plain counting write),
/// which concurrent use of one customer by several instances makes the better bet.
const OPTIMISTIC_ROUNDS: usize = 2;
/// Customers whose image and JWKs an instance keeps; past that the cache starts over.
const MAX_CACHED_CUSTOMERS: usize = 512;
/// Attribute of the JWKs item: key id → stored JWK JSON.
pub const JWKS: &str = "jwks";
/// Attribute of a marker item: when it may be deleted (the table's TTL attribute).
pub const MARKER_EXPIRES: &str = "expires_at";

/// Per-instance state, shared by clones of the store.
#[derive(Debug, Default)]
pub struct Cache {
    jwks: HashMap<String, (RegisteredKeys, u64)>,
    images: HashMap<String, Item>,
}

impl Cache {
    /// Remembers the last image of `code`'s item, or forgets it (`None`: gone or unknown).
    fn set_image(&mut self, code: &CustomerCode, image: Option<Item>) {
        match image {
            Some(image) => {
                if self.images.len() >= MAX_CACHED_CUSTOMERS {
                    self.images.clear();
                }
                self.images.insert(code.as_str().to_owned(), image)
            }
            None => self.images.remove(code.as_str()),
        };
    }

    fn set_jwks(&mut self, code: &CustomerCode, keys: RegisteredKeys, now: u64) {
        if self.jwks.len() >= MAX_CACHED_CUSTOMERS {
            self.jwks.clear();
        }
        self.jwks.insert(code.as_str().to_owned(), (keys, now));
    }
}

/// Partition key of a customer's JWKs item (`#` never appears in a Customer Code).
pub fn jwks_key(code: &CustomerCode) -> String {
    format!("{}#jwks", code.as_str())
}

fn marker_key(code: &CustomerCode, used: SingleUse<'_>) -> String {
    let kind = match used.kind {
        UseKind::Assertion => "jti",
        UseKind::DpopProof => "dpop",
    };
    let digest = hex(&sha256(used.jti.as_bytes()));
    format!("{}#{kind}#{digest}", code.as_str())
}

fn unavailable<E: std::error::Error + 'static>(err: E) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The conditional put of a `jti` marker, shared by the transaction and the two-call path.
struct Marker {
    item: Item,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// Attribute of a marker item: the request that wrote it.
const MARKER_REQUEST: &str = "request";

impl Marker {
    /// A marker whose time is over may be reused (TTL deletes lazily); one the same request
    /// wrote is its own (an SDK retry after a lost answer must not look like a replay).
    const CONDITION: &'static str = "attribute_not_exists(#pk) OR #x < :now OR #r = :r";

    fn new(code: &CustomerCode, used: SingleUse<'_>, now: u64, request: &str) -> Self {
        Self {
            item: HashMap::from([
                (item::CODE.to_owned(), s(&marker_key(code, used))),
                (MARKER_EXPIRES.to_owned(), n(used.until)),
                (MARKER_REQUEST.to_owned(), s(request)),
            ]),
            names: HashMap::from([
                ("#pk".to_owned(), item::CODE.to_owned()),
                ("#x".to_owned(), MARKER_EXPIRES.to_owned()),
                ("#r".to_owned(), MARKER_REQUEST.to_owned()),
            ]),
            values: HashMap::from([(":now".to_owned(), n(now)), (":r".to_owned(), s(request))]),
        }
    }
}

/// 128 random bits in hex: a request's id on its markers, a transaction's idempotency token.
fn random_id() -> Result<String, StoreError> {
    let mut raw = [0u8; 16];
    crate::api_key::random_bytes(&mut raw)
        .map_err(|_| StoreError::Unavailable("random source failed".into()))?;
    Ok(hex(&raw))
}

/// How a transaction ended.
enum Outcome {
    Written(Item),
    /// An id was used before.
    Replayed(UseKind),
    /// The image was stale (the current one, or `None` if the customer is gone).
    Stale(Option<Item>),
}

impl DynamoStore {
    fn cache(&self) -> Result<std::sync::MutexGuard<'_, Cache>, StoreError> {
        self.cache
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned instance cache".into()))
    }

    /// The customer's registered JWKs, from the cache while it is fresh, knows `kid` and a
    /// re-read is not asked for. A re-read costs one `BatchGetItem` (2 RCU), no more than a
    /// wrong API key's refused write, so unknown `kid`s are not throttled: a key registered
    /// a moment ago works at once on every instance.
    pub(super) async fn cached_jwks(
        &self,
        code: &CustomerCode,
        kid: Option<&str>,
        reread: bool,
        now: u64,
    ) -> Result<RegisteredKeys, StoreError> {
        if let Some((keys, fetched)) = self.cache()?.jwks.get(code.as_str()) {
            let fresh = now < fetched.saturating_add(JWKS_CACHE_SECONDS);
            let knows = kid.is_none_or(|kid| keys.iter().any(|(id, _)| id == kid));
            if fresh && knows && !reread {
                return Ok(keys.clone());
            }
        }
        let key = |pk: String| HashMap::from([(item::CODE.to_owned(), AttributeValue::S(pk))]);
        let wanted = KeysAndAttributes::builder()
            .keys(key(code.as_str().to_owned()))
            .keys(key(jwks_key(code)))
            .consistent_read(true)
            .build()
            .map_err(unavailable)?;
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.table, wanted)
            .send()
            .await
            .map_err(unavailable)?;
        if output
            .unprocessed_keys
            .as_ref()
            .is_some_and(|keys| !keys.is_empty())
        {
            return Err(StoreError::Unavailable(
                "BatchGetItem left keys unprocessed".into(),
            ));
        }
        let mut keys = Vec::new();
        let mut image = None;
        for raw in output
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default()
        {
            match raw.get(item::CODE).and_then(|v| v.as_s().ok()) {
                Some(pk) if pk == code.as_str() => image = Some(raw),
                Some(_) => {
                    let stored = match raw.get(JWKS) {
                        Some(AttributeValue::M(map)) => map
                            .iter()
                            .filter_map(|(id, v)| {
                                v.as_s().ok().map(|json| (id.clone(), json.clone()))
                            })
                            .collect::<Vec<_>>(),
                        _ => Vec::new(),
                    };
                    keys = registered(stored.iter().map(|(id, json)| (id, json)));
                }
                None => {}
            }
        }
        let mut cache = self.cache()?;
        cache.set_jwks(code, keys.clone(), now);
        cache.set_image(code, image);
        Ok(keys)
    }

    fn remember(&self, code: &CustomerCode, image: Option<Item>) -> Result<(), StoreError> {
        self.cache()?.set_image(code, image);
        Ok(())
    }

    /// After a plain counting write: keeps a cached image of `code` current, so a customer
    /// mixing Bearer and DPoP (or secrets and assertions) on one instance still gets one
    /// round trip per single-use request. Customers not cached stay uncached.
    pub(super) fn refresh_image(
        &self,
        code: &CustomerCode,
        image: Option<Item>,
    ) -> Result<(), StoreError> {
        let mut cache = self.cache()?;
        if cache.images.contains_key(code.as_str()) {
            cache.set_image(code, image);
        }
        Ok(())
    }

    /// Counts `request` and burns `uses`, see the module docs.
    pub(super) async fn count_once(
        &self,
        request: Counted<'_>,
        uses: &[SingleUse<'_>],
    ) -> Result<Counting, StoreError> {
        let Counted {
            code,
            bucket,
            credential,
            now,
            default_limit,
            ..
        } = request;
        let id = random_id()?;
        for _ in 0..OPTIMISTIC_ROUNDS {
            let Some(image) = self.cache()?.images.get(code.as_str()).cloned() else {
                break;
            };
            let customer = from_item(&image)?;
            let admission = match judge(Some(&customer), bucket, credential, now, default_limit) {
                Judgement::Rate {
                    admission: admission @ (Admission::Count | Admission::NewWindow),
                    ..
                } => admission,
                // The image may be stale (a key just registered, a limit just raised): a
                // refusal is judged on the current item.
                _ => break,
            };
            match self.transact(request, &image, uses, admission, &id).await? {
                Outcome::Written(new) => {
                    let customer = from_item(&new)?;
                    self.remember(code, Some(new))?;
                    let judgement = Judgement::Rate {
                        admission,
                        limit: customer.limit(bucket, default_limit),
                        window: customer.counter(bucket).window,
                    };
                    return Ok(Counting::Judged(judgement, Some(Box::new(customer))));
                }
                Outcome::Replayed(kind) => return Ok(Counting::Replayed(kind)),
                Outcome::Stale(current) => {
                    let gone = current.is_none();
                    self.remember(code, current)?;
                    if gone {
                        return Ok(Counting::Judged(Judgement::Missing, None));
                    }
                }
            }
        }
        self.burn_then_count(request, uses, &id).await
    }

    /// Without a usable image: the markers first (a replay stops there, counting nothing),
    /// then the plain conditional counting write, whose image is remembered. A request
    /// refused after the markers (429, a key revoked meanwhile) has used its ids; clients
    /// make new ones per request anyway.
    async fn burn_then_count(
        &self,
        request: Counted<'_>,
        uses: &[SingleUse<'_>],
        id: &str,
    ) -> Result<Counting, StoreError> {
        for used in uses {
            let marker = Marker::new(request.code, *used, request.now, id);
            let burned = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(marker.item))
                .condition_expression(Marker::CONDITION)
                .set_expression_attribute_names(Some(marker.names))
                .set_expression_attribute_values(Some(marker.values))
                .send()
                .await;
            match burned {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    return Ok(Counting::Replayed(used.kind));
                }
                Err(err) => return Err(unavailable(err)),
            }
        }
        let (judgement, customer, image) = self.count_seen(request).await?;
        self.remember(request.code, image)?;
        Ok(Counting::Judged(judgement, customer.map(Box::new)))
    }

    /// One `TransactWriteItems`: the count against `image`, and a marker per id, written by
    /// request `id`. Its idempotency token makes an SDK retry of a transaction that did
    /// commit (its answer lost) a success that changes nothing.
    async fn transact(
        &self,
        request: Counted<'_>,
        image: &Item,
        uses: &[SingleUse<'_>],
        admission: Admission,
        id: &str,
    ) -> Result<Outcome, StoreError> {
        let Counted {
            code,
            bucket,
            credential,
            effect,
            now,
            default_limit,
        } = request;
        let customer = from_item(image)?;
        let counter = customer.counter(bucket);
        let Condition {
            mut names,
            mut values,
            mut condition,
        } = Condition::credential(credential, bucket, now);
        names.insert("#ep".to_owned(), item::TOKEN_EPOCH.to_owned());
        names.insert("#av".to_owned(), item::ADMIN_VERSION.to_owned());
        // The image's epoch and admin version: unchanged means its record, scopes, limits
        // and epoch are still the item's.
        let mut expect = |name: &str, placeholder: &str, raw: Option<&AttributeValue>| match raw {
            Some(value) => {
                values.insert(placeholder.to_owned(), value.clone());
                condition.push_str(&format!(" AND {name} = {placeholder}"));
            }
            None => condition.push_str(&format!(" AND attribute_not_exists({name})")),
        };
        expect("#ep", ":ep", image.get(item::TOKEN_EPOCH));
        expect("#av", ":av", image.get(item::ADMIN_VERSION));
        let mut new = image.clone();
        let (mut sets, mut adds) = (Vec::new(), Vec::new());
        if admission == Admission::NewWindow {
            let win = window_start(now);
            values.insert(":win".into(), n(win));
            condition.push_str(" AND (attribute_not_exists(#w) OR #w < :win)");
            sets.push("#w = :win, #c = :one");
            new.insert(bucket_attr(bucket, "window"), n(win));
            new.insert(bucket_attr(bucket, "count"), n(1));
        } else {
            names.insert("#l".into(), bucket_attr(bucket, "limit"));
            values.insert(":w".into(), n(counter.window));
            values.insert(":n".into(), n(counter.count));
            values.insert(":def".into(), n(default_limit));
            condition.push_str(
                " AND #w = :w AND #c = :n \
                 AND ((attribute_not_exists(#l) AND #c < :def) OR #c < #l)",
            );
            adds.push("#c :one");
            new.insert(bucket_attr(bucket, "count"), n(counter.count + 1));
        }
        if effect == Effect::RevokeTokens {
            adds.push("#ep :one");
            new.insert(item::TOKEN_EPOCH.into(), n(customer.token_epoch + 1));
        }
        let count = Update::builder()
            .table_name(&self.table)
            .key(item::CODE, s(code.as_str()))
            .update_expression(super::dynamo::update_expression(&sets, &adds))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(unavailable)?;
        let mut transaction = self
            .client
            .transact_write_items()
            .client_request_token(random_id()?)
            .transact_items(TransactWriteItem::builder().update(count).build());
        for used in uses {
            let marker = Marker::new(code, *used, now, id);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(marker.item))
                .condition_expression(Marker::CONDITION)
                .set_expression_attribute_names(Some(marker.names))
                .set_expression_attribute_values(Some(marker.values))
                .build()
                .map_err(unavailable)?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match transaction.send().await {
            Ok(_) => Ok(Outcome::Written(new)),
            Err(SdkError::ServiceError(err)) => match err.into_err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons = cancelled.cancellation_reasons();
                    let failed = |i: usize| {
                        reasons
                            .get(i)
                            .and_then(|r| r.code())
                            .is_some_and(|c| c == "ConditionalCheckFailed")
                    };
                    if let Some(i) = (0..uses.len()).find(|i| failed(i + 1)) {
                        Ok(Outcome::Replayed(uses[i].kind))
                    } else if failed(0) {
                        Ok(Outcome::Stale(
                            reasons.first().and_then(|r| r.item().cloned()),
                        ))
                    } else {
                        Err(StoreError::Unavailable(format!(
                            "transaction cancelled: {:?}",
                            reasons.iter().map(|r| r.code()).collect::<Vec<_>>()
                        )))
                    }
                }
                other => Err(unavailable(other)),
            },
            Err(other) => Err(unavailable(other)),
        }
    }
}
