//! Everything a call can end with instead of a record.

use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The error envelope of a response, kept for logs and people.
///
/// `error` is the standard envelope's sentence or the OAuth error code;
/// `error_description` is the OAuth sentence. The client never decides anything on
/// these texts (the Errors page says the wording may change); the status decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// The `error` member, when the body had one.
    #[serde(default)]
    pub error: Option<String>,
    /// The `error_description` member, when the body had one.
    #[serde(default)]
    pub error_description: Option<String>,
}

impl ErrorBody {
    /// Reads an envelope; a body that is not one gives an empty `ErrorBody`.
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.error, &self.error_description) {
            (Some(e), Some(d)) => write!(f, ": {e}: {d}"),
            (Some(e), None) => write!(f, ": {e}"),
            (None, Some(d)) => write!(f, ": {d}"),
            (None, None) => Ok(()),
        }
    }
}

/// Why a call failed. Retryable failures appear here only once the retries are spent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint refused the Customer Code and API Key (401): wrong, rotated,
    /// revoked or expired key, or a suspended customer. Retrying will not help.
    #[error("invalid client credentials{body}")]
    InvalidCredentials {
        /// The OAuth envelope (`invalid_client`).
        body: ErrorBody,
    },
    /// A protected call was refused with 401 even with a freshly issued token.
    #[error("the access token was refused even after a refresh")]
    Unauthorized,
    /// 404: the customer record could not be found (or the base URL is wrong).
    #[error("not found{body}")]
    NotFound {
        /// The standard envelope.
        body: ErrorBody,
    },
    /// 429 still after the allowed attempts or time budget.
    #[error("rate limited after {attempts} attempt(s){}", retry_after_text(*.retry_after))]
    RateLimited {
        /// The last `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
        /// Requests made.
        attempts: u32,
    },
    /// Any other 4xx: the request itself is wrong; retrying will not help.
    #[error("request rejected with HTTP {status}{body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The error envelope.
        body: ErrorBody,
    },
    /// 5xx still after the allowed attempts or time budget.
    #[error("server error HTTP {status} after {attempts} attempt(s){body}")]
    Server {
        /// The last HTTP status.
        status: u16,
        /// The last error envelope.
        body: ErrorBody,
        /// Requests made.
        attempts: u32,
    },
    /// The connection failed or timed out, still after the allowed attempts or time budget.
    #[error("transport failure after {attempts} attempt(s)")]
    Transport {
        /// Requests tried.
        attempts: u32,
        /// The last underlying failure.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered something this client cannot read (e.g. a malformed body).
    #[error("unexpected response: {reason}")]
    Protocol {
        /// What was wrong with it.
        reason: String,
    },
    /// The client was given something unusable (e.g. a base URL that is not http(s)).
    #[error("invalid client configuration: {reason}")]
    InvalidConfig {
        /// What was wrong with it.
        reason: String,
    },
}

fn retry_after_text(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| {
        format!("; retry after {} ms", d.as_millis())
    })
}

impl Error {
    /// The HTTP status that ended the call, when one did.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::InvalidCredentials { .. } | Self::Unauthorized => Some(401),
            Self::NotFound { .. } => Some(404),
            Self::RateLimited { .. } => Some(429),
            Self::Rejected { status, .. } | Self::Server { status, .. } => Some(*status),
            Self::Transport { .. } | Self::Protocol { .. } | Self::InvalidConfig { .. } => None,
        }
    }

    /// The error envelope of the response that ended the call, when there was one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Self::InvalidCredentials { body }
            | Self::NotFound { body }
            | Self::Rejected { body, .. }
            | Self::Server { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (rate limits, server and transport failures).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport { .. }
        )
    }

    pub(crate) fn protocol(reason: impl Into<String>) -> Self {
        Self::Protocol {
            reason: reason.into(),
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_read_and_anything_else_is_empty() {
        let oauth = ErrorBody::parse(br#"{"error":"invalid_client","error_description":"No."}"#);
        assert_eq!(oauth.error.as_deref(), Some("invalid_client"));
        assert_eq!(oauth.error_description.as_deref(), Some("No."));
        let standard = ErrorBody::parse(br#"{"error":"Customer not found."}"#);
        assert_eq!(standard.error.as_deref(), Some("Customer not found."));
        assert_eq!(standard.error_description, None);
        assert_eq!(ErrorBody::parse(b"<html>"), ErrorBody::default());
        assert_eq!(ErrorBody::parse(b""), ErrorBody::default());
        assert_eq!(ErrorBody::parse(br#"{"error":42}"#), ErrorBody::default());
    }

    #[test]
    fn display_carries_status_and_envelope() {
        let err = Error::Rejected {
            status: 400,
            body: ErrorBody::parse(br#"{"error":"invalid_request","error_description":"Bad."}"#),
        };
        assert_eq!(
            err.to_string(),
            "request rejected with HTTP 400: invalid_request: Bad."
        );
        assert_eq!(err.status(), Some(400));
        assert!(!err.is_transient());
    }
}
