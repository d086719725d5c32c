//! `private_key_jwt` on DynamoDB: registered JWKs and single-use `jti`s in one round trip.
//!
//! Registered JWKs live in an item of their own (`<code>#jwks`, so the customer item stays
//! under 1 KB) and are cached per instance; the counting write re-checks that the key is
//! still registered, so a stale cache can only refuse. A `jti` is burned by a marker item
//! (`<code>#jti#<sha256(jti)>`, with a TTL) written in the same `TransactWriteItems` as the
//! count. A transaction returns no values, so the count is an optimistic write against the
//! last image of the customer item this instance saw: conditioned on that image's window,
//! count, revocation epoch and `admin_version`, its success means the new image is known
//! exactly (rate-limit headers, scopes, epoch); a stale image fails with the current one
//! (`ALL_OLD`), which becomes the next attempt's expectation. Steady state: 1 call; an
//! instance's first assertion for a customer adds one `BatchGetItem` (image + JWKs).

use super::dynamo::{Counted, DynamoStore};
use super::item::{self, Item, bucket_attr, from_item};
use super::{Assertion, Effect, Judgement, RegisteredKeys, StoreError, TokenAuth, judge};
use super::{registered, token_outcome};
use crate::api_key::{hex, sha256};
use crate::model::{Credential, CustomerCode, CustomerStatus};
use crate::rate_limit::{Admission, Bucket, window_start};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use std::collections::HashMap;

/// Registered JWKs are re-read at least this often per instance.
const JWKS_CACHE_SECONDS: u64 = 300;
/// Optimistic attempts before the two-call path (marker, then the plain counting write),
/// which concurrent use of one customer by several instances makes the better bet.
const OPTIMISTIC_ROUNDS: usize = 2;
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
            Some(image) => self.images.insert(code.as_str().to_owned(), image),
            None => self.images.remove(code.as_str()),
        };
    }
}

/// Partition key of a customer's JWKs item (`#` never appears in a Customer Code).
pub fn jwks_key(code: &CustomerCode) -> String {
    format!("{}#jwks", code.as_str())
}

fn marker_key(code: &CustomerCode, jti: &str) -> String {
    format!("{}#jti#{}", code.as_str(), hex(&sha256(jti.as_bytes())))
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

impl Marker {
    /// A marker whose time is over may be reused (TTL deletes lazily).
    const CONDITION: &'static str = "attribute_not_exists(#pk) OR #x < :now";

    fn new(code: &CustomerCode, assertion: Assertion<'_>, now: u64) -> Self {
        Self {
            item: HashMap::from([
                (item::CODE.to_owned(), s(&marker_key(code, assertion.jti))),
                (MARKER_EXPIRES.to_owned(), n(assertion.replay_until)),
            ]),
            names: HashMap::from([
                ("#pk".to_owned(), item::CODE.to_owned()),
                ("#x".to_owned(), MARKER_EXPIRES.to_owned()),
            ]),
            values: HashMap::from([(":now".to_owned(), n(now))]),
        }
    }
}

/// How a transaction ended.
enum Outcome {
    Written(Item),
    /// The `jti` was accepted before.
    Replay,
    /// The image was stale (the current one, or `None` if the customer is gone).
    Stale(Option<Item>),
}

impl DynamoStore {
    fn cache(&self) -> Result<std::sync::MutexGuard<'_, Cache>, StoreError> {
        self.assertions
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned assertion cache".into()))
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
        cache
            .jwks
            .insert(code.as_str().to_owned(), (keys.clone(), now));
        cache.set_image(code, image);
        Ok(keys)
    }

    /// The last image of the customer item, read if this instance has none.
    async fn image(&self, code: &CustomerCode, fresh: bool) -> Result<Option<Item>, StoreError> {
        let cached = if fresh {
            None
        } else {
            self.cache()?.images.get(code.as_str()).cloned()
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(item::CODE, s(code.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        self.remember(code, output.item.clone())?;
        Ok(output.item)
    }

    fn remember(&self, code: &CustomerCode, image: Option<Item>) -> Result<(), StoreError> {
        self.cache()?.set_image(code, image);
        Ok(())
    }

    /// Authenticates a verified assertion, burns its `jti` and counts, see the module docs.
    pub(super) async fn assertion_round(
        &self,
        code: &CustomerCode,
        assertion: Assertion<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<TokenAuth, StoreError> {
        let credential = Credential::Jwk {
            key_id: assertion.key_id,
        };
        let mut fresh = false;
        for _ in 0..OPTIMISTIC_ROUNDS {
            let Some(image) = self.image(code, fresh).await? else {
                return Ok(TokenAuth::InvalidClient);
            };
            let customer = from_item(&image)?;
            let judgement = judge(
                Some(&customer),
                Bucket::Token,
                credential,
                now,
                default_limit,
            );
            let admission = match judgement {
                Judgement::Rate {
                    admission: admission @ (Admission::Count | Admission::NewWindow),
                    ..
                } => admission,
                // A cached image may be stale (a key just registered, a limit just raised):
                // refusals are judged on a fresh one.
                _ if !fresh => {
                    fresh = true;
                    continue;
                }
                _ => return Ok(token_outcome(judgement, Some(customer), now)),
            };
            match self
                .transact(
                    code,
                    &image,
                    assertion,
                    effect,
                    admission,
                    now,
                    default_limit,
                )
                .await?
            {
                Outcome::Written(new) => {
                    let customer = from_item(&new)?;
                    self.remember(code, Some(new))?;
                    let judgement = Judgement::Rate {
                        admission,
                        limit: customer.limit(Bucket::Token, default_limit),
                        window: customer.counter(Bucket::Token).window,
                    };
                    return Ok(token_outcome(judgement, Some(customer), now));
                }
                Outcome::Replay => return Ok(TokenAuth::InvalidClient),
                Outcome::Stale(current) => {
                    let gone = current.is_none();
                    self.remember(code, current)?;
                    if gone {
                        return Ok(TokenAuth::InvalidClient);
                    }
                    fresh = false;
                }
            }
        }
        self.burn_then_count(code, assertion, effect, now, default_limit)
            .await
    }

    /// Under contention: the `jti` marker first (a replay stops there, counting nothing),
    /// then the same conditional counting write as an API key. A request refused after the
    /// marker (429, a key revoked meanwhile) has used its assertion; clients make a new one
    /// per request anyway.
    async fn burn_then_count(
        &self,
        code: &CustomerCode,
        assertion: Assertion<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<TokenAuth, StoreError> {
        let marker = Marker::new(code, assertion, now);
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
                return Ok(TokenAuth::InvalidClient);
            }
            Err(err) => return Err(unavailable(err)),
        }
        let (judgement, customer) = self
            .count(Counted {
                code,
                bucket: Bucket::Token,
                credential: Credential::Jwk {
                    key_id: assertion.key_id,
                },
                effect,
                now,
                default_limit,
            })
            .await?;
        // An image this module did not compute: the next assertion reads a fresh one.
        self.remember(code, None)?;
        Ok(token_outcome(judgement, customer, now))
    }

    /// One `TransactWriteItems`: the count against `image`, and the `jti` marker.
    #[allow(clippy::too_many_arguments)]
    async fn transact(
        &self,
        code: &CustomerCode,
        image: &Item,
        assertion: Assertion<'_>,
        effect: Effect,
        admission: Admission,
        now: u64,
        default_limit: u64,
    ) -> Result<Outcome, StoreError> {
        let customer = from_item(image)?;
        let counter = customer.counter(Bucket::Token);
        let mut names = HashMap::from([
            ("#pk".to_owned(), item::CODE.to_owned()),
            ("#s".to_owned(), item::STATUS.to_owned()),
            ("#k".to_owned(), item::KEYS.to_owned()),
            ("#kid".to_owned(), assertion.key_id.to_owned()),
            ("#hs".to_owned(), item::KEY_HASH.to_owned()),
            ("#e".to_owned(), item::KEY_EXPIRES.to_owned()),
            ("#w".to_owned(), bucket_attr(Bucket::Token, "window")),
            ("#c".to_owned(), bucket_attr(Bucket::Token, "count")),
            ("#ep".to_owned(), item::TOKEN_EPOCH.to_owned()),
            ("#av".to_owned(), item::ADMIN_VERSION.to_owned()),
        ]);
        let mut values = HashMap::from([
            (":active".to_owned(), s(CustomerStatus::Active.as_str())),
            (":now".to_owned(), n(now)),
            (":one".to_owned(), n(1)),
        ]);
        let mut condition = String::from(
            "attribute_exists(#pk) AND #s = :active AND attribute_exists(#k.#kid) \
             AND attribute_not_exists(#k.#kid.#hs) \
             AND (attribute_not_exists(#k.#kid.#e) OR #k.#kid.#e > :now)",
        );
        // The image's epoch and admin version: unchanged means its scopes, limits and epoch
        // are still the item's.
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
            new.insert(bucket_attr(Bucket::Token, "window"), n(win));
            new.insert(bucket_attr(Bucket::Token, "count"), n(1));
        } else {
            names.insert("#l".into(), bucket_attr(Bucket::Token, "limit"));
            values.insert(":w".into(), n(counter.window));
            values.insert(":n".into(), n(counter.count));
            values.insert(":def".into(), n(default_limit));
            condition.push_str(
                " AND #w = :w AND #c = :n \
                 AND ((attribute_not_exists(#l) AND #c < :def) OR #c < #l)",
            );
            adds.push("#c :one");
            new.insert(bucket_attr(Bucket::Token, "count"), n(counter.count + 1));
        }
        if effect == Effect::RevokeTokens {
            adds.push("#ep :one");
            new.insert(item::TOKEN_EPOCH.into(), n(customer.token_epoch + 1));
        }
        let mut update = String::new();
        if !sets.is_empty() {
            update = format!("SET {}", sets.join(", "));
        }
        if !adds.is_empty() {
            update = format!("{update} ADD {}", adds.join(", "));
        }
        let count = Update::builder()
            .table_name(&self.table)
            .key(item::CODE, s(code.as_str()))
            .update_expression(update.trim_start())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(unavailable)?;
        let marker = Marker::new(code, assertion, now);
        let marker = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker.item))
            .condition_expression(Marker::CONDITION)
            .set_expression_attribute_names(Some(marker.names))
            .set_expression_attribute_values(Some(marker.values))
            .build()
            .map_err(unavailable)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(count).build())
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .send()
            .await;
        match result {
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
                    if failed(1) {
                        Ok(Outcome::Replay)
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
