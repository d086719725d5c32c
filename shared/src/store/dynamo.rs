//! DynamoDB store: one conditional `UpdateItem` per request in the steady state.
//!
//! Count form: `ADD <bucket>_count 1` if the item exists, the customer is active, the key
//! named by the credential (the presented API key on the token route, the token's `key_id`
//! on the lookup routes) is present and unexpired (token route: its hash matches), the stored
//! window is the current one or newer, and the count is below the limit (the per-customer
//! override compared attribute to attribute). On
//! `ConditionalCheckFailed` the `ALL_OLD` image is judged by [`super::judge`]: missing,
//! denied and over-limit end there (nothing written); an older window gets the reset form
//! `SET window = now, count = 1` conditioned on the window still being older.

use super::item::{self, Item, bucket_attr, from_item};
use super::{
    CustomerStore, Effect, Judgement, Lookup, SingleUse, StoreError, TokenAuth, judge,
    lookup_outcome, token_outcome,
};
use crate::model::{Credential, Customer, CustomerCode, CustomerStatus};
use crate::rate_limit::{Admission, Bucket, window_start};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use std::collections::HashMap;

/// A key that can never be a Customer Code, read in init to open the connection.
const WARMUP_KEY: &str = "#warmup";
/// Rounds of count/reset before giving up under a storm of concurrent window resets.
const MAX_ROUNDS: usize = 3;

/// The customer table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub(super) client: Client,
    pub(super) table: String,
    /// Per-instance cache of customer images and JWKs (`super::single_use`), shared by
    /// clones.
    pub(super) cache: std::sync::Arc<std::sync::Mutex<super::single_use::Cache>>,
}

fn unavailable<E: std::error::Error + 'static>(err: E) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

/// One request to count: whose item, which bucket, the credential to re-check, what else to
/// do, and the clock and default limit it is judged by.
#[derive(Clone, Copy)]
pub(super) struct Counted<'a> {
    pub(super) code: &'a CustomerCode,
    pub(super) bucket: Bucket,
    pub(super) credential: Credential<'a>,
    pub(super) effect: Effect,
    pub(super) now: u64,
    pub(super) default_limit: u64,
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A condition expression with its placeholders.
pub(super) struct Condition {
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
    pub(super) condition: String,
}

impl Condition {
    /// The same rule as `Customer::accepts`: the item exists, the customer is active, the
    /// key named by `credential` is present and unexpired and, for an API key, its hash is
    /// the presented one; a JWK entry has no hash; a token's epoch is the current one.
    /// Names `#w`, `#c` are `bucket`'s window and count, `#ep` (tokens only) the epoch.
    pub(super) fn credential(credential: Credential<'_>, bucket: Bucket, now: u64) -> Self {
        let mut names = HashMap::from([
            ("#pk".to_owned(), item::CODE.to_owned()),
            ("#w".to_owned(), bucket_attr(bucket, "window")),
            ("#c".to_owned(), bucket_attr(bucket, "count")),
            ("#s".to_owned(), item::STATUS.to_owned()),
            ("#k".to_owned(), item::KEYS.to_owned()),
            ("#kid".to_owned(), credential.key_id().to_owned()),
            ("#e".to_owned(), item::KEY_EXPIRES.to_owned()),
        ]);
        let mut values = HashMap::from([
            (":one".to_owned(), n(1)),
            (
                ":active".to_owned(),
                AttributeValue::S(CustomerStatus::Active.as_str().into()),
            ),
            (":now".to_owned(), n(now)),
        ]);
        let mut condition = String::from(
            "attribute_exists(#pk) AND #s = :active AND attribute_exists(#k.#kid) \
             AND (attribute_not_exists(#k.#kid.#e) OR #k.#kid.#e > :now)",
        );
        match credential {
            Credential::ApiKey { hash, .. } => {
                names.insert("#hs".into(), item::KEY_HASH.into());
                values.insert(":hash".into(), AttributeValue::S(hash.into()));
                condition.push_str(" AND #k.#kid.#hs = :hash");
            }
            Credential::Jwk { .. } => {
                names.insert("#hs".into(), item::KEY_HASH.into());
                condition.push_str(" AND attribute_not_exists(#k.#kid.#hs)");
            }
            Credential::Token { epoch, .. } => {
                names.insert("#ep".into(), item::TOKEN_EPOCH.into());
                values.insert(":tep".into(), n(epoch));
                condition.push_str(if epoch == 0 {
                    " AND (attribute_not_exists(#ep) OR #ep = :tep)"
                } else {
                    " AND #ep = :tep"
                });
            }
        }
        Self {
            names,
            values,
            condition,
        }
    }
}

/// `SET <sets> ADD <adds>`, either part left out when empty.
pub(super) fn update_expression(sets: &[&str], adds: &[&str]) -> String {
    let mut update = Vec::new();
    if !sets.is_empty() {
        update.push(format!("SET {}", sets.join(", ")));
    }
    if !adds.is_empty() {
        update.push(format!("ADD {}", adds.join(", ")));
    }
    update.join(" ")
}

/// Outcome of one conditional write.
enum Write {
    Done(Item),
    Refused(Option<Item>),
}

impl DynamoStore {
    /// A store over `table` using a client built once in `main`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            cache: std::sync::Arc::default(),
        }
    }

    /// Opens the HTTPS connection during init so the first request does not pay the handshake.
    pub async fn warm_up(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key(item::CODE, AttributeValue::S(WARMUP_KEY.into()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// One conditional `UpdateItem` of the count or reset form.
    async fn write(&self, request: Counted<'_>, form: Admission) -> Result<Write, StoreError> {
        let Counted {
            code,
            bucket,
            credential,
            effect,
            now,
            default_limit,
        } = request;
        let Condition {
            mut names,
            mut values,
            mut condition,
        } = Condition::credential(credential, bucket, now);
        values.insert(":win".to_owned(), n(window_start(now)));
        let (mut sets, mut adds) = (Vec::new(), Vec::new());
        if form == Admission::NewWindow {
            condition.push_str(" AND (attribute_not_exists(#w) OR #w < :win)");
            sets.push("#w = :win, #c = :one");
        } else {
            // `>=`: a window another instance already opened ahead of our clock counts too.
            names.insert("#l".into(), bucket_attr(bucket, "limit"));
            values.insert(":def".into(), AttributeValue::N(default_limit.to_string()));
            condition.push_str(
                " AND #w >= :win AND ((attribute_not_exists(#l) AND #c < :def) OR #c < #l)",
            );
            adds.push("#c :one");
        }
        if effect == Effect::RevokeTokens {
            names.insert("#ep".into(), item::TOKEN_EPOCH.into());
            adds.push("#ep :one");
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .update_expression(update_expression(&sets, &adds))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Write::Done(output.attributes.unwrap_or_default())),
            Err(SdkError::ServiceError(err)) => match err.into_err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    Ok(Write::Refused(failed.item))
                }
                other => Err(unavailable(other)),
            },
            Err(other) => Err(unavailable(other)),
        }
    }

    /// Counts one request; returns the judgement that ended it, the customer it saw and the
    /// raw item: the image after the write, or the current one that refused it.
    pub(super) async fn count_seen(
        &self,
        request: Counted<'_>,
    ) -> Result<(Judgement, Option<Customer>, Option<Item>), StoreError> {
        let Counted {
            bucket,
            credential,
            now,
            default_limit,
            ..
        } = request;
        let mut form = Admission::Count;
        for _ in 0..MAX_ROUNDS {
            match self.write(request, form).await? {
                Write::Done(new) => {
                    let customer = from_item(&new)?;
                    let judgement = Judgement::Rate {
                        admission: form,
                        limit: customer.limit(bucket, default_limit),
                        window: customer.counter(bucket).window,
                    };
                    return Ok((judgement, Some(customer), Some(new)));
                }
                Write::Refused(raw) => {
                    let old = raw.as_ref().map(from_item).transpose()?;
                    let judgement = judge(old.as_ref(), bucket, credential, now, default_limit);
                    match judgement {
                        Judgement::Rate {
                            admission: next @ (Admission::Count | Admission::NewWindow),
                            ..
                        } => form = next,
                        _ => return Ok((judgement, old, raw)),
                    }
                }
            }
        }
        Err(StoreError::Contention)
    }

    /// The client and table, for the `test-util` fixtures.
    #[cfg(feature = "test-util")]
    pub(crate) fn parts(&self) -> (&Client, &str) {
        (&self.client, &self.table)
    }
}

impl CustomerStore for DynamoStore {
    async fn registered_jwks(
        &self,
        code: &CustomerCode,
        kid: Option<&str>,
        reread: bool,
        now: u64,
    ) -> Result<super::RegisteredKeys, StoreError> {
        self.cached_jwks(code, kid, reread, now).await
    }

    async fn authorize_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        uses: &[SingleUse<'_>],
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<TokenAuth, StoreError> {
        if uses.is_empty() {
            return self
                .authorize_token(code, key, effect, now, default_limit)
                .await;
        }
        let request = Counted {
            code,
            bucket: Bucket::Token,
            credential: key,
            effect,
            now,
            default_limit,
        };
        Ok(self.count_once(request, uses).await?.token_outcome(now))
    }

    async fn lookup_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        proof: SingleUse<'_>,
        now: u64,
        default_limit: u64,
    ) -> Result<Lookup, StoreError> {
        let request = Counted {
            code,
            bucket: Bucket::Api,
            credential: key,
            effect: Effect::Count,
            now,
            default_limit,
        };
        Ok(self
            .count_once(request, &[proof])
            .await?
            .lookup_outcome(now))
    }

    async fn authorize_token(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<TokenAuth, StoreError> {
        let (judgement, item, image) = self
            .count_seen(Counted {
                code,
                bucket: Bucket::Token,
                credential: key,
                effect,
                now,
                default_limit,
            })
            .await?;
        self.refresh_image(code, image)?;
        Ok(token_outcome(judgement, item, now))
    }

    async fn lookup(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        now: u64,
        default_limit: u64,
    ) -> Result<Lookup, StoreError> {
        let (judgement, item, image) = self
            .count_seen(Counted {
                code,
                bucket: Bucket::Api,
                credential: key,
                effect: Effect::Count,
                now,
                default_limit,
            })
            .await?;
        self.refresh_image(code, image)?;
        Ok(lookup_outcome(judgement, item, now))
    }
}
