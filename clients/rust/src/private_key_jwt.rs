//! `private_key_jwt` client authentication (RFC 7523 §2.2): the customer keeps a private
//! key, the operator registers its public JWK, and every request to an OAuth endpoint
//! carries a fresh, short-lived assertion signed with the key.

use crate::error::Error;
use crate::jws::{self, JwsAlgorithm, KeyPair};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of one assertion. Each is used once, right after signing, so a short life
/// only limits what a captured one is worth.
const ASSERTION_LIFETIME_SECONDS: u64 = 60;

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
    key: Arc<KeyPair>,
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
        KeyPair::generate_ed25519().map(Self::new)
    }

    /// A new random ECDSA P-256 key (`ES256`).
    pub fn generate_es256() -> Result<Self, Error> {
        KeyPair::generate_p256().map(Self::new)
    }

    /// An Ed25519 or P-256 private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what
    /// `openssl genpkey` writes) or, for P-256, SEC 1 (`BEGIN EC PRIVATE KEY`).
    /// Encrypted keys are refused: decrypt them first (`openssl pkey -in enc.pem`).
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        KeyPair::from_pem(pem).map(Self::new)
    }

    /// An unencrypted Ed25519 or P-256 private key in DER: PKCS#8 (v1 or v2), or SEC 1
    /// for P-256.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        KeyPair::from_der(der).map(Self::new)
    }

    /// An Ed25519 key from its raw 32-byte private seed (RFC 8032).
    pub fn from_ed25519_seed(seed: &[u8]) -> Result<Self, Error> {
        KeyPair::from_ed25519_seed(seed).map(Self::new)
    }

    fn new(key: KeyPair) -> Self {
        Self {
            algorithm: key.default_algorithm(),
            key: Arc::new(key),
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
        if !self.key.fits(algorithm) {
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
        let public = self.key.public_jwk();
        let jwk = Jwk {
            kty: public.kty,
            crv: public.crv,
            x: public.x,
            y: public.y,
            alg: self.algorithm.as_str(),
            kid: self.key_id.as_deref(),
        };
        serde_json::to_string(&jwk).unwrap_or_default()
    }

    /// The private key as unencrypted PKCS#8 v1 PEM, the form `openssl genpkey` writes
    /// and [`PrivateKeyJwt::from_pem`] reads. A secret: store it like one.
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        self.key.to_pkcs8_pem()
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
        let now = jws::now()?;
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
            jti: jws::random_id()?,
        };
        self.key.sign(&header, &claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::tests::{OPENSSL_ED25519, OPENSSL_ED25519_X, OPENSSL_P256, b64, verified};
    use serde_json::Value;

    fn jwk(key: &PrivateKeyJwt) -> Value {
        serde_json::from_str(&key.public_jwk()).unwrap_or_default()
    }

    #[test]
    fn public_jwk_carries_the_key_types_algorithm() {
        let ed = PrivateKeyJwt::from_pem(OPENSSL_ED25519);
        let ed = ed.as_ref().map(jwk).unwrap_or_default();
        assert_eq!(
            (&ed["kty"], &ed["x"]),
            (&"OKP".into(), &OPENSSL_ED25519_X.into())
        );
        assert_eq!(ed["alg"], "EdDSA");
        let ec = PrivateKeyJwt::from_pem(OPENSSL_P256);
        assert_eq!(ec.as_ref().map(jwk).unwrap_or_default()["alg"], "ES256");
        let seed = PrivateKeyJwt::from_ed25519_seed(&crate::jws::tests::rfc8032_seed());
        assert_eq!(
            seed.as_ref().map(jwk).unwrap_or_default()["x"],
            crate::jws::tests::RFC8032_X
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
            let before = jws::now().unwrap_or_default();
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
