//! AWS SDK configuration: explicit timeouts and retries that stay below the Lambda timeout.

use crate::config::Config;
use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use std::time::Duration;

/// Each attempt is bounded by `SDK_TIMEOUT_MS` and the whole operation by attempts × that,
/// so a slow dependency becomes a contract 500 well inside the function timeout.
pub fn timeouts(config: &Config) -> TimeoutConfig {
    let attempt = Duration::from_millis(config.sdk_timeout_ms);
    TimeoutConfig::builder()
        .connect_timeout(attempt.min(Duration::from_secs(1)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * config.sdk_max_attempts)
        .build()
}

/// At most `SDK_MAX_ATTEMPTS` attempts, standard backoff.
pub fn retries(config: &Config) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(config.sdk_max_attempts)
}

/// The functions' SDK configuration, built from what Lambda puts in the environment
/// (`AWS_REGION`, the role's `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`,
/// and `AWS_ENDPOINT_URL` for the local stack) without `aws-config`'s provider chain (profile
/// files, SSO, IMDS), which a Lambda function never uses: 0.8 MB less per binary and no
/// file or network probing in init. The admin CLI, which needs that chain, has its own.
pub fn lambda_sdk_config(config: &Config, var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider};
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
        var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
        var("AWS_SESSION_TOKEN"),
        None,
        "Environment",
    );
    let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.map(Region::new))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .timeout_config(timeouts(config))
        .retry_config(retries(config));
    if let Some(endpoint) = var("AWS_ENDPOINT_URL").filter(|e| !e.is_empty()) {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

/// The AWS resources of one function instance, built once in init from the environment.
pub struct Production {
    pub config: Config,
    pub store: crate::store::dynamo::DynamoStore,
    pub source: crate::keys::SecretsManagerSource,
}

impl Production {
    /// Reads the configuration, builds the clients, and picks the key secret named by `var`.
    pub async fn from_env(
        secret: fn(&Config) -> Option<String>,
        var: &'static str,
    ) -> Result<Self, crate::config::ConfigError> {
        let config = Config::from_env()?;
        let secret_id = secret(&config).ok_or(crate::config::ConfigError::Missing(var))?;
        let sdk = lambda_sdk_config(&config, |name| std::env::var(name).ok());
        Ok(Self {
            store: crate::store::dynamo::DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                &config.table_name,
            ),
            source: crate::keys::SecretsManagerSource::new(
                aws_sdk_secretsmanager::Client::new(&sdk),
                secret_id,
            ),
            config,
        })
    }
}

/// Opens the DynamoDB connection and loads the keys concurrently during init, so the first
/// request pays no TLS handshake. Failures only warn: the first request tries again.
pub async fn warm_up<K: crate::keys::KeySource>(
    store: &crate::store::dynamo::DynamoStore,
    keys: &crate::keys::KeyCache<K>,
) {
    let (warm, loaded) = tokio::join!(store.warm_up(), keys.load(crate::model::unix_now()));
    if let Err(err) = warm {
        tracing::warn!(error = %err, "could not open the DynamoDB connection in init");
    }
    if let Err(err) = loaded {
        tracing::warn!(error = %err, "could not load keys in init");
    }
}
