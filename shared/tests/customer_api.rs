//! `GET /customer` and `GET /customers/{code}`: records, revocation, and the JWT attack corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use lambda_http::Body;
use shared::model::CustomerStatus;
use shared::test_util;

async fn lookup(f: &Fixture, path: &str, token: &str, now: u64) -> lambda_http::Response<Body> {
    call(&f.customer, get_with_token(path, token), now).await
}

#[tokio::test]
async fn own_record_has_exactly_the_public_fields() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    for path in ["/customer", "/customers/ACME-1"] {
        let response = lookup(&f, path, &token, NOW).await;
        assert_eq!(response.status(), 200);
        let created = f.store.get(&f.code()).unwrap().created_at;
        assert_eq!(
            json(&response),
            serde_json::json!({"customer_code": CODE, "name": "Acme", "email": "ops@acme.example",
                               "status": "active", "plan": "standard", "created_at": created})
        );
        assert!(created.ends_with('Z'));
        assert_eq!(
            header(&response, "cache-control").as_deref(),
            Some("no-store")
        );
        assert_eq!(
            header(&response, "ratelimit-policy").as_deref(),
            Some("\"api\";q=120;w=60")
        );
    }
}

#[tokio::test]
async fn another_customers_code_is_customer_not_found() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    for path in [
        "/customers/OTHER-1",
        "/customers/acme-1",
        "/customers/NOBODY",
    ] {
        let response = lookup(&f, path, &token, NOW).await;
        assert_eq!(response.status(), 404);
        assert_eq!(text(&response), r#"{"error":"Customer not found."}"#);
    }
}

#[tokio::test]
async fn unknown_routes_and_other_methods_are_not_found() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let auth = format!("Bearer {token}");
    for (method, path) in [
        ("POST", "/customer"),
        ("DELETE", "/customers/ACME-1"),
        ("GET", "/customers/"),
        ("GET", "/customers/a/b"),
        ("GET", "/nope"),
        ("GET", "/customer/"),
    ] {
        let response = call(
            &f.customer,
            request(method, path, &[("authorization", &auth)], Body::Empty),
            NOW,
        )
        .await;
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_eq!(text(&response), r#"{"error":"Not found."}"#);
    }
}

#[tokio::test]
async fn missing_header_other_scheme_and_garbage_are_bearer_401() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let cases = [
        None,
        Some(format!("Basic {token}")),
        Some(format!("Bearer  {token}")),
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        Some("Bearer garbage".to_owned()),
        Some("Bearer a.b.c".to_owned()),
        Some(format!("Bearer {}", "A".repeat(9000))),
    ];
    for auth in cases {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let response = call(
            &f.customer,
            request("GET", "/customer", &headers, Body::Empty),
            NOW,
        )
        .await;
        assert_bearer_401(&response);
    }
    let lower = format!("bearer {token}");
    let response = call(
        &f.customer,
        request(
            "GET",
            "/customer",
            &[("authorization", &lower)],
            Body::Empty,
        ),
        NOW,
    )
    .await;
    assert_eq!(response.status(), 200, "the scheme is case-insensitive");
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let f = Fixture::new();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"x"}"#);
    let claims = URL_SAFE_NO_PAD.encode(f.claims(NOW).to_string());
    assert_bearer_401(&lookup(&f, "/customer", &format!("{header}.{claims}."), NOW).await);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    let f = Fixture::new();
    let mut header = f.header();
    header.alg = Algorithm::HS256;
    let public = f.doc.keys[0].x.clone();
    let token = jsonwebtoken::encode(
        &header,
        &f.claims(NOW),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_bearer_401(&lookup(&f, "/customer", &token, NOW).await);
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_rejected() {
    let f = Fixture::new();
    for alg in ["RS256", "ES256"] {
        let header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{}"}}"#,
            f.doc.keys[0].kid
        ));
        let claims = URL_SAFE_NO_PAD.encode(f.claims(NOW).to_string());
        let token = format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        assert_bearer_401(&lookup(&f, "/customer", &token, NOW).await);
    }
}

#[tokio::test]
async fn unknown_kid_is_rejected_and_refreshes_at_most_once_a_minute() {
    let f = Fixture::new();
    let good = f.access_token(NOW).await;
    assert_eq!(lookup(&f, "/customer", &good, NOW).await.status(), 200);
    let fetches = f.verification.fetches();
    let mut header = f.header();
    header.kid = Some("sig_unknown".into());
    let token = f.sign_raw(&header, &f.claims(NOW));
    for _ in 0..5 {
        assert_bearer_401(&lookup(&f, "/customer", &token, NOW + 1).await);
    }
    assert_eq!(
        f.verification.fetches(),
        fetches + 1,
        "one forced refresh for many unknown kids"
    );
    assert_bearer_401(&lookup(&f, "/customer", &token, NOW + 62).await);
    assert_eq!(f.verification.fetches(), fetches + 2);
}

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = segment(&token, 1);
    claims["sub"] = "OTHER-1".into();
    claims["client_id"] = "OTHER-1".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_bearer_401(&lookup(&f, "/customer", &forged, NOW).await);
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_rejected_beyond_the_leeway() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    assert_eq!(
        lookup(&f, "/customer", &token, NOW + 3600 + 60)
            .await
            .status(),
        200,
        "within leeway"
    );
    assert_bearer_401(&lookup(&f, "/customer", &token, NOW + 3600 + 61).await);
    let mut future = f.claims(NOW);
    future["nbf"] = (NOW + 120).into();
    assert_bearer_401(&lookup(&f, "/customer", &f.sign_raw(&f.header(), &future), NOW).await);
}

#[tokio::test]
async fn wrong_claims_are_rejected() {
    let f = Fixture::new();
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("iss", "https://evil.test".into()),
        ("aud", "other-api".into()),
        ("scope", "something:else".into()),
        ("client_id", "OTHER-1".into()),
    ];
    for (claim, value) in cases {
        let mut claims = f.claims(NOW);
        claims[claim] = value;
        assert_bearer_401(&lookup(&f, "/customer", &f.sign_raw(&f.header(), &claims), NOW).await);
    }
    for missing in ["sub", "exp", "iss", "aud", "nbf", "scope", "key_id"] {
        let mut claims = f.claims(NOW);
        claims.as_object_mut().unwrap().remove(missing);
        assert_bearer_401(&lookup(&f, "/customer", &f.sign_raw(&f.header(), &claims), NOW).await);
    }
    assert_eq!(
        lookup(
            &f,
            "/customer",
            &f.sign_raw(&f.header(), &f.claims(NOW)),
            NOW
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn typ_jwt_instead_of_at_jwt_is_rejected() {
    let f = Fixture::new();
    for typ in [Some("JWT"), None] {
        let mut header = f.header();
        header.typ = typ.map(str::to_owned);
        assert_bearer_401(
            &lookup(&f, "/customer", &f.sign_raw(&header, &f.claims(NOW)), NOW).await,
        );
    }
}

#[tokio::test]
async fn suspended_customer_and_revoked_key_are_bearer_401_deleted_is_404() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.status = CustomerStatus::Suspended;
    f.store.put(customer.clone());
    assert_bearer_401(&lookup(&f, "/customer", &token, NOW).await);
    customer.status = CustomerStatus::Active;
    f.store.put(customer.clone());
    assert_eq!(lookup(&f, "/customer", &token, NOW).await.status(), 200);
    customer.keys.clear();
    f.store.put(customer);
    assert_bearer_401(&lookup(&f, "/customer", &token, NOW).await);
    f.store.remove(&f.code());
    let response = lookup(&f, "/customer", &token, NOW).await;
    assert_eq!(response.status(), 404);
    assert_eq!(text(&response), r#"{"error":"Customer not found."}"#);
}

#[tokio::test]
async fn revoked_key_and_suspended_customer_tokens_are_forged_401s_and_count_nothing() {
    let f = Fixture::new();
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.api_limit = Some(3);
    let (second, _, keys) = test_util::add_key(&customer.keys, NOW).unwrap();
    customer.keys = keys;
    f.store.put(customer.clone());
    let old = f.access_token(NOW).await;
    let form = format!(
        "grant_type=client_credentials&client_id={CODE}&client_secret={}",
        second.expose()
    );
    let issued = call(&f.token, post_form(&form), NOW).await;
    let fresh = json(&issued)["access_token"].as_str().unwrap().to_owned();
    let mut forged = old.clone();
    forged.push('A');
    let reference = lookup(&f, "/customer", &forged, NOW).await;
    assert_bearer_401(&reference);
    let first = lookup(&f, "/customer", &fresh, NOW).await;
    assert_eq!(
        header(&first, "x-ratelimit-remaining").as_deref(),
        Some("2")
    );

    customer = f.store.get(&f.code()).unwrap();
    customer.keys.remove(&f.key_id);
    f.store.put(customer.clone());
    let calls = f.store.calls();
    for _ in 0..1000 {
        let response = lookup(&f, "/customer", &old, NOW + 1).await;
        assert_bearer_401(&response);
        assert_eq!(
            response.headers(),
            reference.headers(),
            "no rate-limit fields"
        );
    }
    assert_eq!(f.store.calls() - calls, 1000, "still one store call each");
    let after = lookup(&f, "/customer", &fresh, NOW + 2).await;
    assert_eq!(after.status(), 200);
    assert_eq!(
        header(&after, "x-ratelimit-remaining").as_deref(),
        Some("1"),
        "the revoked token counted nothing"
    );

    customer = f.store.get(&f.code()).unwrap();
    customer.status = CustomerStatus::Suspended;
    f.store.put(customer.clone());
    for _ in 0..10 {
        let response = lookup(&f, "/customers/ACME-1", &fresh, NOW + 3).await;
        assert_eq!(response.headers(), reference.headers());
        assert_eq!(text(&response), "");
    }
    customer.status = CustomerStatus::Active;
    f.store.put(customer);
    let back = lookup(&f, "/customer", &fresh, NOW + 4).await;
    assert_eq!(header(&back, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(lookup(&f, "/customer", &fresh, NOW + 4).await.status(), 429);
}

#[tokio::test]
async fn api_bucket_is_limited_with_the_standard_envelope() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.api_limit = Some(3);
    f.store.put(customer);
    for remaining in ["2", "1", "0"] {
        let response = lookup(&f, "/customer", &token, NOW + 30).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
    }
    let limited = lookup(&f, "/customer", &token, NOW + 30).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(
        text(&limited),
        r#"{"error":"Too many requests. Retry after the time given in Retry-After."}"#
    );
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("30"));
    assert_eq!(
        header(&limited, "ratelimit").as_deref(),
        Some("\"api\";r=0;t=30")
    );
    assert_eq!(
        lookup(&f, "/customer", &token, NOW + 60).await.status(),
        200
    );
}

#[tokio::test]
async fn one_store_call_and_no_key_fetch_per_warm_request() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    lookup(&f, "/customer", &token, NOW).await;
    let (calls, fetches) = (f.store.calls(), f.verification.fetches());
    for path in ["/customer", "/customers/ACME-1", "/customers/OTHER-1"] {
        lookup(&f, path, &token, NOW + 1).await;
    }
    assert_eq!(f.store.calls(), calls + 3);
    assert_eq!(f.verification.fetches(), fetches);
}

#[tokio::test]
async fn store_or_key_failure_is_the_standard_500() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    f.verification.set_failing(true);
    let response = lookup(&f, "/customer", &token, NOW).await;
    assert_eq!(response.status(), 500, "no keys were ever loaded");
    assert_eq!(
        text(&response),
        r#"{"error":"An unexpected error occurred."}"#
    );
    f.verification.set_failing(false);
    assert_eq!(lookup(&f, "/customer", &token, NOW).await.status(), 200);
    f.verification.set_failing(true);
    assert_eq!(
        lookup(&f, "/customer", &token, NOW + 400).await.status(),
        200,
        "cached keys survive a failed refresh"
    );
    f.store.set_failing(true);
    let response = lookup(&f, "/customer", &token, NOW + 401).await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        text(&response),
        r#"{"error":"An unexpected error occurred."}"#
    );
}

#[tokio::test]
async fn token_signed_before_a_signing_key_rotation_still_validates() {
    let f = Fixture::new();
    let old = f.access_token(NOW).await;
    let mut doc = f.doc.clone();
    doc.rotate(NOW + 10).unwrap();
    f.signing.set(doc.clone());
    f.verification.set(doc.public());
    let new = f.access_token(NOW + 400).await;
    assert_ne!(segment(&old, 0)["kid"], segment(&new, 0)["kid"]);
    assert_eq!(
        lookup(&f, "/customer", &new, NOW + 400).await.status(),
        200,
        "unknown kid refreshes at once"
    );
    assert_eq!(lookup(&f, "/customer", &old, NOW + 401).await.status(), 200);
}
