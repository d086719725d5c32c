//! Signing and verification keys: the secret documents, generation, and the per-instance cache.
//!
//! Verification secret: `{"keys":[{"kid","kty":"OKP","crv":"Ed25519","x","alg":"EdDSA",
//! "use":"sig","created_at","retired_at"?}]}`: a JWKS with two bookkeeping fields.
//! Signing secret: the same `keys` list (so the token function can serve the JWKS without
//! reading the other secret) plus `"active":{"kid","private_key","created_at"}` with the
//! private key as base64 PKCS#8, and `"previous"` (same shape) after a rotation.
//!
//! A rotated key signs only once it has been published for one refresh interval: every
//! verifier refreshes within that interval, so its tokens verify everywhere even when an
//! attacker has used up the one forced refresh per minute with made-up `kid`s. Until then
//! the previous key keeps signing. "Published" is measured by Secrets Manager's own clock
//! (the creation date of the signing secret's version, written after the verification
//! secret), never by the clock of the machine that ran `signing-keys rotate`.

mod cache;
mod source;

pub use cache::KeyCache;
#[cfg(feature = "test-util")]
pub use source::MemoryKeySource;
pub use source::{KeySource, SecretsManagerSource};

use crate::api_key::{hex, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How long a retired public key stays published: longer than the longest token TTL (12 h)
/// plus leeway, so every token it signed expires first.
pub const RETIRED_KEY_RETENTION_SECONDS: u64 = 24 * 3600;
/// An unknown `kid` triggers at most one refresh per this many seconds.
pub const UNKNOWN_KID_REFRESH_SECONDS: u64 = 60;

/// A public key entry (JWK plus bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub kid: String,
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

/// The active private key.
#[derive(Clone, Serialize, Deserialize)]
pub struct PrivateKey {
    pub kid: String,
    /// base64 (standard) PKCS#8 DER.
    pub private_key: String,
    pub created_at: u64,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({}, ***)", self.kid)
    }
}

/// Either secret's document; the verification secret has no `active`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<PrivateKey>,
    /// The key `active` replaced; signs until `active` has been published long enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PrivateKey>,
    #[serde(default)]
    pub keys: Vec<PublicKey>,
    /// When the store published this document (Secrets Manager's version creation date),
    /// if it says; not part of the stored JSON.
    #[serde(skip)]
    pub published_at: Option<u64>,
}

/// Failures around keys. Texts are for logs and the operator, never for responses.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("secret unavailable: {0}")]
    Unavailable(String),
    #[error("key document is malformed: {0}")]
    Malformed(String),
    #[error("no signing key; run `customer-admin signing-keys init`")]
    NoSigningKey,
    #[error("key generation failed")]
    Generation,
}

impl KeyDocument {
    /// Parses a secret string.
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        serde_json::from_str(raw).map_err(|e| KeyError::Malformed(e.to_string()))
    }

    /// The verification secret's document: the public keys only.
    pub fn public(&self) -> Self {
        Self {
            active: None,
            previous: None,
            keys: self.keys.clone(),
            published_at: None,
        }
    }

    /// Serialises for storage.
    pub fn to_secret_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The public document for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "alg": k.alg, "use": k.use_})
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Adds a fresh key pair: retires the current public key, prunes expired ones, and
    /// returns the new active private key. The caller stores the public side first.
    pub fn rotate(&mut self, now: u64) -> Result<PrivateKey, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Generation)?;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| KeyError::Generation)?;
        use aws_lc_rs::signature::KeyPair;
        let mut id = [0u8; 8];
        random_bytes(&mut id).map_err(|_| KeyError::Generation)?;
        let kid = format!("sig_{}", hex(&id));
        for key in &mut self.keys {
            key.retired_at.get_or_insert(now);
        }
        self.keys.retain(|k| {
            k.retired_at
                .is_none_or(|t| t.saturating_add(RETIRED_KEY_RETENTION_SECONDS) > now)
        });
        self.keys.push(PublicKey {
            kid: kid.clone(),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            alg: "EdDSA".into(),
            use_: "sig".into(),
            created_at: now,
            retired_at: None,
        });
        let private = PrivateKey {
            kid,
            private_key: STANDARD.encode(pkcs8.as_ref()),
            created_at: now,
        };
        self.previous = self.active.replace(private.clone());
        Ok(private)
    }
}

/// A private key ready to sign.
struct Signer {
    kid: String,
    key: EncodingKey,
    created_at: u64,
}

impl Signer {
    fn new(private: &PrivateKey) -> Result<Self, KeyError> {
        let der = STANDARD
            .decode(&private.private_key)
            .map_err(|_| KeyError::Malformed("private_key".into()))?;
        Ok(Self {
            kid: private.kid.clone(),
            key: EncodingKey::from_ed_der(&der),
            created_at: private.created_at,
        })
    }
}

/// Keys ready to use: parsed once per refresh, not per request.
pub struct KeySet {
    signer: Option<Signer>,
    previous: Option<Signer>,
    /// When the active key may sign: publication plus the verifiers' refresh interval.
    active_from: u64,
    verifiers: HashMap<String, DecodingKey>,
    jwks: String,
}

impl KeySet {
    /// Prepares a document; unusable entries are skipped with a warning.
    pub fn from_document(doc: &KeyDocument, activation_delay: u64) -> Result<Self, KeyError> {
        let signer = doc.active.as_ref().map(Signer::new).transpose()?;
        let previous = doc.previous.as_ref().map(Signer::new).transpose()?;
        // The store's publication time; the operator's `created_at` only where the source
        // has no such time (in-memory documents in tests).
        let published = doc
            .published_at
            .or_else(|| signer.as_ref().map(|s| s.created_at))
            .unwrap_or(0);
        let mut verifiers = HashMap::new();
        for key in &doc.keys {
            match DecodingKey::from_ed_components(&key.x) {
                Ok(decoding) if key.kty == "OKP" && key.crv == "Ed25519" => {
                    verifiers.insert(key.kid.clone(), decoding);
                }
                _ => tracing::warn!(kid = %key.kid, "skipping unusable public key"),
            }
        }
        Ok(Self {
            signer,
            previous,
            active_from: published.saturating_add(activation_delay),
            verifiers,
            jwks: doc.jwks().to_string(),
        })
    }

    /// The key that signs at `now` and its `kid`: the active one once it has been published
    /// for the activation delay, the previous one before that.
    pub fn signer(&self, now: u64) -> Result<(&str, &EncodingKey), KeyError> {
        let active = self.signer.as_ref().ok_or(KeyError::NoSigningKey)?;
        let chosen = match &self.previous {
            Some(previous) if now < self.active_from => previous,
            _ => active,
        };
        Ok((chosen.kid.as_str(), &chosen.key))
    }

    /// The verification key for `kid`.
    pub fn verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifiers.get(kid)
    }

    /// The serialised JWKS.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_key_signs_only_after_one_refresh_interval() -> Result<(), KeyError> {
        let mut doc = KeyDocument::default();
        let first = doc.rotate(1000)?.kid;
        let second = doc.rotate(2000)?.kid;
        let keys = KeySet::from_document(&doc, 300)?;
        assert_eq!(keys.signer(2000)?.0, first, "not yet published long enough");
        assert_eq!(keys.signer(2299)?.0, first);
        assert_eq!(keys.signer(2300)?.0, second);
        assert!(keys.verifier(&first).is_some() && keys.verifier(&second).is_some());
        assert!(doc.public().active.is_none() && doc.public().previous.is_none());
        Ok(())
    }

    #[test]
    fn activation_follows_the_store_publication_time_not_the_operator_clock() -> Result<(), KeyError>
    {
        let mut doc = KeyDocument::default();
        let first = doc.rotate(1000)?.kid;
        // The operator's clock ran an hour behind (or ahead) of the store's.
        let second = doc.rotate(16_400)?.kid;
        doc.published_at = Some(20_000);
        let keys = KeySet::from_document(&doc, 300)?;
        assert_eq!(keys.signer(20_000)?.0, first);
        assert_eq!(keys.signer(20_299)?.0, first);
        assert_eq!(keys.signer(20_300)?.0, second);
        doc.active = doc.active.take().map(|a| PrivateKey {
            created_at: 23_600,
            ..a
        });
        let keys = KeySet::from_document(&doc, 300)?;
        assert_eq!(
            keys.signer(20_300)?.0,
            second,
            "a clock ahead delays nothing"
        );
        Ok(())
    }
}
