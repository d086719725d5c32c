//! The AWS side of the CLI: the full configuration chain and the resources it works on.

use crate::secret::KeySecret;
use crate::table::CustomerTable;
use aws_config::{BehaviorVersion, SdkConfig};
use shared::config::Config;

/// The SDK configuration from `aws-config`'s whole chain: environment, `AWS_PROFILE` with
/// static keys, `credential_process`, SSO (IAM Identity Center) or assume-role profiles,
/// web identity, container and instance roles; `AWS_ENDPOINT_URL` for the local stack. The
/// functions' timeouts and retries.
pub async fn sdk_config(config: &Config) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(shared::aws::timeouts(config))
        .retry_config(shared::aws::retries(config))
        .load()
        .await
}

/// The table and both key secrets named in `config`.
pub struct Backends {
    pub table: CustomerTable,
    pub signing: Option<KeySecret>,
    pub verification: Option<KeySecret>,
}

impl Backends {
    /// Clients for the table and the secrets named in `config`, built once.
    pub async fn connect(config: &Config) -> Self {
        let sdk = sdk_config(config).await;
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let secret = |id: &Option<String>| {
            id.as_ref()
                .map(|id| KeySecret::new(secrets.clone(), id.clone()))
        };
        Self {
            table: CustomerTable::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name),
            signing: secret(&config.signing_secret_id),
            verification: secret(&config.verification_secret_id),
        }
    }
}
