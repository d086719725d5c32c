//! The answer of `POST /auth/introspect` (RFC 7662 §2.2).

use crate::error::Error;
use serde::{Deserialize, Deserializer, Serialize};

/// What the API says about a token. `active` is the answer; the other members come only
/// with `active: true` (a token of this customer that `GET /customer` would accept now).
/// Unknown members are ignored so that fields the API adds later do not break older clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Introspection {
    /// Whether the token is usable right now.
    pub active: bool,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client the token was issued to (the Customer Code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The subject (the Customer Code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The issuer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audiences (`aud` may be one string or a list; both read into this).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Start of validity, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `Bearer`, or `DPoP` for a sender-constrained token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The key a sender-constrained token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` member (RFC 7800) of a bound token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Confirmation {
    /// RFC 7638 SHA-256 thumbprint of the DPoP key (RFC 9449 §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

impl Introspection {
    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.iter().flat_map(|s| s.split_whitespace())
    }

    /// Reads a 200 body; anything without a boolean `active` is a [`Error::Protocol`].
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body)
            .map_err(|e| Error::protocol(format!("introspection response is not valid: {e}")))
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
        None => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_token_is_read_with_every_member_and_unknown_ones_ignored() {
        let body = br#"{"active":true,"scope":"customer:read other","client_id":"ACME-1","sub":"ACME-1","iss":"https://api.example.com","aud":"customer-api","exp":1700003600,"iat":1700000000,"nbf":1700000000,"jti":"abc","token_type":"DPoP","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},"key_id":"key_1","future":{"x":1}}"#;
        let found = Introspection::parse(body);
        let Ok(found) = found else {
            panic!("{found:?}");
        };
        assert!(found.active);
        assert_eq!(
            found.scopes().collect::<Vec<_>>(),
            ["customer:read", "other"]
        );
        assert_eq!(found.client_id.as_deref(), Some("ACME-1"));
        assert_eq!(found.sub.as_deref(), Some("ACME-1"));
        assert_eq!(found.aud, ["customer-api"]);
        assert_eq!(
            (found.iat, found.exp),
            (Some(1_700_000_000), Some(1_700_003_600))
        );
        assert_eq!(found.token_type.as_deref(), Some("DPoP"));
        assert_eq!(
            found.cnf.and_then(|c| c.jkt).as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
    }

    #[test]
    fn inactive_token_has_nothing_else() {
        let found = Introspection::parse(br#"{"active":false}"#);
        assert!(matches!(found, Ok(ref i) if *i == Introspection::default()));
        let list = Introspection::parse(br#"{"active":true,"aud":["a","b"],"cnf":null}"#);
        assert!(matches!(list, Ok(ref i) if i.aud == ["a", "b"] && i.cnf.is_none()));
    }

    #[test]
    fn missing_or_non_boolean_active_is_a_protocol_error() {
        for body in [
            &b"{}"[..],
            br#"{"active":"true"}"#,
            br#"{"active":1}"#,
            b"",
            b"<html>",
        ] {
            assert!(
                matches!(Introspection::parse(body), Err(Error::Protocol { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
