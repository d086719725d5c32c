//! AWS SDK configuration: explicit timeouts and retries that stay below the Lambda timeout.

use crate::config::Config;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Loads the shared SDK configuration (region, credentials, `AWS_ENDPOINT_URL`) once.
///
/// Each attempt is bounded by `SDK_TIMEOUT_MS` and the whole operation by attempts × that,
/// so a slow dependency becomes a contract 500 well inside the function timeout.
pub async fn sdk_config(config: &Config) -> SdkConfig {
    let attempt = Duration::from_millis(config.sdk_timeout_ms);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(attempt.min(Duration::from_secs(1)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * config.sdk_max_attempts)
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(config.sdk_max_attempts))
        .load()
        .await
}
