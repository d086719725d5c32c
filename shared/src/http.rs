//! Response building: the headers every response carries, in one place.

use crate::rate_limit::RateInfo;
use lambda_http::{Body, Response};

/// Ordered response headers (name in lowercase, value).
pub type HeaderList = Vec<(&'static str, String)>;

/// Header sets of the contract (`docs/contract.md`, "Error envelopes").
pub struct Headers;

impl Headers {
    /// JSON, not cacheable, no sniffing: every standard response.
    pub fn standard() -> HeaderList {
        vec![
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
            ("x-content-type-options", "nosniff".into()),
        ]
    }

    /// The token endpoint adds `Pragma: no-cache` (RFC 6749 §5.1).
    pub fn token() -> HeaderList {
        let mut headers = Self::standard();
        headers.push(("pragma", "no-cache".into()));
        headers
    }

    /// Public documents (JWKS, metadata) may be cached for a few minutes.
    pub fn public_document() -> HeaderList {
        vec![
            ("content-type", "application/json".into()),
            ("cache-control", "public, max-age=300".into()),
            ("x-content-type-options", "nosniff".into()),
        ]
    }
}

/// Adds the rate-limit fields of a request that reached the limiter.
pub fn with_rate_limit(headers: &mut HeaderList, rate: Option<&RateInfo>, limited: bool) {
    if let Some(rate) = rate {
        headers.extend(rate.headers(limited));
    }
}

/// A JSON response with the given headers.
pub fn json_response(status: u16, body: &serde_json::Value, headers: HeaderList) -> Response<Body> {
    build(status, Body::Text(body.to_string()), headers)
}

/// Assembles a response; header values here are all ASCII we wrote ourselves.
pub fn build(status: u16, body: Body, headers: HeaderList) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let map = response.headers_mut();
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            map.append(name, value);
        }
    }
    response
}
