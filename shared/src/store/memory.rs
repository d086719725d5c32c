//! In-memory store for fast unit tests: the same decisions as DynamoDB under one lock.

use super::{
    Assertion, CustomerStore, Effect, Judgement, Lookup, RegisteredKeys, StoreError, TokenAuth,
    judge, lookup_outcome, registered, token_outcome,
};
use crate::model::{Credential, Customer, CustomerCode};
use crate::rate_limit::{Admission, Bucket, Counter};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A customer table in memory; counts calls like a round-trip counter.
#[derive(Default)]
pub struct MemoryStore {
    items: Mutex<HashMap<CustomerCode, Customer>>,
    /// Registered public JWKs per customer (key id → stored JSON).
    jwks: Mutex<HashMap<CustomerCode, BTreeMap<String, String>>>,
    /// Accepted assertion `jti`s per customer, with the time they may be forgotten.
    jtis: Mutex<HashMap<(CustomerCode, String), u64>>,
    calls: AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    /// Inserts or replaces a customer.
    pub fn put(&self, customer: Customer) {
        if let Ok(mut items) = self.items.lock() {
            items.insert(customer.code.clone(), customer);
        }
    }

    /// A copy of a stored customer.
    pub fn get(&self, code: &CustomerCode) -> Option<Customer> {
        self.items.lock().ok()?.get(code).cloned()
    }

    /// Removes a customer.
    pub fn remove(&self, code: &CustomerCode) {
        if let Ok(mut items) = self.items.lock() {
            items.remove(code);
        }
    }

    /// Registers a public JWK (the customer item's key entry is the caller's business).
    pub fn put_jwk(&self, code: &CustomerCode, key_id: &str, jwk_json: &str) {
        if let Ok(mut jwks) = self.jwks.lock() {
            jwks.entry(code.clone())
                .or_default()
                .insert(key_id.to_owned(), jwk_json.to_owned());
        }
    }

    /// Request-path calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes every following call fail as if the table were unreachable.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Counts one request-path call, or fails it when the store is set to fail.
    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
        Ok(())
    }

    /// Applies the shared judgement and, when admitted, counts the request.
    #[allow(clippy::too_many_arguments)]
    fn count(
        &self,
        code: &CustomerCode,
        bucket: Bucket,
        credential: Credential<'_>,
        effect: Effect,
        jti: Option<(&str, u64)>,
        now: u64,
        default_limit: u64,
    ) -> Result<(Judgement, Option<Customer>), StoreError> {
        self.call()?;
        let mut items = self
            .items
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
        let item = items.get_mut(code);
        let judgement = judge(item.as_deref(), bucket, credential, now, default_limit);
        let Some(customer) = item else {
            return Ok((judgement, None));
        };
        if let Judgement::Rate {
            admission, window, ..
        } = judgement
        {
            let counter = match bucket {
                Bucket::Token => &mut customer.token_counter,
                Bucket::Api => &mut customer.api_counter,
            };
            if admission == Admission::Reject {
                return Ok((judgement, Some(customer.clone())));
            }
            if let Some((jti, until)) = jti {
                let mut seen = self
                    .jtis
                    .lock()
                    .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
                let key = (code.clone(), jti.to_owned());
                if seen.get(&key).is_some_and(|t| *t >= now) {
                    return Ok((Judgement::Denied, Some(customer.clone())));
                }
                seen.insert(key, until);
            }
            match admission {
                Admission::Count => counter.count += 1,
                Admission::NewWindow => *counter = Counter { window, count: 1 },
                Admission::Reject => return Ok((judgement, Some(customer.clone()))),
            }
            if effect == Effect::RevokeTokens {
                customer.token_epoch += 1;
            }
        }
        Ok((judgement, Some(customer.clone())))
    }
}

impl CustomerStore for MemoryStore {
    async fn authorize_token(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<TokenAuth, StoreError> {
        let (judgement, item) =
            self.count(code, Bucket::Token, key, effect, None, now, default_limit)?;
        Ok(token_outcome(judgement, item, now))
    }

    async fn registered_jwks(
        &self,
        code: &CustomerCode,
        _kid: Option<&str>,
        _reread: bool,
        _now: u64,
    ) -> Result<RegisteredKeys, StoreError> {
        self.call()?;
        let jwks = self
            .jwks
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
        Ok(registered(jwks.get(code).into_iter().flatten()))
    }

    async fn authorize_assertion(
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
        let jti = Some((assertion.jti, assertion.replay_until));
        let (judgement, item) = self.count(
            code,
            Bucket::Token,
            credential,
            effect,
            jti,
            now,
            default_limit,
        )?;
        Ok(token_outcome(judgement, item, now))
    }

    async fn lookup(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        now: u64,
        default_limit: u64,
    ) -> Result<Lookup, StoreError> {
        let (judgement, item) = self.count(
            code,
            Bucket::Api,
            key,
            Effect::Count,
            None,
            now,
            default_limit,
        )?;
        Ok(lookup_outcome(judgement, item, now))
    }
}
