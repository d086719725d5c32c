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
    CustomerStore, Effect, Judgement, Lookup, StoreError, TokenAuth, judge, lookup_outcome,
    token_outcome,
};
use crate::model::{Credential, Customer, CustomerCode, CustomerStatus, StoredKey};
use crate::rate_limit::{Admission, Bucket, window_start};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use std::collections::{BTreeMap, HashMap};

/// A key that can never be a Customer Code, read in init to open the connection.
const WARMUP_KEY: &str = "#warmup";
/// Rounds of count/reset before giving up under a storm of concurrent window resets.
const MAX_ROUNDS: usize = 3;

/// The customer table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn unavailable<E: std::error::Error + 'static>(err: E) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

/// One request to count: whose item, which bucket, the credential to re-check, what else to
/// do, and the clock and default limit it is judged by.
#[derive(Clone, Copy)]
struct Counted<'a> {
    code: &'a CustomerCode,
    bucket: Bucket,
    credential: Credential<'a>,
    effect: Effect,
    now: u64,
    default_limit: u64,
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
            (":one".to_owned(), AttributeValue::N("1".into())),
            (
                ":win".to_owned(),
                AttributeValue::N(window_start(now).to_string()),
            ),
            (
                ":active".to_owned(),
                AttributeValue::S(CustomerStatus::Active.as_str().into()),
            ),
            (":now".to_owned(), AttributeValue::N(now.to_string())),
        ]);
        // The same rule as `Customer::accepts`: active, the key present and unexpired and,
        // on the token route, the presented key's hash.
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
            Credential::Token { epoch, .. } => {
                names.insert("#ep".into(), item::TOKEN_EPOCH.into());
                values.insert(":ep".into(), AttributeValue::N(epoch.to_string()));
                condition.push_str(if epoch == 0 {
                    " AND (attribute_not_exists(#ep) OR #ep = :ep)"
                } else {
                    " AND #ep = :ep"
                });
            }
        }
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
        let mut update = String::new();
        if !sets.is_empty() {
            update = format!("SET {}", sets.join(", "));
        }
        if !adds.is_empty() {
            update = format!("{update} ADD {}", adds.join(", "));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .update_expression(update.trim_start())
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

    /// Counts one request; returns the judgement that ended it and the item it saw.
    async fn count(
        &self,
        request: Counted<'_>,
    ) -> Result<(Judgement, Option<Customer>), StoreError> {
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
                    return Ok((judgement, Some(customer)));
                }
                Write::Refused(old) => {
                    let old = old.as_ref().map(from_item).transpose()?;
                    let judgement = judge(old.as_ref(), bucket, credential, now, default_limit);
                    match judgement {
                        Judgement::Rate {
                            admission: next @ (Admission::Count | Admission::NewWindow),
                            ..
                        } => form = next,
                        _ => return Ok((judgement, old)),
                    }
                }
            }
        }
        Err(StoreError::Contention)
    }

    /// Creates a customer; fails if the code is taken.
    pub async fn create(&self, customer: &Customer) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::to_item(customer)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", item::CODE)
            .send()
            .await;
        conditional(result, StoreError::AlreadyExists)
    }

    /// Reads a customer (strongly consistent).
    pub async fn get(&self, code: &CustomerCode) -> Result<Option<Customer>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(from_item).transpose()
    }

    /// Every customer, sorted by code (operator use: a paginated Scan).
    pub async fn list(&self) -> Result<Vec<Customer>, StoreError> {
        let mut customers = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for raw in page.items() {
                customers.push(from_item(raw)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        customers.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(customers)
    }

    /// Sets attributes of an existing customer (`SET` pairs); `NotFound` if it is gone.
    async fn set(
        &self,
        code: &CustomerCode,
        pairs: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut names = HashMap::from([("#pk".to_owned(), item::CODE.to_owned())]);
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        for (i, (name, value)) in pairs.into_iter().enumerate() {
            names.insert(format!("#a{i}"), name.to_owned());
            values.insert(format!(":v{i}"), value);
            sets.push(format!("#a{i} = :v{i}"));
        }
        if sets.is_empty() {
            return self
                .get(code)
                .await?
                .map(|_| ())
                .ok_or(StoreError::NotFound);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression("attribute_exists(#pk)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        conditional(result, StoreError::NotFound)
    }

    /// Suspends or reactivates a customer.
    pub async fn set_status(
        &self,
        code: &CustomerCode,
        status: CustomerStatus,
    ) -> Result<(), StoreError> {
        self.set(
            code,
            vec![(item::STATUS, AttributeValue::S(status.as_str().into()))],
        )
        .await
    }

    /// Sets per-customer limit overrides (per minute).
    pub async fn set_limits(
        &self,
        code: &CustomerCode,
        token: Option<u64>,
        api: Option<u64>,
    ) -> Result<(), StoreError> {
        let token_attr = bucket_attr(Bucket::Token, "limit");
        let api_attr = bucket_attr(Bucket::Api, "limit");
        let mut pairs = Vec::new();
        if let Some(limit) = token {
            pairs.push((token_attr.as_str(), AttributeValue::N(limit.to_string())));
        }
        if let Some(limit) = api {
            pairs.push((api_attr.as_str(), AttributeValue::N(limit.to_string())));
        }
        self.set(code, pairs).await
    }

    /// Replaces the key map of an existing customer.
    pub async fn set_keys(
        &self,
        code: &CustomerCode,
        keys: &BTreeMap<String, StoredKey>,
    ) -> Result<(), StoreError> {
        self.set(code, vec![(item::KEYS, item::keys_value(keys))])
            .await
    }

    /// Deletes a customer; `NotFound` if there was none.
    pub async fn delete(&self, code: &CustomerCode) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", item::CODE)
            .send()
            .await;
        conditional(result, StoreError::NotFound)
    }
}

/// Maps an admin write: a failed condition is `refused`, anything else is unavailability.
fn conditional<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    refused: StoreError,
) -> Result<(), StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == "ConditionalCheckFailedException") =>
        {
            Err(refused)
        }
        Err(err) => Err(unavailable(err)),
    }
}

impl CustomerStore for DynamoStore {
    async fn authorize_token(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<TokenAuth, StoreError> {
        let (judgement, item) = self
            .count(Counted {
                code,
                bucket: Bucket::Token,
                credential: key,
                effect,
                now,
                default_limit,
            })
            .await?;
        Ok(token_outcome(judgement, item, now))
    }

    async fn lookup(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        now: u64,
        default_limit: u64,
    ) -> Result<Lookup, StoreError> {
        let (judgement, item) = self
            .count(Counted {
                code,
                bucket: Bucket::Api,
                credential: key,
                effect: Effect::Count,
                now,
                default_limit,
            })
            .await?;
        Ok(lookup_outcome(judgement, item, now))
    }
}
