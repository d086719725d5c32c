//! Domain types: parse at the edge, then trust the types.

use std::collections::BTreeMap;
use std::fmt;

/// The default scope every customer is granted.
pub const DEFAULT_SCOPE: &str = "customer:read";

/// A Customer Code: 3–64 characters of `A-Z a-z 0-9 - _`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerCode(String);

impl CustomerCode {
    /// Validates a code; `None` when it breaks the published format.
    pub fn parse(raw: &str) -> Option<Self> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        ((3..=64).contains(&raw.len()) && raw.chars().all(valid_char)).then(|| Self(raw.into()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a customer may use the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerStatus {
    Active,
    Suspended,
}

impl CustomerStatus {
    /// Stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// Parses the stored form; anything unknown counts as suspended (fail closed).
    pub fn from_stored(raw: &str) -> Self {
        if raw == "active" {
            Self::Active
        } else {
            Self::Suspended
        }
    }
}

/// One key of a customer, as stored under its public id: an API key (never the key itself,
/// only its hash) or a registered public JWK (`private_key_jwt`; the JWK itself is stored
/// beside the customer item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Hex SHA-256 of the full API key; `None` for a registered JWK.
    pub hash: Option<String>,
    /// Unix seconds of creation.
    pub created_at: u64,
    /// Unix seconds after which the key no longer authenticates (rotation grace).
    pub expires_at: Option<u64>,
}

impl StoredKey {
    /// Whether the key authenticates at `now`.
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// What a request presents for a customer: an API key (token route) or an access token
/// that names the key which authenticated it (lookup routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A presented API key: its public id (derived from the key) and its hash.
    ApiKey { id: &'a str, hash: &'a str },
    /// A verified access token's `key_id` and revocation `epoch`.
    Token { key_id: &'a str, epoch: u64 },
    /// A client assertion verified with the registered JWK `key_id`.
    Jwk { key_id: &'a str },
}

impl Credential<'_> {
    /// The id of the key this credential names.
    pub fn key_id(&self) -> &str {
        match self {
            Self::ApiKey { id, .. } => id,
            Self::Token { key_id, .. } | Self::Jwk { key_id } => key_id,
        }
    }
}

/// The customer item: profile, keys (by SHA-256 hex), limits and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub code: CustomerCode,
    pub name: String,
    pub email: String,
    pub status: CustomerStatus,
    pub plan: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub scopes: Vec<String>,
    /// Key id (`key_…`, carried in tokens) → key metadata.
    pub keys: BTreeMap<String, StoredKey>,
    pub token_limit: Option<u64>,
    pub api_limit: Option<u64>,
    pub token_counter: crate::rate_limit::Counter,
    pub api_counter: crate::rate_limit::Counter,
    /// Revocation epoch: tokens carry the epoch they were issued in, and `POST /auth/revoke`
    /// moves it on, so every token issued before stops working at once.
    pub token_epoch: u64,
}

impl Customer {
    /// The public record (`docs/contract.md`, "Customer lookup"): never hashes, counters or internal attributes.
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "customer_code": self.code.as_str(),
            "name": self.name,
            "email": self.email,
            "status": self.status.as_str(),
            "plan": self.plan,
            "created_at": self.created_at,
        })
    }

    /// Whether the customer is active and `credential` names one of its keys valid at `now`
    /// (a token: of the current revocation epoch): the same rule the store's conditional
    /// writes express.
    pub fn accepts(&self, credential: &Credential<'_>, now: u64) -> bool {
        let key = self.keys.get(credential.key_id());
        self.status == CustomerStatus::Active
            && key.is_some_and(|k| {
                k.is_valid_at(now)
                    && match credential {
                        Credential::ApiKey { hash, .. } => k.hash.as_deref() == Some(*hash),
                        Credential::Token { epoch, .. } => *epoch == self.token_epoch,
                        Credential::Jwk { .. } => k.hash.is_none(),
                    }
            })
    }

    /// The limit of a bucket: the per-customer override or the default.
    pub fn limit(&self, bucket: crate::rate_limit::Bucket, default: u64) -> u64 {
        match bucket {
            crate::rate_limit::Bucket::Token => self.token_limit.unwrap_or(default),
            crate::rate_limit::Bucket::Api => self.api_limit.unwrap_or(default),
        }
    }

    /// The stored counter of a bucket.
    pub fn counter(&self, bucket: crate::rate_limit::Bucket) -> crate::rate_limit::Counter {
        match bucket {
            crate::rate_limit::Bucket::Token => self.token_counter,
            crate::rate_limit::Bucket::Api => self.api_counter,
        }
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-26T13:14:25Z`).
pub fn rfc3339(unix: u64) -> String {
    let format = time::format_description::well_known::Rfc3339;
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_code_format() {
        assert!(CustomerCode::parse("ACME-1").is_some());
        assert!(CustomerCode::parse("a_b").is_some());
        assert!(CustomerCode::parse(&"x".repeat(64)).is_some());
        for bad in ["", "ab", "has space", "ümlaut", "a/b", &"x".repeat(65)] {
            assert!(CustomerCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
