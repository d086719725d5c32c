//! Properties over arbitrary input: every request gets one of the six statuses and a contract
//! body, nothing panics, malformed token bodies are always `invalid_request`, and arbitrary
//! `DPoP` headers are always invalid proofs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lambda_http::Body;
use proptest::prelude::*;
use shared::handler::{Api, Handled, serve};
use shared::log::Outcome;
use std::sync::Arc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The response is inside the published contract for its route.
fn assert_contract(response: &lambda_http::Response<Body>, token_route: bool) {
    let status = response.status().as_u16();
    assert!(
        [200, 400, 401, 404, 429, 500].contains(&status),
        "status {status}"
    );
    let body = text(response);
    if status == 401 && !token_route {
        assert_eq!(body, "");
        return;
    }
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    if status != 200 {
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        if token_route {
            assert_eq!(keys, ["error", "error_description"]);
        } else {
            assert_eq!(keys, ["error"]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_token_requests_get_contract_responses(
        method in prop::sample::select(vec!["POST", "GET", "PUT"]),
        content_type in prop::option::of(prop::sample::select(vec![
            "application/x-www-form-urlencoded", "application/json", "text/plain",
            "application/json; charset=utf-8", "application/x-www-form-urlencoded;charset=latin1", "APPLICATION/JSON",
        ])),
        authorization in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let f = Fixture::new();
        let mut builder = http::Request::builder().method(method).uri("/auth/token");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        if let Some(auth) = authorization.and_then(|a| http::HeaderValue::from_bytes(&a).ok()) {
            builder = builder.header("authorization", auth);
        }
        let request = builder.body(Body::Binary(body)).unwrap();
        let response = runtime().block_on(call(&f.token, request, NOW));
        assert_contract(&response, true);
    }

    #[test]
    fn malformed_form_bodies_are_invalid_request(body in "[a-z_=&%]{0,200}") {
        let f = Fixture::new();
        prop_assume!(!body.contains("grant_type=client_credentials"));
        let response = runtime().block_on(call(&f.token, post_form(&body), NOW));
        let status = response.status().as_u16();
        let error = json(&response)["error"].as_str().unwrap().to_owned();
        prop_assert!(status == 400, "{} {}", status, text(&response));
        prop_assert!(error == "invalid_request" || error == "unsupported_grant_type", "{}", error);
    }

    #[test]
    fn arbitrary_bearer_tokens_and_paths_get_contract_responses(
        token in prop::collection::vec(any::<u8>(), 0..300),
        path in prop::sample::select(vec!["/customer", "/customers/ACME-1", "/customers/x", "/other"]),
    ) {
        let f = Fixture::new();
        let mut builder = http::Request::builder().method("GET").uri(path);
        let mut value = b"Bearer ".to_vec();
        value.extend(token);
        if let Ok(header) = http::HeaderValue::from_bytes(&value) {
            builder = builder.header("authorization", header);
        }
        let response = runtime().block_on(call(&f.customer, builder.body(Body::Empty).unwrap(), NOW));
        assert_contract(&response, false);
        prop_assert_ne!(response.status().as_u16(), 200);
    }

    #[test]
    fn arbitrary_dpop_headers_are_invalid_proofs_at_both_ends(
        proof in prop::collection::vec(any::<u8>(), 0..400),
        path in prop::sample::select(vec!["/customer", "/customers/ACME-1", "/customers/x"]),
    ) {
        let Ok(value) = http::HeaderValue::from_bytes(&proof) else {
            return Ok(());
        };
        let f = Fixture::new();
        let rt = runtime();
        // Token endpoint: client authenticated, so 400 invalid_dpop_proof, counted.
        let mut request = post_form(&f.form());
        request.headers_mut().insert("dpop", value.clone());
        let response = rt.block_on(call(&f.token, request, NOW));
        assert_oauth(&response, 400, "invalid_dpop_proof", "The DPoP proof is invalid.");
        // Resource, with a bound token: the DPoP proof 401.
        let key = shared::test_util::ProofKey::es256();
        let good = key.proof_for("POST", "https://api.test/auth/token", None, NOW);
        let mut request = post_form(&f.form());
        request.headers_mut().insert("dpop", http::HeaderValue::from_str(&good).unwrap());
        let issued = rt.block_on(call(&f.token, request, NOW));
        let token = json(&issued)["access_token"].as_str().unwrap().to_owned();
        let authorization = format!("DPoP {token}");
        let request = http::Request::builder()
            .method("GET")
            .uri(path)
            .header("authorization", authorization)
            .header("dpop", value)
            .body(Body::Empty)
            .unwrap();
        let response = rt.block_on(call(&f.customer, request, NOW));
        assert_contract(&response, false);
        prop_assert_eq!(response.status().as_u16(), 401);
        let challenge = header(&response, "www-authenticate");
        prop_assert_eq!(
            challenge.as_deref(),
            Some("DPoP error=\"invalid_dpop_proof\", algs=\"EdDSA ES256\"")
        );
    }
}

struct Panics;

impl Api for Panics {
    const FUNCTION: &'static str = "test";

    async fn handle(&self, request: lambda_http::Request, _now: u64) -> Handled {
        if request.uri().path() == "/boom" {
            panic!("handler bug");
        }
        if request.uri().path() == "/slow" {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
        Handled::new(
            shared::error::ApiError::RouteNotFound.response(None),
            "unknown",
            Outcome::NotFound,
        )
    }

    fn internal_error(&self) -> lambda_http::Response<Body> {
        shared::error::ApiError::Internal.response(None)
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_the_contract_500_and_the_instance_keeps_serving() {
    let api = Arc::new(Panics);
    let response = serve(api.clone(), request("GET", "/boom", &[], Body::Empty)).await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        text(&response),
        r#"{"error":"An unexpected error occurred."}"#
    );
    let next = serve(api, request("GET", "/fine", &[], Body::Empty)).await;
    assert_eq!(next.status(), 404);
}

#[tokio::test]
async fn a_request_that_would_outlive_the_lambda_deadline_answers_500_in_time() {
    use lambda_http::RequestExt;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut context = lambda_http::lambda_runtime::Context::default();
    context.deadline = now_ms + 1_500;
    let request = request("GET", "/slow", &[], Body::Empty).with_lambda_context(context);
    let started = std::time::Instant::now();
    let response = serve(Arc::new(Panics), request).await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        text(&response),
        r#"{"error":"An unexpected error occurred."}"#
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(900),
        "{elapsed:?}"
    );
    assert!(
        elapsed < std::time::Duration::from_millis(1_500),
        "answered before Lambda's deadline: {elapsed:?}"
    );
}
