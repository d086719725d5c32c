//! The per-instance key cache: refresh interval, failed refresh keeps the keys, and at most
//! one forced refresh per minute for unknown `kid`s.

use super::{KeyError, KeySet, KeySource, UNKNOWN_KID_REFRESH_SECONDS};
use std::sync::Arc;
use tokio::sync::Mutex;

/// After a failed refresh with keys cached, try again after this many seconds.
const RETRY_AFTER_FAILURE_SECONDS: u64 = 10;

struct CacheState {
    keys: Option<Arc<KeySet>>,
    next_refresh: u64,
    last_forced: Option<u64>,
}

/// Keys cached per function instance: no Secrets Manager call between refreshes, and a
/// failed refresh keeps serving the keys it had.
pub struct KeyCache<S> {
    source: S,
    refresh_seconds: u64,
    state: Mutex<CacheState>,
}

impl<S: KeySource> KeyCache<S> {
    /// An empty cache; the first use (or [`KeyCache::load`] in init) fills it.
    pub fn new(source: S, refresh_seconds: u64) -> Self {
        Self {
            source,
            refresh_seconds,
            state: Mutex::new(CacheState {
                keys: None,
                next_refresh: 0,
                last_forced: None,
            }),
        }
    }

    async fn refresh(&self, state: &mut CacheState, now: u64) -> Result<Arc<KeySet>, KeyError> {
        let loaded =
            async { KeySet::from_document(&self.source.fetch().await?, self.refresh_seconds) }
                .await;
        match (loaded, &state.keys) {
            (Ok(keys), _) => {
                let keys = Arc::new(keys);
                state.keys = Some(keys.clone());
                state.next_refresh = now + self.refresh_seconds;
                Ok(keys)
            }
            (Err(err), Some(cached)) => {
                tracing::warn!(error = %err, "key refresh failed; keeping cached keys");
                state.next_refresh = now + self.refresh_seconds.min(RETRY_AFTER_FAILURE_SECONDS);
                Ok(cached.clone())
            }
            (Err(err), None) => Err(err),
        }
    }

    /// Loads the keys now (function init).
    pub async fn load(&self, now: u64) -> Result<(), KeyError> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state, now).await.map(|_| ())
    }

    /// The current keys, refreshed when the interval has passed.
    pub async fn current(&self, now: u64) -> Result<Arc<KeySet>, KeyError> {
        let mut state = self.state.lock().await;
        match &state.keys {
            Some(keys) if now < state.next_refresh => Ok(keys.clone()),
            _ => self.refresh(&mut state, now).await,
        }
    }

    /// Keys that know `kid` if any refresh allowed now can find it (one forced refresh per
    /// 60 s, so a token with a random `kid` cannot make us hammer Secrets Manager).
    pub async fn with_kid(&self, kid: &str, now: u64) -> Result<Option<Arc<KeySet>>, KeyError> {
        let keys = self.current(now).await?;
        if keys.verifier(kid).is_some() {
            return Ok(Some(keys));
        }
        let mut state = self.state.lock().await;
        if state
            .last_forced
            .is_some_and(|t| now < t + UNKNOWN_KID_REFRESH_SECONDS)
        {
            return Ok(None);
        }
        state.last_forced = Some(now);
        let keys = self.refresh(&mut state, now).await?;
        Ok(keys.verifier(kid).is_some().then_some(keys))
    }
}
