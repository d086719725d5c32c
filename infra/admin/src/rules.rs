//! Operator rules: new customers, API key rotation and revocation, duration parsing, the
//! operator's view of a customer. Plain functions over the domain types; the table and
//! secret modules apply them to what they read.

use shared::api_key::{ApiKey, RandomError};
use shared::model::{Customer, CustomerCode, CustomerStatus, DEFAULT_SCOPE, StoredKey, rfc3339};
use shared::rate_limit::Counter;
use std::collections::BTreeMap;

/// Default grace period of the old key after `keys rotate`.
pub const DEFAULT_GRACE_SECONDS: u64 = 24 * 3600;

/// Bad operator input: exit code 2, nothing written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("invalid customer code {0:?}: use 3-64 characters of A-Z a-z 0-9 - _")]
    Code(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("invalid email address {0:?}")]
    Email(String),
    #[error("invalid scope {0:?}")]
    Scope(String),
    #[error("invalid plan {0:?}: use letters, digits, - and _")]
    Plan(String),
    #[error("invalid duration {0:?}: use e.g. 90s, 30m, 24h, 7d")]
    Duration(String),
    #[error("no key with id {0:?}")]
    UnknownKey(String),
    #[error("cannot read {0}")]
    File(String),
    #[error("invalid JWK: {0}")]
    Jwk(#[from] shared::jwk::JwkError),
    #[error("this JWK is already registered as {0}")]
    JwkRegistered(String),
    #[error("at most {MAX_JWKS} unexpired JWKs per customer: revoke one first")]
    TooManyJwks,
}

/// Most unexpired JWKs a customer may have registered.
pub const MAX_JWKS: usize = 5;

/// Registration of a public JWK: its entry (no hash: a JWK, not an API key) in the key map,
/// refused when it is already there or the customer has [`MAX_JWKS`] unexpired JWKs.
pub fn add_jwk(
    keys: &BTreeMap<String, StoredKey>,
    key_id: &str,
    now: u64,
    expires_at: Option<u64>,
) -> Result<BTreeMap<String, StoredKey>, InputError> {
    if keys.contains_key(key_id) {
        return Err(InputError::JwkRegistered(key_id.to_owned()));
    }
    let live = keys
        .values()
        .filter(|k| k.hash.is_none() && k.is_valid_at(now))
        .count();
    if live >= MAX_JWKS {
        return Err(InputError::TooManyJwks);
    }
    let mut next = keys.clone();
    next.insert(
        key_id.to_owned(),
        StoredKey {
            hash: None,
            created_at: now,
            expires_at,
        },
    );
    Ok(next)
}

/// Validates a Customer Code given on the command line.
pub fn code(raw: &str) -> Result<CustomerCode, InputError> {
    CustomerCode::parse(raw).ok_or_else(|| InputError::Code(raw.to_owned()))
}

/// A new customer and its first API key (returned once, stored only as a hash).
pub struct NewCustomer {
    pub customer: Customer,
    pub api_key: ApiKey,
    pub key_id: String,
}

/// Validates the profile and makes the customer with one key.
pub fn new_customer(
    code_raw: &str,
    name: &str,
    email: &str,
    plan: &str,
    scopes: &[String],
    now: u64,
) -> Result<Result<NewCustomer, RandomError>, InputError> {
    let code = code(code_raw)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(InputError::Empty("name"));
    }
    let email = email.trim();
    let valid_email = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
    });
    if !valid_email {
        return Err(InputError::Email(email.to_owned()));
    }
    let valid_plan = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if plan.is_empty() || !plan.chars().all(valid_plan) {
        return Err(InputError::Plan(plan.to_owned()));
    }
    let mut granted = Vec::new();
    for scope in scopes
        .iter()
        .flat_map(|s| s.split([' ', ',']))
        .filter(|s| !s.is_empty())
    {
        match shared::token_request::parse_scope(scope) {
            Ok(_) if !granted.iter().any(|g| g == scope) => granted.push(scope.to_owned()),
            Ok(_) => {}
            Err(_) => return Err(InputError::Scope(scope.to_owned())),
        }
    }
    if granted.is_empty() {
        granted.push(DEFAULT_SCOPE.to_owned());
    }
    Ok((|| {
        let api_key = ApiKey::generate()?;
        let key_id = api_key.key_id();
        let keys = BTreeMap::from([(
            key_id.clone(),
            StoredKey {
                hash: Some(api_key.hash_hex()),
                created_at: now,
                expires_at: None,
            },
        )]);
        Ok(NewCustomer {
            customer: Customer {
                code,
                name: name.to_owned(),
                email: email.to_owned(),
                status: CustomerStatus::Active,
                plan: plan.to_owned(),
                created_at: rfc3339(now),
                scopes: granted,
                keys,
                token_limit: None,
                api_limit: None,
                token_counter: Counter::default(),
                api_counter: Counter::default(),
                token_epoch: 0,
            },
            api_key,
            key_id,
        })
    })())
}

/// Parses `90`, `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(raw: &str) -> Result<u64, InputError> {
    let bad = || InputError::Duration(raw.to_owned());
    let raw_trim = raw.trim();
    let split = raw_trim
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(raw_trim.len());
    let (digits, unit) = raw_trim.split_at(split);
    let value: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    value
        .checked_mul(scale)
        .filter(|s| *s <= 365 * 86_400)
        .ok_or_else(bad)
}

/// Rotation: a new API key, the newest still-valid old API key kept until `now + grace` (at
/// most two API keys valid at once), the other API keys dropped; registered JWKs untouched.
pub fn rotate_keys(
    keys: &BTreeMap<String, StoredKey>,
    now: u64,
    grace: u64,
) -> Result<(ApiKey, String, BTreeMap<String, StoredKey>), RandomError> {
    let api_key = ApiKey::generate()?;
    let key_id = api_key.key_id();
    let mut next: BTreeMap<String, StoredKey> = keys
        .iter()
        .filter(|(_, k)| k.hash.is_none())
        .map(|(id, k)| (id.clone(), k.clone()))
        .collect();
    let newest_old = keys
        .iter()
        .filter(|(_, k)| k.hash.is_some() && k.is_valid_at(now))
        // The current primary key (no expiry) wins over one already in its grace period,
        // even when both were created in the same second.
        .max_by_key(|(_, k)| (k.expires_at.is_none(), k.created_at));
    if let Some((id, old)) = newest_old {
        let end = (now + grace).min(old.expires_at.unwrap_or(u64::MAX));
        if end > now {
            next.insert(
                id.clone(),
                StoredKey {
                    expires_at: Some(end),
                    ..old.clone()
                },
            );
        }
    }
    next.insert(
        key_id.clone(),
        StoredKey {
            hash: Some(api_key.hash_hex()),
            created_at: now,
            expires_at: None,
        },
    );
    Ok((api_key, key_id, next))
}

/// Revocation: the key map without the key `key_id`.
pub fn revoke_key(
    keys: &BTreeMap<String, StoredKey>,
    key_id: &str,
) -> Result<BTreeMap<String, StoredKey>, InputError> {
    if !keys.contains_key(key_id) {
        return Err(InputError::UnknownKey(key_id.to_owned()));
    }
    let mut next = keys.clone();
    next.remove(key_id);
    Ok(next)
}

/// The operator's view of a customer: profile, scopes, key ids and limits; never hashes.
pub fn customer_view(customer: &Customer) -> serde_json::Value {
    let mut view = customer.public_json();
    let keys: Vec<_> = customer
        .keys
        .iter()
        .map(|(id, k)| {
            serde_json::json!({
                "key_id": id,
                "type": if k.hash.is_some() { "api_key" } else { "jwk" },
                "created_at": rfc3339(k.created_at),
                "expires_at": k.expires_at.map(rfc3339),
            })
        })
        .collect();
    if let Some(map) = view.as_object_mut() {
        map.insert("scopes".into(), serde_json::json!(customer.scopes));
        map.insert("keys".into(), serde_json::json!(keys));
        map.insert(
            "limits".into(),
            serde_json::json!({
                "token_per_minute": customer.token_limit,
                "api_per_minute": customer.api_limit,
            }),
        );
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        for bad in ["", "h", "1x", "-1h", "1.5h", "99999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_at_most_two_valid_keys() -> Result<(), RandomError> {
        let mut keys = BTreeMap::new();
        for (i, id) in ["a", "b"].iter().enumerate() {
            let key = StoredKey {
                hash: Some(format!("h{i}")),
                created_at: 100 + i as u64,
                expires_at: None,
            };
            keys.insert((*id).to_owned(), key);
        }
        let (_, new_id, next) = rotate_keys(&keys, 1000, 60)?;
        assert_eq!(next.len(), 2);
        assert_eq!(next.get("b").and_then(|k| k.expires_at), Some(1060));
        assert!(next.get(&new_id).is_some_and(|k| k.expires_at.is_none()));
        let (_, _, immediate) = rotate_keys(&next, 2000, 0)?;
        assert_eq!(immediate.len(), 1);
        Ok(())
    }

    #[test]
    fn revocation_needs_a_known_key() {
        let keys = BTreeMap::from([(
            "k1".to_owned(),
            StoredKey {
                hash: Some("h".into()),
                created_at: 1,
                expires_at: None,
            },
        )]);
        assert_eq!(
            revoke_key(&keys, "k2"),
            Err(InputError::UnknownKey("k2".into()))
        );
        assert_eq!(revoke_key(&keys, "k1").map(|m| m.len()), Ok(0));
    }

    #[test]
    fn bad_profile_input_is_refused() {
        let new =
            |code: &str, email: &str| new_customer(code, "Acme", email, "standard", &[], 0).err();
        assert_eq!(
            new("a", "ops@acme.example"),
            Some(InputError::Code("a".into()))
        );
        assert_eq!(
            new("ACME-1", "nope"),
            Some(InputError::Email("nope".into()))
        );
        assert_eq!(new("ACME-1", "ops@acme.example"), None);
    }
}
