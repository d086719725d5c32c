//! The access token: reading `/auth/token` answers, caching, single-flight refresh.

use crate::dpop;
use crate::error::Error;
use crate::secret::SecretHeader;
use serde::Deserialize;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Longest lifetime believed from `expires_in`; a token is refreshed at least this often.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// An access token issued to this client, for code that hands it on (to
/// [`Client::introspect`](crate::Client::introspect), [`Client::revoke`](crate::Client::revoke)
/// or another component). `Debug` prints `AccessToken(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// The token itself: a bearer credential, keep it out of logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// The `token_type` of a token, which decides how it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenType {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: DPoP <token>` with a proof of the key it is bound to (RFC 9449).
    Dpop,
}

impl TokenType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP",
        }
    }
}

/// An access token ready to send, and when to stop using it.
#[derive(Debug)]
pub(crate) struct Token {
    access_token: AccessToken,
    authorization: SecretHeader,
    /// `ath` of the proofs sent with a DPoP token; `None` for a Bearer token.
    ath: Option<String>,
    refresh_at: Instant,
}

impl Token {
    /// The `Authorization` value, `Bearer <token>` or `DPoP <token>`.
    pub(crate) fn authorization(&self) -> &SecretHeader {
        &self.authorization
    }

    /// The hash of the token that proofs sent with it carry, for a DPoP token.
    pub(crate) fn ath(&self) -> Option<&str> {
        self.ath.as_deref()
    }

    /// The token as issued.
    pub(crate) fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }

    /// Reads a 200 body of `/auth/token` received at `received`, which must have the
    /// `token_type` asked for (case-insensitive); it is used until `margin` (at most half
    /// its lifetime) before `expires_in` ends.
    pub(crate) fn parse(
        body: &[u8],
        received: Instant,
        margin: Duration,
        asked: TokenType,
    ) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct Issued {
            access_token: String,
            token_type: String,
            expires_in: u64,
        }
        let issued: Issued = serde_json::from_slice(body)
            .map_err(|e| Error::protocol(format!("token response is not valid: {e}")))?;
        let scheme = asked.as_str();
        if !issued.token_type.eq_ignore_ascii_case(scheme) {
            // A server that ignores the proof answers Bearer: using that token would quietly
            // give up the binding the caller asked for.
            return Err(Error::protocol(format!(
                "asked for a {scheme} token, but the token response has token_type {:?}",
                issued.token_type.chars().take(32).collect::<String>()
            )));
        }
        if issued.access_token.is_empty() {
            return Err(Error::protocol("token response has an empty access_token"));
        }
        let authorization = SecretHeader::new(&format!("{scheme} {}", issued.access_token))
            .ok_or_else(|| Error::protocol("access_token cannot be sent in a header"))?;
        let ath = (asked == TokenType::Dpop).then(|| dpop::ath(&issued.access_token));
        let lifetime = Duration::from_secs(issued.expires_in).min(MAX_LIFETIME);
        let usable = lifetime - margin.min(lifetime / 2);
        Ok(Self {
            access_token: AccessToken(issued.access_token.into()),
            authorization,
            ath,
            refresh_at: received + usable,
        })
    }
}

/// The cached token. Callers that find it missing or stale queue on one lock; the first
/// fetches, the others get its result, so N concurrent calls make one token request.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    state: Mutex<State>,
    /// Completed fetches; tells a waiter whether a fetch finished while it queued.
    fetches: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Arc<Token>>,
    last_failure: Option<Error>,
}

impl TokenCache {
    /// A fresh token: the cached one, the result of a fetch that finished while this
    /// caller waited, or the result of `fetch`.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Arc<Token>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        let seen = self.fetches.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(token) = state
            .current
            .as_ref()
            .filter(|t| t.is_fresh(Instant::now()))
        {
            return Ok(Arc::clone(token));
        }
        // A fetch finished while this caller queued and failed: share its failure
        // rather than repeat it.
        if self.fetches.load(Ordering::Acquire) != seen
            && let Some(failure) = &state.last_failure
        {
            return Err(failure.clone());
        }
        let result = fetch().await;
        self.fetches.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(token) => {
                let token = Arc::new(token);
                state.current = Some(Arc::clone(&token));
                state.last_failure = None;
                Ok(token)
            }
            Err(error) => {
                state.current = None;
                state.last_failure = Some(error.clone());
                Err(error)
            }
        }
    }

    /// The cached token, fresh or not, without fetching one.
    pub(crate) async fn current(&self) -> Option<Arc<Token>> {
        self.state.lock().await.current.clone()
    }

    /// Forgets the cached token, whichever it is: after a revocation it is dead. A token
    /// a fetch in progress brings may have been issued before the revocation too, so
    /// this waits for that fetch and drops its result as well (at worst one extra fetch).
    pub(crate) async fn clear(&self) {
        let mut state = self.state.lock().await;
        state.current = None;
        state.last_failure = None;
    }

    /// Forgets `rejected` after the API refused it; a token already replaced stays.
    pub(crate) async fn invalidate(&self, rejected: &Arc<Token>) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, rejected))
        {
            state.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Duration = Duration::from_secs(60);

    fn issued(expires_in: u64) -> Vec<u8> {
        format!(
            r#"{{"access_token":"a.b.c","token_type":"Bearer","expires_in":{expires_in},"scope":"customer:read"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn token_is_refreshed_margin_before_expiry() {
        let now = Instant::now();
        let token = Token::parse(&issued(3600), now, MARGIN, TokenType::Bearer);
        assert!(matches!(token, Ok(ref t) if t.refresh_at == now + Duration::from_secs(3540)));
    }

    #[test]
    fn short_lived_token_keeps_half_its_lifetime() {
        let now = Instant::now();
        let token = Token::parse(&issued(10), now, MARGIN, TokenType::Bearer);
        assert!(matches!(token, Ok(ref t) if t.refresh_at == now + Duration::from_secs(5)));
        let huge = Token::parse(&issued(u64::MAX), now, MARGIN, TokenType::Bearer);
        assert!(matches!(huge, Ok(ref t) if t.refresh_at <= now + MAX_LIFETIME));
    }

    #[test]
    fn malformed_token_responses_are_protocol_errors() {
        let bodies: [&[u8]; 6] = [
            b"not json",
            br#"{"token_type":"Bearer","expires_in":3600}"#,
            br#"{"access_token":"a","token_type":"mac","expires_in":3600}"#,
            br#"{"access_token":"","token_type":"Bearer","expires_in":3600}"#,
            br#"{"access_token":"a\nb","token_type":"Bearer","expires_in":3600}"#,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#,
        ];
        for body in bodies {
            assert!(
                matches!(
                    Token::parse(body, Instant::now(), MARGIN, TokenType::Bearer),
                    Err(Error::Protocol { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn token_debug_hides_the_token() {
        let token = Token::parse(&issued(3600), Instant::now(), MARGIN, TokenType::Bearer);
        let text = format!("{token:?}");
        assert!(!text.contains("a.b.c"), "{text}");
        let access = token.map(|t| t.access_token().clone());
        assert!(matches!(access, Ok(ref a) if a.as_str() == "a.b.c"));
        assert_eq!(format!("{access:?}"), "Ok(AccessToken(***))");
    }

    #[tokio::test]
    async fn clear_forgets_the_token_and_current_does_not_fetch() {
        let cache = TokenCache::default();
        assert!(cache.current().await.is_none());
        let fetched = cache
            .get(|| async {
                Token::parse(&issued(3600), Instant::now(), MARGIN, TokenType::Bearer)
            })
            .await;
        assert!(fetched.is_ok());
        assert!(cache.current().await.is_some());
        cache.clear().await;
        assert!(cache.current().await.is_none());
    }

    #[test]
    fn token_type_must_be_the_one_asked_for_in_any_case() {
        let dpop = |token_type: &str| {
            let body =
                format!(r#"{{"access_token":"t1","token_type":"{token_type}","expires_in":3600}}"#);
            Token::parse(body.as_bytes(), Instant::now(), MARGIN, TokenType::Dpop)
        };
        for accepted in ["DPoP", "dpop", "DPOP"] {
            let token = dpop(accepted);
            let Ok(token) = token else {
                panic!("{accepted}: {token:?}");
            };
            assert_eq!(token.authorization().header(), "DPoP t1");
            assert_eq!(token.ath(), Some(dpop::ath("t1").as_str()));
        }
        match dpop("Bearer") {
            Err(Error::Protocol { reason }) => assert_eq!(
                reason,
                r#"asked for a DPoP token, but the token response has token_type "Bearer""#
            ),
            other => panic!("{other:?}"),
        }
        let bearer = Token::parse(&issued(3600), Instant::now(), MARGIN, TokenType::Bearer);
        assert!(matches!(bearer, Ok(ref t) if t.ath().is_none()
            && t.authorization().header() == "Bearer a.b.c"));
        let body = br#"{"access_token":"t1","token_type":"DPoP","expires_in":3600}"#;
        let unasked = Token::parse(body, Instant::now(), MARGIN, TokenType::Bearer);
        assert!(
            matches!(unasked, Err(Error::Protocol { .. })),
            "{unasked:?}"
        );
    }
}
