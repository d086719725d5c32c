//! DPoP proofs (RFC 9449): the checks a `DPoP` header must pass before anything is counted.
//!
//! A proof is a compact JWS with `typ: dpop+jwt`, signed under `EdDSA` (or RFC 9864's
//! `Ed25519`) or `ES256` by the public key in its `jwk` header, and claims `jti`, `htm`,
//! `htu`, `iat` (within ±[`IAT_WINDOW_SECONDS`]) and, beside an access token, `ath`. Whether
//! its `jti` was seen before is the store's business (a marker written with the count); the
//! thumbprint of its key binds tokens (`cnf.jkt`).

use crate::api_key::sha256;
use crate::jwk::{Jws, PublicJwk};
use crate::jwt::LEEWAY_SECONDS;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The `typ` of a proof.
pub const TYP: &str = "dpop+jwt";
/// A proof is acceptable while its `iat` is this close to the server's clock.
pub const IAT_WINDOW_SECONDS: u64 = 300;
/// Proof algorithms as the challenge and RFC 9728 metadata name them.
pub const ALGS: [&str; 2] = ["EdDSA", "ES256"];
/// Proof algorithms accepted (RFC 9864's `Ed25519` is `EdDSA` with an Ed25519 key), as the
/// RFC 8414 metadata lists them.
pub const ACCEPTED_ALGS: [&str; 3] = ["EdDSA", "Ed25519", "ES256"];
/// The token type of a bound token (RFC 9449 §5).
pub const TOKEN_TYPE: &str = "DPoP";
/// Proofs longer than this are refused before any parsing.
const MAX_PROOF_BYTES: usize = 4096;
/// Longest accepted `jti`.
const MAX_JTI_BYTES: usize = 256;

/// What the proof must match: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request method (`htm`).
    pub method: &'a str,
    /// The request URL as the client used it, without query (`htu`).
    pub url: &'a str,
    /// The access token sent beside the proof (`ath`), at a resource.
    pub access_token: Option<&'a str>,
    pub now: u64,
}

/// A proof that passed every check but the `jti` replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: the `cnf.jkt` of tokens bound to it.
    pub jkt: String,
    pub jti: String,
    pub iat: u64,
}

impl Proof {
    /// Until when its `jti` must be remembered: the end of its acceptance window, plus the
    /// token leeway so an instance whose clock lags a little still finds the marker.
    pub fn replay_until(&self) -> u64 {
        self.iat
            .saturating_add(IAT_WINDOW_SECONDS)
            .saturating_add(LEEWAY_SECONDS)
    }
}

/// The one `DPoP` header of a request: `Ok(None)` without one, `Err` for several or one
/// that is not visible ASCII.
pub fn single_header<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<&'a str>, &'static str> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one DPoP header");
    }
    std::str::from_utf8(first)
        .map(Some)
        .map_err(|_| "DPoP header is not ASCII")
}

/// base64url(SHA-256(token)): the `ath` of a proof sent with `token`.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(token.as_bytes()))
}

/// A URL in the form `htu` is compared in (RFC 9449 §4.3 check 9, RFC 3986 §6.2.2–6.2.3):
/// no query or fragment, scheme and host in lowercase, no default port, `/` for an empty
/// path. `None` for anything that is not an absolute http(s) URL.
pub fn normalized_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}{path}"))
}

/// A JWT NumericDate (RFC 7519 §2): seconds, possibly fractional (then rounded down).
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let seconds = value.as_f64()?;
        // Truncation is the intent; the range check keeps the cast exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (seconds.is_finite() && (0.0..1.0e15).contains(&seconds)).then_some(seconds as u64)
    })
}

fn claim<'a>(jws: &'a Jws, name: &'static str) -> Result<&'a str, &'static str> {
    jws.claims.get(name).and_then(Value::as_str).ok_or(name)
}

/// Checks a proof against the request it came with. The error is a reason for logs only:
/// every failure is the same response to the client.
pub fn verify(compact: &str, expected: &Expected<'_>) -> Result<Proof, &'static str> {
    if compact.len() > MAX_PROOF_BYTES {
        return Err("too long");
    }
    let jws = Jws::parse(compact).ok_or("not a compact JWS")?;
    let typ_ok = jws
        .header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|typ| typ.eq_ignore_ascii_case(TYP));
    if !typ_ok {
        return Err("typ");
    }
    if !jws.alg().is_some_and(|alg| ACCEPTED_ALGS.contains(&alg)) {
        return Err("alg");
    }
    let jwk = match jws.header.get("jwk") {
        Some(Value::Object(jwk)) => PublicJwk::from_object(jwk).map_err(|_| "jwk")?,
        _ => return Err("jwk missing"),
    };
    if !jws.verified_by(&jwk) {
        return Err("signature");
    }
    let jti = claim(&jws, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err("jti");
    }
    if claim(&jws, "htm")? != expected.method {
        return Err("htm");
    }
    let htu = normalized_url(claim(&jws, "htu")?);
    if htu.is_none() || htu != normalized_url(expected.url) {
        return Err("htu");
    }
    let iat = jws.claims.get("iat").and_then(numeric_date).ok_or("iat")?;
    if iat.abs_diff(expected.now) > IAT_WINDOW_SECONDS {
        return Err("iat outside the window");
    }
    if let Some(token) = expected.access_token
        && claim(&jws, "ath")? != access_token_hash(token)
    {
        return Err("ath");
    }
    Ok(Proof {
        jkt: jwk.thumbprint(),
        jti: jti.to_owned(),
        iat,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{ProofKey, with_member as with};

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "https://api.test/customer";

    fn expected(token: Option<&'static str>) -> Expected<'static> {
        Expected {
            method: "GET",
            url: URL,
            access_token: token,
            now: NOW,
        }
    }

    fn claims() -> Value {
        serde_json::json!({"jti": "p-1", "htm": "GET", "htu": URL, "iat": NOW,
                           "ath": access_token_hash("tok")})
    }

    #[test]
    fn good_proofs_of_both_kinds_name_their_key() {
        for key in [ProofKey::ed25519(), ProofKey::es256()] {
            let proof = key.proof(claims());
            let verified = verify(&proof, &expected(Some("tok"))).unwrap();
            assert_eq!(
                verified,
                Proof {
                    jkt: key.thumbprint(),
                    jti: "p-1".into(),
                    iat: NOW
                }
            );
            assert_eq!(verified.replay_until(), NOW + 360);
        }
        // RFC 9864's name; htu with another case, a default port and a query; no ath at
        // the token endpoint.
        let key = ProofKey::ed25519();
        let header = key.header("Ed25519");
        let claims = with(claims(), "htu", "HTTPS://API.test:443/customer?x=1".into());
        let proof = key.sign(&header, &claims);
        assert!(verify(&proof, &expected(None)).is_ok());
        // A fractional NumericDate is rounded down.
        let fractional = with(self::claims(), "iat", (NOW as f64 + 0.75).into());
        let verified = verify(&key.sign(&header, &fractional), &expected(Some("tok"))).unwrap();
        assert_eq!(verified.iat, NOW);
    }

    #[test]
    fn the_attack_corpus_is_refused() {
        let key = ProofKey::es256();
        let other = ProofKey::es256();
        let good = key.header("ES256");
        let header = |name: &str, member: Value| with(good.clone(), name, member);
        let cases = [
            (header("typ", "JWT".into()), claims()),
            (header("typ", Value::Null), claims()),
            (header("alg", "none".into()), claims()),
            (header("alg", "HS256".into()), claims()),
            (header("alg", "RS256".into()), claims()),
            (header("alg", "EdDSA".into()), claims()),
            (header("jwk", Value::Null), claims()),
            (header("jwk", "x".into()), claims()),
            (header("jwk", key.private_jwk()), claims()),
            (header("jwk", other.public_jwk()), claims()),
            (good.clone(), with(claims(), "htm", "POST".into())),
            (good.clone(), with(claims(), "htm", Value::Null)),
            (
                good.clone(),
                with(claims(), "htu", "https://evil.test/customer".into()),
            ),
            (
                good.clone(),
                with(claims(), "htu", "https://api.test/customers/X".into()),
            ),
            (good.clone(), with(claims(), "htu", "/customer".into())),
            (good.clone(), with(claims(), "iat", (NOW - 301).into())),
            (good.clone(), with(claims(), "iat", (NOW + 301).into())),
            (good.clone(), with(claims(), "iat", "now".into())),
            (good.clone(), with(claims(), "iat", (-1.5).into())),
            (
                good.clone(),
                with(claims(), "iat", (NOW as f64 + 301.5).into()),
            ),
            (good.clone(), with(claims(), "iat", Value::Null)),
            (good.clone(), with(claims(), "jti", Value::Null)),
            (good.clone(), with(claims(), "jti", "".into())),
            (good.clone(), with(claims(), "jti", "j".repeat(257).into())),
            (good.clone(), with(claims(), "ath", Value::Null)),
            (
                good.clone(),
                with(claims(), "ath", access_token_hash("other").into()),
            ),
        ];
        for (header, claims) in cases {
            let proof = key.sign(&header, &claims);
            assert!(
                verify(&proof, &expected(Some("tok"))).is_err(),
                "{header} {claims}"
            );
        }
        // Signed by another key than the one in its header.
        let forged = other.sign(&good, &claims());
        assert_eq!(verify(&forged, &expected(Some("tok"))), Err("signature"));
        for garbage in ["", "a.b.c", "e30.e30.", &"a".repeat(5000)] {
            assert!(verify(garbage, &expected(None)).is_err());
        }
    }

    #[test]
    fn one_header_only() {
        let one: [&[u8]; 1] = [b"p"];
        assert_eq!(single_header(one.into_iter()), Ok(Some("p")));
        let two: [&[u8]; 2] = [b"p", b"q"];
        assert!(single_header(two.into_iter()).is_err());
        assert_eq!(single_header(std::iter::empty()), Ok(None));
    }

    #[test]
    fn urls_normalize_as_rfc_3986_says() {
        for (raw, normal) in [
            ("https://a.test", Some("https://a.test/")),
            ("HTTP://A.test:80/x?q#f", Some("http://a.test/x")),
            ("https://a.test:8443/x", Some("https://a.test:8443/x")),
            (
                "http://127.0.0.1:9000/auth/token",
                Some("http://127.0.0.1:9000/auth/token"),
            ),
            ("ftp://a.test/x", None),
            ("https:///x", None),
            ("https://u@a.test/x", None),
            ("a.test/x", None),
        ] {
            assert_eq!(normalized_url(raw).as_deref(), normal, "{raw}");
        }
    }
}
