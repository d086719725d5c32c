//! `private_key_jwt` (RFC 7523) at the token, revocation and introspection endpoints: good
//! assertions, the attack corpus (each the same 401 and nothing counted), single use of a
//! `jti`, and on DynamoDB (moto) one round trip in the steady state and exactly one token
//! for concurrent replays across instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use shared::assertion::ASSERTION_TYPE;
use shared::error::text;
use shared::jwk::PublicJwk;
use shared::keys::{KeyDocument, MemoryKeySource};
use shared::model::StoredKey;
use shared::store::dynamo::DynamoStore;
use shared::test_util::{self, DynamoFixtures, ProofKey, fresh_jti, with_member};
use shared::token_api::TokenApi;
use std::sync::Arc;

const AUD: &str = "https://api.test/auth/token";

/// A customer's key pair: the fixtures' signing key.
type ClientKey = ProofKey;

trait Assertions {
    /// A good assertion for `CODE` at `now` with a fresh `jti`.
    fn assertion(&self, now: u64) -> String;
}

impl Assertions for ProofKey {
    fn assertion(&self, now: u64) -> String {
        self.sign(
            &json!({"alg": self.alg(), "kid": self.key_id(), "typ": "JWT"}),
            &claims(now, &fresh_jti()),
        )
    }
}

fn claims(now: u64, jti: &str) -> Value {
    json!({"iss": CODE, "sub": CODE, "aud": AUD, "iat": now, "exp": now + 60, "jti": jti})
}

fn form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
        form_urlencoded::byte_serialize(ASSERTION_TYPE.as_bytes()).collect::<String>()
    )
}

/// Registers `key` for the fixture's customer (item entry and stored JWK).
fn register(f: &Fixture, key: &ClientKey, expires_at: Option<u64>) -> String {
    let jwk = PublicJwk::parse(&key.jwk).unwrap();
    let id = jwk.key_id();
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.keys.insert(
        id.clone(),
        StoredKey {
            hash: None,
            created_at: NOW - 10,
            expires_at,
        },
    );
    f.store.put(customer);
    f.store.put_jwk(&f.code(), &id, &jwk.to_json());
    id
}

fn token_count(f: &Fixture) -> u64 {
    f.store.get(&f.code()).unwrap().token_counter.count
}

async fn post_token(f: &Fixture, body: &str, now: u64) -> Response<Body> {
    call(&f.token, post_form(body), now).await
}

#[tokio::test]
async fn ed25519_and_es256_assertions_get_tokens_bound_to_the_jwk() {
    let f = Fixture::new();
    for key in [ClientKey::ed25519(), ClientKey::es256()] {
        let id = register(&f, &key, None);
        let response = post_token(&f, &form(&key.assertion(NOW)), NOW).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        let token = json(&response)["access_token"].as_str().unwrap().to_owned();
        assert_eq!(segment(&token, 1)["key_id"], id.as_str());
        assert!(header(&response, "x-ratelimit-remaining").is_some());
        let found = call(&f.customer, get_with_token("/customer", &token), NOW).await;
        assert_eq!(found.status(), 200);
    }
    // client_id beside the assertion, equal to its iss; RFC 9864's `Ed25519`; JSON bodies.
    let key = ClientKey::ed25519();
    register(&f, &key, None);
    let body = format!("{}&client_id={CODE}", form(&key.assertion(NOW)));
    assert_eq!(post_token(&f, &body, NOW).await.status(), 200);
    let webcrypto = key.sign(
        &json!({"alg": "Ed25519", "kid": key.key_id()}),
        &claims(NOW, &fresh_jti()),
    );
    let json_body = json!({"grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE, "client_assertion": webcrypto});
    let request = request(
        "POST",
        "/auth/token",
        &[("content-type", "application/json")],
        Body::Text(json_body.to_string()),
    );
    assert_eq!(call(&f.token, request, NOW).await.status(), 200);
}

#[tokio::test]
async fn the_rfc_7523_attack_corpus_is_invalid_client_and_counts_nothing() {
    let f = Fixture::new();
    let key = ClientKey::ed25519();
    let id = register(&f, &key, None);
    let stranger = ClientKey::ed25519();
    let kid = json!({"alg": "EdDSA", "kid": id});
    let with = |name: &str, value: Value| with_member(claims(NOW, &fresh_jti()), name, value);
    let mut cases = vec![
        (
            "alg none",
            key.sign(&json!({"alg": "none", "kid": id}), &claims(NOW, "a")),
        ),
        (
            "HS256",
            key.sign(&json!({"alg": "HS256", "kid": id}), &claims(NOW, "b")),
        ),
        ("wrong iss", key.sign(&kid, &with("iss", "OTHER-1".into()))),
        ("wrong sub", key.sign(&kid, &with("sub", "OTHER-1".into()))),
        (
            "wrong aud",
            key.sign(&kid, &with("aud", "https://evil.test".into())),
        ),
        ("expired", key.sign(&kid, &with("exp", (NOW - 61).into()))),
        (
            "over 3600 s",
            key.sign(&kid, &with("exp", (NOW + 3601).into())),
        ),
        ("no exp", key.sign(&kid, &with("exp", Value::Null))),
        ("no jti", key.sign(&kid, &with("jti", Value::Null))),
        (
            "unknown kid",
            key.sign(
                &json!({"alg": "EdDSA", "kid": "key_0000000000000000"}),
                &claims(NOW, "c"),
            ),
        ),
        (
            "unregistered key",
            stranger.sign(&json!({"alg": "EdDSA"}), &claims(NOW, "d")),
        ),
        ("tampered", format!("{}x", key.assertion(NOW))),
        ("not a JWT", "garbage".to_owned()),
    ];
    // Another customer's registered key, claiming to be ours.
    let other = test_util::customer("OTHER-1", NOW);
    f.store.put(other.customer);
    let theirs = ClientKey::ed25519();
    f.store.put_jwk(
        &shared::model::CustomerCode::parse("OTHER-1").unwrap(),
        &theirs.key_id(),
        &theirs.jwk,
    );
    cases.push(("another customer's key", theirs.assertion(NOW)));
    let reference = post_token(&f, &form(&stranger.assertion(NOW)), NOW).await;
    assert_oauth(&reference, 401, "invalid_client", text::INVALID_CLIENT);
    for (case, assertion) in cases {
        let response = post_token(&f, &form(&assertion), NOW).await;
        assert_oauth(&response, 401, "invalid_client", text::INVALID_CLIENT);
        assert_eq!(response.headers(), reference.headers(), "{case}");
    }
    // client_id that is not the assertion's iss.
    let body = format!("{}&client_id=OTHER-1", form(&key.assertion(NOW)));
    assert_oauth(
        &post_token(&f, &body, NOW).await,
        401,
        "invalid_client",
        text::INVALID_CLIENT,
    );
    assert_eq!(token_count(&f), 0, "nothing counted");
}

#[tokio::test]
async fn a_jti_is_accepted_once_and_a_replay_counts_nothing() {
    let f = Fixture::new();
    let key = ClientKey::ed25519();
    register(&f, &key, None);
    let assertion = key.assertion(NOW);
    assert_eq!(post_token(&f, &form(&assertion), NOW).await.status(), 200);
    for later in [NOW, NOW + 30, NOW + 120] {
        let replay = post_token(&f, &form(&assertion), later).await;
        assert_oauth(&replay, 401, "invalid_client", text::INVALID_CLIENT);
        assert_eq!(header(&replay, "x-ratelimit-remaining"), None);
    }
    assert_eq!(token_count(&f), 1);
}

#[tokio::test]
async fn revoked_or_expired_jwks_authenticate_nothing_and_their_tokens_stop() {
    let f = Fixture::new();
    let key = ClientKey::ed25519();
    let id = register(&f, &key, None);
    let response = post_token(&f, &form(&key.assertion(NOW)), NOW).await;
    let token = json(&response)["access_token"].as_str().unwrap().to_owned();
    let mut customer = f.store.get(&f.code()).unwrap();
    customer.keys.remove(&id);
    f.store.put(customer);
    assert_oauth(
        &post_token(&f, &form(&key.assertion(NOW)), NOW).await,
        401,
        "invalid_client",
        text::INVALID_CLIENT,
    );
    assert_bearer_401(&call(&f.customer, get_with_token("/customer", &token), NOW).await);
    let expiring = ClientKey::es256();
    register(&f, &expiring, Some(NOW + 100));
    assert_eq!(
        post_token(&f, &form(&expiring.assertion(NOW)), NOW)
            .await
            .status(),
        200
    );
    let late = post_token(&f, &form(&expiring.assertion(NOW + 100)), NOW + 100).await;
    assert_oauth(&late, 401, "invalid_client", text::INVALID_CLIENT);
}

#[tokio::test]
async fn one_method_per_request_and_a_complete_assertion() {
    let f = Fixture::new();
    let key = ClientKey::ed25519();
    register(&f, &key, None);
    let assertion = key.assertion(NOW);
    let with_secret = format!("{}&client_secret={}", form(&assertion), f.api_key.expose());
    assert_oauth(
        &post_token(&f, &with_secret, NOW).await,
        400,
        "invalid_request",
        text::TWO_AUTH_METHODS,
    );
    let auth = basic(CODE, f.api_key.expose());
    let both = request(
        "POST",
        "/auth/token",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &auth),
        ],
        Body::Text(form(&assertion)),
    );
    assert_oauth(
        &call(&f.token, both, NOW).await,
        400,
        "invalid_request",
        text::TWO_AUTH_METHODS,
    );
    let half = format!("grant_type=client_credentials&client_assertion={assertion}");
    assert_oauth(
        &post_token(&f, &half, NOW).await,
        400,
        "invalid_request",
        text::ASSERTION_INCOMPLETE,
    );
    let other_type = form(&assertion).replace("jwt-bearer", "saml2-bearer");
    assert_oauth(
        &post_token(&f, &other_type, NOW).await,
        400,
        "invalid_request",
        text::ASSERTION_TYPE_UNSUPPORTED,
    );
    assert_eq!(token_count(&f), 0);
}

#[tokio::test]
async fn revocation_and_introspection_accept_private_key_jwt() {
    let f = Fixture::new();
    let key = ClientKey::ed25519();
    register(&f, &key, None);
    let token = f.access_token(NOW).await;
    let body =
        |path_token: &str| format!("{}&token={path_token}", &form(&key.assertion(NOW))[30..]);
    let introspected = call(
        &f.token,
        request(
            "POST",
            "/auth/introspect",
            &[("content-type", "application/x-www-form-urlencoded")],
            Body::Text(body(&token)),
        ),
        NOW,
    )
    .await;
    assert_eq!(
        json(&introspected)["active"],
        true,
        "{}",
        text(&introspected)
    );
    let revoked = call(
        &f.token,
        request(
            "POST",
            "/auth/revoke",
            &[("content-type", "application/x-www-form-urlencoded")],
            Body::Text(body(&token)),
        ),
        NOW,
    )
    .await;
    assert_eq!(
        (revoked.status().as_u16(), text(&revoked)),
        (200, String::new())
    );
    assert_bearer_401(&call(&f.customer, get_with_token("/customer", &token), NOW).await);
}

#[tokio::test]
async fn metadata_lists_private_key_jwt_and_its_algorithms() {
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
    let methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt"
    ]);
    let algs = json!(["EdDSA", "Ed25519", "ES256", "RS256", "PS256"]);
    for endpoint in ["token", "revocation", "introspection"] {
        assert_eq!(
            doc[format!("{endpoint}_endpoint_auth_methods_supported")],
            methods
        );
        assert_eq!(
            doc[format!("{endpoint}_endpoint_auth_signing_alg_values_supported")],
            algs
        );
    }
}

/// The token API over one moto table, with a DynamoDB call counter: one "instance".
async fn instance(store: DynamoStore) -> TokenApi<DynamoStore, Arc<MemoryKeySource>> {
    let mut doc = KeyDocument::default();
    doc.rotate(NOW - 1000).unwrap();
    TokenApi::new(store, Arc::new(MemoryKeySource::new(doc)), &config())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_dynamodb_one_round_trip_and_concurrent_replays_get_exactly_one_token() {
    let (client, calls) = common::moto::dynamodb();
    let table = common::moto::table(&client).await;
    let seed = DynamoStore::new(client.clone(), &table);
    let mut customer = test_util::customer(CODE, NOW);
    let key = ClientKey::ed25519();
    let jwk = PublicJwk::parse(&key.jwk).unwrap();
    customer.customer.keys.insert(
        jwk.key_id(),
        StoredKey {
            hash: None,
            created_at: NOW,
            expires_at: None,
        },
    );
    seed.create(&customer.customer).await.unwrap();
    seed.put_jwks(&customer.customer.code, &[(jwk.key_id(), jwk.to_json())])
        .await
        .unwrap();
    let first = instance(DynamoStore::new(client.clone(), &table)).await;
    let before = calls.get();
    assert_eq!(post_form_to(&first, &key.assertion(NOW)).await, 200);
    assert_eq!(
        calls.get() - before,
        2,
        "first: BatchGetItem (image + JWKs), then the transaction"
    );
    let before = calls.get();
    for i in 0..5 {
        assert_eq!(post_form_to(&first, &key.assertion(NOW + i)).await, 200);
    }
    assert_eq!(
        calls.get() - before,
        5,
        "steady state: one TransactWriteItems each"
    );

    // Two more instances with their own caches; 30 parallel replays of one assertion.
    let second = Arc::new(instance(DynamoStore::new(client.clone(), &table)).await);
    let third = Arc::new(instance(DynamoStore::new(client.clone(), &table)).await);
    let assertion = key.assertion(NOW + 10);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let api = if i % 2 == 0 {
            second.clone()
        } else {
            third.clone()
        };
        let assertion = assertion.clone();
        tasks.spawn(async move { post_form_to(&api, &assertion).await });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        29,
        "{statuses:?}"
    );
    let stored = seed.get(&customer.customer.code).await.unwrap().unwrap();
    assert_eq!(stored.token_counter.count, 7, "the replays counted nothing");

    // Distinct assertions from three instances at once: exactly the limit is admitted.
    let next = NOW + 60;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let api = [&second, &third][i % 2].clone();
        let assertion = key.assertion(next);
        tasks.spawn(async move { post_form_to(&api, &assertion).await });
    }
    let mut granted = 0;
    while let Some(status) = tasks.join_next().await {
        let status = status.unwrap();
        assert!(status == 200 || status == 429, "{status}");
        granted += usize::from(status == 200);
    }
    assert_eq!(granted, 20, "the default token limit, exactly");
}

async fn post_form_to(api: &TokenApi<DynamoStore, Arc<MemoryKeySource>>, assertion: &str) -> u16 {
    let now = segment(assertion, 1)["iat"].as_u64().unwrap();
    call(api, post_form(&form(assertion)), now)
        .await
        .status()
        .as_u16()
}
