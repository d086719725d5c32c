//! `private_key_jwt` client authentication (RFC 7523 §2.2): the customer keeps a private
//! key, the operator registers its public JWK, and every request to an OAuth endpoint
//! carries a fresh, short-lived assertion signed with the key.

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
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of one assertion. Each is used once, right after signing, so a short life
/// only limits what a captured one is worth.
const ASSERTION_LIFETIME_SECONDS: u64 = 60;

/// Random bytes in an assertion's `jti`: 128 bits, so ids never repeat.
const JTI_BYTES: usize = 16;

/// The JWS `alg` an assertion is signed with.
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

enum SigningKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// A private key for `private_key_jwt`: Ed25519 (`EdDSA`) or ECDSA P-256 (`ES256`), with
/// the key id the operator got when registering its public half.
///
/// `Debug` shows the algorithm and key id, never the key. Cheap to clone.
///
/// ```
/// use kiss_customer_api::PrivateKeyJwt;
///
/// let key = PrivateKeyJwt::generate_ed25519()?;
/// // Store the private key, and give the public JWK to the operator:
/// // customer-admin keys add-jwk --code ACME-1 --jwk-file jwk.json --json
/// let pem = key.to_pkcs8_pem()?;
/// let jwk = key.public_jwk();
/// # assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----") && jwk.contains("\"crv\":\"Ed25519\""));
/// // Later, with the key id that registration printed:
/// let key = PrivateKeyJwt::from_pem(&pem)?.with_key_id("key_...");
/// # let _ = key;
/// # Ok::<(), kiss_customer_api::Error>(())
/// ```
#[derive(Clone)]
pub struct PrivateKeyJwt {
    key: Arc<SigningKey>,
    algorithm: JwsAlgorithm,
    key_id: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for PrivateKeyJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeyJwt")
            .field("algorithm", &self.algorithm.as_str())
            .field("key_id", &self.key_id)
            .field("audience", &self.audience)
            .field("key", &"***")
            .finish()
    }
}

impl PrivateKeyJwt {
    /// A new random Ed25519 key (`EdDSA`).
    pub fn generate_ed25519() -> Result<Self, Error> {
        let key = Ed25519KeyPair::generate()
            .map_err(|_| Error::config("cannot generate an Ed25519 key"))?;
        Ok(Self::new(SigningKey::Ed25519(key)))
    }

    /// A new random ECDSA P-256 key (`ES256`).
    pub fn generate_es256() -> Result<Self, Error> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| Error::config("cannot generate a P-256 key"))?;
        Ok(Self::new(SigningKey::P256(key)))
    }

    /// An Ed25519 or P-256 private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what
    /// `openssl genpkey` writes) or, for P-256, SEC 1 (`BEGIN EC PRIVATE KEY`).
    /// Encrypted keys are refused: decrypt them first (`openssl pkey -in enc.pem`).
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let blocks = pem::parse(pem).map_err(|e| match e {
            PemError::Malformed => Error::config("the private key is not valid PEM"),
            PemError::Encrypted => Error::config(
                "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)",
            ),
        })?;
        let key = blocks
            .iter()
            .find(|b| b.label == "PRIVATE KEY" || b.label == "EC PRIVATE KEY");
        match key {
            Some(block) => Self::from_der(&block.der),
            None if blocks.iter().any(|b| b.label == "ENCRYPTED PRIVATE KEY") => {
                Err(Error::config(
                    "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)",
                ))
            }
            None if blocks.iter().any(|b| b.label == "PUBLIC KEY") => Err(Error::config(
                "this is a public key; the client needs the private key",
            )),
            None => Err(Error::config("no PEM private key found")),
        }
    }

    /// An unencrypted Ed25519 or P-256 private key in DER: PKCS#8 (v1 or v2), or SEC 1
    /// for P-256.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        if let Ok(key) = Ed25519KeyPair::from_pkcs8(der) {
            return Ok(Self::new(SigningKey::Ed25519(key)));
        }
        if let Ok(key) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(Self::new(SigningKey::P256(key)));
        }
        Err(Error::config(
            "the private key is not an unencrypted PKCS#8 Ed25519 or P-256 key",
        ))
    }

    /// An Ed25519 key from its raw 32-byte private seed (RFC 8032).
    pub fn from_ed25519_seed(seed: &[u8]) -> Result<Self, Error> {
        if seed.len() != 32 {
            return Err(Error::config("an Ed25519 seed is exactly 32 bytes"));
        }
        let key = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| Error::config("the Ed25519 seed was refused"))?;
        Ok(Self::new(SigningKey::Ed25519(key)))
    }

    fn new(key: SigningKey) -> Self {
        let algorithm = match key {
            SigningKey::Ed25519(_) => JwsAlgorithm::EdDsa,
            SigningKey::P256(_) => JwsAlgorithm::Es256,
        };
        Self {
            key: Arc::new(key),
            algorithm,
            key_id: None,
            audience: None,
        }
    }

    /// Sends `kid` = `key_id` in every assertion: the key id `customer-admin keys add-jwk`
    /// printed. Optional (without it the server tries each registered key) but recommended.
    #[must_use]
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// Signs with `algorithm` instead of the key's default (`EdDSA` or `ES256`), e.g.
    /// `Ed25519` for an Ed25519 key. An algorithm of another key type is refused.
    pub fn with_algorithm(mut self, algorithm: JwsAlgorithm) -> Result<Self, Error> {
        let fits = match *self.key {
            SigningKey::Ed25519(_) => {
                matches!(algorithm, JwsAlgorithm::EdDsa | JwsAlgorithm::Ed25519)
            }
            SigningKey::P256(_) => algorithm == JwsAlgorithm::Es256,
        };
        if !fits {
            return Err(Error::config(format!(
                "{algorithm} cannot be used with this key"
            )));
        }
        self.algorithm = algorithm;
        Ok(self)
    }

    /// Puts `audience` in `aud` instead of the token endpoint URL the client is built
    /// with: for a client that reaches the API by another URL than its issuer's.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The `alg` of the assertions.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.algorithm
    }

    /// The `kid` of the assertions, when set.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The public key as a JWK (JSON, no private members), with `alg` and, when set,
    /// `kid`: the file for `customer-admin keys add-jwk --jwk-file`.
    pub fn public_jwk(&self) -> String {
        #[derive(Serialize)]
        struct Jwk<'a> {
            kty: &'static str,
            crv: &'static str,
            x: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            y: Option<String>,
            alg: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
        }
        let (kty, crv, x, y) = match &*self.key {
            SigningKey::Ed25519(key) => (
                "OKP",
                "Ed25519",
                URL_SAFE_NO_PAD.encode(key.public_key()),
                None,
            ),
            SigningKey::P256(key) => {
                // An uncompressed SEC 1 point: 0x04, then x and y of 32 bytes each.
                let coordinates = key.public_key().as_ref().get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                ("EC", "P-256", x, Some(y))
            }
        };
        let jwk = Jwk {
            kty,
            crv,
            x,
            y,
            alg: self.algorithm.as_str(),
            kid: self.key_id.as_deref(),
        };
        serde_json::to_string(&jwk).unwrap_or_default()
    }

    /// The private key as unencrypted PKCS#8 v1 PEM, the form `openssl genpkey` writes
    /// and [`PrivateKeyJwt::from_pem`] reads. A secret: store it like one.
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        let der = match &*self.key {
            SigningKey::Ed25519(key) => key.to_pkcs8v1(),
            SigningKey::P256(key) => key.to_pkcs8v1(),
        }
        .map_err(|_| Error::config("cannot serialize the private key"))?;
        Ok(pem::encode("PRIVATE KEY", der.as_ref()))
    }

    /// The `aud` to use when the client's token endpoint is `token_endpoint`.
    pub(crate) fn audience<'a>(&'a self, token_endpoint: &'a str) -> &'a str {
        self.audience.as_deref().unwrap_or(token_endpoint)
    }

    /// A new signed assertion: `iss` = `sub` = `customer_code`, `aud` = `audience`,
    /// valid from now for [`ASSERTION_LIFETIME_SECONDS`], with a random `jti`.
    pub(crate) fn assertion(&self, customer_code: &str, audience: &str) -> Result<String, Error> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            typ: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
            jti: String,
        }
        let rng = SystemRandom::new();
        let mut jti = [0u8; JTI_BYTES];
        // Never fall back to a guessable id: a failure here fails the request.
        rng.fill(&mut jti)
            .map_err(|_| Error::config("no randomness for the assertion's jti"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::config("the system clock is before 1970"))?
            .as_secs();
        let header = Header {
            alg: self.algorithm.as_str(),
            typ: "JWT",
            kid: self.key_id.as_deref(),
        };
        let claims = Claims {
            iss: customer_code,
            sub: customer_code,
            aud: audience,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECONDS,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let encode = |json: Result<Vec<u8>, serde_json::Error>| {
            json.map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
                .map_err(|e| Error::config(format!("cannot encode the assertion: {e}")))
        };
        let signing_input = format!(
            "{}.{}",
            encode(serde_json::to_vec(&header))?,
            encode(serde_json::to_vec(&claims))?
        );
        let signature = match &*self.key {
            SigningKey::Ed25519(key) => key.sign(signing_input.as_bytes()).as_ref().to_vec(),
            // The FIXED encoding is JWS's r || s, not DER.
            SigningKey::P256(key) => key
                .sign(&rng, signing_input.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
    use serde_json::Value;

    // Test-only keys, made for these tests with `openssl genpkey -algorithm ed25519`,
    // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`,
    // `openssl ecparam -genkey -name prime256v1` (SEC 1, with its EC PARAMETERS block),
    // a P-384 key and an encrypted PKCS#8 key.
    const OPENSSL_ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDDehfd3mCGzc25oPESQwqByb8JFdOEOp6GeY1DE4t2F
-----END PRIVATE KEY-----
";
    const OPENSSL_ED25519_X: &str = "ZfKhpJPY48BdUL70fjrbNqXqliDUpGqP2XmNEgwd9WQ";
    const OPENSSL_ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAZfKhpJPY48BdUL70fjrbNqXqliDUpGqP2XmNEgwd9WQ=
-----END PUBLIC KEY-----
";
    const OPENSSL_P256: &str = "-----BEGIN PRIVATE KEY-----
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

    fn jwk(key: &PrivateKeyJwt) -> Value {
        serde_json::from_str(&key.public_jwk()).unwrap_or_default()
    }

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap_or_default()
    }

    /// Checks the JWS signature against the public JWK; returns header and claims.
    fn verified(assertion: &str, jwk: &Value) -> Option<(Value, Value)> {
        let parts: Vec<&str> = assertion.split('.').collect();
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

    #[test]
    fn openssl_keys_are_read_and_give_the_openssl_public_key() {
        let ed = PrivateKeyJwt::from_pem(OPENSSL_ED25519);
        let ed = ed.as_ref().map(jwk).unwrap_or_default();
        assert_eq!(ed["kty"], "OKP");
        assert_eq!(ed["crv"], "Ed25519");
        assert_eq!(ed["x"], OPENSSL_ED25519_X);
        assert_eq!(ed["alg"], "EdDSA");

        let ec = PrivateKeyJwt::from_pem(OPENSSL_P256);
        let ec = ec.as_ref().map(jwk).unwrap_or_default();
        assert_eq!((&ec["kty"], &ec["crv"]), (&"EC".into(), &"P-256".into()));
        assert_eq!(
            (&ec["x"], &ec["y"]),
            (&OPENSSL_P256_X.into(), &OPENSSL_P256_Y.into())
        );
        assert_eq!(ec["alg"], "ES256");

        let sec1 = PrivateKeyJwt::from_pem(OPENSSL_SEC1);
        assert_eq!(
            sec1.as_ref().map(jwk).unwrap_or_default()["x"],
            OPENSSL_SEC1_X
        );
    }

    #[test]
    fn public_jwk_has_no_private_members() {
        for key in [
            PrivateKeyJwt::generate_ed25519(),
            PrivateKeyJwt::generate_es256(),
        ] {
            let jwk = key
                .map(|k| jwk(&k.with_key_id("key_1")))
                .unwrap_or_default();
            let members: Vec<&str> = jwk
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert!(
                !members.is_empty()
                    && members
                        .iter()
                        .all(|m| ["kty", "crv", "x", "y", "alg", "kid"].contains(m)),
                "{jwk}"
            );
            assert_eq!(jwk["kid"], "key_1");
        }
    }

    #[test]
    fn ed25519_seed_gives_the_rfc_8032_public_key() {
        // RFC 8032 §7.1, test 1.
        let seed = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
                        [2 * i..2 * i + 2],
                    16,
                )
                .unwrap_or_default()
            })
            .collect::<Vec<u8>>();
        let key = PrivateKeyJwt::from_ed25519_seed(&seed);
        assert_eq!(
            key.as_ref().map(jwk).unwrap_or_default()["x"],
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        for bad in [&seed[..31], &[seed.clone(), vec![0]].concat()[..]] {
            assert!(matches!(
                PrivateKeyJwt::from_ed25519_seed(bad),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn generated_keys_survive_a_pem_round_trip() {
        for key in [
            PrivateKeyJwt::generate_ed25519(),
            PrivateKeyJwt::generate_es256(),
        ] {
            let Ok(key) = key else {
                panic!("{key:?}");
            };
            let pem = key.to_pkcs8_pem().unwrap_or_default();
            assert!(
                pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
                "{}",
                pem.len()
            );
            let again = PrivateKeyJwt::from_pem(&pem);
            assert_eq!(again.map(|k| k.public_jwk()).ok(), Some(key.public_jwk()));
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
            let err = match PrivateKeyJwt::from_pem(pem) {
                Err(Error::InvalidConfig { reason }) => reason,
                other => panic!("{other:?}"),
            };
            assert!(err.contains(reason), "{err}");
            assert!(!err.contains("MC4CAQ") && !err.contains("MIG"), "{err}");
        }
        assert!(PrivateKeyJwt::from_der(b"\x30\x00").is_err());
    }

    #[test]
    fn assertion_is_signed_with_the_documented_header_and_claims() {
        let keys = [
            PrivateKeyJwt::from_pem(OPENSSL_ED25519),
            PrivateKeyJwt::from_pem(OPENSSL_P256),
            PrivateKeyJwt::generate_ed25519().and_then(|k| k.with_algorithm(JwsAlgorithm::Ed25519)),
        ];
        for (key, alg) in keys.into_iter().zip(["EdDSA", "ES256", "Ed25519"]) {
            let Ok(key) = key else {
                panic!("{key:?}");
            };
            let key = key.with_key_id("key_abc");
            let aud = "https://api.example.com/auth/token";
            let before = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let assertion = key.assertion("ACME-1", aud).unwrap_or_default();
            let Some((header, claims)) = verified(&assertion, &jwk(&key)) else {
                panic!("{alg}: the signature does not verify: {assertion}");
            };
            assert_eq!(
                header,
                serde_json::json!({"alg": alg, "typ": "JWT", "kid": "key_abc"})
            );
            assert_eq!(
                (&claims["iss"], &claims["sub"], &claims["aud"]),
                (&"ACME-1".into(), &"ACME-1".into(), &aud.into())
            );
            let iat = claims["iat"].as_u64().unwrap_or_default();
            let exp = claims["exp"].as_u64().unwrap_or_default();
            assert!(iat >= before && iat <= before + 5, "{claims}");
            assert_eq!(exp - iat, 60);
            assert!(
                b64(claims["jti"].as_str().unwrap_or_default()).len() >= 16,
                "{claims}"
            );
            assert_eq!(
                claims.as_object().map(serde_json::Map::len),
                Some(6),
                "{claims}"
            );
        }
    }

    #[test]
    fn every_assertion_has_its_own_jti_and_no_kid_without_a_key_id() {
        let Ok(key) = PrivateKeyJwt::generate_es256() else {
            panic!("no key");
        };
        let jtis: std::collections::HashSet<String> = (0..50)
            .filter_map(|_| verified(&key.assertion("ACME-1", "aud").ok()?, &jwk(&key)))
            .map(|(header, claims)| {
                assert!(header.get("kid").is_none(), "{header}");
                claims["jti"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(jtis.len(), 50);
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        let ed = PrivateKeyJwt::generate_ed25519();
        assert!(
            ed.and_then(|k| k.with_algorithm(JwsAlgorithm::Es256))
                .is_err()
        );
        let ec = PrivateKeyJwt::generate_es256();
        assert!(
            ec.and_then(|k| k.with_algorithm(JwsAlgorithm::EdDsa))
                .is_err()
        );
        let ed =
            PrivateKeyJwt::generate_ed25519().and_then(|k| k.with_algorithm(JwsAlgorithm::Ed25519));
        assert_eq!(ed.as_ref().map(jwk).unwrap_or_default()["alg"], "Ed25519");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = PrivateKeyJwt::from_pem(OPENSSL_ED25519).map(|k| k.with_key_id("key_1"));
        let text = format!("{key:?}");
        assert!(
            text.contains("EdDSA") && text.contains("key_1") && text.contains("***"),
            "{text}"
        );
        let seed_b64 = "MN6F93eYIbNzbmg8RJDCoHJvwkV04Q6noZ5jUMTi3YU";
        for secret in [seed_b64, "30de85f7", "MC4CAQ", OPENSSL_ED25519_X] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
