//! Fixtures for tests, benches and fuzz targets (feature `test-util`; the functions never
//! enable it): customers with a fresh API key, and plain seeding of the table and the key
//! secrets. The operator's writes, conditional and retried, live in the admin crate.

use crate::api_key::{ApiKey, RandomError};
use crate::keys::{KeyDocument, KeyError, SecretsManagerSource};
use crate::model::{Customer, CustomerCode, CustomerStatus, DEFAULT_SCOPE, StoredKey, rfc3339};
use crate::rate_limit::{Bucket, Counter};
use crate::store::StoreError;
use crate::store::dynamo::DynamoStore;
use crate::store::item::{self, bucket_attr, from_item};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap};

/// A customer and its one API key (`key_id` → its hash in `customer.keys`).
pub struct TestCustomer {
    pub customer: Customer,
    pub api_key: ApiKey,
    pub key_id: String,
}

/// An active customer `code` ("Acme", default scope and limits) with one fresh API key.
///
/// Panics on a malformed `code`: fixtures are written by hand.
pub fn customer(code: &str, now: u64) -> TestCustomer {
    let api_key = ApiKey::generate().unwrap_or_else(|_| panic!("the OS random source failed"));
    let key_id = api_key.key_id();
    let keys = BTreeMap::from([(key_id.clone(), stored(&api_key, now))]);
    TestCustomer {
        customer: Customer {
            code: CustomerCode::parse(code)
                .unwrap_or_else(|| panic!("fixture code {code:?} is malformed")),
            name: "Acme".into(),
            email: "ops@acme.example".into(),
            status: CustomerStatus::Active,
            plan: "standard".into(),
            created_at: rfc3339(now),
            scopes: vec![DEFAULT_SCOPE.to_owned()],
            keys,
            token_limit: None,
            api_limit: None,
            token_counter: Counter::default(),
            api_counter: Counter::default(),
            token_epoch: 0,
        },
        api_key,
        key_id,
    }
}

fn stored(key: &ApiKey, now: u64) -> StoredKey {
    StoredKey {
        hash: Some(key.hash_hex()),
        created_at: now,
        expires_at: None,
    }
}

/// `keys` plus one fresh key created at `now`; the other keys stay as they are.
pub fn add_key(
    keys: &BTreeMap<String, StoredKey>,
    now: u64,
) -> Result<(ApiKey, String, BTreeMap<String, StoredKey>), RandomError> {
    let api_key = ApiKey::generate()?;
    let key_id = api_key.key_id();
    let mut next = keys.clone();
    next.insert(key_id.clone(), stored(&api_key, now));
    Ok((api_key, key_id, next))
}

fn unavailable<E: std::error::Error + 'static>(err: E) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

/// Plain (unconditional) seeding and inspection of the customer table.
#[allow(async_fn_in_trait)]
pub trait DynamoFixtures {
    /// Writes the whole item of `customer` (counters absent).
    async fn create(&self, customer: &Customer) -> Result<(), StoreError>;
    /// Reads a customer (strongly consistent).
    async fn get(&self, code: &CustomerCode) -> Result<Option<Customer>, StoreError>;
    /// Suspends or reactivates a customer.
    async fn set_status(
        &self,
        code: &CustomerCode,
        status: CustomerStatus,
    ) -> Result<(), StoreError>;
    /// Sets per-customer limit overrides.
    async fn set_limits(
        &self,
        code: &CustomerCode,
        token: Option<u64>,
        api: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Replaces the key map.
    async fn set_keys(
        &self,
        code: &CustomerCode,
        keys: &BTreeMap<String, StoredKey>,
    ) -> Result<(), StoreError>;
    /// Deletes a customer.
    async fn delete(&self, code: &CustomerCode) -> Result<(), StoreError>;
    /// Writes the JWKs item of `code` (key id → stored JWK JSON), replacing it.
    async fn put_jwks(
        &self,
        code: &CustomerCode,
        jwks: &[(String, String)],
    ) -> Result<(), StoreError>;
}

async fn set(
    store: &DynamoStore,
    code: &CustomerCode,
    pairs: Vec<(String, AttributeValue)>,
) -> Result<(), StoreError> {
    let (client, table) = store.parts();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::new();
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        names.insert(format!("#a{i}"), name);
        values.insert(format!(":v{i}"), value);
        sets.push(format!("#a{i} = :v{i}"));
    }
    if sets.is_empty() {
        return Ok(());
    }
    client
        .update_item()
        .table_name(table)
        .key(item::CODE, AttributeValue::S(code.as_str().into()))
        .update_expression(format!("SET {}", sets.join(", ")))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .send()
        .await
        .map(|_| ())
        .map_err(unavailable)
}

impl DynamoFixtures for DynamoStore {
    async fn put_jwks(
        &self,
        code: &CustomerCode,
        jwks: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (client, table) = self.parts();
        let map = jwks
            .iter()
            .map(|(id, json)| (id.clone(), AttributeValue::S(json.clone())))
            .collect();
        client
            .put_item()
            .table_name(table)
            .item(item::CODE, AttributeValue::S(crate::store::jwks_key(code)))
            .item(crate::store::JWKS, AttributeValue::M(map))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn create(&self, customer: &Customer) -> Result<(), StoreError> {
        let (client, table) = self.parts();
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item::to_item(customer)))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn get(&self, code: &CustomerCode) -> Result<Option<Customer>, StoreError> {
        let (client, table) = self.parts();
        let output = client
            .get_item()
            .table_name(table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(from_item).transpose()
    }

    async fn set_status(
        &self,
        code: &CustomerCode,
        status: CustomerStatus,
    ) -> Result<(), StoreError> {
        let value = AttributeValue::S(status.as_str().into());
        set(self, code, vec![(item::STATUS.into(), value)]).await
    }

    async fn set_limits(
        &self,
        code: &CustomerCode,
        token: Option<u64>,
        api: Option<u64>,
    ) -> Result<(), StoreError> {
        let pairs = [(Bucket::Token, token), (Bucket::Api, api)]
            .into_iter()
            .filter_map(|(bucket, limit)| {
                limit.map(|l| {
                    (
                        bucket_attr(bucket, "limit"),
                        AttributeValue::N(l.to_string()),
                    )
                })
            })
            .collect();
        set(self, code, pairs).await
    }

    async fn set_keys(
        &self,
        code: &CustomerCode,
        keys: &BTreeMap<String, StoredKey>,
    ) -> Result<(), StoreError> {
        set(
            self,
            code,
            vec![(item::KEYS.into(), item::keys_value(keys))],
        )
        .await
    }

    async fn delete(&self, code: &CustomerCode) -> Result<(), StoreError> {
        let (client, table) = self.parts();
        client
            .delete_item()
            .table_name(table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// Plain (unconditional) writes of a key secret.
#[allow(async_fn_in_trait)]
pub trait SecretFixtures {
    /// Replaces the secret's value.
    async fn write(&self, doc: &KeyDocument) -> Result<(), KeyError>;
}

impl SecretFixtures for SecretsManagerSource {
    async fn write(&self, doc: &KeyDocument) -> Result<(), KeyError> {
        let (client, secret_id) = self.parts();
        client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(doc.to_secret_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                KeyError::Unavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )
            })
    }
}
