//! `private_key_jwt` client assertions (RFC 7523 §2.2, RFC 7521 §4.2): the checks a JWT must
//! pass, given the customer's registered public keys, before anything is counted.

use crate::jwk::{Jws, PublicJwk};
use crate::jwt::LEEWAY_SECONDS;
use serde_json::Value;

/// `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest accepted assertion lifetime (`exp` − `iat`, or `exp` − now without `iat`).
pub const MAX_LIFETIME_SECONDS: u64 = 3600;
/// Why [`verify`] refused an assertion that no registered key verifies (worth re-reading
/// the registered keys once: one may have been added a moment ago).
pub const NO_KEY: &str = "no registered key verifies it with its alg";
/// Longest accepted `jti`.
const MAX_JTI_BYTES: usize = 256;

/// A verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The Customer Code (`iss` = `sub`).
    pub client_id: String,
    /// Id of the registered key that verified it.
    pub key_id: String,
    /// Single use while the assertion could be valid: until `exp` plus leeway.
    pub jti: String,
    pub exp: u64,
}

/// The issuer the assertion claims, before any check: it names whose keys to try.
pub fn claimed_client(jws: &Jws) -> Option<&str> {
    jws.claims.get("iss").and_then(Value::as_str)
}

fn number(jws: &Jws, name: &str) -> Option<u64> {
    jws.claims.get(name).and_then(Value::as_u64)
}

/// Verifies `jws` with one of `keys` (id, key) of the customer named by its `iss`, accepting
/// `audiences` (the token endpoint URL and the issuer). The error is a reason for logs only:
/// every failure is the same `invalid_client` to the client.
pub fn verify(
    jws: &Jws,
    keys: &[(String, PublicJwk)],
    audiences: &[&str],
    now: u64,
) -> Result<Assertion, &'static str> {
    let key_id = match jws.header.get("kid") {
        Some(Value::String(kid)) => keys
            .iter()
            .find(|(id, key)| id == kid && jws.verified_by(key))
            .map(|(id, _)| id.clone()),
        Some(_) => return Err("kid is not a string"),
        None => keys
            .iter()
            .find(|(_, key)| jws.verified_by(key))
            .map(|(id, _)| id.clone()),
    }
    .ok_or(NO_KEY)?;
    let iss = claimed_client(jws).ok_or("iss")?;
    if jws.claims.get("sub").and_then(Value::as_str) != Some(iss) {
        return Err("sub is not iss");
    }
    let audience_ok = match jws.claims.get("aud") {
        Some(Value::String(aud)) => audiences.contains(&aud.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| audiences.contains(&aud)),
        _ => false,
    };
    if !audience_ok {
        return Err("aud");
    }
    let exp = number(jws, "exp").ok_or("exp")?;
    if exp.saturating_add(LEEWAY_SECONDS) < now {
        return Err("expired");
    }
    let iat = match jws.claims.get("iat") {
        None => None,
        Some(value) => Some(value.as_u64().ok_or("iat")?),
    };
    if iat.is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECONDS)) {
        return Err("issued in the future");
    }
    if exp.saturating_sub(iat.unwrap_or(now)) > MAX_LIFETIME_SECONDS {
        return Err("lifetime over 3600 s");
    }
    if number(jws, "nbf").is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECONDS)) {
        return Err("not yet valid");
    }
    let jti = match jws.claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_BYTES => jti,
        _ => return Err("jti"),
    };
    Ok(Assertion {
        client_id: iss.to_owned(),
        key_id,
        jti: jti.clone(),
        exp,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{ProofKey, with_member as with};

    const NOW: u64 = 1_800_000_000;
    const AUD: &str = "https://api.test/auth/token";

    struct Signer {
        pair: ProofKey,
        key: PublicJwk,
    }

    fn signer() -> Signer {
        let pair = ProofKey::ed25519();
        let key = PublicJwk::parse(&pair.jwk).unwrap();
        Signer { pair, key }
    }

    impl Signer {
        fn sign(&self, header: Value, claims: Value) -> Jws {
            Jws::parse(&self.pair.sign(&header, &claims)).unwrap()
        }

        fn keys(&self) -> Vec<(String, PublicJwk)> {
            vec![(self.key.key_id(), self.key.clone())]
        }
    }

    fn claims() -> Value {
        serde_json::json!({"iss": "ACME-1", "sub": "ACME-1", "aud": AUD, "iat": NOW,
                           "exp": NOW + 60, "jti": "j-1"})
    }

    #[test]
    fn a_good_assertion_names_its_key_and_jti() {
        let s = signer();
        let header = serde_json::json!({"alg": "EdDSA", "kid": s.key.key_id()});
        let verified = verify(&s.sign(header, claims()), &s.keys(), &[AUD], NOW).unwrap();
        assert_eq!(
            verified,
            Assertion {
                client_id: "ACME-1".into(),
                key_id: s.key.key_id(),
                jti: "j-1".into(),
                exp: NOW + 60
            }
        );
        // Without kid every key is tried; `Ed25519` is the same algorithm; aud as a list.
        let claims = with(
            claims(),
            "aud",
            serde_json::json!(["x", "https://api.test"]),
        );
        let jws = s.sign(serde_json::json!({"alg": "Ed25519"}), claims);
        assert!(verify(&jws, &s.keys(), &[AUD, "https://api.test"], NOW).is_ok());
        // authlib's default lifetime: exactly 3,600 s.
        let hour = with(super::tests::claims(), "exp", serde_json::json!(NOW + 3600));
        let jws = s.sign(serde_json::json!({"alg": "EdDSA"}), hour);
        assert!(verify(&jws, &s.keys(), &[AUD], NOW).is_ok());
    }

    #[test]
    fn the_attack_corpus_is_refused() {
        let s = signer();
        let other = signer();
        let ok = serde_json::json!({"alg": "EdDSA"});
        let cases = [
            (serde_json::json!({"alg": "none"}), claims()),
            (serde_json::json!({"alg": "HS256"}), claims()),
            (serde_json::json!({"alg": "ES256"}), claims()),
            (
                serde_json::json!({"alg": "EdDSA", "kid": "key_unknown"}),
                claims(),
            ),
            (ok.clone(), with(claims(), "iss", "OTHER-1".into())),
            (ok.clone(), with(claims(), "sub", "OTHER-1".into())),
            (
                ok.clone(),
                with(claims(), "aud", "https://evil.test".into()),
            ),
            (ok.clone(), with(claims(), "aud", Value::Null)),
            (ok.clone(), with(claims(), "exp", Value::Null)),
            (ok.clone(), with(claims(), "exp", (NOW - 61).into())),
            (ok.clone(), with(claims(), "exp", (NOW + 3601).into())),
            (
                ok.clone(),
                with(
                    with(claims(), "iat", Value::Null),
                    "exp",
                    (NOW + 3601).into(),
                ),
            ),
            (ok.clone(), with(claims(), "iat", (NOW + 120).into())),
            (ok.clone(), with(claims(), "nbf", (NOW + 120).into())),
            (ok.clone(), with(claims(), "jti", Value::Null)),
            (ok.clone(), with(claims(), "jti", "".into())),
            (ok.clone(), with(claims(), "jti", 7.into())),
        ];
        for (header, claims) in cases {
            let jws = s.sign(header.clone(), claims.clone());
            assert!(
                verify(&jws, &s.keys(), &[AUD], NOW).is_err(),
                "{header} {claims}"
            );
        }
        let by_other = other.sign(ok, claims());
        assert_eq!(verify(&by_other, &s.keys(), &[AUD], NOW), Err(NO_KEY));
    }
}
