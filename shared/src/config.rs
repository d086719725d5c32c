//! Configuration from the environment (set by the SAM template or `make run`).

use std::env;

/// Settings of both functions; each reads what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    /// Secret with the private signing keys (token function).
    pub signing_secret_id: Option<String>,
    /// Secret with the public verification keys (customer function).
    pub verification_secret_id: Option<String>,
    pub issuer: String,
    pub audience: String,
    pub token_ttl_seconds: u64,
    pub key_refresh_seconds: u64,
    pub token_rate_limit: u64,
    pub api_rate_limit: u64,
    pub sdk_timeout_ms: u64,
    pub sdk_max_attempts: u32,
}

/// A missing or unparsable setting (the name only; values may be secret).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {0} must be a positive whole number")]
    NotANumber(&'static str),
}

impl Default for Config {
    fn default() -> Self {
        Self {
            table_name: "customers".into(),
            signing_secret_id: None,
            verification_secret_id: None,
            issuer: "https://api.kiss.example".into(),
            audience: "customer-api".into(),
            token_ttl_seconds: 3600,
            key_refresh_seconds: 300,
            token_rate_limit: 20,
            api_rate_limit: 120,
            sdk_timeout_ms: 2000,
            sdk_max_attempts: 2,
        }
    }
}

impl Config {
    /// Reads every setting through `var` (the process environment in production).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match var(name).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::NotANumber(name)),
            }
        };
        let text = |name: &str| var(name).filter(|v| !v.is_empty());
        Ok(Self {
            table_name: text("TABLE_NAME").ok_or(ConfigError::Missing("TABLE_NAME"))?,
            signing_secret_id: text("SIGNING_SECRET_ID"),
            verification_secret_id: text("VERIFICATION_SECRET_ID"),
            issuer: text("ISSUER").unwrap_or(defaults.issuer),
            audience: text("AUDIENCE").unwrap_or(defaults.audience),
            token_ttl_seconds: number("TOKEN_TTL_SECONDS", defaults.token_ttl_seconds)?.max(1),
            key_refresh_seconds: number("KEY_REFRESH_SECONDS", defaults.key_refresh_seconds)?,
            token_rate_limit: number("TOKEN_RATE_LIMIT", defaults.token_rate_limit)?,
            api_rate_limit: number("API_RATE_LIMIT", defaults.api_rate_limit)?,
            sdk_timeout_ms: number("SDK_TIMEOUT_MS", defaults.sdk_timeout_ms)?.max(1),
            sdk_max_attempts: u32::try_from(number("SDK_MAX_ATTEMPTS", 2)?.clamp(1, 5))
                .unwrap_or(2),
        })
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_and_numbers_are_checked() {
        let vars = HashMap::from([("TABLE_NAME", "t"), ("TOKEN_TTL_SECONDS", "600")]);
        let config = Config::from_lookup(|n| vars.get(n).map(|v| v.to_string()));
        let config = config.ok();
        assert_eq!(config.as_ref().map(|c| c.token_ttl_seconds), Some(600));
        assert_eq!(config.as_ref().map(|c| c.api_rate_limit), Some(120));
        let bad = HashMap::from([("TABLE_NAME", "t"), ("API_RATE_LIMIT", "lots")]);
        let err = Config::from_lookup(|n| bad.get(n).map(|v| v.to_string()));
        assert!(matches!(
            err,
            Err(ConfigError::NotANumber("API_RATE_LIMIT"))
        ));
        assert!(matches!(
            Config::from_lookup(|_| None),
            Err(ConfigError::Missing("TABLE_NAME"))
        ));
    }
}
