//! Customer storage: the request-path operations behind one trait, two implementations.
//!
//! Each request-path operation is one conditional write that authenticates (token route),
//! counts the request in its rate-limit window and returns the record: the single
//! round trip. [`judge`] is the decision both stores share.

mod single_use;
pub use single_use::{JWKS, MARKER_EXPIRES, jwks_key};
pub mod dynamo;
pub mod item;
#[cfg(feature = "test-util")]
pub mod memory;

use crate::model::{Credential, Customer, CustomerCode};
use crate::rate_limit::{Admission, Bucket, RateInfo, admit, counted_window, window_start};
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
        rate: RateInfo,
    },
    /// Unknown customer, wrong/expired key or suspended customer: all alike.
    InvalidClient,
    /// Valid credentials, token bucket exhausted (nothing written).
    Limited(RateInfo),
    /// A single-use id of the request was used before: nothing counted or written.
    Replayed(UseKind),
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
    /// Customer suspended, or the token's key revoked or expired: nothing counted.
    Denied,
    /// API bucket exhausted (nothing written).
    Limited(RateInfo),
    /// The request's DPoP proof was used before: nothing counted or written.
    Replayed,
}

/// What an authenticated client request does to the item besides being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Only counted (token issue, introspection, revocation of nothing).
    Count,
    /// Counted, and every token issued so far is revoked (the revocation epoch moves on).
    RevokeTokens,
}

/// What a single-use id is: each kind has its own markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UseKind {
    /// The `jti` of a `private_key_jwt` client assertion.
    Assertion,
    /// The `jti` of a DPoP proof.
    DpopProof,
}

/// An id a request may use once (per customer and kind), burned in the counting write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleUse<'a> {
    pub kind: UseKind,
    pub jti: &'a str,
    /// Unix seconds until which the id is remembered (the end of its acceptance window).
    pub until: u64,
}

/// A customer's registered public keys (id, key).
pub type RegisteredKeys = Vec<(String, crate::jwk::PublicJwk)>;

/// Parses stored JWKs (key id, JSON); one that no longer parses is skipped with a warning
/// rather than failing the customer's other keys.
pub(crate) fn registered<'a>(
    stored: impl Iterator<Item = (&'a String, &'a String)>,
) -> RegisteredKeys {
    stored
        .filter_map(|(id, json)| match crate::jwk::PublicJwk::parse(json) {
            Ok(key) => Some((id.clone(), key)),
            Err(err) => {
                tracing::warn!(key_id = %id, error = %err, "skipping an unusable registered JWK");
                None
            }
        })
        .collect()
}

/// The request-path operations (one conditional write each in DynamoDB).
pub trait CustomerStore: Send + Sync {
    /// Authenticates the presented API key for `code`, counts the request in the token
    /// bucket and applies `effect` in the same write.
    fn authorize_token(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<TokenAuth, StoreError>> + Send;

    /// The public JWKs registered for `code`; may come from a per-instance cache, since the
    /// counting write re-checks that the key is still registered. `kid` is the key an
    /// assertion names: one missing from the cache re-reads it, as does `reread`.
    fn registered_jwks(
        &self,
        code: &CustomerCode,
        kid: Option<&str>,
        reread: bool,
        now: u64,
    ) -> impl Future<Output = Result<RegisteredKeys, StoreError>> + Send;

    /// [`CustomerStore::authorize_token`] that also burns `uses` (an assertion's `jti`, a
    /// DPoP proof's `jti`): one that was used before makes it `Replayed`, counting nothing.
    /// One round trip in the steady state; with no `uses`, exactly `authorize_token`.
    fn authorize_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        uses: &[SingleUse<'_>],
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<TokenAuth, StoreError>> + Send;

    /// Re-checks the token's key and the customer's status, counts an API request of `code`
    /// and returns its record.
    fn lookup(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<Lookup, StoreError>> + Send;

    /// [`CustomerStore::lookup`] that also burns the DPoP proof's `jti` (`Replayed` if it was
    /// used before, counting nothing). One round trip in the steady state.
    fn lookup_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        proof: SingleUse<'_>,
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
    /// Rate-limit decision with the limit that applies and the window it is made in.
    Rate {
        admission: Admission,
        limit: u64,
        window: u64,
    },
}

/// The shared decision over an item: status and credential first (a refused credential is
/// never counted), then the bucket.
pub fn judge(
    item: Option<&Customer>,
    bucket: Bucket,
    credential: Credential<'_>,
    now: u64,
    default_limit: u64,
) -> Judgement {
    let Some(customer) = item else {
        return Judgement::Missing;
    };
    if !customer.accepts(&credential, now) {
        return Judgement::Denied;
    }
    let limit = customer.limit(bucket, default_limit);
    let counter = customer.counter(bucket);
    let admission = admit(counter, limit, now);
    let window = match admission {
        Admission::NewWindow => window_start(now),
        _ => counted_window(counter, now),
    };
    Judgement::Rate {
        admission,
        limit,
        window,
    }
}

/// A counted or refused request's rate state: `customer` is the item after the write.
fn rate_of(
    judgement: &Judgement,
    customer: Option<&Customer>,
    bucket: Bucket,
    now: u64,
) -> Option<(RateInfo, bool)> {
    let Judgement::Rate {
        admission,
        limit,
        window,
    } = *judgement
    else {
        return None;
    };
    if admission == Admission::Reject {
        return Some((RateInfo::new(bucket, limit, limit, window, now), true));
    }
    let counter = customer?.counter(bucket);
    Some((
        RateInfo::new(bucket, limit, counter.count, counter.window, now),
        false,
    ))
}

/// How a request with single-use ids ended in a store.
#[derive(Debug, Clone)]
pub(crate) enum Counting {
    /// Judged (and counted if admitted); `customer` is the item after the write.
    Judged(Judgement, Option<Box<Customer>>),
    /// One of its ids was used before: nothing written.
    Replayed(UseKind),
}

impl Counting {
    pub(crate) fn token_outcome(self, now: u64) -> TokenAuth {
        match self {
            Self::Judged(judgement, customer) => {
                token_outcome(judgement, customer.map(|c| *c), now)
            }
            Self::Replayed(kind) => TokenAuth::Replayed(kind),
        }
    }

    pub(crate) fn lookup_outcome(self, now: u64) -> Lookup {
        match self {
            Self::Judged(judgement, customer) => {
                lookup_outcome(judgement, customer.map(|c| *c), now)
            }
            Self::Replayed(_) => Lookup::Replayed,
        }
    }
}

/// The token outcome of a judged request (`customer` is the item after the write).
pub(crate) fn token_outcome(
    judgement: Judgement,
    customer: Option<Customer>,
    now: u64,
) -> TokenAuth {
    match (
        rate_of(&judgement, customer.as_ref(), Bucket::Token, now),
        customer,
    ) {
        (Some((rate, true)), _) => TokenAuth::Limited(rate),
        (Some((rate, false)), Some(customer)) => TokenAuth::Granted {
            customer: Box::new(customer),
            rate,
        },
        _ => TokenAuth::InvalidClient,
    }
}

/// The lookup outcome of a judged request (`customer` is the item after the write).
pub(crate) fn lookup_outcome(judgement: Judgement, customer: Option<Customer>, now: u64) -> Lookup {
    match (
        rate_of(&judgement, customer.as_ref(), Bucket::Api, now),
        customer,
    ) {
        (Some((rate, true)), _) => Lookup::Limited(rate),
        (Some((rate, false)), Some(customer)) => Lookup::Found {
            customer: Box::new(customer),
            rate,
        },
        _ if judgement == Judgement::Denied => Lookup::Denied,
        _ => Lookup::NotFound,
    }
}

impl<T: CustomerStore> CustomerStore for std::sync::Arc<T> {
    fn authorize_token(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<TokenAuth, StoreError>> + Send {
        self.as_ref()
            .authorize_token(code, key, effect, now, default_limit)
    }

    fn lookup(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<Lookup, StoreError>> + Send {
        self.as_ref().lookup(code, key, now, default_limit)
    }

    fn registered_jwks(
        &self,
        code: &CustomerCode,
        kid: Option<&str>,
        reread: bool,
        now: u64,
    ) -> impl Future<Output = Result<RegisteredKeys, StoreError>> + Send {
        self.as_ref().registered_jwks(code, kid, reread, now)
    }

    fn authorize_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        uses: &[SingleUse<'_>],
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<TokenAuth, StoreError>> + Send {
        self.as_ref()
            .authorize_once(code, key, uses, effect, now, default_limit)
    }

    fn lookup_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        proof: SingleUse<'_>,
        now: u64,
        default_limit: u64,
    ) -> impl Future<Output = Result<Lookup, StoreError>> + Send {
        self.as_ref()
            .lookup_once(code, key, proof, now, default_limit)
    }
}
