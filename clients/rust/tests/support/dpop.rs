//! Reading the DPoP proof a request carries: decoded and verified with aws-lc-rs against
//! the JWK in its own header, and the values it must match (`ath`, the RFC 7638
//! thumbprint) computed here independently of the crate.

use super::Recorded;
use super::oauth::{Jws, b64, verify};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The one `DPoP` header of `request`, verified with the `jwk` of its header; fails the
/// test when there is none, more than one, or the signature does not verify.
pub fn proof_of(request: &Recorded) -> Jws {
    let proofs: Vec<&str> = request
        .headers
        .iter()
        .filter(|(name, _)| name == "dpop")
        .map(|(_, value)| value.as_str())
        .collect();
    let [proof] = proofs[..] else {
        panic!("expected exactly one DPoP header: {request:?}");
    };
    let header: Value = serde_json::from_slice(&b64(proof.split('.').next().unwrap())).unwrap();
    verify(proof, &header["jwk"].to_string())
}

/// Whether `request` carries a `DPoP` header.
pub fn has_proof(request: &Recorded) -> bool {
    request.headers.iter().any(|(name, _)| name == "dpop")
}

/// base64url(SHA-256(token)).
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()))
}

/// The RFC 7638 SHA-256 thumbprint of a public OKP or EC JWK: its required members in
/// lexicographic order, no white space.
pub fn thumbprint(jwk: &Value) -> String {
    let member = |name: &str| jwk[name].as_str().unwrap().to_owned();
    let canonical = match jwk["kty"].as_str() {
        Some("OKP") => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            member("crv"),
            member("x")
        ),
        Some("EC") => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv"),
            member("x"),
            member("y")
        ),
        other => panic!("unexpected kty {other:?}"),
    };
    URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()))
}

/// The names of the members of a JSON object, sorted.
pub fn members(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}
