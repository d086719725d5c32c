//! Compact JWS signing with Ed25519 and P-256 keys (aws-lc-rs): reading and generating the
//! keys, their public JWK, and the random ids and clock every signed JWT needs. Shared by
//! the `private_key_jwt` assertions and the DPoP proofs.

use crate::error::Error;
use crate::pem::{self, PemError};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Random bytes in a `jti`: 128 bits, so ids never repeat.
const JTI_BYTES: usize = 16;

/// The JWS `alg` a JWT is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// `EdDSA` with an Ed25519 key: the name every JOSE library knows (the default).
    EdDsa,
    /// `Ed25519` with an Ed25519 key: the fully specified name of RFC 9864.
    Ed25519,
    /// `ES256`: ECDSA with P-256 and SHA-256.
    Es256,
}

impl JwsAlgorithm {
    /// The name as written in a JWS header or a JWK.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Ed25519 => "Ed25519",
            Self::Es256 => "ES256",
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Ed25519 or P-256 private key. No `Debug`: nothing may print it.
pub(crate) enum KeyPair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// The public half as the required JWK members, declared in lexicographic order so that
/// its JSON is RFC 7638's thumbprint input as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PublicJwk {
    pub(crate) crv: &'static str,
    pub(crate) kty: &'static str,
    pub(crate) x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) y: Option<String>,
}

const ENCRYPTED: &str =
    "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)";

impl KeyPair {
    /// A new random Ed25519 key.
    pub(crate) fn generate_ed25519() -> Result<Self, Error> {
        Ed25519KeyPair::generate()
            .map(Self::Ed25519)
            .map_err(|_| Error::config("cannot generate an Ed25519 key"))
    }

    /// A new random P-256 key.
    pub(crate) fn generate_p256() -> Result<Self, Error> {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map(Self::P256)
            .map_err(|_| Error::config("cannot generate a P-256 key"))
    }

    /// PKCS#8 (`BEGIN PRIVATE KEY`) or, for P-256, SEC 1 (`BEGIN EC PRIVATE KEY`) PEM.
    pub(crate) fn from_pem(text: &str) -> Result<Self, Error> {
        let blocks = pem::parse(text).map_err(|e| match e {
            PemError::Malformed => Error::config("the private key is not valid PEM"),
            PemError::Encrypted => Error::config(ENCRYPTED),
        })?;
        let key = blocks
            .iter()
            .find(|b| b.label == "PRIVATE KEY" || b.label == "EC PRIVATE KEY");
        match key {
            Some(block) => Self::from_der(&block.der),
            None if blocks.iter().any(|b| b.label == "ENCRYPTED PRIVATE KEY") => {
                Err(Error::config(ENCRYPTED))
            }
            None if blocks.iter().any(|b| b.label == "PUBLIC KEY") => Err(Error::config(
                "this is a public key; the client needs the private key",
            )),
            None => Err(Error::config("no PEM private key found")),
        }
    }

    /// Unencrypted PKCS#8 (v1 or v2) DER, or SEC 1 for P-256.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, Error> {
        if let Ok(key) = Ed25519KeyPair::from_pkcs8(der) {
            return Ok(Self::Ed25519(key));
        }
        if let Ok(key) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(Self::P256(key));
        }
        Err(Error::config(
            "the private key is not an unencrypted PKCS#8 Ed25519 or P-256 key",
        ))
    }

    /// An Ed25519 key from its raw 32-byte private seed (RFC 8032).
    pub(crate) fn from_ed25519_seed(seed: &[u8]) -> Result<Self, Error> {
        if seed.len() != 32 {
            return Err(Error::config("an Ed25519 seed is exactly 32 bytes"));
        }
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Self::Ed25519)
            .map_err(|_| Error::config("the Ed25519 seed was refused"))
    }

    /// The algorithm a key of this type signs with unless told otherwise.
    pub(crate) fn default_algorithm(&self) -> JwsAlgorithm {
        match self {
            Self::Ed25519(_) => JwsAlgorithm::EdDsa,
            Self::P256(_) => JwsAlgorithm::Es256,
        }
    }

    /// Whether `algorithm` is one this key can sign with.
    pub(crate) fn fits(&self, algorithm: JwsAlgorithm) -> bool {
        match self {
            Self::Ed25519(_) => matches!(algorithm, JwsAlgorithm::EdDsa | JwsAlgorithm::Ed25519),
            Self::P256(_) => algorithm == JwsAlgorithm::Es256,
        }
    }

    /// The public key's required JWK members.
    pub(crate) fn public_jwk(&self) -> PublicJwk {
        match self {
            Self::Ed25519(key) => PublicJwk {
                crv: "Ed25519",
                kty: "OKP",
                x: URL_SAFE_NO_PAD.encode(key.public_key()),
                y: None,
            },
            Self::P256(key) => {
                // An uncompressed SEC 1 point: 0x04, then x and y of 32 bytes each.
                let coordinates = key.public_key().as_ref().get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                PublicJwk {
                    crv: "P-256",
                    kty: "EC",
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: Some(URL_SAFE_NO_PAD.encode(y)),
                }
            }
        }
    }

    /// The private key as unencrypted PKCS#8 v1 PEM.
    pub(crate) fn to_pkcs8_pem(&self) -> Result<String, Error> {
        let der = match self {
            Self::Ed25519(key) => key.to_pkcs8v1(),
            Self::P256(key) => key.to_pkcs8v1(),
        }
        .map_err(|_| Error::config("cannot serialize the private key"))?;
        Ok(pem::encode("PRIVATE KEY", der.as_ref()))
    }

    /// `header` and `claims` as a signed compact JWS.
    pub(crate) fn sign(
        &self,
        header: &impl Serialize,
        claims: &impl Serialize,
    ) -> Result<String, Error> {
        let encode = |json: Result<Vec<u8>, serde_json::Error>| {
            json.map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
                .map_err(|e| Error::config(format!("cannot encode the JWT: {e}")))
        };
        let signing_input = format!(
            "{}.{}",
            encode(serde_json::to_vec(header))?,
            encode(serde_json::to_vec(claims))?
        );
        let signature = match self {
            Self::Ed25519(key) => key.sign(signing_input.as_bytes()).as_ref().to_vec(),
            // The FIXED encoding is JWS's r || s, not DER.
            Self::P256(key) => key
                .sign(&SystemRandom::new(), signing_input.as_bytes())
                .map_err(|_| Error::config("the P-256 key could not sign"))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// A new random `jti`: 128 bits, base64url.
pub(crate) fn random_id() -> Result<String, Error> {
    let mut jti = [0u8; JTI_BYTES];
    // Never fall back to a guessable id: a failure here fails the request.
    SystemRandom::new()
        .fill(&mut jti)
        .map_err(|_| Error::config("no randomness for a jti"))?;
    Ok(URL_SAFE_NO_PAD.encode(jti))
}

/// Seconds since the epoch, for `iat`.
pub(crate) fn now() -> Result<u64, Error> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::config("the system clock is before 1970"))?
        .as_secs())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
    use serde_json::Value;

    // Test-only keys, made for these tests with `openssl genpkey -algorithm ed25519`,
    // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`,
    // `openssl ecparam -genkey -name prime256v1` (SEC 1, with its EC PARAMETERS block),
    // a P-384 key and an encrypted PKCS#8 key.
    pub(crate) const OPENSSL_ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDDehfd3mCGzc25oPESQwqByb8JFdOEOp6GeY1DE4t2F
-----END PRIVATE KEY-----
";
    pub(crate) const OPENSSL_ED25519_X: &str = "ZfKhpJPY48BdUL70fjrbNqXqliDUpGqP2XmNEgwd9WQ";
    const OPENSSL_ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAZfKhpJPY48BdUL70fjrbNqXqliDUpGqP2XmNEgwd9WQ=
-----END PUBLIC KEY-----
";
    pub(crate) const OPENSSL_P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgtJDYRqs4vUqp3lFE
g1hVWsXeA2O9YtWOV8DwXfQuifehRANCAARlf3Xy0G3Po1w6BZPpTVC+lPj2sVvZ
ftidAjSvosfv1aKYmMFfG3m11Cfwbg2OkfRLU13x9EXAKqb/PNwuauul
-----END PRIVATE KEY-----
";
    const OPENSSL_P256_X: &str = "ZX918tBtz6NcOgWT6U1QvpT49rFb2X7YnQI0r6LH79U";
    const OPENSSL_P256_Y: &str = "opiYwV8bebXUJ_BuDY6R9EtTXfH0RcAqpv883C5q66U";
    const OPENSSL_SEC1: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIKvDPbP4f+yF2n/8mGPq6CmlVqt65TE8yuB+/O31HJ0ioAoGCCqGSM49
AwEHoUQDQgAEFUKndQX3rqBsYjIWZppOr3hXvVBo95Qh1GC0RqnUVQH2amq2R6J9
D8jvj+ArTDoKlr5DQibuh431e7ReSV0/jg==
-----END EC PRIVATE KEY-----
";
    const OPENSSL_SEC1_X: &str = "FUKndQX3rqBsYjIWZppOr3hXvVBo95Qh1GC0RqnUVQE";
    const OPENSSL_P384: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCRW5fxo8JP6GYA37A/
cemjjO4MMDGFrXw4+jc+tTxaWyi0kG1EKgt66TpYdqZbMcKhZANiAAS2ajnkldyL
evQKzuFHjqcOar8xlMb65/IARvL7NoWJbeP2jVywJLKSMwU9igFXZtJ2VZgjPwxh
K+fRWCSYFyxNG9SHF8AMdBlPPMjkiUKgnRbof9OXIe8q5sqyMzbc7Kw=
-----END PRIVATE KEY-----
";
    const OPENSSL_ENCRYPTED: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAi8Gi5j/rq+jwICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEN8BSDeFJ1RQxuD1fz8dCfsEQLjX
z9KztkRA4sMqHg7LhOh65v1C1Ms3apG1ta0Gj9IE2sxj2mT9EBG9uI5WybQ5fHsM
HtcHow0ef4J7kHKyfdo=
-----END ENCRYPTED PRIVATE KEY-----
";

    /// RFC 8032 §7.1, test 1: the private seed.
    pub(crate) const RFC8032_SEED_HEX: &str =
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    /// …and its public key, base64url.
    pub(crate) const RFC8032_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    pub(crate) fn rfc8032_seed() -> Vec<u8> {
        (0..32)
            .map(|i| u8::from_str_radix(&RFC8032_SEED_HEX[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    }

    pub(crate) fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap_or_default()
    }

    /// Checks the JWS signature against the public JWK; returns header and claims.
    pub(crate) fn verified(jws: &str, jwk: &Value) -> Option<(Value, Value)> {
        let parts: Vec<&str> = jws.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return None;
        };
        let text = |v: &Value, k: &str| v[k].as_str().map(b64).unwrap_or_default();
        let signed = format!("{header}.{claims}");
        match jwk["kty"].as_str()? {
            "OKP" => UnparsedPublicKey::new(&ED25519, text(jwk, "x"))
                .verify(signed.as_bytes(), &b64(signature))
                .ok()?,
            "EC" => {
                let point = [vec![4], text(jwk, "x"), text(jwk, "y")].concat();
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed.as_bytes(), &b64(signature))
                    .ok()?;
            }
            _ => return None,
        }
        let json = |part: &str| serde_json::from_slice(&b64(part)).ok();
        Some((json(header)?, json(claims)?))
    }

    fn jwk(key: &Result<KeyPair, Error>) -> Value {
        key.as_ref()
            .ok()
            .and_then(|k| serde_json::to_value(k.public_jwk()).ok())
            .unwrap_or_default()
    }

    #[test]
    fn openssl_keys_are_read_and_give_the_openssl_public_key() {
        let ed = jwk(&KeyPair::from_pem(OPENSSL_ED25519));
        assert_eq!(
            ed,
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": OPENSSL_ED25519_X})
        );
        let ec = jwk(&KeyPair::from_pem(OPENSSL_P256));
        assert_eq!(
            ec,
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": OPENSSL_P256_X, "y": OPENSSL_P256_Y})
        );
        assert_eq!(jwk(&KeyPair::from_pem(OPENSSL_SEC1))["x"], OPENSSL_SEC1_X);
    }

    #[test]
    fn public_jwk_json_is_the_rfc_7638_thumbprint_input() {
        let ec = KeyPair::from_pem(OPENSSL_P256).map(|k| k.public_jwk());
        assert_eq!(
            ec.ok().and_then(|j| serde_json::to_string(&j).ok()),
            Some(format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{OPENSSL_P256_X}","y":"{OPENSSL_P256_Y}"}}"#
            ))
        );
    }

    #[test]
    fn ed25519_seed_gives_the_rfc_8032_public_key() {
        let seed = rfc8032_seed();
        assert_eq!(jwk(&KeyPair::from_ed25519_seed(&seed))["x"], RFC8032_X);
        for bad in [&seed[..31], &[seed.clone(), vec![0]].concat()[..]] {
            assert!(matches!(
                KeyPair::from_ed25519_seed(bad),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn generated_keys_survive_a_pem_round_trip() {
        for key in [KeyPair::generate_ed25519(), KeyPair::generate_p256()] {
            let pem = key
                .as_ref()
                .ok()
                .and_then(|k| k.to_pkcs8_pem().ok())
                .unwrap_or_default();
            assert!(
                pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
                "{}",
                pem.len()
            );
            assert_eq!(jwk(&KeyPair::from_pem(&pem)), jwk(&key));
        }
    }

    #[test]
    fn unusable_keys_are_refused_with_a_reason_and_no_key_material() {
        let cases = [
            (OPENSSL_P384, "not an unencrypted PKCS#8 Ed25519 or P-256"),
            (OPENSSL_ENCRYPTED, "encrypted"),
            (OPENSSL_ED25519_PUBLIC, "public key"),
            ("", "no PEM private key"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "not valid PEM"),
        ];
        for (pem, reason) in cases {
            let err = match KeyPair::from_pem(pem) {
                Err(Error::InvalidConfig { reason }) => reason,
                Err(other) => panic!("{other:?}"),
                Ok(_) => panic!("{reason}: accepted"),
            };
            assert!(err.contains(reason), "{err}");
            assert!(!err.contains("MC4CAQ") && !err.contains("MIG"), "{err}");
        }
        assert!(KeyPair::from_der(b"\x30\x00").is_err());
    }

    #[test]
    fn signatures_verify_with_the_public_jwk() {
        for key in [KeyPair::generate_ed25519(), KeyPair::generate_p256()] {
            let jws = key
                .as_ref()
                .ok()
                .and_then(|k| {
                    k.sign(&serde_json::json!({"a": 1}), &serde_json::json!({"b": 2}))
                        .ok()
                })
                .unwrap_or_default();
            let (header, claims) = verified(&jws, &jwk(&key)).unwrap_or_default();
            assert_eq!(
                (header["a"].as_u64(), claims["b"].as_u64()),
                (Some(1), Some(2))
            );
        }
    }

    #[test]
    fn ids_are_128_random_bits() {
        let ids: std::collections::HashSet<String> =
            (0..50).filter_map(|_| random_id().ok()).collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.iter().all(|id| b64(id).len() == 16));
    }
}
