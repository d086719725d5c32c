//! `GET /customer` and `GET /customers/{code}`: input is the Authorization header value, with
//! every `$T` replaced by a valid access token of this run. Each input is sent to three paths
//! over one fresh store (limit 2 per window), so a valid token reaches 404, 200 and 429.
#![no_main]

use customer_api_fuzz::{assert_contract, call, fixture};
use lambda_http::Body;
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 3] = ["/customers/OTHER-9", "/customer", "/customers/ACME-1"];

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let value = fixture.with_token(data);
    // Bytes a header value cannot hold (e.g. control characters) never reach the API.
    let header = http::HeaderValue::from_bytes(&value).ok();
    let api = fixture.customer_api();
    for path in PATHS {
        let mut builder = http::Request::builder().method("GET").uri(path);
        if let Some(header) = &header {
            builder = builder.header("authorization", header.clone());
        }
        let response = call(&api, builder.body(Body::Empty).expect("request"));
        assert_contract(&response, false);
    }
});
