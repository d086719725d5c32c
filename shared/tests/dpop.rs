//! DPoP (RFC 9449) end to end through both functions' handlers: bound tokens at the token
//! endpoint, the proof attack corpus (400 there, exact DPoP 401s at the resource), no Bearer
//! downgrade, introspection, the RFC 9728 document, and on DynamoDB (moto) one round trip per
//! request in the steady state and exactly one success for a proof replayed in parallel
//! across instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::customer_api::CustomerApi;
use shared::dpop::access_token_hash;
use shared::error::text;
use shared::keys::{KeyDocument, MemoryKeySource};
use shared::store::dynamo::DynamoStore;
use shared::test_util::{self, DynamoFixtures, ProofKey, fresh_jti, with_member};
use shared::token_api::TokenApi;
use std::sync::Arc;

const TOKEN_URL: &str = "https://api.test/auth/token";
const CUSTOMER_URL: &str = "https://api.test/customer";
const BAD_TOKEN: &str = "DPoP error=\"invalid_token\", algs=\"EdDSA ES256\"";
const BAD_PROOF: &str = "DPoP error=\"invalid_dpop_proof\", algs=\"EdDSA ES256\"";

/// `POST /auth/token` with the fixture's secret and these `DPoP` headers.
fn token_request(f: &Fixture, proofs: &[&str]) -> Request {
    post_form_with_dpop(&f.form(), proofs)
}

/// `GET path` with `Authorization: <scheme> <token>` and these `DPoP` headers.
fn resource_request(path: &str, scheme: &str, token: &str, proofs: &[&str]) -> Request {
    let authorization = format!("{scheme} {token}");
    let mut headers = vec![("authorization", authorization.as_str())];
    headers.extend(proofs.iter().map(|p| ("dpop", *p)));
    request("GET", path, &headers, Body::Empty)
}

fn token_count(f: &Fixture) -> u64 {
    f.store.get(&f.code()).unwrap().token_counter.count
}

fn api_count(f: &Fixture) -> u64 {
    f.store.get(&f.code()).unwrap().api_counter.count
}

/// A token bound to `key`, from the real token endpoint.
async fn bound_token(f: &Fixture, key: &ProofKey) -> String {
    let proof = key.proof_for("POST", TOKEN_URL, None, NOW);
    let response = call(&f.token, token_request(f, &[&proof]), NOW).await;
    assert_eq!(response.status(), 200, "{}", text(&response));
    json(&response)["access_token"].as_str().unwrap().to_owned()
}

/// Asserts a DPoP 401: empty body, no content type, exactly this challenge.
fn assert_dpop_401(response: &Response<Body>, challenge: &str, case: &str) {
    assert_eq!(response.status(), 401, "{case}: {}", text(response));
    assert_eq!(text(response), "", "{case}");
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .collect();
    assert_eq!(challenges, [challenge], "{case}");
    assert_eq!(header(response, "content-type"), None, "{case}");
    assert_eq!(header(response, "x-ratelimit-remaining"), None, "{case}");
}

#[tokio::test]
async fn a_good_proof_binds_the_token_to_its_key() {
    let f = Fixture::new();
    for (key, alg) in [
        (ProofKey::ed25519(), "EdDSA"),
        (ProofKey::ed25519(), "Ed25519"),
        (ProofKey::es256(), "ES256"),
    ] {
        let claims = json!({"jti": fresh_jti(), "htm": "POST", "htu": TOKEN_URL, "iat": NOW});
        let proof = key.sign(&key.header(alg), &claims);
        let before = token_count(&f);
        let response = call(&f.token, token_request(&f, &[&proof]), NOW).await;
        assert_eq!(response.status(), 200, "{alg}: {}", text(&response));
        let body = json(&response);
        assert_eq!(body["token_type"], "DPoP");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "customer:read");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(segment(token, 1)["cnf"], json!({"jkt": key.thumbprint()}));
        assert_eq!(segment(token, 0)["alg"], "EdDSA");
        assert_eq!(token_count(&f), before + 1);
        assert_eq!(header(&response, "pragma").as_deref(), Some("no-cache"));
    }
    // Basic authentication and a JSON body work the same.
    let key = ProofKey::es256();
    let proof = key.proof_for("POST", TOKEN_URL, None, NOW);
    let basic = basic(CODE, f.api_key.expose());
    let with_basic = request(
        "POST",
        "/auth/token",
        &[
            ("content-type", "application/json"),
            ("authorization", &basic),
            ("dpop", &proof),
        ],
        Body::Text(r#"{"grant_type":"client_credentials"}"#.into()),
    );
    let response = call(&f.token, with_basic, NOW).await;
    assert_eq!(json(&response)["token_type"], "DPoP");
    // Without the header: the Bearer token of before, byte for byte the same claims.
    let response = call(&f.token, post_form(&f.form()), NOW).await;
    let body = json(&response);
    assert_eq!(body["token_type"], "Bearer");
    let claims = segment(body["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims.get("cnf"), None);
}

#[tokio::test]
async fn bad_proofs_at_the_token_endpoint_are_400_invalid_dpop_proof_and_counted() {
    let f = Fixture::new();
    let key = ProofKey::ed25519();
    let other = ProofKey::ed25519();
    let good = key.header("EdDSA");
    let claims = |name: &str, value: Value| {
        let c = json!({"jti": fresh_jti(), "htm": "POST", "htu": TOKEN_URL, "iat": NOW});
        with_member(c, name, value)
    };
    let with_header = |name: &str, value: Value| with_member(good.clone(), name, value);
    let used = key.proof_for("POST", TOKEN_URL, None, NOW);
    assert_eq!(
        call(&f.token, token_request(&f, &[&used]), NOW)
            .await
            .status(),
        200
    );
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "wrong htm",
            vec![key.sign(&good, &claims("htm", "GET".into()))],
        ),
        (
            "wrong htu",
            vec![key.sign(&good, &claims("htu", "https://evil.test/auth/token".into()))],
        ),
        (
            "other path",
            vec![key.sign(&good, &claims("htu", CUSTOMER_URL.into()))],
        ),
        (
            "stale iat",
            vec![key.sign(&good, &claims("iat", (NOW - 301).into()))],
        ),
        (
            "future iat",
            vec![key.sign(&good, &claims("iat", (NOW + 301).into()))],
        ),
        ("no jti", vec![key.sign(&good, &claims("jti", Value::Null))]),
        (
            "no jwk",
            vec![key.sign(&with_header("jwk", Value::Null), &claims("x", 1.into()))],
        ),
        (
            "private jwk",
            vec![key.sign(
                &with_header("jwk", key.private_jwk()),
                &claims("x", 1.into()),
            )],
        ),
        (
            "alg none",
            vec![key.sign(&with_header("alg", "none".into()), &claims("x", 1.into()))],
        ),
        (
            "HS256",
            vec![key.sign(&with_header("alg", "HS256".into()), &claims("x", 1.into()))],
        ),
        (
            "typ JWT",
            vec![key.sign(&with_header("typ", "JWT".into()), &claims("x", 1.into()))],
        ),
        (
            "another key's signature",
            vec![other.sign(&good, &claims("x", 1.into()))],
        ),
        (
            "two DPoP headers",
            vec![
                key.proof_for("POST", TOKEN_URL, None, NOW),
                key.proof_for("POST", TOKEN_URL, None, NOW),
            ],
        ),
        ("replay", vec![used.clone()]),
        ("garbage", vec!["garbage".into()]),
        ("empty", vec![String::new()]),
    ];
    for (case, proofs) in cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let before = token_count(&f);
        let response = call(&f.token, token_request(&f, &proofs), NOW).await;
        assert_oauth(
            &response,
            400,
            "invalid_dpop_proof",
            text::INVALID_DPOP_PROOF,
        );
        assert_eq!(token_count(&f), before + 1, "{case}: counted");
        let remaining = 20 - before - 1;
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some(remaining.to_string()),
            "{case}"
        );
    }
    // Client authentication comes first: a wrong key with a bad proof is invalid_client,
    // counted nowhere.
    let before = token_count(&f);
    let wrong = format!(
        "grant_type=client_credentials&client_id={CODE}&client_secret={}",
        shared::api_key::ApiKey::generate().unwrap().expose()
    );
    let mut request = token_request(&f, &["garbage"]);
    *request.body_mut() = Body::Text(wrong);
    assert_oauth(
        &call(&f.token, request, NOW).await,
        401,
        "invalid_client",
        text::INVALID_CLIENT,
    );
    assert_eq!(token_count(&f), before);
}

#[tokio::test]
async fn bound_tokens_need_a_matching_proof_at_the_resource() {
    let f = Fixture::new();
    let key = ProofKey::es256();
    let token = bound_token(&f, &key).await;
    let proof = key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW);
    let found = call(
        &f.customer,
        resource_request("/customer", "DPoP", &token, &[&proof]),
        NOW,
    )
    .await;
    assert_eq!(found.status(), 200, "{}", text(&found));
    let bearer_token = f.access_token(NOW).await;
    let bearer = call(&f.customer, get_with_token("/customer", &bearer_token), NOW).await;
    assert_eq!(
        text(&found),
        text(&bearer),
        "the same record as with Bearer"
    );
    let by_code = format!("https://api.test/customers/{CODE}");
    let proof = key.proof_for("GET", &by_code, Some(&token), NOW);
    let path = format!("/customers/{CODE}");
    let response = call(
        &f.customer,
        resource_request(&path, "dpop", &token, &[&proof]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), 200, "{}", text(&response));

    let other = ProofKey::es256();
    let good = key.header("ES256");
    let claims = |name: &str, value: Value| {
        let c = json!({"jti": fresh_jti(), "htm": "GET", "htu": CUSTOMER_URL, "iat": NOW,
                       "ath": access_token_hash(&token)});
        with_member(c, name, value)
    };
    let with_header = |name: &str, value: Value| with_member(good.clone(), name, value);
    let used = key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW);
    let replayable = call(
        &f.customer,
        resource_request("/customer", "DPoP", &token, &[&used]),
        NOW,
    )
    .await;
    assert_eq!(replayable.status(), 200);
    let proof_cases: Vec<(&str, Vec<String>)> = vec![
        ("no proof", vec![]),
        (
            "wrong ath",
            vec![key.sign(&good, &claims("ath", access_token_hash("x").into()))],
        ),
        ("no ath", vec![key.sign(&good, &claims("ath", Value::Null))]),
        (
            "wrong htm",
            vec![key.sign(&good, &claims("htm", "POST".into()))],
        ),
        (
            "wrong htu",
            vec![key.sign(&good, &claims("htu", TOKEN_URL.into()))],
        ),
        (
            "stale iat",
            vec![key.sign(&good, &claims("iat", (NOW - 301).into()))],
        ),
        (
            "future iat",
            vec![key.sign(&good, &claims("iat", (NOW + 301).into()))],
        ),
        (
            "alg none",
            vec![key.sign(&with_header("alg", "none".into()), &claims("x", 1.into()))],
        ),
        (
            "HS256",
            vec![key.sign(&with_header("alg", "HS256".into()), &claims("x", 1.into()))],
        ),
        (
            "typ",
            vec![key.sign(&with_header("typ", "at+jwt".into()), &claims("x", 1.into()))],
        ),
        (
            "no jwk",
            vec![key.sign(&with_header("jwk", Value::Null), &claims("x", 1.into()))],
        ),
        (
            "private jwk",
            vec![key.sign(
                &with_header("jwk", key.private_jwk()),
                &claims("x", 1.into()),
            )],
        ),
        (
            "another key's signature",
            vec![other.sign(&good, &claims("x", 1.into()))],
        ),
        (
            "another key, not the token's",
            vec![other.proof_for("GET", CUSTOMER_URL, Some(&token), NOW)],
        ),
        (
            "two DPoP headers",
            vec![
                key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW),
                key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW),
            ],
        ),
        ("replay", vec![used.clone()]),
    ];
    let before = api_count(&f);
    for (case, proofs) in proof_cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let response = call(
            &f.customer,
            resource_request("/customer", "DPoP", &token, &proofs),
            NOW,
        )
        .await;
        assert_dpop_401(&response, BAD_PROOF, case);
    }
    let fresh = || key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW);
    let token_cases = [
        ("garbage token", "DPoP", "garbage".to_owned()),
        (
            "unbound token with the DPoP scheme",
            "DPoP",
            bearer_token.clone(),
        ),
        ("expired", "DPoP", token.clone()),
    ];
    for (case, scheme, value) in token_cases {
        let now = if case == "expired" { NOW + 3661 } else { NOW };
        let proof = key.proof_for("GET", CUSTOMER_URL, Some(&value), now);
        let response = call(
            &f.customer,
            resource_request("/customer", scheme, &value, &[&proof]),
            now,
        )
        .await;
        assert_dpop_401(&response, BAD_TOKEN, case);
    }
    // No downgrade: the bound token as a Bearer token, with or without its proof.
    for proofs in [vec![], vec![fresh()]] {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let response = call(
            &f.customer,
            resource_request("/customer", "Bearer", &token, &proofs),
            NOW,
        )
        .await;
        assert_bearer_401(&response);
    }
    assert_eq!(api_count(&f), before, "no failure was counted");
    // A Bearer token with a stray DPoP header keeps the Bearer contract.
    let response = call(
        &f.customer,
        resource_request("/customer", "Bearer", &bearer_token, &["garbage"]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn revocation_and_introspection_know_bound_tokens() {
    let f = Fixture::new();
    let key = ProofKey::ed25519();
    let token = bound_token(&f, &key).await;
    let operation = |path: &str| {
        request(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Body::Text(format!("{}&token={token}", &f.form()[30..])),
        )
    };
    let introspected = json(&call(&f.token, operation("/auth/introspect"), NOW).await);
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["token_type"], "DPoP");
    assert_eq!(introspected["cnf"], json!({"jkt": key.thumbprint()}));
    let bearer = f.access_token(NOW).await;
    let unbound = request(
        "POST",
        "/auth/introspect",
        &[("content-type", "application/x-www-form-urlencoded")],
        Body::Text(format!("{}&token={bearer}", &f.form()[30..])),
    );
    let unbound = json(&call(&f.token, unbound, NOW).await);
    assert_eq!(unbound["token_type"], "Bearer");
    assert_eq!(unbound.get("cnf"), None);

    let revoked = call(&f.token, operation("/auth/revoke"), NOW).await;
    assert_eq!(revoked.status(), 200);
    let proof = key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW);
    let response = call(
        &f.customer,
        resource_request("/customer", "DPoP", &token, &[&proof]),
        NOW,
    )
    .await;
    assert_dpop_401(&response, BAD_TOKEN, "revoked");
}

#[tokio::test]
async fn the_metadata_documents_name_the_dpop_algorithms() {
    let f = Fixture::new();
    let get = |path: &str| request("GET", path, &[], Body::Empty);
    let response = call(
        &f.customer,
        get("/.well-known/oauth-protected-resource"),
        NOW,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        text(&response),
        r#"{"authorization_servers":["https://api.test"],"bearer_methods_supported":["header"],"dpop_bound_access_tokens_required":false,"dpop_signing_alg_values_supported":["EdDSA","ES256"],"resource":"https://api.test","scopes_supported":["customer:read"]}"#
    );
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("public, max-age=300")
    );
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    let metadata = json(
        &call(
            &f.token,
            get("/.well-known/oauth-authorization-server"),
            NOW,
        )
        .await,
    );
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["EdDSA", "Ed25519", "ES256"])
    );
}

type DynamoToken = TokenApi<DynamoStore, Arc<MemoryKeySource>>;
type DynamoCustomer = CustomerApi<DynamoStore, Arc<MemoryKeySource>>;

/// One "instance" of each function over the moto table, each with its own cache, sharing
/// `doc`'s keys.
fn instances(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    doc: &KeyDocument,
) -> (DynamoToken, DynamoCustomer) {
    let signing = Arc::new(MemoryKeySource::new(doc.clone()));
    let verification = Arc::new(MemoryKeySource::new(doc.public()));
    (
        TokenApi::new(DynamoStore::new(client.clone(), table), signing, &config()),
        CustomerApi::new(
            DynamoStore::new(client.clone(), table),
            verification,
            &config(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_dynamodb_one_round_trip_and_a_replayed_proof_wins_once() {
    let (client, calls) = common::moto::dynamodb();
    let table = common::moto::table(&client).await;
    let seed = DynamoStore::new(client.clone(), &table);
    let mut created = test_util::customer(CODE, NOW);
    created.customer.token_limit = Some(100);
    created.customer.api_limit = Some(100);
    seed.create(&created.customer).await.unwrap();
    let code = created.customer.code.clone();
    let form = format!(
        "grant_type=client_credentials&client_id={CODE}&client_secret={}",
        created.api_key.expose()
    );
    let token_request = |proof: &str| post_form_with_dpop(&form, &[proof]);
    let mut doc = KeyDocument::default();
    doc.rotate(NOW - 1000).unwrap();
    let (token_api, customer_api) = instances(&client, &table, &doc);
    let key = ProofKey::ed25519();
    // A Bearer token and lookup open both rate-limit windows (a new window costs the plain
    // counting write one more call).
    let response = call(&token_api, post_form(&form), NOW).await;
    let bearer = json(&response)["access_token"].as_str().unwrap().to_owned();
    let response = call(&customer_api, get_with_token("/customer", &bearer), NOW).await;
    assert_eq!(response.status(), 200);

    // Token endpoint: the first request of an instance puts the marker and counts (2 calls),
    // then one TransactWriteItems per request.
    let mut cost = Vec::new();
    let mut token = String::new();
    for _ in 0..3 {
        let before = calls.get();
        let proof = key.proof_for("POST", TOKEN_URL, None, NOW);
        let response = call(&token_api, token_request(&proof), NOW).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        token = json(&response)["access_token"].as_str().unwrap().to_owned();
        cost.push(calls.get() - before);
    }
    assert_eq!(cost, [2, 1, 1], "DynamoDB calls per DPoP token request");
    // Resource: the same.
    let mut cost = Vec::new();
    for _ in 0..3 {
        let before = calls.get();
        let proof = key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW);
        let response = call(
            &customer_api,
            resource_request("/customer", "DPoP", &token, &[&proof]),
            NOW,
        )
        .await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some((100 - cost.len() - 2).to_string())
        );
        cost.push(calls.get() - before);
    }
    assert_eq!(cost, [2, 1, 1], "DynamoDB calls per DPoP lookup");
    // Bearer and DPoP lookups of one customer on one instance: still one call each.
    let mut cost = Vec::new();
    for _ in 0..3 {
        let before = calls.get();
        let response = call(&customer_api, get_with_token("/customer", &bearer), NOW).await;
        assert_eq!(response.status(), 200);
        let proof = key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW);
        let request = resource_request("/customer", "DPoP", &token, &[&proof]);
        let response = call(&customer_api, request, NOW).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        cost.push(calls.get() - before);
    }
    assert_eq!(
        cost,
        [2, 2, 2],
        "one Bearer and one DPoP lookup: one call each"
    );
    let stored = seed.get(&code).await.unwrap().unwrap();
    assert_eq!(
        (stored.token_counter.count, stored.api_counter.count),
        (4, 10)
    );

    // Two fresh instances (one with a warm image, one cold), 30 parallel requests with ONE
    // proof: exactly one 200; the replays count nothing.
    let (_, second) = instances(&client, &table, &doc);
    let second = Arc::new(second);
    let customer_api = Arc::new(customer_api);
    let proof = key.proof_for("GET", CUSTOMER_URL, Some(&token), NOW);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let api = if i % 2 == 0 {
            customer_api.clone()
        } else {
            second.clone()
        };
        let request = resource_request("/customer", "DPoP", &token, &[&proof]);
        tasks.spawn(async move { call(api.as_ref(), request, NOW).await });
    }
    let mut statuses = Vec::new();
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        if response.status() == 401 {
            assert_dpop_401(&response, BAD_PROOF, "parallel replay");
        }
        statuses.push(response.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [[200].as_slice(), &[401; 29]].concat());
    let stored = seed.get(&code).await.unwrap().unwrap();
    assert_eq!(stored.api_counter.count, 11, "the replays counted nothing");

    // The same at the token endpoint: one token; the replays are 400 and counted (the
    // client authenticated).
    let (second_token, _) = instances(&client, &table, &doc);
    let token_apis = [Arc::new(token_api), Arc::new(second_token)];
    let proof = key.proof_for("POST", TOKEN_URL, None, NOW);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let api = token_apis[i % 2].clone();
        let request = token_request(&proof);
        tasks.spawn(async move { call(api.as_ref(), request, NOW).await });
    }
    let mut statuses = Vec::new();
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        if response.status() == 400 {
            assert_oauth(
                &response,
                400,
                "invalid_dpop_proof",
                text::INVALID_DPOP_PROOF,
            );
        }
        statuses.push(response.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [[200].as_slice(), &[400; 29]].concat());
    let stored = seed.get(&code).await.unwrap().unwrap();
    assert_eq!(
        stored.token_counter.count, 34,
        "every authenticated request counted"
    );
}

#[tokio::test]
async fn private_key_jwt_with_dpop_binds_the_token_and_a_replayed_proof_uses_up_the_assertion() {
    let f = Fixture::new();
    let client_key = ProofKey::es256();
    let key_id = client_key.key_id();
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.keys.insert(
        key_id.clone(),
        shared::model::StoredKey {
            hash: None,
            created_at: NOW - 10,
            expires_at: None,
        },
    );
    f.store.put(customer);
    f.store.put_jwk(&f.code(), &key_id, &client_key.jwk);
    let assertion = || {
        client_key.sign(
            &json!({"alg": "ES256", "kid": key_id}),
            &json!({"iss": CODE, "sub": CODE, "aud": TOKEN_URL, "iat": NOW, "exp": NOW + 60,
                    "jti": fresh_jti()}),
        )
    };
    let form = |assertion: &str| {
        format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
            "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        )
    };
    let send = |assertion: String, proof: String| {
        call(
            &f.token,
            post_form_with_dpop(&form(&assertion), &[&proof]),
            NOW,
        )
    };
    let proof_key = ProofKey::ed25519();
    let proof = proof_key.proof_for("POST", TOKEN_URL, None, NOW);
    let response = send(assertion(), proof.clone()).await;
    assert_eq!(response.status(), 200, "{}", text(&response));
    let token = json(&response)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(segment(&token, 1)["key_id"], key_id.as_str());
    assert_eq!(segment(&token, 1)["cnf"]["jkt"], proof_key.thumbprint());
    // A fresh assertion with the used proof: 400, counted, and that assertion is used up.
    let fresh = assertion();
    let before = token_count(&f);
    let response = send(fresh.clone(), proof).await;
    assert_oauth(
        &response,
        400,
        "invalid_dpop_proof",
        text::INVALID_DPOP_PROOF,
    );
    assert_eq!(token_count(&f), before + 1);
    let response = send(fresh, proof_key.proof_for("POST", TOKEN_URL, None, NOW)).await;
    assert_oauth(&response, 401, "invalid_client", text::INVALID_CLIENT);
}
