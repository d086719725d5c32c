//! A key secret as the operator changes it: a write succeeds only if the secret is still at
//! the version the command read.
//!
//! The new value is stored with `PutSecretValue` under a `ClientRequestToken` (the new
//! version's id) derived from the id of the version that was read. Secrets Manager refuses
//! a token that is already in use with a different value, so at most one write can ever
//! build on a given version: a command whose read is stale finds its token taken by the
//! write that made it stale, and starts again from a fresh read. (This holds among writers
//! that follow the rule, i.e. `customer-admin`; edit the key secrets only through it.)
//!
//! Staging the value as `AWSPENDING` and moving `AWSCURRENT` with
//! `UpdateSecretVersionStage(RemoveFromVersionId = version read)` would also guard against
//! other writers, but moto's `GetSecretValue` without a `VersionStage` does not follow such a
//! move, so the functions on the local stack would keep serving the old keys.

use crate::error::AdminError;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use shared::api_key::{hex, sha256};
use shared::keys::{KeyDocument, KeyError};

fn unavailable<E: std::error::Error + 'static>(err: E) -> AdminError {
    AdminError::Keys(KeyError::Unavailable(DisplayErrorContext(err).to_string()))
}

/// The id of the one version that may follow `version` (32 hex digits, as Secrets Manager
/// requires 32-64 characters).
pub fn successor_version(version: &str) -> String {
    let digest = sha256(format!("customer-admin/next-version/{version}").as_bytes());
    hex(&digest[..16])
}

/// A key document and the version it was read from.
#[derive(Debug, Clone)]
pub struct Read {
    pub doc: KeyDocument,
    pub version: String,
}

/// One key secret (signing or verification).
#[derive(Clone, Debug)]
pub struct KeySecret {
    client: Client,
    secret_id: String,
}

impl KeySecret {
    /// The secret `secret_id` through `client`.
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }

    async fn current(&self) -> Result<(Option<String>, Option<String>), AdminError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(unavailable)?;
        Ok((output.secret_string, output.version_id))
    }

    /// The current document and its version.
    pub async fn read(&self) -> Result<Read, AdminError> {
        let (value, version) = self.current().await?;
        let value =
            value.ok_or_else(|| KeyError::Malformed("secret has no string value".into()))?;
        let version =
            version.ok_or_else(|| KeyError::Malformed("secret value has no version id".into()))?;
        Ok(Read {
            doc: KeyDocument::parse(&value)?,
            version,
        })
    }

    /// Replaces the value with `doc` if the secret is still at `read_version`.
    /// `Ok(false)`: another command replaced it first; nothing of this one was stored.
    pub async fn replace(&self, doc: &KeyDocument, read_version: &str) -> Result<bool, AdminError> {
        let next = successor_version(read_version);
        let value = doc.to_secret_string();
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(&next)
            .secret_string(&value)
            .send()
            .await;
        let Err(err) = put else {
            return Ok(true);
        };
        // Refused (the token is taken by a competing write: `ResourceExistsException`) or
        // stored with the answer lost on the way: what the secret holds now says which.
        match self.current().await? {
            (Some(now), Some(version)) if version == next && now == value => Ok(true),
            (_, Some(version)) if version != read_version => Ok(false),
            _ => Err(unavailable(err)),
        }
    }
}
