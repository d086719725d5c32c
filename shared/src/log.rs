//! One structured JSON line per request, in CloudWatch Embedded Metric Format, so the same
//! line is the access log and the source of the `TokensIssued`, `AuthenticationFailures`
//! and `RateLimited` metrics. Never contains credentials, tokens or headers.
//!
//! Lambda filters application logs by the JSON `level` of each line, and counts a line
//! without a valid `level` or RFC 3339 `timestamp` as INFO (README, "Logs and metrics at
//! every log level"). So every line here carries both, and the request line is never below
//! the configured level: the alarms count what it carries.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_subscriber::filter::LevelFilter;

/// The metrics namespace of the template's alarms.
pub const NAMESPACE: &str = "CustomerApi";

/// What a request came to, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    TokenIssued,
    InvalidRequest,
    InvalidClient,
    InvalidScope,
    RateLimited,
    Found,
    NotFound,
    InvalidToken,
    /// A missing, bad or replayed DPoP proof.
    InvalidDpopProof,
    Document,
    ServerError,
    TokensRevoked,
    NothingRevoked,
    Introspected,
}

impl Outcome {
    /// Label in the log line.
    pub fn label(self) -> &'static str {
        match self {
            Self::TokenIssued => "token_issued",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidScope => "invalid_scope",
            Self::RateLimited => "rate_limited",
            Self::Found => "found",
            Self::NotFound => "not_found",
            Self::InvalidToken => "invalid_token",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::Document => "document",
            Self::ServerError => "server_error",
            Self::TokensRevoked => "tokens_revoked",
            Self::NothingRevoked => "nothing_revoked",
            Self::Introspected => "introspected",
        }
    }
}

/// The summary of one request.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    pub function: &'static str,
    pub request_id: String,
    /// Route template, never the raw path (which could carry anything).
    pub route: &'static str,
    pub status: u16,
    pub latency_ms: f64,
    pub customer_code: Option<String>,
    pub outcome: Outcome,
}

impl RequestSummary {
    /// The EMF log line.
    pub fn to_json(&self) -> serde_json::Value {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let timestamp = i128::try_from(millis)
            .ok()
            .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        let count = |o: Outcome| u8::from(self.outcome == o);
        let metric = |name: &str| serde_json::json!({"Name": name, "Unit": "Count"});
        serde_json::json!({
            "_aws": {
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": [metric("TokensIssued"), metric("AuthenticationFailures"), metric("RateLimited")],
                }],
            },
            "level": *SUMMARY_LEVEL,
            "timestamp": timestamp,
            "message": "request",
            "Function": self.function,
            "request_id": self.request_id,
            "route": self.route,
            "status": self.status,
            "latency_ms": (self.latency_ms * 1000.0).round() / 1000.0,
            "customer_code": self.customer_code,
            "outcome": self.outcome.label(),
            "TokensIssued": count(Outcome::TokenIssued),
            "AuthenticationFailures": count(Outcome::InvalidClient)
                + count(Outcome::InvalidToken)
                + count(Outcome::InvalidDpopProof),
            "RateLimited": count(Outcome::RateLimited),
        })
    }

    /// Writes the line to stdout (CloudWatch Logs in Lambda).
    pub fn emit(&self) {
        println!("{}", self.to_json());
    }
}

/// The level of the request line for an application log level: INFO, or the configured
/// level when that is more severe, so Lambda's filter never drops the line the metrics and
/// alarms come from.
pub fn summary_level(configured: Option<&str>) -> &'static str {
    match configured.map(str::trim) {
        Some(l) if l.eq_ignore_ascii_case("WARN") => "WARN",
        Some(l) if l.eq_ignore_ascii_case("ERROR") => "ERROR",
        Some(l) if l.eq_ignore_ascii_case("FATAL") => "FATAL",
        _ => "INFO",
    }
}

/// The request line's level for this instance (`AWS_LAMBDA_LOG_LEVEL` is what Lambda's filter
/// applies; it does not change while an instance lives).
static SUMMARY_LEVEL: LazyLock<&'static str> =
    LazyLock::new(|| summary_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref()));

/// The `tracing` level for a configured level name (Lambda's six, or a plain `RUST_LOG`
/// level); INFO when absent or unreadable. `tracing` has no FATAL, and at FATAL Lambda drops
/// every ERROR line, so FATAL turns `tracing` off.
pub fn tracing_level(configured: Option<&str>) -> LevelFilter {
    use std::str::FromStr;
    match configured.map(str::trim) {
        Some(l) if l.eq_ignore_ascii_case("FATAL") => LevelFilter::OFF,
        Some(l) if !l.is_empty() => LevelFilter::from_str(l).unwrap_or(LevelFilter::INFO),
        _ => LevelFilter::INFO,
    }
}

/// Crates whose events follow the configured level; every other crate is capped at INFO.
const OWN_CRATES: [&str; 3] = ["shared", "token", "customer"];

/// The per-crate filter: this workspace's crates at `level`, dependencies at `level` but
/// never below INFO. At DEBUG and TRACE the dependencies log what passes through them:
/// `lambda_runtime` the raw event (headers, `Authorization`, a `client_secret` body), the AWS
/// SDK every signed request (its `authorization` header, the role's session token).
pub fn targets(level: LevelFilter) -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_default(level.min(LevelFilter::INFO))
        .with_targets(OWN_CRATES.map(|c| (c, level)))
}

/// Installs the `tracing` subscriber for warnings and errors: JSON lines with `level` and an
/// RFC 3339 `timestamp` when `AWS_LAMBDA_LOG_FORMAT=JSON` (as the template sets), level from
/// `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` (a plain level; default INFO), dependencies never
/// below INFO ([`targets`]).
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let configured = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let level = tracing_level(configured.as_deref());
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .with_max_level(level);
    if json {
        fmt.json().finish().with(targets(level)).init();
    } else {
        // Lambda stamps text lines itself.
        fmt.without_time().finish().with(targets(level)).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_is_never_below_the_configured_level() {
        for (configured, expected) in [
            (None, "INFO"),
            (Some("TRACE"), "INFO"),
            (Some("debug"), "INFO"),
            (Some("INFO"), "INFO"),
            (Some("WARN"), "WARN"),
            (Some("error"), "ERROR"),
            (Some(" FATAL "), "FATAL"),
            (Some("nonsense"), "INFO"),
        ] {
            assert_eq!(summary_level(configured), expected, "{configured:?}");
        }
    }

    #[test]
    fn tracing_level_reads_lambdas_names_and_defaults_to_info() {
        for (configured, expected) in [
            (None, LevelFilter::INFO),
            (Some(""), LevelFilter::INFO),
            (Some("TRACE"), LevelFilter::TRACE),
            (Some("DEBUG"), LevelFilter::DEBUG),
            (Some("info"), LevelFilter::INFO),
            (Some("WARN"), LevelFilter::WARN),
            (Some("ERROR"), LevelFilter::ERROR),
            (Some("FATAL"), LevelFilter::OFF),
            (Some("info,hyper=debug"), LevelFilter::INFO),
        ] {
            assert_eq!(tracing_level(configured), expected, "{configured:?}");
        }
    }

    #[test]
    fn dependencies_never_log_below_info() {
        let filter = targets(LevelFilter::TRACE);
        for target in ["shared", "shared::token_api", "token", "customer"] {
            assert!(
                filter.would_enable(target, &tracing::Level::TRACE),
                "{target}"
            );
        }
        for target in [
            "lambda_runtime::layers::api_response",
            "lambda_http",
            "aws_sigv4::http_request::sign",
            "aws_smithy_runtime::client::orchestrator",
            "hyper_util::client",
        ] {
            assert!(
                !filter.would_enable(target, &tracing::Level::DEBUG),
                "{target}"
            );
            assert!(
                filter.would_enable(target, &tracing::Level::INFO),
                "{target}"
            );
        }
        let quiet = targets(LevelFilter::WARN);
        assert!(!quiet.would_enable("shared", &tracing::Level::INFO));
        assert!(!quiet.would_enable("lambda_runtime", &tracing::Level::INFO));
        assert!(quiet.would_enable("lambda_runtime", &tracing::Level::WARN));
    }

    #[test]
    fn request_line_carries_level_and_rfc3339_timestamp() {
        let line = RequestSummary {
            function: "token",
            request_id: "r-1".into(),
            route: "POST /auth/token",
            status: 200,
            latency_ms: 1.5,
            customer_code: None,
            outcome: Outcome::TokenIssued,
        }
        .to_json();
        assert_eq!(
            line["level"], "INFO",
            "no AWS_LAMBDA_LOG_LEVEL in unit tests"
        );
        let stamp = line["timestamp"].as_str().unwrap_or_default();
        let parsed =
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339);
        assert!(stamp.ends_with('Z') && parsed.is_ok(), "{stamp}");
        let millis = line["_aws"]["Timestamp"].as_u64().unwrap_or_default();
        let parsed_millis = parsed.map_or(0, |t| t.unix_timestamp_nanos() / 1_000_000);
        assert_eq!(
            i128::from(millis),
            parsed_millis,
            "one instant in both fields"
        );
    }
}
