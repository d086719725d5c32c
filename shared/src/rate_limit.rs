//! Fixed 60-second windows per customer and bucket, and the headers that report them.
//!
//! The counting itself happens in the store (one conditional write); this module holds the
//! window arithmetic and the decision over a stored counter, shared by every store.

/// Length of a rate-limit window in seconds.
pub const WINDOW_SECONDS: u64 = 60;

/// The two buckets (`docs/contract.md`, "Rate limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `POST /auth/token`.
    Token,
    /// The customer routes.
    Api,
}

impl Bucket {
    /// Name used in headers and as the attribute prefix in the store.
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Api => "api",
        }
    }
}

/// Start of the window that contains `now` (Unix seconds).
pub fn window_start(now: u64) -> u64 {
    now - now % WINDOW_SECONDS
}

/// Seconds until the window containing `now` ends (1..=60).
pub fn seconds_to_reset(now: u64) -> u64 {
    window_start(now) + WINDOW_SECONDS - now
}

/// A stored counter: the window it belongs to and how many requests it admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub window: u64,
    pub count: u64,
}

/// What a counter allows for one more request at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The stored window is the current one, or a newer one that another instance (its clock
    /// a little ahead) already opened, and it is below the limit: count it there.
    Count,
    /// The stored window is over: start a new one with this request.
    NewWindow,
    /// The stored window (current or newer) is at the limit: reject without writing.
    Reject,
}

/// The decision every store applies (DynamoDB expresses the same in its conditions).
///
/// A request whose clock is still in window W while the item already counts in W+1 is
/// counted in W+1: refusing it would be a 429 for a customer under its limit.
pub fn admit(counter: Counter, limit: u64, now: u64) -> Admission {
    let current = window_start(now);
    if counter.window >= current {
        if counter.count < limit {
            Admission::Count
        } else {
            Admission::Reject
        }
    } else if limit > 0 {
        Admission::NewWindow
    } else {
        Admission::Reject
    }
}

/// The window a request is counted in (or refused in): the stored one when it is current or
/// newer, else the one that contains `now`.
pub fn counted_window(counter: Counter, now: u64) -> u64 {
    counter.window.max(window_start(now))
}

/// The state of a bucket after a request reached the limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateInfo {
    pub bucket: Bucket,
    pub limit: u64,
    pub remaining: u64,
    pub reset: u64,
}

impl RateInfo {
    /// Rate state after the request was counted in `window` (`count` includes it) or
    /// rejected there; `reset` is the time until that window ends, at least 1 s.
    pub fn new(bucket: Bucket, limit: u64, count: u64, window: u64, now: u64) -> Self {
        Self {
            bucket,
            limit,
            remaining: limit.saturating_sub(count),
            reset: window
                .saturating_add(WINDOW_SECONDS)
                .saturating_sub(now)
                .max(1),
        }
    }

    /// `X-RateLimit-*`, the IETF `RateLimit-Policy`/`RateLimit` fields, and `Retry-After` on 429.
    pub fn headers(&self, limited: bool) -> Vec<(&'static str, String)> {
        let name = self.bucket.name();
        let mut headers = vec![
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", self.reset.to_string()),
            (
                "ratelimit-policy",
                format!("\"{name}\";q={};w={WINDOW_SECONDS}", self.limit),
            ),
            (
                "ratelimit",
                format!("\"{name}\";r={};t={}", self.remaining, self.reset),
            ),
        ];
        if limited {
            headers.push(("retry-after", self.reset.max(1).to_string()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_arithmetic() {
        assert_eq!(window_start(120), 120);
        assert_eq!(window_start(179), 120);
        assert_eq!(seconds_to_reset(120), 60);
        assert_eq!(seconds_to_reset(179), 1);
    }

    #[test]
    fn admission_follows_window_and_limit() {
        let now = 1_000_020;
        let current = window_start(now);
        assert_eq!(
            admit(
                Counter {
                    window: current,
                    count: 1
                },
                2,
                now
            ),
            Admission::Count
        );
        assert_eq!(
            admit(
                Counter {
                    window: current,
                    count: 2
                },
                2,
                now
            ),
            Admission::Reject
        );
        assert_eq!(
            admit(
                Counter {
                    window: current - 60,
                    count: 9
                },
                2,
                now
            ),
            Admission::NewWindow
        );
        assert_eq!(admit(Counter::default(), 2, now), Admission::NewWindow);
        assert_eq!(admit(Counter::default(), 0, now), Admission::Reject);
    }

    #[test]
    fn a_newer_stored_window_counts_the_request_there() {
        let now = 1_000_020;
        let next = window_start(now) + WINDOW_SECONDS;
        let newer = |count| Counter {
            window: next,
            count,
        };
        assert_eq!(admit(newer(1), 2, now), Admission::Count);
        assert_eq!(admit(newer(2), 2, now), Admission::Reject);
        assert_eq!(counted_window(newer(1), now), next);
        let info = RateInfo::new(Bucket::Api, 2, 2, next, now);
        assert_eq!(info.reset, next + WINDOW_SECONDS - now);
    }

    #[test]
    fn headers_of_a_rejected_request() {
        let info = RateInfo::new(Bucket::Api, 120, 120, window_start(1_000_057), 1_000_057);
        let headers = info.headers(true);
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-ratelimit-limit"), Some("120"));
        assert_eq!(get("x-ratelimit-remaining"), Some("0"));
        assert_eq!(get("x-ratelimit-reset"), Some("23"));
        assert_eq!(get("ratelimit-policy"), Some("\"api\";q=120;w=60"));
        assert_eq!(get("ratelimit"), Some("\"api\";r=0;t=23"));
        assert_eq!(get("retry-after"), Some("23"));
    }
}
