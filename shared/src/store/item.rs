//! The customer item in DynamoDB: attribute names and the codec.

use super::StoreError;
use crate::model::{Customer, CustomerCode, CustomerStatus, StoredKey};
use crate::rate_limit::{Bucket, Counter};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap};

/// Partition key.
pub const CODE: &str = "customer_code";
pub const NAME: &str = "name";
pub const EMAIL: &str = "email";
pub const STATUS: &str = "status";
pub const PLAN: &str = "plan";
pub const CREATED_AT: &str = "created_at";
pub const SCOPES: &str = "scopes";
/// Map: key id → {hash, created_at, expires_at?}. Keyed by id so both the token route (id
/// derived from the presented key, hash compared) and the lookup routes (id from the token)
/// address one entry in their condition.
pub const KEYS: &str = "api_keys";
pub const KEY_HASH: &str = "hash";
pub const KEY_EXPIRES: &str = "expires_at";
/// Revocation epoch (absent = 0), moved on by `POST /auth/revoke`.
pub const TOKEN_EPOCH: &str = "token_epoch";
/// Incremented by every admin write, each conditional on the value it read, so concurrent
/// admin commands cannot overwrite each other. The request path's counting writes never
/// write it.
pub const ADMIN_VERSION: &str = "admin_version";

/// Attribute of a bucket's window start, count or limit override.
pub fn bucket_attr(bucket: Bucket, what: &str) -> String {
    format!("{}_{what}", bucket.name())
}

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// One stored key as a map attribute.
pub fn key_value(key: &StoredKey) -> AttributeValue {
    let mut map = HashMap::from([(CREATED_AT.to_owned(), n(key.created_at))]);
    if let Some(hash) = &key.hash {
        map.insert(KEY_HASH.to_owned(), s(hash));
    }
    if let Some(end) = key.expires_at {
        map.insert(KEY_EXPIRES.to_owned(), n(end));
    }
    AttributeValue::M(map)
}

/// All keys as the `api_keys` map attribute.
pub fn keys_value(keys: &BTreeMap<String, StoredKey>) -> AttributeValue {
    AttributeValue::M(
        keys.iter()
            .map(|(id, k)| (id.clone(), key_value(k)))
            .collect(),
    )
}

/// The full item of a new customer (counters start absent).
pub fn to_item(customer: &Customer) -> Item {
    let mut item = HashMap::from([
        (CODE.to_owned(), s(customer.code.as_str())),
        (NAME.to_owned(), s(&customer.name)),
        (EMAIL.to_owned(), s(&customer.email)),
        (STATUS.to_owned(), s(customer.status.as_str())),
        (PLAN.to_owned(), s(&customer.plan)),
        (CREATED_AT.to_owned(), s(&customer.created_at)),
        (
            SCOPES.to_owned(),
            AttributeValue::L(customer.scopes.iter().map(|v| s(v)).collect()),
        ),
        (KEYS.to_owned(), keys_value(&customer.keys)),
    ]);
    for (bucket, limit) in [
        (Bucket::Token, customer.token_limit),
        (Bucket::Api, customer.api_limit),
    ] {
        if let Some(limit) = limit {
            item.insert(bucket_attr(bucket, "limit"), n(limit));
        }
    }
    item
}

fn malformed(what: &str) -> StoreError {
    StoreError::Malformed(what.to_owned())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| malformed(name))
}

fn get_n(item: &Item, name: &str) -> Result<Option<u64>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_n()
            .ok()
            .and_then(|raw| raw.parse().ok())
            .map(Some)
            .ok_or_else(|| malformed(name)),
    }
}

fn parse_key(value: &AttributeValue) -> Result<StoredKey, StoreError> {
    let map = value.as_m().map_err(|_| malformed(KEYS))?;
    Ok(StoredKey {
        hash: map
            .get(KEY_HASH)
            .map(|v| v.as_s().cloned().map_err(|_| malformed(KEY_HASH)))
            .transpose()?,
        created_at: get_n(map, CREATED_AT)?.unwrap_or(0),
        expires_at: get_n(map, KEY_EXPIRES)?,
    })
}

/// Decodes an item; fails on a missing or mistyped attribute rather than guessing.
pub fn from_item(item: &Item) -> Result<Customer, StoreError> {
    let code = CustomerCode::parse(get_s(item, CODE)?).ok_or_else(|| malformed(CODE))?;
    let scopes = match item.get(SCOPES) {
        None => vec![crate::model::DEFAULT_SCOPE.to_owned()],
        Some(value) => value
            .as_l()
            .map_err(|_| malformed(SCOPES))?
            .iter()
            .map(|v| v.as_s().cloned().map_err(|_| malformed(SCOPES)))
            .collect::<Result<_, _>>()?,
    };
    let keys = match item.get(KEYS) {
        None => BTreeMap::new(),
        Some(value) => value
            .as_m()
            .map_err(|_| malformed(KEYS))?
            .iter()
            .map(|(id, v)| Ok((id.clone(), parse_key(v)?)))
            .collect::<Result<_, StoreError>>()?,
    };
    let counter = |bucket| -> Result<Counter, StoreError> {
        Ok(Counter {
            window: get_n(item, &bucket_attr(bucket, "window"))?.unwrap_or(0),
            count: get_n(item, &bucket_attr(bucket, "count"))?.unwrap_or(0),
        })
    };
    Ok(Customer {
        code,
        name: get_s(item, NAME)?.to_owned(),
        email: get_s(item, EMAIL)?.to_owned(),
        status: CustomerStatus::from_stored(get_s(item, STATUS)?),
        plan: get_s(item, PLAN)?.to_owned(),
        created_at: get_s(item, CREATED_AT)?.to_owned(),
        scopes,
        keys,
        token_limit: get_n(item, &bucket_attr(Bucket::Token, "limit"))?,
        api_limit: get_n(item, &bucket_attr(Bucket::Api, "limit"))?,
        token_counter: counter(Bucket::Token)?,
        api_counter: counter(Bucket::Api)?,
        token_epoch: get_n(item, TOKEN_EPOCH)?.unwrap_or(0),
    })
}
