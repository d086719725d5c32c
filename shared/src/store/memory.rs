//! In-memory store for fast unit tests: the same decisions as DynamoDB under one lock.

use super::{
    CustomerStore, Effect, Judgement, Lookup, StoreError, TokenAuth, judge, lookup_outcome,
    token_outcome,
};
use crate::model::{Credential, Customer, CustomerCode};
use crate::rate_limit::{Admission, Bucket, Counter};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A customer table in memory; counts calls like a round-trip counter.
#[derive(Default)]
pub struct MemoryStore {
    items: Mutex<HashMap<CustomerCode, Customer>>,
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

    /// Request-path calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes every following call fail as if the table were unreachable.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Applies the shared judgement and, when admitted, counts the request.
    fn count(
        &self,
        code: &CustomerCode,
        bucket: Bucket,
        credential: Credential<'_>,
        effect: Effect,
        now: u64,
        default_limit: u64,
    ) -> Result<(Judgement, Option<Customer>), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
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
        let (judgement, item) = self.count(code, Bucket::Token, key, effect, now, default_limit)?;
        Ok(token_outcome(judgement, item, now))
    }

    async fn lookup(
        &self,
        code: &CustomerCode,
        key: Credential<'_>,
        now: u64,
        default_limit: u64,
    ) -> Result<Lookup, StoreError> {
        let (judgement, item) =
            self.count(code, Bucket::Api, key, Effect::Count, now, default_limit)?;
        Ok(lookup_outcome(judgement, item, now))
    }
}
