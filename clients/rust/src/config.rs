//! The knobs of the client: retries, back-off, budgets, token refresh, and DPoP.

use crate::dpop::DpopKey;
use std::time::Duration;

/// How the client retries, waits and refreshes, and whether its tokens are DPoP-bound.
/// `ClientConfig::default()` suits most callers.
///
/// ```
/// use std::time::Duration;
/// let config = kiss_customer_api::ClientConfig::default()
///     .max_attempts(3)
///     .total_timeout(Duration::from_secs(20));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub(crate) max_attempts: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) retry_after_cap: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) refresh_margin: Duration,
    pub(crate) dpop: Option<DpopKey>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            // The API's rate-limit windows are 60 s long; half a window is the longest
            // single wait we accept before retrying anyway.
            retry_after_cap: Duration::from_secs(30),
            total_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            refresh_margin: Duration::from_secs(60),
            dpop: None,
        }
    }
}

impl ClientConfig {
    /// Attempts per request, first one included, for 429, 5xx and connection failures
    /// (default 4; at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// First back-off step; step `n` is drawn from `[0, min(max_delay, base_delay * 2^n))`
    /// (full jitter; default 200 ms).
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Upper bound of one back-off step (default 5 s).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Longest wait taken for one `Retry-After` (default 30 s); a longer one is cut to this.
    #[must_use]
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// Time budget of one call, token refresh and retries included (default 60 s).
    /// A wait that would end past it is not started: the last error is returned instead.
    #[must_use]
    pub fn total_timeout(mut self, budget: Duration) -> Self {
        self.total_timeout = budget;
        self
    }

    /// Time limit of one HTTP exchange, response body included (default 10 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Time limit of one TCP connect (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long before `expires_in` runs out a cached token is replaced (default 60 s;
    /// never more than half the token's lifetime).
    #[must_use]
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Asks for DPoP-bound tokens (RFC 9449) proven with `key` (default: off, Bearer
    /// tokens). Every token request then carries a `DPoP` proof, the token must come back
    /// with `token_type` `DPoP`, and every API call sends `Authorization: DPoP <token>`
    /// with a fresh proof. Revocation and introspection are unchanged.
    #[must_use]
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }
}
