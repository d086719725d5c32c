//! The Errors page's pattern for one request: 429 and 5xx and connection failures are
//! retried with back-off inside a budget; everything else is handed back at once.
//!
//! Only the status code and `Retry-After` are looked at, never the error text.

use crate::config::ClientConfig;
use crate::error::{Error, ErrorBody};
use crate::transport::{Failure, Reply, Transport};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use http::{HeaderMap, Request, StatusCode, header::RETRY_AFTER};
use http_body_util::Full;
use hyper::body::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Sends the request `build` makes until it gets a response that is neither 429 nor 5xx,
/// or the attempts or the time up to `deadline` run out.
///
/// Returns that response (2xx, 3xx or a 4xx other than 429) for the caller to interpret.
/// `build` runs once per attempt (so an attempt can carry a fresh assertion); its error
/// ends the call.
pub(crate) async fn send(
    transport: &Transport,
    config: &ClientConfig,
    deadline: Instant,
    build: impl Fn() -> Result<Request<Full<Bytes>>, Error>,
) -> Result<Reply, Error> {
    let mut attempts = 0;
    let mut previous: Option<Error> = None;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limit = config.request_timeout.min(remaining);
        let backoff = full_jitter(config, attempts);
        let (error, wait) = match transport.exchange(build()?, limit).await {
            Ok(reply) if reply.status == StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = retry_after(&reply.headers);
                let wait =
                    retry_after.map_or(backoff, |r| r.min(config.retry_after_cap).max(backoff));
                (
                    Error::RateLimited {
                        retry_after,
                        attempts,
                    },
                    wait,
                )
            }
            Ok(reply) if reply.status.is_server_error() => (
                Error::Server {
                    status: reply.status.as_u16(),
                    body: ErrorBody::parse(&reply.body),
                    attempts,
                },
                backoff,
            ),
            Ok(reply) => return Ok(reply),
            Err(Failure::Transient(source)) => (Error::Transport { attempts, source }, backoff),
            Err(Failure::TimedOut(timeout)) => {
                let error = Error::Transport {
                    attempts,
                    source: Arc::new(timeout),
                };
                if limit < config.request_timeout {
                    // The budget, not the server, ended this attempt: the failure
                    // before it (if any) is the one worth reporting.
                    return Err(previous.unwrap_or(error));
                }
                (error, backoff)
            }
            Err(Failure::Protocol(reason)) => return Err(Error::Protocol { reason }),
        };
        // A wait that ends past the budget cannot lead to a useful attempt.
        if attempts >= config.max_attempts || Instant::now() + wait >= deadline {
            return Err(error);
        }
        previous = Some(error);
        tokio::time::sleep(wait).await;
    }
}

/// The error for a final response that is not a success the caller can use.
pub(crate) fn permanent(reply: &Reply) -> Error {
    let body = ErrorBody::parse(&reply.body);
    match reply.status.as_u16() {
        404 => Error::NotFound { body },
        status @ 400..=499 => Error::Rejected { status, body },
        status => Error::protocol(format!("unexpected HTTP status {status}")),
    }
}

/// `Retry-After` in delta-seconds (the form this API sends); an HTTP-date or anything
/// unreadable counts as absent, and the back-off applies.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// Exponential back-off with full jitter: uniform in `[0, min(max, base * 2^(attempt-1))]`.
pub(crate) fn full_jitter(config: &ClientConfig, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(config, attempt);
    let nanos = u128::from(random_u64()) * ceiling.as_nanos() / u128::from(u64::MAX);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn backoff_ceiling(config: &ClientConfig, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    config
        .base_delay
        .saturating_mul(1 << doublings)
        .min(config.max_delay)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // Jitter only spreads load; the middle of the range is a fine fallback.
        Err(_) => u64::MAX / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(retry_after) {
            headers.insert(RETRY_AFTER, value);
        }
        headers
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(retry_after(&headers("1")), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&headers(" 37 ")), Some(Duration::from_secs(37)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
        for unreadable in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5", "soon", ""] {
            assert_eq!(retry_after(&headers(unreadable)), None, "{unreadable}");
        }
    }

    #[test]
    fn back_off_doubles_up_to_the_maximum() {
        let config = ClientConfig::default()
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(1000));
        let ceilings: Vec<u128> = (1..=6)
            .map(|n| backoff_ceiling(&config, n).as_millis())
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            backoff_ceiling(&config, u32::MAX),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_varies() {
        let config = ClientConfig::default()
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(1000));
        let draws: Vec<Duration> = (0..64).map(|_| full_jitter(&config, 3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn permanent_maps_status_only() {
        let reply = |status: u16, body: &'static [u8]| Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            headers: HeaderMap::new(),
            body: Bytes::from_static(body),
        };
        assert!(matches!(
            permanent(&reply(404, br#"{"error":"Anything at all."}"#)),
            Error::NotFound { body } if body.error.as_deref() == Some("Anything at all.")
        ));
        assert!(matches!(
            permanent(&reply(400, b"")),
            Error::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            permanent(&reply(302, b"")),
            Error::Protocol { .. }
        ));
    }
}
