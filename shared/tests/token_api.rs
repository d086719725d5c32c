//! `POST /auth/token` and the `/.well-known` documents: one test per documented response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lambda_http::Body;
use shared::api_key::ApiKey;
use shared::error::text;
use shared::model::CustomerStatus;

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn other_methods_on_the_token_endpoint_are_invalid_request() {
    let f = Fixture::new();
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let response = call(
            &f.token,
            request(method, "/auth/token", &[], Body::Empty),
            NOW,
        )
        .await;
        assert_oauth(
            &response,
            400,
            "invalid_request",
            "The token endpoint accepts only POST.",
        );
    }
}

#[tokio::test]
async fn body_over_8_kib_is_invalid_request() {
    let f = Fixture::new();
    let body = format!("{}&pad={}", f.form(), "x".repeat(8 * 1024));
    let response = call(&f.token, post_form(&body), NOW).await;
    assert_oauth(&response, 400, "invalid_request", text::BODY_TOO_LARGE);
}

#[tokio::test]
async fn missing_or_other_content_type_is_invalid_request() {
    let f = Fixture::new();
    for headers in [
        vec![],
        vec![("content-type", "text/plain")],
        vec![("content-type", "multipart/form-data")],
    ] {
        let response = call(
            &f.token,
            request("POST", "/auth/token", &headers, Body::Text(f.form())),
            NOW,
        )
        .await;
        assert_oauth(&response, 400, "invalid_request", text::BAD_CONTENT_TYPE);
    }
}

#[tokio::test]
async fn malformed_json_is_invalid_request() {
    let f = Fixture::new();
    for body in ["{", "[]", "{\"grant_type\": 5}", "null", "\"x\""] {
        let r = request(
            "POST",
            "/auth/token",
            &[("content-type", "application/json")],
            Body::Text(body.into()),
        );
        assert_oauth(
            &call(&f.token, r, NOW).await,
            400,
            "invalid_request",
            text::MALFORMED_BODY,
        );
    }
}

#[tokio::test]
async fn repeated_parameter_is_invalid_request() {
    let f = Fixture::new();
    let body = format!("{}&grant_type=client_credentials", f.form());
    assert_oauth(
        &call(&f.token, post_form(&body), NOW).await,
        400,
        "invalid_request",
        text::REPEATED_PARAMETER,
    );
}

#[tokio::test]
async fn missing_grant_type_is_invalid_request() {
    let f = Fixture::new();
    let body = format!("client_id={CODE}&client_secret={}", f.api_key.expose());
    assert_oauth(
        &call(&f.token, post_form(&body), NOW).await,
        400,
        "invalid_request",
        text::GRANT_TYPE_REQUIRED,
    );
}

#[tokio::test]
async fn other_grant_type_is_unsupported_grant_type() {
    let f = Fixture::new();
    for grant in ["password", "authorization_code", "CLIENT_CREDENTIALS"] {
        let body = format!("grant_type={grant}&client_id={CODE}&client_secret=x");
        assert_oauth(
            &call(&f.token, post_form(&body), NOW).await,
            400,
            "unsupported_grant_type",
            "Only 'client_credentials' grant type is supported.",
        );
    }
}

#[tokio::test]
async fn missing_or_empty_credentials_are_invalid_request() {
    let f = Fixture::new();
    for body in [
        "grant_type=client_credentials".to_owned(),
        format!("grant_type=client_credentials&client_id={CODE}"),
        format!("grant_type=client_credentials&client_id={CODE}&client_secret="),
        "grant_type=client_credentials&client_secret=abc".to_owned(),
    ] {
        assert_oauth(
            &call(&f.token, post_form(&body), NOW).await,
            400,
            "invalid_request",
            "client_id and client_secret are required.",
        );
    }
    assert_eq!(
        f.store.calls(),
        0,
        "no store call for a request that fails parsing"
    );
}

#[tokio::test]
async fn basic_and_body_credentials_together_are_invalid_request() {
    let f = Fixture::new();
    let auth = basic(CODE, f.api_key.expose());
    let r = request(
        "POST",
        "/auth/token",
        &[("content-type", FORM), ("authorization", &auth)],
        Body::Text(f.form()),
    );
    assert_oauth(
        &call(&f.token, r, NOW).await,
        400,
        "invalid_request",
        text::TWO_AUTH_METHODS,
    );
}

#[tokio::test]
async fn unknown_customer_wrong_key_suspended_and_revoked_are_the_same_invalid_client() {
    let f = Fixture::new();
    let wrong_key = format!(
        "grant_type=client_credentials&client_id={CODE}&client_secret={}",
        ApiKey::generate().unwrap().expose()
    );
    let unknown = format!(
        "grant_type=client_credentials&client_id=NOBODY&client_secret={}",
        f.api_key.expose()
    );
    let mut bodies = Vec::new();
    for body in [&wrong_key, &unknown] {
        let response = call(&f.token, post_form(body), NOW).await;
        assert_oauth(
            &response,
            401,
            "invalid_client",
            "Invalid client credentials.",
        );
        assert_eq!(header(&response, "www-authenticate"), None);
        assert_eq!(header(&response, "x-ratelimit-limit"), None);
        bodies.push(text(&response));
    }
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.status = CustomerStatus::Suspended;
    f.store.put(customer.clone());
    let suspended = call(&f.token, post_form(&f.form()), NOW).await;
    assert_oauth(
        &suspended,
        401,
        "invalid_client",
        "Invalid client credentials.",
    );
    customer.status = CustomerStatus::Active;
    customer
        .keys
        .values_mut()
        .for_each(|k| k.expires_at = Some(NOW - 1));
    f.store.put(customer);
    let expired = call(&f.token, post_form(&f.form()), NOW).await;
    assert_oauth(
        &expired,
        401,
        "invalid_client",
        "Invalid client credentials.",
    );
    assert_eq!(
        f.store.calls(),
        4,
        "every credential check costs the same one store call"
    );
}

#[tokio::test]
async fn malformed_or_checksum_failing_keys_are_invalid_client_without_any_store_call() {
    let f = Fixture::new();
    let real = f.api_key.expose();
    let mut flipped = real.to_owned();
    let last = if real.ends_with('A') { "B" } else { "A" };
    flipped.replace_range(real.len() - 1.., last);
    let wrong_key = ApiKey::generate().unwrap();
    let reference = call(
        &f.token,
        post_form(&format!(
            "grant_type=client_credentials&client_id={CODE}&client_secret={}",
            wrong_key.expose()
        )),
        NOW,
    )
    .await;
    assert_eq!(f.store.calls(), 1, "a well-formed wrong key costs one call");
    for secret in [
        "kiss_sk_wrong".to_owned(),
        flipped,
        real.replace("kiss_sk_", "kiss_pk_"),
        format!("{real}x"),
    ] {
        let body = format!("grant_type=client_credentials&client_id={CODE}&client_secret={secret}");
        let response = call(&f.token, post_form(&body), NOW).await;
        assert_oauth(&response, 401, "invalid_client", text::INVALID_CLIENT);
        assert_eq!(text(&response), text(&reference));
        assert_eq!(
            response.headers(),
            reference.headers(),
            "same headers as a wrong key"
        );
        let auth = basic(CODE, &secret);
        let basic_response = call(
            &f.token,
            request(
                "POST",
                "/auth/token",
                &[("content-type", FORM), ("authorization", &auth)],
                Body::Text("grant_type=client_credentials".into()),
            ),
            NOW,
        )
        .await;
        assert_oauth(&basic_response, 401, "invalid_client", text::INVALID_CLIENT);
        assert_eq!(
            header(&basic_response, "www-authenticate").as_deref(),
            Some("Basic realm=\"customer-api\"")
        );
    }
    assert_eq!(f.store.calls(), 1, "malformed keys never reach the store");
}

#[tokio::test]
async fn basic_auth_failure_carries_the_basic_challenge() {
    let f = Fixture::new();
    let auth = basic(CODE, "kiss_sk_wrong");
    let r = request(
        "POST",
        "/auth/token",
        &[("content-type", FORM), ("authorization", &auth)],
        Body::Text("grant_type=client_credentials".into()),
    );
    let response = call(&f.token, r, NOW).await;
    assert_oauth(
        &response,
        401,
        "invalid_client",
        "Invalid client credentials.",
    );
    assert_eq!(
        header(&response, "www-authenticate").as_deref(),
        Some("Basic realm=\"customer-api\"")
    );
}

#[tokio::test]
async fn malformed_basic_header_is_invalid_request() {
    let f = Fixture::new();
    for auth in ["Basic !!!", "Basic", "Basic Zm9v"] {
        let r = request(
            "POST",
            "/auth/token",
            &[("content-type", FORM), ("authorization", auth)],
            Body::Text("grant_type=client_credentials".into()),
        );
        assert_oauth(
            &call(&f.token, r, NOW).await,
            400,
            "invalid_request",
            text::MALFORMED_BASIC,
        );
    }
}

#[tokio::test]
async fn client_secret_post_issues_an_at_jwt() {
    let f = Fixture::new();
    let response = call(&f.token, post_form(&f.form()), NOW).await;
    assert_eq!(response.status(), 200);
    let body = json(&response);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        body,
        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "customer:read"})
    );
    for (name, value) in [
        ("cache-control", "no-store"),
        ("pragma", "no-cache"),
        ("content-type", "application/json"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(header(&response, name).as_deref(), Some(value), "{name}");
    }
    let jwt_header = segment(token, 0);
    assert_eq!(jwt_header["alg"], "EdDSA");
    assert_eq!(jwt_header["typ"], "at+jwt");
    assert_eq!(
        jwt_header["kid"].as_str(),
        f.doc.active.as_ref().map(|a| a.kid.as_str())
    );
    let claims = segment(token, 1);
    assert_eq!(claims["iss"], "https://api.test");
    assert_eq!(claims["sub"], CODE);
    assert_eq!(claims["client_id"], CODE);
    assert_eq!(claims["aud"], "customer-api");
    assert_eq!(claims["scope"], "customer:read");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["nbf"], NOW);
    assert_eq!(claims["exp"], NOW + 3600);
    assert_eq!(claims["key_id"], f.key_id.as_str());
    assert_eq!(claims["jti"].as_str().map(str::len), Some(32));
}

#[tokio::test]
async fn client_secret_basic_with_form_encoded_credentials_issues_a_token() {
    let f = Fixture::new();
    // RFC 6749 §2.3.1: id and secret are form-urlencoded inside Basic.
    let secret = f.api_key.expose().replace('_', "%5F");
    let auth = basic("ACME%2D1", &secret);
    let r = request(
        "POST",
        "/auth/token",
        &[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            ),
            ("authorization", &auth),
        ],
        Body::Text("grant_type=client_credentials".into()),
    );
    assert_eq!(call(&f.token, r, NOW).await.status(), 200);
}

#[tokio::test]
async fn json_body_and_base64_binary_body_are_accepted() {
    let f = Fixture::new();
    let json_body = serde_json::json!({"grant_type": "client_credentials", "client_id": CODE, "client_secret": f.api_key.expose()}).to_string();
    let r = request(
        "POST",
        "/auth/token",
        &[("content-type", "application/json")],
        Body::Text(json_body),
    );
    assert_eq!(call(&f.token, r, NOW).await.status(), 200);
    let r = request(
        "POST",
        "/auth/token",
        &[("content-type", FORM)],
        Body::Binary(f.form().into_bytes()),
    );
    assert_eq!(call(&f.token, r, NOW).await.status(), 200);
}

#[tokio::test]
async fn requested_scope_must_be_granted() {
    let f = Fixture::new();
    let ok = call(
        &f.token,
        post_form(&format!("{}&scope=customer%3Aread", f.form())),
        NOW,
    )
    .await;
    assert_eq!(json(&ok)["scope"], "customer:read");
    for scope in ["admin", "customer:read%20customer:write", "%22bad"] {
        let response = call(
            &f.token,
            post_form(&format!("{}&scope={scope}", f.form())),
            NOW,
        )
        .await;
        assert_oauth(
            &response,
            400,
            "invalid_scope",
            "The requested scope is invalid.",
        );
    }
}

#[tokio::test]
async fn token_bucket_admits_the_limit_then_429_until_the_window_rolls() {
    let f = Fixture::new();
    for i in 0..20u64 {
        let response = call(&f.token, post_form(&f.form()), NOW + 10).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some((19 - i).to_string())
        );
        assert_eq!(
            header(&response, "x-ratelimit-reset").as_deref(),
            Some("50")
        );
        assert_eq!(
            header(&response, "ratelimit-policy").as_deref(),
            Some("\"token\";q=20;w=60")
        );
    }
    let limited = call(&f.token, post_form(&f.form()), NOW + 15).await;
    assert_oauth(
        &limited,
        429,
        "too_many_requests",
        text::TOO_MANY_TOKEN_REQUESTS,
    );
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("45"));
    assert_eq!(
        header(&limited, "ratelimit").as_deref(),
        Some("\"token\";r=0;t=45")
    );
    let next_window = call(&f.token, post_form(&f.form()), NOW + 60).await;
    assert_eq!(next_window.status(), 200);
    assert_eq!(
        header(&next_window, "x-ratelimit-remaining").as_deref(),
        Some("19")
    );
}

#[tokio::test]
async fn wrong_credentials_never_consume_the_customers_quota() {
    let f = Fixture::new();
    let wrong =
        format!("grant_type=client_credentials&client_id={CODE}&client_secret=kiss_sk_guess");
    for _ in 0..100 {
        assert_eq!(call(&f.token, post_form(&wrong), NOW).await.status(), 401);
    }
    let response = call(&f.token, post_form(&f.form()), NOW).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-ratelimit-remaining").as_deref(),
        Some("19")
    );
}

#[tokio::test]
async fn store_failure_is_server_error_without_details() {
    let f = Fixture::new();
    f.store.set_failing(true);
    let response = call(&f.token, post_form(&f.form()), NOW).await;
    assert_oauth(
        &response,
        500,
        "server_error",
        "An unexpected error occurred.",
    );
}

#[tokio::test]
async fn missing_signing_key_is_server_error() {
    let f = Fixture::new();
    f.signing.set(shared::keys::KeyDocument::default());
    let response = call(&f.token, post_form(&f.form()), NOW).await;
    assert_oauth(
        &response,
        500,
        "server_error",
        "An unexpected error occurred.",
    );
}

#[tokio::test]
async fn keys_are_fetched_once_per_refresh_interval() {
    let f = Fixture::new();
    for i in 0..10 {
        assert_eq!(
            call(&f.token, post_form(&f.form()), NOW + i).await.status(),
            200
        );
    }
    assert_eq!(
        f.signing.fetches(),
        1,
        "zero Secrets Manager calls on warm requests"
    );
    f.signing.set_failing(true);
    let response = call(&f.token, post_form(&f.form()), NOW + 301).await;
    assert_eq!(
        response.status(),
        200,
        "a failed refresh keeps the cached keys"
    );
    assert_eq!(f.signing.fetches(), 2);
}

#[tokio::test]
async fn jwks_and_metadata_are_public_documents() {
    let f = Fixture::new();
    let jwks = call(
        &f.token,
        request("GET", "/.well-known/jwks.json", &[], Body::Empty),
        NOW,
    )
    .await;
    assert_eq!(jwks.status(), 200);
    let key = &json(&jwks)["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key.get("d").is_none() && key.get("private_key").is_none());
    let meta = call(
        &f.token,
        request(
            "GET",
            "/.well-known/oauth-authorization-server",
            &[],
            Body::Empty,
        ),
        NOW,
    )
    .await;
    let meta = json(&meta);
    assert_eq!(meta["issuer"], "https://api.test");
    assert_eq!(meta["token_endpoint"], "https://api.test/auth/token");
    assert_eq!(meta["jwks_uri"], "https://api.test/.well-known/jwks.json");
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
}

#[tokio::test]
async fn unknown_paths_on_the_token_function_are_not_found() {
    let f = Fixture::new();
    let response = call(
        &f.token,
        request("GET", "/.well-known/other", &[], Body::Empty),
        NOW,
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(text(&response), r#"{"error":"Not found."}"#);
}
