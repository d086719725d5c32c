//! Customer storage: the request-path operations behind one trait, two implementations.
//!
//! Each request-path operation is one conditional write that authenticates (token route),
//! counts the request in its rate-limit window and returns the record: SPEC §7's single
//! round trip. [`judge`] is the decision both stores share.

pub mod dynamo;
pub mod item;
pub mod memory;

use crate::model::{Customer, CustomerCode};
use crate::rate_limit::{Admission, Bucket, RateInfo, admit};
use std::future::Future;

/// Failures of the store. The text is for logs only, never for responses.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is malformed: {0}")]
    Malformed(String),
    #[error("rate-limit window kept changing under concurrent writers")]
    Contention,
    #[error("customer already exists")]
    AlreadyExists,
    #[error("customer not found")]
    NotFound,
    #[error("API key not found")]
    KeyNotFound,
}

/// Result of authenticating a token request.
#[derive(Debug, Clone)]
pub enum TokenAuth {
    /// Credentials valid and the request counted.
    Granted {
        customer: Box<Customer>,
        key_id: String,
        rate: RateInfo,
    },
    /// Unknown customer, wrong/expired key or suspended customer: all alike.
    InvalidClient,
    /// Valid credentials, token bucket exhausted (nothing written).
    Limited(RateInfo),
}

/// Result of counting an API request and reading the record.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The record, after counting the request.
    Found {
        customer: Box<Customer>,
        rate: RateInfo,
    },
    /// No such customer.
    NotFound,
    /// API bucket exhausted (nothing written).
    Limited(RateInfo),
}

/// The request-path operations (one conditional write each in DynamoDB).
pub trait CustomerStore: Send + Sync {
    /// Authenticates `key_hash` for `code` and counts the request in the token bucket.
    fn authorize_token(
        &self,
        code: &CustomerCode,
        key_hash: &str,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<TokenAuth, StoreError>> + Send;

    /// Counts an API request of `code` and returns its record.
    fn lookup(
        &self,
        code: &CustomerCode,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<Lookup, StoreError>> + Send;
}

/// What a stored item allows for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// No such customer.
    Missing,
    /// Credentials or status refuse the request.
    Denied,
    /// Rate-limit decision with the limit that applies.
    Rate { admission: Admission, limit: u64 },
}

/// The shared decision over an item; `key_hash` is checked only on the token route.
pub fn judge(
    item: Option<&Customer>,
    bucket: Bucket,
    key_hash: Option<&str>,
    now: u64,
    default_limit: u64,
) -> Judgement {
    let Some(customer) = item else {
        return Judgement::Missing;
    };
    if key_hash.is_some_and(|hash| !customer.accepts_key_hash(hash, now)) {
        return Judgement::Denied;
    }
    let limit = customer.limit(bucket, default_limit);
    Judgement::Rate {
        admission: admit(customer.counter(bucket), limit, now),
        limit,
    }
}

/// The token outcome of a judged request (`customer` is the item after the write).
pub(crate) fn token_outcome(
    judgement: Judgement,
    customer: Option<Customer>,
    key_hash: &str,
    now: u64,
) -> TokenAuth {
    match (judgement, customer) {
        (
            Judgement::Rate {
                admission: Admission::Reject,
                limit,
            },
            _,
        ) => TokenAuth::Limited(RateInfo::new(Bucket::Token, limit, limit, now)),
        (Judgement::Rate { limit, .. }, Some(customer)) => {
            let key_id = customer
                .keys
                .get(key_hash)
                .map(|k| k.id.clone())
                .unwrap_or_default();
            let rate = RateInfo::new(Bucket::Token, limit, customer.token_counter.count, now);
            TokenAuth::Granted {
                customer: Box::new(customer),
                key_id,
                rate,
            }
        }
        _ => TokenAuth::InvalidClient,
    }
}

/// The lookup outcome of a judged request (`customer` is the item after the write).
pub(crate) fn lookup_outcome(judgement: Judgement, customer: Option<Customer>, now: u64) -> Lookup {
    match (judgement, customer) {
        (
            Judgement::Rate {
                admission: Admission::Reject,
                limit,
            },
            _,
        ) => Lookup::Limited(RateInfo::new(Bucket::Api, limit, limit, now)),
        (Judgement::Rate { limit, .. }, Some(customer)) => {
            let rate = RateInfo::new(Bucket::Api, limit, customer.api_counter.count, now);
            Lookup::Found {
                customer: Box::new(customer),
                rate,
            }
        }
        _ => Lookup::NotFound,
    }
}

impl<T: CustomerStore> CustomerStore for std::sync::Arc<T> {
    fn authorize_token(
        &self,
        code: &CustomerCode,
        key_hash: &str,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<TokenAuth, StoreError>> + Send {
        self.as_ref()
            .authorize_token(code, key_hash, now, default_limit)
    }

    fn lookup(
        &self,
        code: &CustomerCode,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<Lookup, StoreError>> + Send {
        self.as_ref().lookup(code, now, default_limit)
    }
}
