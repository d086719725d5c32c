//! `private_key_jwt` client authentication, against a scripted local server: what the
//! token request carries, and that the Errors page's pattern is unchanged with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kiss_customer_api::{Client, ClientConfig, Error, JwsAlgorithm, PrivateKeyJwt};
use std::collections::HashSet;
use support::oauth::{assertion_of, field_names};
use support::{CODE, CUSTOMER, Reply, Server, TOKEN, fast, happy_server, now};

/// Each supported kind of key, with the `alg` its assertions must carry.
fn keys() -> Vec<(PrivateKeyJwt, &'static str)> {
    vec![
        (PrivateKeyJwt::generate_ed25519().unwrap(), "EdDSA"),
        (PrivateKeyJwt::generate_es256().unwrap(), "ES256"),
        (
            PrivateKeyJwt::generate_ed25519()
                .unwrap()
                .with_algorithm(JwsAlgorithm::Ed25519)
                .unwrap(),
            "Ed25519",
        ),
    ]
}

fn client(server: &Server, key: &PrivateKeyJwt, config: ClientConfig) -> Client {
    Client::with_private_key_jwt(&server.url, CODE, key.clone(), config).unwrap()
}

#[tokio::test]
async fn token_request_carries_a_signed_assertion_and_no_basic_header() {
    for (key, alg) in keys() {
        let key = key.with_key_id("key_0123");
        let server = happy_server().await;
        let client = client(&server, &key, fast());

        let before = now();
        let me = client.customer().await.unwrap();
        let after = now();
        assert_eq!(me.customer_code, CODE);

        let request = &server.requests(TOKEN)[0];
        assert_eq!(
            field_names(request),
            [
                "client_assertion",
                "client_assertion_type",
                "client_id",
                "grant_type"
            ],
            "{alg}"
        );
        assert_eq!(
            support::oauth::form(request)["grant_type"],
            "client_credentials"
        );
        let assertion = assertion_of(request, &key.public_jwk());
        assert_eq!(
            assertion.header,
            serde_json::json!({"alg": alg, "typ": "JWT", "kid": "key_0123"})
        );
        let claims = &assertion.claims;
        assert_eq!(claims["iss"], CODE);
        assert_eq!(claims["sub"], CODE);
        assert_eq!(claims["aud"], format!("{}/auth/token", server.url));
        let (iat, exp) = (assertion.claim_u64("iat"), assertion.claim_u64("exp"));
        assert!((before..=after).contains(&iat), "{claims}");
        assert!(exp > iat && exp - iat <= 60, "{claims}");
        // 128 random bits at least, base64url.
        assert!(assertion.jti().len() >= 22, "{claims}");

        // The API call itself is the usual bearer call.
        let call = &server.requests(CUSTOMER)[0];
        assert_eq!(call.header("authorization"), Some("Bearer t1"));
    }
}

#[tokio::test]
async fn without_a_key_id_the_header_has_no_kid() {
    let key = PrivateKeyJwt::generate_es256().unwrap();
    let server = happy_server().await;
    client(&server, &key, fast()).customer().await.unwrap();

    let assertion = assertion_of(&server.requests(TOKEN)[0], &key.public_jwk());
    assert_eq!(
        assertion.header,
        serde_json::json!({"alg": "ES256", "typ": "JWT"})
    );
}

#[tokio::test]
async fn audience_is_the_token_endpoint_under_a_stage_prefix_or_the_one_given() {
    let key = PrivateKeyJwt::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script("/Prod/auth/token", vec![Reply::token("t1", 3600)]);
    server.script("/Prod/customer", vec![Reply::customer(CODE)]);

    let staged =
        Client::with_private_key_jwt(&format!("{}/Prod/", server.url), CODE, key.clone(), fast())
            .unwrap();
    staged.customer().await.unwrap();
    let request = &server.requests("/Prod/auth/token")[0];
    let assertion = assertion_of(request, &key.public_jwk());
    assert_eq!(
        assertion.claims["aud"],
        format!("{}/Prod/auth/token", server.url)
    );

    let issuer = "https://api.example.com";
    let explicit = Client::with_private_key_jwt(
        &format!("{}/Prod", server.url),
        CODE,
        key.clone().with_audience(issuer),
        fast(),
    )
    .unwrap();
    explicit.customer().await.unwrap();
    let request = &server.requests("/Prod/auth/token")[1];
    assert_eq!(
        assertion_of(request, &key.public_jwk()).claims["aud"],
        issuer
    );
}

#[tokio::test]
async fn every_attempt_and_every_token_request_has_a_new_jti() {
    let key = PrivateKeyJwt::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            Reply::json(
                500,
                r#"{"error":"server_error","error_description":"An unexpected error occurred."}"#,
            ),
            Reply::too_many("1"),
            Reply::token("t1", 3600),
            Reply::token("t2", 3600),
        ],
    );
    // t1 is refused once, so the client fetches t2 with yet another assertion.
    server.handle(CUSTOMER, |r| match r.header("authorization") {
        Some("Bearer t2") => Reply::customer(CODE),
        _ => Reply::bearer_401(),
    });

    client(&server, &key, fast()).customer().await.unwrap();

    let requests = server.requests(TOKEN);
    assert_eq!(requests.len(), 4, "500 and 429 retried, then one refresh");
    let jtis: HashSet<String> = requests
        .iter()
        .map(|r| assertion_of(r, &key.public_jwk()).jti())
        .collect();
    assert_eq!(jtis.len(), 4, "a jti is never sent twice");
}

#[tokio::test]
async fn token_is_cached_with_private_key_jwt_too() {
    let key = PrivateKeyJwt::generate_es256().unwrap();
    let server = happy_server().await;
    let client = client(&server, &key, fast());
    for _ in 0..3 {
        client.customer().await.unwrap();
    }
    assert_eq!(server.count(TOKEN), 1);
    assert_eq!(server.count(CUSTOMER), 3);
}

#[tokio::test]
async fn refused_assertion_is_invalid_credentials_and_not_retried() {
    let key = PrivateKeyJwt::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![Reply::json(
            401,
            r#"{"error":"invalid_client","error_description":"Invalid client credentials."}"#,
        )],
    );
    let err = client(&server, &key, fast()).customer().await.unwrap_err();
    match &err {
        Error::InvalidCredentials { body } => {
            assert_eq!(body.error.as_deref(), Some("invalid_client"));
        }
        other => panic!("expected InvalidCredentials, got {other:?}"),
    }
    assert_eq!(server.count(TOKEN), 1);
    assert_eq!(server.count(CUSTOMER), 0);
}

#[tokio::test]
async fn debug_shows_the_algorithm_and_key_id_never_the_key() {
    let key = PrivateKeyJwt::generate_ed25519()
        .unwrap()
        .with_key_id("key_0123");
    let pem = key.to_pkcs8_pem().unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let server = happy_server().await;
    let client = client(&server, &key, fast());
    client.customer().await.unwrap();

    for text in [format!("{client:?}"), format!("{key:?}")] {
        assert!(
            text.contains("EdDSA") && text.contains("key_0123"),
            "{text}"
        );
        assert!(text.contains("\"***\""), "{text}");
        assert!(!text.contains(&body), "{text}");
        assert!(!text.contains(&body[body.len() - 20..]), "{text}");
    }
    assert!(!format!("{client:?}").contains("api_key"));
}
