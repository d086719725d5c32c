//! Where key documents come from: Secrets Manager in production, memory in tests
//! (`test-util`).

use super::{KeyDocument, KeyError};
use std::future::Future;
use std::sync::Arc;

/// Where key documents come from (Secrets Manager in production).
pub trait KeySource: Send + Sync {
    /// Fetches the current document.
    fn fetch(&self) -> impl Future<Output = Result<KeyDocument, KeyError>> + Send;
}

/// A secret in Secrets Manager.
#[derive(Clone, Debug)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    /// A source over one secret, with a client built once in `main`.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }

    /// Reads the raw secret string.
    pub async fn read(&self) -> Result<String, KeyError> {
        self.read_version().await.map(|(value, _)| value)
    }

    /// Reads the raw secret string and the server-side creation time (Unix seconds) of the
    /// version it came from.
    async fn read_version(&self) -> Result<(String, Option<u64>), KeyError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                KeyError::Unavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )
            })?;
        let created = output
            .created_date
            .and_then(|date| u64::try_from(date.secs()).ok());
        let value = output
            .secret_string
            .ok_or_else(|| KeyError::Malformed("secret has no string value".into()))?;
        Ok((value, created))
    }

    /// The client and secret id, for the `test-util` fixtures.
    #[cfg(feature = "test-util")]
    pub(crate) fn parts(&self) -> (&aws_sdk_secretsmanager::Client, &str) {
        (&self.client, &self.secret_id)
    }
}

impl KeySource for SecretsManagerSource {
    async fn fetch(&self) -> Result<KeyDocument, KeyError> {
        let (value, created) = self.read_version().await?;
        let mut doc = KeyDocument::parse(&value)?;
        doc.published_at = created;
        Ok(doc)
    }
}

/// An in-memory key source for tests: counts fetches and can be made to fail.
#[cfg(feature = "test-util")]
#[derive(Default)]
pub struct MemoryKeySource {
    doc: std::sync::Mutex<KeyDocument>,
    fetches: std::sync::atomic::AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
}

#[cfg(feature = "test-util")]
impl MemoryKeySource {
    /// A source serving `doc`.
    pub fn new(doc: KeyDocument) -> Self {
        Self {
            doc: std::sync::Mutex::new(doc),
            ..Self::default()
        }
    }

    /// Replaces the served document.
    pub fn set(&self, doc: KeyDocument) {
        if let Ok(mut current) = self.doc.lock() {
            *current = doc;
        }
    }

    /// Fetches so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes fetches fail (or succeed again).
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(feature = "test-util")]
impl KeySource for MemoryKeySource {
    async fn fetch(&self) -> Result<KeyDocument, KeyError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(KeyError::Unavailable("memory source set to fail".into()));
        }
        self.doc
            .lock()
            .map(|d| d.clone())
            .map_err(|_| KeyError::Unavailable("poisoned".into()))
    }
}

impl<T: KeySource> KeySource for Arc<T> {
    fn fetch(&self) -> impl Future<Output = Result<KeyDocument, KeyError>> + Send {
        self.as_ref().fetch()
    }
}
