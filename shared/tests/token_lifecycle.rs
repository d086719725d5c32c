//! `POST /auth/revoke` (RFC 7009) and `POST /auth/introspect` (RFC 7662): revocation of every
//! token issued so far inside the counting write, nothing disclosed about other tokens, and
//! introspection that answers exactly what `GET /customer` would accept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lambda_http::{Body, Response};
use shared::api_key::ApiKey;
use shared::error::text;
use shared::model::CustomerStatus;
use shared::test_util;

const FORM: &str = "application/x-www-form-urlencoded";

fn credentials(f: &Fixture) -> String {
    format!("client_id={CODE}&client_secret={}", f.api_key.expose())
}

async fn post(f: &Fixture, path: &str, body: &str, now: u64) -> Response<Body> {
    let request = request(
        "POST",
        path,
        &[("content-type", FORM)],
        Body::Text(body.into()),
    );
    call(&f.token, request, now).await
}

async fn revoke(f: &Fixture, token: &str, now: u64) -> Response<Body> {
    let body = format!("{}&token={token}", credentials(f));
    post(f, "/auth/revoke", &body, now).await
}

async fn introspect(f: &Fixture, token: &str, now: u64) -> serde_json::Value {
    let body = format!("{}&token={token}", credentials(f));
    let response = post(f, "/auth/introspect", &body, now).await;
    assert_eq!(response.status(), 200, "{}", text(&response));
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("no-store")
    );
    json(&response)
}

async fn lookup_status(f: &Fixture, token: &str, now: u64) -> u16 {
    call(&f.customer, get_with_token("/customer", token), now)
        .await
        .status()
        .as_u16()
}

fn assert_empty_200(response: &Response<Body>) {
    assert_eq!(response.status(), 200, "{}", text(response));
    assert_eq!(text(response), "");
    assert_eq!(header(response, "content-type"), None);
    assert_eq!(
        header(response, "cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(header(response, "pragma").as_deref(), Some("no-cache"));
    assert!(header(response, "x-ratelimit-remaining").is_some());
}

/// A second customer with its own key and a token of it.
async fn other_customer(f: &Fixture) -> String {
    let other = test_util::customer("OTHER-1", NOW);
    f.store.put(other.customer);
    let form = format!(
        "grant_type=client_credentials&client_id=OTHER-1&client_secret={}",
        other.api_key.expose()
    );
    let response = call(&f.token, post_form(&form), NOW).await;
    json(&response)["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn revoking_an_own_token_revokes_every_earlier_token_and_a_new_one_works_at_once() {
    let f = Fixture::new();
    let first = f.access_token(NOW).await;
    let second = f.access_token(NOW).await;
    assert_eq!(lookup_status(&f, &first, NOW).await, 200);
    assert_empty_200(&revoke(&f, &first, NOW).await);
    for token in [&first, &second] {
        assert_bearer_401(&call(&f.customer, get_with_token("/customer", token), NOW).await);
    }
    // In the same second as the revocation: issued after it, so it works.
    let fresh = f.access_token(NOW).await;
    assert_eq!(lookup_status(&f, &fresh, NOW).await, 200);
    assert_eq!(f.store.get(&f.code()).unwrap().token_epoch, 1);
}

#[tokio::test]
async fn an_expired_own_token_still_revokes() {
    let f = Fixture::new();
    let old = f.access_token(NOW).await;
    let live = f.access_token(NOW + 3000).await;
    let later = NOW + 3600 + 120;
    assert_eq!(lookup_status(&f, &old, later).await, 401, "expired");
    assert_empty_200(&revoke(&f, &old, later).await);
    assert_eq!(lookup_status(&f, &live, later).await, 401);
}

#[tokio::test]
async fn invalid_or_another_customers_token_revokes_nothing_and_answers_the_same() {
    let f = Fixture::new();
    let own = f.access_token(NOW).await;
    let others = other_customer(&f).await;
    let mut forged = own.clone();
    forged.push('A');
    for token in [others.as_str(), forged.as_str(), "garbage", "a.b.c"] {
        let response = revoke(&f, token, NOW).await;
        assert_empty_200(&response);
    }
    assert_eq!(lookup_status(&f, &own, NOW).await, 200);
    assert_eq!(lookup_status(&f, &others, NOW).await, 200);
    assert_eq!(f.store.get(&f.code()).unwrap().token_epoch, 0);
}

#[tokio::test]
async fn revocation_and_introspection_requests_are_checked_like_token_requests() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    for path in ["/auth/revoke", "/auth/introspect"] {
        let missing = post(&f, path, &credentials(&f), NOW).await;
        assert_oauth(&missing, 400, "invalid_request", text::TOKEN_REQUIRED);
        let get = call(&f.token, request("GET", path, &[], Body::Empty), NOW).await;
        assert_oauth(&get, 400, "invalid_request", text::ENDPOINT_ONLY_POST);
        let no_client = post(&f, path, &format!("token={token}"), NOW).await;
        assert_oauth(
            &no_client,
            400,
            "invalid_request",
            text::CREDENTIALS_REQUIRED,
        );
        let wrong = format!(
            "client_id={CODE}&client_secret={}&token={token}",
            ApiKey::generate().unwrap().expose()
        );
        assert_oauth(
            &post(&f, path, &wrong, NOW).await,
            401,
            "invalid_client",
            text::INVALID_CLIENT,
        );
        let auth = basic(CODE, f.api_key.expose());
        let both = request(
            "POST",
            path,
            &[("content-type", FORM), ("authorization", &auth)],
            Body::Text(format!("{}&token={token}", credentials(&f))),
        );
        assert_oauth(
            &call(&f.token, both, NOW).await,
            400,
            "invalid_request",
            text::TWO_AUTH_METHODS,
        );
        let json_body = request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            Body::Text(format!(
                r#"{{"token":"{token}","token_type_hint":"access_token"}}"#
            )),
        );
        assert_eq!(call(&f.token, json_body, NOW).await.status(), 200);
    }
    let bad_basic = basic(CODE, ApiKey::generate().unwrap().expose());
    let refused = request(
        "POST",
        "/auth/revoke",
        &[("content-type", FORM), ("authorization", &bad_basic)],
        Body::Text(format!("token={token}")),
    );
    let refused = call(&f.token, refused, NOW).await;
    assert_oauth(&refused, 401, "invalid_client", text::INVALID_CLIENT);
    assert_eq!(
        header(&refused, "www-authenticate").as_deref(),
        Some("Basic realm=\"customer-api\"")
    );
}

#[tokio::test]
async fn revocation_and_introspection_count_in_the_token_bucket() {
    let f = Fixture::new();
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.token_limit = Some(3);
    f.store.put(customer);
    let token = f.access_token(NOW).await;
    let body = format!("{}&token={token}", credentials(&f));
    let introspected = post(&f, "/auth/introspect", &body, NOW).await;
    assert_eq!(
        header(&introspected, "x-ratelimit-remaining").as_deref(),
        Some("1")
    );
    let wrong_client = format!(
        "client_id={CODE}&client_secret={}&token={token}",
        ApiKey::generate().unwrap().expose()
    );
    post(&f, "/auth/revoke", &wrong_client, NOW).await;
    let last = revoke(&f, "garbage", NOW).await;
    assert_eq!(header(&last, "x-ratelimit-remaining").as_deref(), Some("0"));
    let limited = revoke(&f, &token, NOW).await;
    assert_oauth(
        &limited,
        429,
        "too_many_requests",
        text::TOO_MANY_TOKEN_REQUESTS,
    );
    assert!(header(&limited, "retry-after").is_some());
    assert_eq!(
        lookup_status(&f, &token, NOW).await,
        200,
        "a refused revocation revokes nothing"
    );
}

#[tokio::test]
async fn introspection_reports_exactly_what_the_lookup_would_accept() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let claims = segment(&token, 1);
    let active = introspect(&f, &token, NOW + 1).await;
    assert_eq!(
        active,
        serde_json::json!({
            "active": true, "scope": "customer:read", "client_id": CODE, "sub": CODE,
            "iss": "https://api.test", "aud": "customer-api", "exp": NOW + 3600, "iat": NOW,
            "nbf": NOW, "jti": claims["jti"], "token_type": "Bearer",
        })
    );
    let inactive = serde_json::json!({ "active": false });
    let others = other_customer(&f).await;
    assert_eq!(
        introspect(&f, &others, NOW).await,
        inactive,
        "never another's"
    );
    assert_eq!(introspect(&f, "garbage", NOW).await, inactive);
    assert_eq!(
        introspect(&f, &token, NOW + 3600 + 61).await,
        inactive,
        "expired"
    );
    let mut forged = token.clone();
    forged.push('A');
    assert_eq!(introspect(&f, &forged, NOW).await, inactive);
    // A token of a revoked key: inactive although its signature is good.
    let mut customer = f.store.get(&f.code()).unwrap();
    let (second, _, keys) = test_util::add_key(&customer.keys, NOW).unwrap();
    customer.keys = keys;
    f.store.put(customer.clone());
    let second_form = format!(
        "client_id={CODE}&client_secret={}&token={token}",
        second.expose()
    );
    customer.keys.remove(&f.key_id);
    f.store.put(customer.clone());
    let response = post(&f, "/auth/introspect", &second_form, NOW).await;
    assert_eq!(json(&response), inactive);
    // Revoked by /auth/revoke: inactive.
    let form = format!(
        "grant_type=client_credentials&client_id={CODE}&client_secret={}",
        second.expose()
    );
    let fresh = json(&call(&f.token, post_form(&form), NOW).await)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_credentials = format!("client_id={CODE}&client_secret={}", second.expose());
    let response = post(
        &f,
        "/auth/introspect",
        &format!("{second_credentials}&token={fresh}"),
        NOW,
    )
    .await;
    assert_eq!(json(&response)["active"], true);
    post(
        &f,
        "/auth/revoke",
        &format!("{second_credentials}&token={fresh}"),
        NOW,
    )
    .await;
    let response = post(
        &f,
        "/auth/introspect",
        &format!("{second_credentials}&token={fresh}"),
        NOW,
    )
    .await;
    assert_eq!(json(&response), inactive);
    // A suspended customer cannot authenticate at all.
    customer = f.store.get(&f.code()).unwrap();
    customer.status = CustomerStatus::Suspended;
    f.store.put(customer);
    let response = post(
        &f,
        "/auth/introspect",
        &format!("{second_credentials}&token={fresh}"),
        NOW,
    )
    .await;
    assert_oauth(&response, 401, "invalid_client", text::INVALID_CLIENT);
}

#[tokio::test]
async fn metadata_names_the_revocation_and_introspection_endpoints() {
    let f = Fixture::new();
    let response = call(
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
    let doc = json(&response);
    let methods = serde_json::json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt"
    ]);
    assert_eq!(doc["revocation_endpoint"], "https://api.test/auth/revoke");
    assert_eq!(
        doc["introspection_endpoint"],
        "https://api.test/auth/introspect"
    );
    assert_eq!(doc["revocation_endpoint_auth_methods_supported"], methods);
    assert_eq!(
        doc["introspection_endpoint_auth_methods_supported"],
        methods
    );
}
