//! Reading what the client sent to an OAuth endpoint: the form body and, for
//! `private_key_jwt`, the assertion, verified with aws-lc-rs against the public JWK.
//! [`verify`] serves the DPoP proofs too (`support::dpop`).

use super::Recorded;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::BTreeMap;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The form body as name → value; a repeated name fails the test.
pub fn form(request: &Recorded) -> BTreeMap<String, String> {
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let mut fields = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(&request.body) {
        let repeated = fields.insert(name.into_owned(), value.into_owned());
        assert!(repeated.is_none(), "repeated parameter in {request:?}");
    }
    fields
}

/// The names of the form fields, sorted.
pub fn field_names(request: &Recorded) -> Vec<String> {
    form(request).into_keys().collect()
}

/// A decoded JWS (an assertion or a DPoP proof) whose signature verified.
#[derive(Debug)]
pub struct Jws {
    pub header: Value,
    pub claims: Value,
}

impl Jws {
    pub fn claim_u64(&self, name: &str) -> u64 {
        self.claims[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} is not a number: {}", self.claims))
    }

    pub fn jti(&self) -> String {
        self.claims["jti"].as_str().unwrap().to_owned()
    }
}

pub fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64url ({e}): {text}"))
}

/// Decodes the compact JWS `jws` and verifies it with the public JWK `jwk` (the JSON
/// `PrivateKeyJwt::public_jwk` gives); fails the test when it does not verify.
pub fn verify(jws: &str, jwk: &str) -> Jws {
    let jwk: Value = serde_json::from_str(jwk).unwrap();
    let parts: Vec<&str> = jws.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        panic!("not a compact JWS: {jws}");
    };
    let member = |name: &str| b64(jwk[name].as_str().unwrap());
    let signed = format!("{header}.{claims}");
    let signature = b64(signature);
    let outcome = match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("OKP"), Some("Ed25519")) => {
            UnparsedPublicKey::new(&ED25519, member("x")).verify(signed.as_bytes(), &signature)
        }
        (Some("EC"), Some("P-256")) => {
            assert_eq!(signature.len(), 64, "ES256 signatures are r || s");
            let point = [vec![4], member("x"), member("y")].concat();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &signature)
        }
        other => panic!("unexpected JWK {other:?}"),
    };
    assert!(outcome.is_ok(), "the signature does not verify: {jws}");
    Jws {
        header: serde_json::from_slice(&b64(header)).unwrap(),
        claims: serde_json::from_slice(&b64(claims)).unwrap(),
    }
}

/// The verified assertion of a request authenticated with `private_key_jwt`, after
/// checking the fields that come with it and that no Basic header was sent.
pub fn assertion_of(request: &Recorded, jwk: &str) -> Jws {
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("authorization"), None, "no Basic header");
    let form = form(request);
    assert_eq!(form["client_assertion_type"], ASSERTION_TYPE);
    assert!(!form.contains_key("client_secret"));
    let assertion = verify(&form["client_assertion"], jwk);
    assert_eq!(form["client_id"], assertion.claims["iss"].as_str().unwrap());
    assertion
}
