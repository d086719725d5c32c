//! One structured JSON line per request, in CloudWatch Embedded Metric Format, so the same
//! line is the access log and the source of the `TokensIssued`, `AuthenticationFailures`
//! and `RateLimited` metrics. Never contains credentials, tokens or headers.

use std::time::{SystemTime, UNIX_EPOCH};

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
            "level": "INFO",
            "message": "request",
            "Function": self.function,
            "request_id": self.request_id,
            "route": self.route,
            "status": self.status,
            "latency_ms": (self.latency_ms * 1000.0).round() / 1000.0,
            "customer_code": self.customer_code,
            "outcome": self.outcome.label(),
            "TokensIssued": count(Outcome::TokenIssued),
            "AuthenticationFailures": count(Outcome::InvalidClient) + count(Outcome::InvalidToken),
            "RateLimited": count(Outcome::RateLimited),
        })
    }

    /// Writes the line to stdout (CloudWatch Logs in Lambda).
    pub fn emit(&self) {
        println!("{}", self.to_json());
    }
}

/// Installs the `tracing` subscriber for warnings and errors: JSON when
/// `AWS_LAMBDA_LOG_FORMAT=JSON` (as the template sets), level from `AWS_LAMBDA_LOG_LEVEL` or
/// `RUST_LOG` (a plain level; default INFO), like the runtime's default subscriber.
pub fn init() {
    use std::str::FromStr;
    use tracing_subscriber::filter::LevelFilter;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|level| LevelFilter::from_str(level.trim()).ok())
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}
