//! The customer record of `GET /customer`.

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// A customer record, as `GET /customer` returns it. Unknown members are ignored so
/// that fields the API adds later do not break older clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Customer {
    /// The Customer Code (the OAuth client id).
    pub customer_code: String,
    /// Display name.
    pub name: String,
    /// Contact email.
    pub email: String,
    /// `active` or `suspended` (a suspended customer cannot obtain tokens).
    pub status: String,
    /// Plan name.
    pub plan: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
}

impl Customer {
    /// Reads a 200 body; anything else is a [`Error::Protocol`].
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body)
            .map_err(|e| Error::protocol(format!("customer record is not valid: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_read_and_extra_members_are_ignored() {
        let body = br#"{"customer_code":"ACME-1","name":"Acme","email":"ops@acme.example","status":"active","plan":"gold","created_at":"2025-01-02T03:04:05Z","new_field":1}"#;
        let customer = Customer::parse(body);
        assert!(matches!(customer, Ok(ref c) if c.customer_code == "ACME-1" && c.plan == "gold"));
    }

    #[test]
    fn missing_member_or_non_json_is_a_protocol_error() {
        for body in [&br#"{"customer_code":"ACME-1"}"#[..], b"not json", b""] {
            assert!(matches!(Customer::parse(body), Err(Error::Protocol { .. })));
        }
    }
}
