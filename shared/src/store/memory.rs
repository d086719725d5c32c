//! In-memory store for fast unit tests: the same decisions as DynamoDB under one lock.

use super::{
    Counting, CustomerStore, Effect, Judgement, Lookup, RegisteredKeys, SingleUse, StoreError,
    TokenAuth, UseKind, judge, registered,
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
    /// Accepted single-use ids per customer and kind, with the time they may be forgotten.
    jtis: Mutex<HashMap<(CustomerCode, UseKind, String), u64>>,
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

    /// Applies the shared judgement and, when admitted, burns `uses` and counts the request.
    #[allow(clippy::too_many_arguments)]
    fn count(
        &self,
        code: &CustomerCode,
        bucket: Bucket,
        credential: Credential<'_>,
        effect: Effect,
        uses: &[SingleUse<'_>],
        now: u64,
        default_limit: u64,
    ) -> Result<Counting, StoreError> {
        self.call()?;
        let mut items = self
            .items
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
        let item = items.get_mut(code);
        let judgement = judge(item.as_deref(), bucket, credential, now, default_limit);
        let Some(customer) = item else {
            return Ok(Counting::Judged(judgement, None));
        };
        let admission = match judgement {
            Judgement::Rate {
                admission: admission @ (Admission::Count | Admission::NewWindow),
                ..
            } => admission,
            _ => {
                return Ok(Counting::Judged(
                    judgement,
                    Some(Box::new(customer.clone())),
                ));
            }
        };
        {
            let mut seen = self
                .jtis
                .lock()
                .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
            let key = |u: &SingleUse<'_>| (code.clone(), u.kind, u.jti.to_owned());
            if let Some(used) = uses
                .iter()
                .find(|u| seen.get(&key(u)).is_some_and(|until| *until >= now))
            {
                return Ok(Counting::Replayed(used.kind));
            }
            for used in uses {
                seen.insert(key(used), used.until);
            }
        }
        let counter = match bucket {
            Bucket::Token => &mut customer.token_counter,
            Bucket::Api => &mut customer.api_counter,
        };
        match (admission, &judgement) {
            (Admission::NewWindow, Judgement::Rate { window, .. }) => {
                let window = *window;
                *counter = Counter { window, count: 1 };
            }
            _ => counter.count += 1,
        }
        if effect == Effect::RevokeTokens {
            customer.token_epoch += 1;
        }
        Ok(Counting::Judged(
            judgement,
            Some(Box::new(customer.clone())),
        ))
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
        self.authorize_once(code, key, &[], effect, now, default_limit)
            .await
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

    async fn authorize_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        uses: &[SingleUse<'_>],
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<TokenAuth, StoreError> {
        let counting = self.count(code, Bucket::Token, key, effect, uses, now, default_limit)?;
        Ok(counting.token_outcome(now))
    }

    async fn lookup(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        now: u64,
        default_limit: u64,
    ) -> Result<Lookup, StoreError> {
        let counting = self.count(
            code,
            Bucket::Api,
            key,
            Effect::Count,
            &[],
            now,
            default_limit,
        )?;
        Ok(counting.lookup_outcome(now))
    }

    async fn lookup_once(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        proof: SingleUse<'_>,
        now: u64,
        default_limit: u64,
    ) -> Result<Lookup, StoreError> {
        let counting = self.count(
            code,
            Bucket::Api,
            key,
            Effect::Count,
            &[proof],
            now,
            default_limit,
        )?;
        Ok(counting.lookup_outcome(now))
    }
}
