//! Customers' public keys (RFC 7517 JWKs) and compact JWS signatures made with them: the
//! keys `customer-admin keys add-jwk` registers for `private_key_jwt` (RFC 7523).
//!
//! Only public keys of three kinds are accepted: OKP Ed25519 (`EdDSA`, or `Ed25519` as
//! WebCrypto exports it, RFC 9864), EC P-256 (`ES256`) and RSA of at least 2048 bits
//! (`RS256`, `PS256`). Signatures are checked with aws-lc-rs directly, so the algorithm of
//! a JWS is always the registered key's, never one the token picks.

use crate::api_key::{hex, sha256};
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Members that only a private JWK has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/// Smallest accepted RSA modulus.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a JWK was refused. Texts are for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("a private key (member {0:?}): register the public key only")]
    Private(&'static str),
    #[error("unsupported key: use OKP Ed25519, EC P-256 or RSA of at least 2048 bits")]
    Unsupported,
    #[error("RSA key of {0} bits: at least 2048 are required")]
    ShortRsa(usize),
    #[error("member {0:?} is missing or not base64url")]
    Member(&'static str),
    #[error("alg {0:?} does not fit this key")]
    Alg(String),
}

/// The signature algorithm a key is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlg {
    /// Ed25519, named `EdDSA` (RFC 8037) or `Ed25519` (RFC 9864).
    EdDsa,
    Es256,
    Rs256,
    Ps256,
}

impl JwsAlg {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }

    /// Whether a JWS header's `alg` names this algorithm (`Ed25519` is `EdDSA`).
    pub fn matches(self, alg: &str) -> bool {
        alg == self.as_str() || (self == Self::EdDsa && alg == "Ed25519")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Ed25519 { x: Vec<u8> },
    P256 { point: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A validated public JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    alg: JwsAlg,
    material: Material,
    /// The RFC 7638 members, for the thumbprint and the stored form.
    members: Vec<(&'static str, String)>,
}

fn member<'a>(object: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::Member(name))
}

fn bytes(object: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    URL_SAFE_NO_PAD
        .decode(member(object, name)?)
        .map_err(|_| JwkError::Member(name))
}

impl PublicJwk {
    /// Parses and validates one public JWK; `alg` is taken from the JWK or inferred
    /// (OKP → EdDSA, EC → ES256, RSA → RS256).
    pub fn parse(json: &str) -> Result<Self, JwkError> {
        let value: Value = serde_json::from_str(json).map_err(|_| JwkError::NotAnObject)?;
        Self::from_object(value.as_object().ok_or(JwkError::NotAnObject)?)
    }

    /// [`PublicJwk::parse`] of a JWK already parsed as JSON (the `jwk` header of a DPoP
    /// proof).
    pub fn from_object(object: &Map<String, Value>) -> Result<Self, JwkError> {
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
            return Err(JwkError::Private(private));
        }
        let alg = object.get("alg").map(|a| a.as_str().unwrap_or_default());
        let kty = object.get("kty").and_then(Value::as_str);
        let (inferred, allowed, material, members) = match (kty, object.get("crv")) {
            (Some("OKP"), Some(crv)) if crv == "Ed25519" => {
                let x = bytes(object, "x")?;
                if x.len() != 32 {
                    return Err(JwkError::Member("x"));
                }
                let members = vec![
                    ("crv", "Ed25519".to_owned()),
                    ("kty", "OKP".to_owned()),
                    ("x", URL_SAFE_NO_PAD.encode(&x)),
                ];
                (
                    JwsAlg::EdDsa,
                    &[JwsAlg::EdDsa][..],
                    Material::Ed25519 { x },
                    members,
                )
            }
            (Some("EC"), Some(crv)) if crv == "P-256" => {
                let (x, y) = (bytes(object, "x")?, bytes(object, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwkError::Member("x"));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let members = vec![
                    ("crv", "P-256".to_owned()),
                    ("kty", "EC".to_owned()),
                    ("x", URL_SAFE_NO_PAD.encode(&x)),
                    ("y", URL_SAFE_NO_PAD.encode(&y)),
                ];
                (
                    JwsAlg::Es256,
                    &[JwsAlg::Es256][..],
                    Material::P256 { point },
                    members,
                )
            }
            (Some("RSA"), _) => {
                let (n, e) = (bytes(object, "n")?, bytes(object, "e")?);
                let n = n
                    .iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect::<Vec<_>>();
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(JwkError::ShortRsa(bits));
                }
                let members = vec![
                    ("e", URL_SAFE_NO_PAD.encode(&e)),
                    ("kty", "RSA".to_owned()),
                    ("n", URL_SAFE_NO_PAD.encode(&n)),
                ];
                (
                    JwsAlg::Rs256,
                    &[JwsAlg::Rs256, JwsAlg::Ps256][..],
                    Material::Rsa { n, e },
                    members,
                )
            }
            _ => return Err(JwkError::Unsupported),
        };
        let alg = match alg {
            None => inferred,
            Some(name) => *allowed
                .iter()
                .find(|a| a.matches(name))
                .ok_or_else(|| JwkError::Alg(name.to_owned()))?,
        };
        let key = Self {
            alg,
            material,
            members,
        };
        // A key aws-lc-rs cannot use (a point off the curve, say) is refused now, not at the
        // first assertion.
        if let Material::P256 { point } = &key.material {
            let usable =
                signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point);
            if usable.is_err() {
                return Err(JwkError::Member("x"));
            }
        }
        Ok(key)
    }

    /// The algorithm the key is registered for.
    pub fn alg(&self) -> JwsAlg {
        self.alg
    }

    /// `kty` of the key.
    pub fn kty(&self) -> &'static str {
        match self.material {
            Material::Ed25519 { .. } => "OKP",
            Material::P256 { .. } => "EC",
            Material::Rsa { .. } => "RSA",
        }
    }

    /// RFC 7638 thumbprint: base64url SHA-256 of the required members in lexical order.
    pub fn thumbprint(&self) -> String {
        let canonical: Map<String, Value> = self
            .members
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        URL_SAFE_NO_PAD.encode(sha256(Value::Object(canonical).to_string().as_bytes()))
    }

    /// The key's public id (`key_` + 16 hex), derived from its thumbprint so one key can be
    /// registered once per customer.
    pub fn key_id(&self) -> String {
        let digest = sha256(format!("kiss-jwk-id:{}", self.thumbprint()).as_bytes());
        format!("key_{}", hex(&digest[..8]))
    }

    /// The stored form: the public members plus `alg`.
    pub fn to_json(&self) -> String {
        let mut object: Map<String, Value> = self
            .members
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        object.insert("alg".into(), Value::String(self.alg.as_str().into()));
        Value::Object(object).to_string()
    }

    /// Whether `signature` over `message` verifies with this key under `alg`, which must be
    /// the registered algorithm.
    pub fn verifies(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        if !self.alg.matches(alg) {
            return false;
        }
        match (&self.material, self.alg) {
            (Material::Ed25519 { x }, _) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok(),
            (Material::P256 { point }, _) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::Rsa { n, e }, alg) => {
                let params = if alg == JwsAlg::Ps256 {
                    &signature::RSA_PSS_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
        }
    }
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub struct Jws {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    /// Splits `header.payload.signature`; `None` for anything else.
    pub fn parse(compact: &str) -> Option<Self> {
        let mut parts = compact.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let object = |part: &str| -> Option<Map<String, Value>> {
            let raw = URL_SAFE_NO_PAD.decode(part).ok()?;
            match serde_json::from_slice(&raw).ok()? {
                Value::Object(map) => Some(map),
                _ => None,
            }
        };
        Some(Self {
            header: object(header)?,
            claims: object(payload)?,
            signing_input: format!("{header}.{payload}"),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// The header's `alg`.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// Whether `key` signed it, under the header's `alg` (which must be the key's).
    pub fn verified_by(&self, key: &PublicJwk) -> bool {
        self.alg()
            .is_some_and(|alg| key.verifies(alg, self.signing_input.as_bytes(), &self.signature))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::KeyPair;

    fn ed25519() -> (signature::Ed25519KeyPair, String) {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        (
            pair,
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#),
        )
    }

    #[test]
    fn rfc_7638_thumbprint_of_the_rfc_example() {
        // RFC 7638 §3.1.
        let jwk = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;
        let key = PublicJwk::parse(jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.alg(), JwsAlg::Rs256);
    }

    #[test]
    fn private_short_and_unsupported_keys_are_refused() {
        let (_, public) = ed25519();
        let private = public.replace('}', r#","d":"AAAA"}"#);
        assert_eq!(PublicJwk::parse(&private), Err(JwkError::Private("d")));
        let short = r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#;
        assert!(matches!(
            PublicJwk::parse(short),
            Err(JwkError::ShortRsa(_))
        ));
        for bad in [
            r#"{"kty":"oct","k":"AAAA"}"#,
            r#"{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}"#,
            r#"{"kty":"OKP","crv":"X25519","x":"AA"}"#,
            "[]",
            "nope",
        ] {
            assert!(PublicJwk::parse(bad).is_err(), "{bad}");
        }
        let wrong_alg = public.replace('}', r#","alg":"ES256"}"#);
        assert_eq!(
            PublicJwk::parse(&wrong_alg),
            Err(JwkError::Alg("ES256".into()))
        );
    }

    #[test]
    fn ed25519_alg_names_are_one_and_signatures_verify() {
        let (pair, public) = ed25519();
        let webcrypto = public.replace('}', r#","alg":"Ed25519"}"#);
        let key = PublicJwk::parse(&webcrypto).unwrap();
        assert_eq!(key.alg(), JwsAlg::EdDsa);
        assert_eq!(key.key_id(), PublicJwk::parse(&public).unwrap().key_id());
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"Ed25519"}"#);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"ACME-1"}"#);
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref());
        let jws = Jws::parse(&format!("{input}.{sig}")).unwrap();
        assert!(jws.verified_by(&key));
        assert!(key.verifies(
            "EdDSA",
            input.as_bytes(),
            pair.sign(input.as_bytes()).as_ref()
        ));
        assert!(!key.verifies(
            "ES256",
            input.as_bytes(),
            pair.sign(input.as_bytes()).as_ref()
        ));
        let tampered =
            Jws::parse(&format!("{header}.{}.{sig}", URL_SAFE_NO_PAD.encode("{}"))).unwrap();
        assert!(!tampered.verified_by(&key));
        let (_, other) = ed25519();
        assert!(!jws.verified_by(&PublicJwk::parse(&other).unwrap()));
    }

    #[test]
    fn es256_keys_sign_and_round_trip_their_stored_form() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        );
        let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}","use":"sig"}}"#);
        let key = PublicJwk::parse(&jwk).unwrap();
        assert_eq!((key.alg(), key.kty()), (JwsAlg::Es256, "EC"));
        assert_eq!(PublicJwk::parse(&key.to_json()).unwrap(), key);
        let sig = pair.sign(&rng, b"msg").unwrap();
        assert!(key.verifies("ES256", b"msg", sig.as_ref()));
        assert!(!key.verifies("ES256", b"other", sig.as_ref()));
    }

    #[test]
    fn jws_parsing_refuses_what_is_not_three_json_parts() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "e30.e30.!!",
            "W10.e30.",
            "e30.bm9wZQ.",
        ] {
            assert!(Jws::parse(bad).is_none(), "{bad}");
        }
        assert!(Jws::parse("e30.e30.").is_some());
    }
}
