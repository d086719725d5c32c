//! API keys: generation from the OS CSPRNG, a scanner-friendly format, SHA-256 storage.
//!
//! Format: `kiss_sk_` + 43 base64url characters (256 random bits) + 6 checksum characters
//! (base64url of the first 4 bytes of SHA-256 over prefix and body), so a secret scanner can
//! match the prefix and reject near misses without calling us.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// The recognisable prefix of every API key.
pub const PREFIX: &str = "kiss_sk_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Domain separation of key ids from the stored hash.
const KEY_ID_DOMAIN: &str = "kiss-key-id:";

/// A full API key. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Errors of key generation (the OS random source failed).
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomError;

/// Fills `buf` from the OS CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| RandomError)
}

fn checksum(prefix_and_body: &str) -> String {
    let digest = sha256(prefix_and_body.as_bytes());
    let mut sum = URL_SAFE_NO_PAD.encode(&digest[..4]);
    sum.truncate(CHECKSUM_LEN);
    sum
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ApiKey {
    /// A new key with 256 bits from the OS CSPRNG.
    pub fn generate() -> Result<Self, RandomError> {
        let mut secret = [0u8; 32];
        random_bytes(&mut secret)?;
        let head = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let sum = checksum(&head);
        Ok(Self(format!("{head}{sum}")))
    }

    /// Wraps a presented secret without judging it (verification hashes whatever came).
    pub fn presented(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// Whether the key has our prefix, length and a matching checksum.
    pub fn is_well_formed(&self) -> bool {
        let Some(rest) = self.0.strip_prefix(PREFIX) else {
            return false;
        };
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.is_ascii() {
            return false;
        }
        let (head, sum) = self.0.split_at(PREFIX.len() + BODY_LEN);
        checksum(head) == sum
    }

    /// Hex SHA-256 of the full key: the only form that is stored.
    pub fn hash_hex(&self) -> String {
        hex(&sha256(self.0.as_bytes()))
    }

    /// The key's public id (`key_` + 16 hex characters), derived from the key under a
    /// domain-separated hash so the token route can address the key's entry in the item
    /// (one conditional write) while the id reveals nothing of the key or its stored hash.
    pub fn key_id(&self) -> String {
        let digest = sha256(format!("{KEY_ID_DOMAIN}{}", self.0).as_bytes());
        format!("key_{}", hex(&digest[..8]))
    }

    /// The secret, for printing once at creation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_unique() -> Result<(), RandomError> {
        let a = ApiKey::generate()?;
        let b = ApiKey::generate()?;
        assert_ne!(a, b);
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.expose().len(), PREFIX.len() + BODY_LEN + CHECKSUM_LEN);
        assert!(a.is_well_formed());
        Ok(())
    }

    #[test]
    fn checksum_catches_a_changed_character() -> Result<(), RandomError> {
        let key = ApiKey::generate()?;
        let mut raw = key.expose().to_owned();
        let flipped = if raw.as_bytes()[10] == b'A' { "B" } else { "A" };
        raw.replace_range(10..11, flipped);
        assert!(!ApiKey::presented(&raw).is_well_formed());
        Ok(())
    }

    #[test]
    fn key_ids_are_stable_and_not_part_of_the_hash() -> Result<(), RandomError> {
        let key = ApiKey::generate()?;
        let id = key.key_id();
        assert_eq!(id, ApiKey::presented(key.expose()).key_id());
        assert_eq!(id.len(), 4 + 16);
        assert!(id.starts_with("key_"));
        assert!(!key.hash_hex().contains(&id[4..]));
        assert_ne!(id, ApiKey::generate()?.key_id());
        Ok(())
    }

    #[test]
    fn debug_never_shows_the_secret() -> Result<(), RandomError> {
        let key = ApiKey::generate()?;
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        Ok(())
    }

    #[test]
    fn hash_is_sha256_hex_of_the_full_key() {
        let key = ApiKey::presented("abc");
        assert_eq!(
            key.hash_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
