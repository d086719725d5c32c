//! `signing-keys init|rotate` over the two secrets, safe beside other admin commands.
//!
//! One attempt: read the signing secret, then the verification secret; make the new key
//! pair; write the verification secret (public keys) conditional on the version read, then
//! the signing secret (private keys) conditional on its version. A private key is therefore
//! only ever stored after its public key has been published. If either write loses a race,
//! the whole rotation starts again from fresh reads (a public key published by a losing
//! attempt stays in the list, is retired by the next rotation and pruned 24 h later).
//!
//! The public list carries over whatever the verification secret holds, not just the
//! signing secret's copy: between another rotation's two writes, its new public key is only
//! in the verification secret, and must not be dropped while its private key is about to
//! become active.

use crate::error::AdminError;
use crate::retry::{MAX_ATTEMPTS, backoff};
use crate::secret::KeySecret;
use shared::keys::{KeyDocument, KeyError, PrivateKey};

/// What `init` or `rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new key is active; `previous` was active before (and keeps signing for one refresh
    /// interval).
    Created {
        kid: String,
        previous: Option<String>,
    },
    /// `init` found a signing key and changed nothing.
    Exists { kid: String },
}

/// The two documents after rotating `signing` at `now`, given the verification secret's
/// current document: (new signing document, new active key). The new verification
/// document is the result's public part.
pub fn plan(
    signing: &KeyDocument,
    verification: &KeyDocument,
    now: u64,
) -> Result<(KeyDocument, PrivateKey), KeyError> {
    let mut doc = signing.clone();
    let mut keys = verification.keys.clone();
    for key in &signing.keys {
        if !keys.iter().any(|k| k.kid == key.kid) {
            keys.push(key.clone());
        }
    }
    // The active key retires now, whatever a rotation that lost its race wrote about it.
    let active = signing.active.as_ref().map(|a| a.kid.as_str());
    for key in &mut keys {
        if Some(key.kid.as_str()) == active {
            key.retired_at = None;
        }
    }
    doc.keys = keys;
    let private = doc.rotate(now)?;
    Ok((doc, private))
}

/// Rotates the signing key (`init_only`: only if there is none yet). `now` is read at each
/// attempt.
pub async fn rotate(
    signing: &KeySecret,
    verification: &KeySecret,
    init_only: bool,
    now: impl Fn() -> u64,
) -> Result<Outcome, AdminError> {
    for attempt in 0..MAX_ATTEMPTS {
        let current = signing.read().await?;
        if let (true, Some(active)) = (init_only, &current.doc.active) {
            return Ok(Outcome::Exists {
                kid: active.kid.clone(),
            });
        }
        let public = verification.read().await?;
        let (next, active) = plan(&current.doc, &public.doc, now())?;
        if verification
            .replace(&next.public(), &public.version)
            .await?
            && signing.replace(&next, &current.version).await?
        {
            return Ok(Outcome::Created {
                kid: active.kid,
                previous: current.doc.active.map(|a| a.kid),
            });
        }
        backoff(attempt).await;
    }
    Err(AdminError::Concurrent(
        "the signing keys".into(),
        "no new key became active",
    ))
}
