//! The customer table as the operator changes it: every write of an existing item is
//! conditional on the `admin_version` the command read and bumps it; on a conflict the
//! command takes the item the failed write returned, re-applies its rule and tries again.
//!
//! The request path's counting writes neither read nor write `admin_version`, so a busy
//! customer never makes an admin command retry, and an admin command never disturbs the
//! counters (it `SET`s only the attributes it changes).

use crate::error::AdminError;
use crate::retry::{MAX_ATTEMPTS, backoff};
use crate::rules;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use shared::api_key::ApiKey;
use shared::jwk::PublicJwk;
use shared::model::{Customer, CustomerCode, CustomerStatus};
use shared::rate_limit::Bucket;
use shared::store::StoreError;
use shared::store::item::{self, Item, bucket_attr, from_item};
use std::collections::HashMap;

fn unavailable<E: std::error::Error + 'static>(err: E) -> AdminError {
    AdminError::Store(StoreError::Unavailable(
        DisplayErrorContext(err).to_string(),
    ))
}

fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// A customer and the `admin_version` it was read at (0: never written by a versioned
/// command).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub customer: Customer,
    pub version: u64,
}

fn versioned(raw: &Item) -> Result<Versioned, AdminError> {
    let version = match raw.get(item::ADMIN_VERSION) {
        None => 0,
        Some(value) => value
            .as_n()
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Malformed(item::ADMIN_VERSION.into()))?,
    };
    Ok(Versioned {
        customer: from_item(raw)?,
        version,
    })
}

/// What a rule decided: the attributes to `SET` (none: nothing to write) and what the
/// command reports.
pub struct Change<T> {
    pub set: Vec<(String, AttributeValue)>,
    pub output: T,
}

/// Outcome of one conditional write.
enum Write {
    Done,
    /// The item changed since it was read: here it is now (`None`: deleted).
    Changed(Option<Item>),
}

/// The customer table.
#[derive(Clone, Debug)]
pub struct CustomerTable {
    client: Client,
    table: String,
}

impl CustomerTable {
    /// The table `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(code: &CustomerCode) -> AttributeValue {
        AttributeValue::S(code.as_str().into())
    }

    /// Creates a customer (`admin_version` 1); `AlreadyExists` if the code is taken.
    pub async fn create(&self, customer: &Customer) -> Result<(), AdminError> {
        let mut raw = item::to_item(customer);
        raw.insert(item::ADMIN_VERSION.into(), AttributeValue::N("1".into()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(raw))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", item::CODE)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Err(AdminError::AlreadyExists),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Reads a customer and its version (strongly consistent).
    pub async fn get(&self, code: &CustomerCode) -> Result<Option<Versioned>, AdminError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(item::CODE, Self::key(code))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(versioned).transpose()
    }

    /// Every customer, sorted by code (a paginated Scan).
    pub async fn list(&self) -> Result<Vec<Customer>, AdminError> {
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
                // JWK items and jti markers share the table; their keys contain `#`,
                // which no Customer Code does.
                let code = raw.get(item::CODE).and_then(|v| v.as_s().ok());
                if code.is_some_and(|code| code.contains('#')) {
                    continue;
                }
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

    /// Deletes a customer; `NotFound` if there was none.
    pub async fn delete(&self, code: &CustomerCode) -> Result<(), AdminError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(item::CODE, Self::key(code))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", item::CODE)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Err(AdminError::NotFound),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// `SET`s `set` and the next `admin_version` if the item is still at `version`.
    async fn write_if_unchanged(
        &self,
        code: &CustomerCode,
        version: u64,
        set: Vec<(String, AttributeValue)>,
    ) -> Result<Write, AdminError> {
        let mut names = HashMap::from([("#ver".to_owned(), item::ADMIN_VERSION.to_owned())]);
        let mut values = HashMap::from([(
            ":next".to_owned(),
            AttributeValue::N((version + 1).to_string()),
        )]);
        let mut sets = vec!["#ver = :next".to_owned()];
        for (i, (name, value)) in set.into_iter().enumerate() {
            names.insert(format!("#a{i}"), name);
            values.insert(format!(":v{i}"), value);
            sets.push(format!("#a{i} = :v{i}"));
        }
        let condition = if version == 0 {
            names.insert("#pk".into(), item::CODE.into());
            "attribute_exists(#pk) AND attribute_not_exists(#ver)"
        } else {
            values.insert(":read".into(), AttributeValue::N(version.to_string()));
            "#ver = :read"
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(item::CODE, Self::key(code))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Write::Done),
            Err(SdkError::ServiceError(err)) => match err.into_err() {
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                    failed,
                ) => Ok(Write::Changed(failed.item)),
                other => Err(unavailable(other)),
            },
            Err(other) => Err(unavailable(other)),
        }
    }

    /// Read-modify-write of one customer: applies `rule` to the item as read and writes its
    /// change conditional on the item being unchanged since; on a conflict, applies `rule`
    /// again to the item as it is now, up to [`MAX_ATTEMPTS`] times. A rule that fails
    /// (bad input for this item) ends the command with nothing written.
    pub async fn update<T>(
        &self,
        code: &CustomerCode,
        mut rule: impl FnMut(&Customer) -> Result<Change<T>, AdminError>,
    ) -> Result<T, AdminError> {
        let mut current = self.get(code).await?.ok_or(AdminError::NotFound)?;
        for attempt in 0..MAX_ATTEMPTS {
            let change = rule(&current.customer)?;
            if change.set.is_empty() {
                return Ok(change.output);
            }
            match self
                .write_if_unchanged(code, current.version, change.set)
                .await?
            {
                Write::Done => return Ok(change.output),
                Write::Changed(None) => return Err(AdminError::NotFound),
                Write::Changed(Some(now)) => current = versioned(&now)?,
            }
            backoff(attempt).await;
        }
        Err(AdminError::Concurrent(
            format!("customer {code}"),
            "nothing was written",
        ))
    }

    /// Suspends or reactivates a customer.
    pub async fn set_status(
        &self,
        code: &CustomerCode,
        status: CustomerStatus,
    ) -> Result<(), AdminError> {
        self.update(code, |_| {
            Ok(Change {
                set: vec![(
                    item::STATUS.into(),
                    AttributeValue::S(status.as_str().into()),
                )],
                output: (),
            })
        })
        .await
    }

    /// Sets per-customer limit overrides (per minute); returns the limits now in force
    /// (`None`: the deployment's default).
    pub async fn set_limits(
        &self,
        code: &CustomerCode,
        token: Option<u64>,
        api: Option<u64>,
    ) -> Result<(Option<u64>, Option<u64>), AdminError> {
        self.update(code, |customer| {
            let mut set = Vec::new();
            for (bucket, limit) in [(Bucket::Token, token), (Bucket::Api, api)] {
                if let Some(limit) = limit {
                    set.push((
                        bucket_attr(bucket, "limit"),
                        AttributeValue::N(limit.to_string()),
                    ));
                }
            }
            Ok(Change {
                set,
                output: (token.or(customer.token_limit), api.or(customer.api_limit)),
            })
        })
        .await
    }

    /// `keys rotate`: a new key, the newest valid old one kept for `grace` seconds.
    pub async fn rotate_key(
        &self,
        code: &CustomerCode,
        now: u64,
        grace: u64,
    ) -> Result<(ApiKey, String), AdminError> {
        self.update(code, |customer| {
            let (api_key, key_id, keys) = rules::rotate_keys(&customer.keys, now, grace)?;
            Ok(Change {
                set: vec![(item::KEYS.into(), item::keys_value(&keys))],
                output: (api_key, key_id),
            })
        })
        .await
    }

    /// `keys add-jwk`: stores the public JWK beside the customer item, then registers its
    /// entry in the key map (conditional on the item as read, like every admin write). The
    /// material is written first, so a registered entry always has it; if registration is
    /// refused, the material is removed again.
    pub async fn add_jwk(
        &self,
        code: &CustomerCode,
        jwk: &PublicJwk,
        now: u64,
        expires_at: Option<u64>,
    ) -> Result<String, AdminError> {
        let key_id = jwk.key_id();
        let current = self.get(code).await?.ok_or(AdminError::NotFound)?;
        rules::add_jwk(&current.customer.keys, &key_id, now, expires_at)?;
        self.set_jwk_material(code, &key_id, Some(&jwk.to_json()))
            .await?;
        let registered = self
            .update(code, |customer| {
                let keys = rules::add_jwk(&customer.keys, &key_id, now, expires_at)?;
                Ok(Change {
                    set: vec![(item::KEYS.into(), item::keys_value(&keys))],
                    output: (),
                })
            })
            .await;
        if registered.is_err() {
            // Best effort: an unregistered JWK authenticates nothing either way.
            let _ = self.set_jwk_material(code, &key_id, None).await;
        }
        registered.map(|()| key_id)
    }

    /// Stores (`Some`) or removes (`None`) one JWK in the customer's JWKs item.
    pub async fn set_jwk_material(
        &self,
        code: &CustomerCode,
        key_id: &str,
        json: Option<&str>,
    ) -> Result<(), AdminError> {
        let key = AttributeValue::S(shared::store::jwks_key(code));
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(item::CODE, key.clone())
            .expression_attribute_names("#j", shared::store::JWKS)
            .expression_attribute_names("#kid", key_id);
        let result = match json {
            Some(json) => {
                update
                    .update_expression("SET #j.#kid = :jwk")
                    .condition_expression("attribute_exists(#j)")
                    .expression_attribute_values(":jwk", AttributeValue::S(json.into()))
                    .send()
                    .await
            }
            None => {
                update
                    .update_expression("REMOVE #j.#kid")
                    .condition_expression("attribute_exists(#j)")
                    .send()
                    .await
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("ConditionalCheckFailedException") => {
                let Some(json) = json else { return Ok(()) };
                // No JWKs item yet: create it (a concurrent creation makes us try again).
                let created = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .item(item::CODE, key)
                    .item(
                        shared::store::JWKS,
                        AttributeValue::M(HashMap::from([(
                            key_id.to_owned(),
                            AttributeValue::S(json.into()),
                        )])),
                    )
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", item::CODE)
                    .send()
                    .await;
                match created {
                    Ok(_) => Ok(()),
                    Err(err) if err.code() == Some("ConditionalCheckFailedException") => {
                        Box::pin(self.set_jwk_material(code, key_id, Some(json))).await
                    }
                    Err(err) => Err(unavailable(err)),
                }
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// `keys revoke`: the key `key_id` ends at once.
    pub async fn revoke_key(&self, code: &CustomerCode, key_id: &str) -> Result<(), AdminError> {
        self.update(code, |customer| {
            let keys = rules::revoke_key(&customer.keys, key_id)?;
            Ok(Change {
                set: vec![(item::KEYS.into(), item::keys_value(&keys))],
                output: (),
            })
        })
        .await
    }
}
