//! The public error contract: the two envelopes of the Errors page and the bearer 401.
//!
//! Every error response of the API is built here, so the texts of
//! published Errors page (`docs/errors.md`) live in exactly one place.

use crate::http::{HeaderList, Headers, json_response, with_rate_limit};
use crate::rate_limit::RateInfo;
use lambda_http::{Body, Response};

/// Fixed texts of the standard envelope.
pub mod text {
    pub const NOT_FOUND: &str = "Not found.";
    pub const CUSTOMER_NOT_FOUND: &str = "Customer not found.";
    pub const UNEXPECTED: &str = "An unexpected error occurred.";
    pub const TOO_MANY_REQUESTS: &str =
        "Too many requests. Retry after the time given in Retry-After.";
    pub const TOO_MANY_TOKEN_REQUESTS: &str =
        "Too many token requests. Retry after the time given in Retry-After.";
    pub const CREDENTIALS_REQUIRED: &str = "client_id and client_secret are required.";
    pub const INVALID_CLIENT: &str = "Invalid client credentials.";
    pub const UNSUPPORTED_GRANT_TYPE: &str = "Only 'client_credentials' grant type is supported.";
    pub const INVALID_SCOPE: &str = "The requested scope is invalid.";
    pub const ONLY_POST: &str = "The token endpoint accepts only POST.";
    pub const BODY_TOO_LARGE: &str = "The request body is too large.";
    pub const BAD_CONTENT_TYPE: &str =
        "Content-Type must be application/x-www-form-urlencoded or application/json.";
    pub const MALFORMED_BODY: &str = "The request body is malformed.";
    pub const REPEATED_PARAMETER: &str = "A request parameter was repeated.";
    pub const GRANT_TYPE_REQUIRED: &str = "grant_type is required.";
    pub const MALFORMED_BASIC: &str = "The Authorization header is malformed.";
    pub const TWO_AUTH_METHODS: &str = "Use only one client authentication method.";
    pub const TOKEN_REQUIRED: &str = "token is required.";
    pub const ASSERTION_INCOMPLETE: &str =
        "client_assertion and client_assertion_type are required together.";
    pub const ASSERTION_TYPE_UNSUPPORTED: &str = "The client assertion type is not supported.";
    pub const ENDPOINT_ONLY_POST: &str = "This endpoint accepts only POST.";
    pub const INVALID_DPOP_PROOF: &str = "The DPoP proof is invalid.";
}

/// Everything the token endpoint can answer with instead of a token (OAuth envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// 400 `invalid_request` with one of the fixed descriptions.
    InvalidRequest(&'static str),
    /// 401 `invalid_client`; `basic` adds the Basic challenge.
    InvalidClient { basic: bool },
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 400 `invalid_scope`.
    InvalidScope,
    /// 400 `invalid_dpop_proof` (RFC 9449 §5).
    InvalidDpopProof,
    /// 429 `too_many_requests`.
    TooManyRequests,
    /// 500 `server_error`.
    ServerError,
}

impl OAuthError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient { .. } => 401,
            Self::TooManyRequests => 429,
            Self::ServerError => 500,
            _ => 400,
        }
    }

    /// The OAuth error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::TooManyRequests => "too_many_requests",
            Self::ServerError => "server_error",
        }
    }

    /// The human-readable description.
    pub fn description(&self) -> &'static str {
        match self {
            Self::InvalidRequest(text) => text,
            Self::InvalidClient { .. } => text::INVALID_CLIENT,
            Self::UnsupportedGrantType => text::UNSUPPORTED_GRANT_TYPE,
            Self::InvalidScope => text::INVALID_SCOPE,
            Self::InvalidDpopProof => text::INVALID_DPOP_PROOF,
            Self::TooManyRequests => text::TOO_MANY_TOKEN_REQUESTS,
            Self::ServerError => text::UNEXPECTED,
        }
    }

    /// Renders the OAuth envelope with the token endpoint's headers.
    pub fn response(&self, rate: Option<&RateInfo>) -> Response<Body> {
        let body =
            serde_json::json!({"error": self.code(), "error_description": self.description()});
        let mut headers = Headers::token();
        if let Self::InvalidClient { basic: true } = self {
            headers.push(("www-authenticate", "Basic realm=\"customer-api\"".into()));
        }
        with_rate_limit(&mut headers, rate, self.status() == 429);
        json_response(self.status(), &body, headers)
    }
}

/// Everything the other routes can answer with instead of a record (standard envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404 for unknown paths and methods.
    RouteNotFound,
    /// 404 for a customer that is not the caller's or no longer exists.
    CustomerNotFound,
    /// 401 with an empty body and the Bearer challenge.
    InvalidToken,
    /// 401 with an empty body and the DPoP challenge: a DPoP-scheme token that is bad,
    /// expired, revoked or not bound.
    DpopInvalidToken,
    /// 401 with an empty body and the DPoP challenge: a missing, bad or replayed proof, or
    /// one whose key is not the token's.
    DpopInvalidProof,
    /// 429 standard envelope.
    TooManyRequests,
    /// 500 standard envelope.
    Internal,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::RouteNotFound | Self::CustomerNotFound => 404,
            Self::InvalidToken | Self::DpopInvalidToken | Self::DpopInvalidProof => 401,
            Self::TooManyRequests => 429,
            Self::Internal => 500,
        }
    }

    /// Renders the standard envelope (or the bearer 401).
    pub fn response(&self, rate: Option<&RateInfo>) -> Response<Body> {
        let mut headers = Headers::standard();
        with_rate_limit(&mut headers, rate, self.status() == 429);
        let message = match self {
            Self::InvalidToken => {
                return unauthorized(headers, "Bearer error=\"invalid_token\"");
            }
            Self::DpopInvalidToken => return unauthorized(headers, DPOP_INVALID_TOKEN),
            Self::DpopInvalidProof => return unauthorized(headers, DPOP_INVALID_PROOF),
            Self::RouteNotFound => text::NOT_FOUND,
            Self::CustomerNotFound => text::CUSTOMER_NOT_FOUND,
            Self::TooManyRequests => text::TOO_MANY_REQUESTS,
            Self::Internal => text::UNEXPECTED,
        };
        json_response(
            self.status(),
            &serde_json::json!({ "error": message }),
            headers,
        )
    }
}

/// The DPoP challenge of a bad token (RFC 9449 §7.1).
pub const DPOP_INVALID_TOKEN: &str = "DPoP error=\"invalid_token\", algs=\"EdDSA ES256\"";
/// The DPoP challenge of a bad proof.
pub const DPOP_INVALID_PROOF: &str = "DPoP error=\"invalid_dpop_proof\", algs=\"EdDSA ES256\"";

/// 401 with no body and exactly one `WWW-Authenticate: <challenge>`.
fn unauthorized(mut headers: HeaderList, challenge: &str) -> Response<Body> {
    headers.retain(|(name, _)| *name != "content-type");
    headers.push(("www-authenticate", challenge.into()));
    crate::http::build(401, Body::Empty, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(response: &Response<Body>) -> (u16, Vec<(String, String)>, String) {
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        let body = match response.body() {
            Body::Text(t) => t.clone(),
            Body::Empty => String::new(),
            _ => "<binary>".into(),
        };
        (response.status().as_u16(), headers, body)
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const JSON: [(&str, &str); 3] = [
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ];

    #[test]
    fn oauth_errors_match_the_errors_page_byte_for_byte() {
        let token_headers = [&JSON[..], &[("pragma", "no-cache")]].concat();
        let cases = [
            (
                OAuthError::InvalidClient { basic: false },
                401,
                r#"{"error":"invalid_client","error_description":"Invalid client credentials."}"#,
            ),
            (
                OAuthError::UnsupportedGrantType,
                400,
                r#"{"error":"unsupported_grant_type","error_description":"Only 'client_credentials' grant type is supported."}"#,
            ),
            (
                OAuthError::InvalidRequest(text::CREDENTIALS_REQUIRED),
                400,
                r#"{"error":"invalid_request","error_description":"client_id and client_secret are required."}"#,
            ),
            (
                OAuthError::InvalidScope,
                400,
                r#"{"error":"invalid_scope","error_description":"The requested scope is invalid."}"#,
            ),
            (
                OAuthError::InvalidDpopProof,
                400,
                r#"{"error":"invalid_dpop_proof","error_description":"The DPoP proof is invalid."}"#,
            ),
            (
                OAuthError::ServerError,
                500,
                r#"{"error":"server_error","error_description":"An unexpected error occurred."}"#,
            ),
        ];
        for (error, status, body) in cases {
            assert_eq!(
                parts(&error.response(None)),
                (status, h(&token_headers), body.to_owned())
            );
        }
    }

    #[test]
    fn basic_auth_failure_adds_the_basic_challenge() {
        let (status, headers, _) = parts(&OAuthError::InvalidClient { basic: true }.response(None));
        assert_eq!(status, 401);
        assert!(headers.contains(&(
            "www-authenticate".into(),
            "Basic realm=\"customer-api\"".into()
        )));
    }

    #[test]
    fn standard_errors_match_the_errors_page_byte_for_byte() {
        let cases = [
            (
                ApiError::CustomerNotFound,
                404,
                r#"{"error":"Customer not found."}"#,
            ),
            (ApiError::RouteNotFound, 404, r#"{"error":"Not found."}"#),
            (
                ApiError::Internal,
                500,
                r#"{"error":"An unexpected error occurred."}"#,
            ),
        ];
        for (error, status, body) in cases {
            assert_eq!(
                parts(&error.response(None)),
                (status, h(&JSON), body.to_owned())
            );
        }
    }

    #[test]
    fn bearer_failure_is_401_with_empty_body_and_exact_challenge() {
        let (status, headers, body) = parts(&ApiError::InvalidToken.response(None));
        assert_eq!(status, 401);
        assert_eq!(body, "");
        assert_eq!(
            headers,
            h(&[
                ("cache-control", "no-store"),
                ("x-content-type-options", "nosniff"),
                ("www-authenticate", "Bearer error=\"invalid_token\""),
            ])
        );
    }

    #[test]
    fn dpop_failures_are_401_with_empty_body_and_the_dpop_challenge() {
        for (error, challenge) in [
            (
                ApiError::DpopInvalidToken,
                "DPoP error=\"invalid_token\", algs=\"EdDSA ES256\"",
            ),
            (
                ApiError::DpopInvalidProof,
                "DPoP error=\"invalid_dpop_proof\", algs=\"EdDSA ES256\"",
            ),
        ] {
            assert_eq!(
                parts(&error.response(None)),
                (
                    401,
                    h(&[
                        ("cache-control", "no-store"),
                        ("x-content-type-options", "nosniff"),
                        ("www-authenticate", challenge),
                    ]),
                    String::new()
                )
            );
        }
    }

    #[test]
    fn rate_limited_responses_carry_retry_after() {
        let rate = RateInfo::new(
            crate::rate_limit::Bucket::Token,
            20,
            20,
            crate::rate_limit::window_start(1_800_000_050),
            1_800_000_050,
        );
        let (status, headers, body) = parts(&OAuthError::TooManyRequests.response(Some(&rate)));
        assert_eq!(status, 429);
        assert_eq!(
            body,
            r#"{"error":"too_many_requests","error_description":"Too many token requests. Retry after the time given in Retry-After."}"#
        );
        assert!(headers.contains(&("retry-after".into(), "10".into())));
        assert!(headers.contains(&("x-ratelimit-remaining".into(), "0".into())));
    }
}
