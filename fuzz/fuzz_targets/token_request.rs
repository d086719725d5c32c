//! `POST /auth/token`: input is `content-type \n authorization \n body` (a missing line is an
//! absent header). `token_request::parse` must not panic on any bytes, and the whole
//! `TokenApi::handle` must answer inside the contract. The fixture's credentials are
//! `ACME-1` / `customer_api_fuzz::SECRET` (a well-formed key), so inputs can also reach
//! authentication, scopes, signing and, by repeating an accepted request (limit 1), the 429.
#![no_main]

use customer_api_fuzz::{assert_contract, call, fixture, split_token_input};
use lambda_http::Body;
use libfuzzer_sys::fuzz_target;
use shared::token_request::{RawTokenRequest, parse};

fuzz_target!(|data: &[u8]| {
    let (content_type, authorization, body) = split_token_input(data);
    let _ = parse(&RawTokenRequest {
        content_type,
        authorization,
        body,
    });

    let fixture = fixture();
    let api = fixture.token_api();
    let request = || {
        let mut builder = http::Request::builder().method("POST").uri("/auth/token");
        // Bytes a header value cannot hold (e.g. control characters) never reach the API.
        for (name, value) in [
            ("content-type", content_type),
            ("authorization", authorization),
        ] {
            if let Some(value) = value.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
                builder = builder.header(name, value);
            }
        }
        builder.body(Body::Binary(body.to_vec())).expect("request")
    };
    let first = call(&api, request());
    assert_contract(&first, true);
    if first.status() == 200 {
        let again = call(&api, request());
        assert_contract(&again, true);
    }
});
