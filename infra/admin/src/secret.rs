//! A key secret as the operator changes it: a write replaces the value only if the secret's
//! `AWSCURRENT` version is still the one the command read.
//!
//! `PutSecretValue` stores the new value as a version staged `AWSPENDING` (readers, which ask
//! for `AWSCURRENT`, do not see it), then `UpdateSecretVersionStage` moves `AWSCURRENT` to it
//! *from the version that was read*: Secrets Manager refuses the move when `AWSCURRENT` is no
//! longer on that version, i.e. when another command replaced the value in between.

use crate::error::AdminError;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use shared::keys::{KeyDocument, KeyError};

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

fn unavailable<E: std::error::Error + 'static>(err: E) -> AdminError {
    AdminError::Keys(KeyError::Unavailable(DisplayErrorContext(err).to_string()))
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
            .version_stage(CURRENT)
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

    /// Replaces the value with `doc` if the current version is still `read_version`.
    /// `Ok(false)`: another command replaced it first; nothing of this one became current.
    pub async fn replace(&self, doc: &KeyDocument, read_version: &str) -> Result<bool, AdminError> {
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(doc.to_secret_string())
            .version_stages(PENDING)
            .send()
            .await
            .map_err(unavailable)?;
        let new_version = put
            .version_id
            .ok_or_else(|| KeyError::Malformed("PutSecretValue returned no version id".into()))?;
        let moved = self
            .client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(CURRENT)
            .move_to_version_id(&new_version)
            .remove_from_version_id(read_version)
            .send()
            .await;
        let written = match moved {
            Ok(_) => true,
            // Refused (the label is no longer on the version read) or lost on the way: where
            // `AWSCURRENT` is now says which.
            Err(err) => match self.current().await?.1 {
                Some(now) if now == new_version => true,
                Some(now) if now != read_version => false,
                _ => return Err(unavailable(err)),
            },
        };
        if written {
            // Tidy only: the stage is not read by anyone, and a failure here changes nothing.
            let _ = self
                .client
                .update_secret_version_stage()
                .secret_id(&self.secret_id)
                .version_stage(PENDING)
                .remove_from_version_id(&new_version)
                .send()
                .await;
        }
        Ok(written)
    }
}
