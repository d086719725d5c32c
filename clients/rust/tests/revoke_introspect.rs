//! `revoke()` (RFC 7009) and `introspect()` (RFC 7662) against a scripted local server:
//! request shapes with either client authentication, retries, and the token cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kiss_customer_api::{Client, ClientConfig, Error, PrivateKeyJwt};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::oauth::{assertion_of, field_names, form};
use support::{CODE, CUSTOMER, Reply, Server, TOKEN, fast, ms};

const KEY: &str = "kiss_sk_test+key";
const REVOKE: &str = "/auth/revoke";
const INTROSPECT: &str = "/auth/introspect";

const ACTIVE: &str = r#"{"active":true,"scope":"customer:read","client_id":"ACME-1","sub":"ACME-1","iss":"https://api.example.com","aud":"customer-api","exp":1900003600,"iat":1900000000,"nbf":1900000000,"jti":"j1","token_type":"Bearer","key_id":"key_1"}"#;

fn basic_client(server: &Server, config: ClientConfig) -> Client {
    Client::with_config(&server.url, CODE, KEY, config).unwrap()
}

fn basic_header() -> String {
    format!("Basic {}", STANDARD.encode("ACME-1:kiss_sk_test%2Bkey"))
}

/// Issues t1, t2, … in turn and accepts any of them on `/customer`.
async fn server() -> Server {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            Reply::token("t1", 3600),
            Reply::token("t2", 3600),
            Reply::token("t3", 3600),
        ],
    );
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);
    server.script(REVOKE, vec![Reply::new(200, "")]);
    server.script(INTROSPECT, vec![Reply::json(200, ACTIVE)]);
    server
}

fn last_bearer(server: &Server) -> String {
    let call = server.requests(CUSTOMER).pop().unwrap();
    call.header("authorization").unwrap().to_owned()
}

fn invalid_client() -> Reply {
    Reply::json(
        401,
        r#"{"error":"invalid_client","error_description":"Invalid client credentials."}"#,
    )
    .header("WWW-Authenticate", "Basic realm=\"customer-api\"")
}

// -- revoke ------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_posts_the_token_with_client_secret_basic() {
    let server = server().await;
    basic_client(&server, fast())
        .revoke("some.access.token")
        .await
        .unwrap();

    let request = &server.requests(REVOKE)[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("authorization"),
        Some(basic_header().as_str())
    );
    assert_eq!(
        request.body,
        b"token=some.access.token&token_type_hint=access_token"
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(server.count(TOKEN), 0, "revocation needs no access token");
}

#[tokio::test]
async fn revoke_with_private_key_jwt_carries_the_assertion_in_the_body() {
    let key = PrivateKeyJwt::generate_ed25519()
        .unwrap()
        .with_key_id("key_9");
    let server = server().await;
    let client = Client::with_private_key_jwt(&server.url, CODE, key.clone(), fast()).unwrap();
    client.revoke("a.b.c").await.unwrap();

    let request = &server.requests(REVOKE)[0];
    assert_eq!(
        field_names(request),
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "token",
            "token_type_hint"
        ]
    );
    let fields = form(request);
    assert_eq!(fields["token"], "a.b.c");
    assert_eq!(fields["token_type_hint"], "access_token");
    let assertion = assertion_of(request, &key.public_jwk());
    // The audience of every assertion is the token endpoint, whichever endpoint gets it.
    assert_eq!(
        assertion.claims["aud"],
        format!("{}/auth/token", server.url)
    );
    assert_eq!(assertion.claims["iss"], CODE);
    assert_eq!(assertion.header["kid"], "key_9");
}

#[tokio::test]
async fn revoke_drops_the_cached_token_so_the_next_call_gets_a_new_one() {
    let server = server().await;
    let client = basic_client(&server, fast());
    client.customer().await.unwrap();
    client.customer().await.unwrap();
    assert_eq!(server.count(TOKEN), 1);

    // Any token: the API revokes every token of the customer when it is one of theirs,
    // and cannot say whether it was.
    client.revoke("someone.elses.token").await.unwrap();
    client.customer().await.unwrap();

    assert_eq!(server.count(TOKEN), 2);
    assert_eq!(last_bearer(&server), "Bearer t2");
    assert_eq!(server.count(CUSTOMER), 3, "no 401 round trip was needed");
}

#[tokio::test]
async fn revoke_current_token_revokes_what_the_client_holds() {
    let server = server().await;
    let client = basic_client(&server, fast());

    assert!(
        !client.revoke_current_token().await.unwrap(),
        "no token yet"
    );
    assert_eq!(server.count(REVOKE), 0);
    assert_eq!(server.count(TOKEN), 0);

    client.customer().await.unwrap();
    assert!(client.revoke_current_token().await.unwrap());
    assert_eq!(
        server.requests(REVOKE)[0].body,
        b"token=t1&token_type_hint=access_token"
    );

    assert!(
        !client.revoke_current_token().await.unwrap(),
        "the revoked token was dropped"
    );
    client.customer().await.unwrap();
    assert_eq!(last_bearer(&server), "Bearer t2");
    assert_eq!(server.count(REVOKE), 1);
}

#[tokio::test]
async fn revoke_is_retried_on_5xx_and_429_with_a_fresh_assertion_each_time() {
    let key = PrivateKeyJwt::generate_es256().unwrap();
    let server = server().await;
    server.script(
        REVOKE,
        vec![
            Reply::json(
                500,
                r#"{"error":"server_error","error_description":"An unexpected error occurred."}"#,
            ),
            Reply::too_many("1"),
            Reply::new(200, ""),
        ],
    );
    let client = Client::with_private_key_jwt(&server.url, CODE, key.clone(), fast()).unwrap();
    client.revoke("t1").await.unwrap();

    let requests = server.requests(REVOKE);
    assert_eq!(requests.len(), 3);
    let jtis: HashSet<String> = requests
        .iter()
        .map(|r| assertion_of(r, &key.public_jwk()).jti())
        .collect();
    assert_eq!(jtis.len(), 3);
}

#[tokio::test]
async fn revoke_waits_retry_after() {
    let server = server().await;
    server.script(REVOKE, vec![Reply::too_many("1"), Reply::new(200, "")]);
    let client = basic_client(&server, fast().retry_after_cap(Duration::from_secs(5)));

    let started = Instant::now();
    client.revoke("t1").await.unwrap();
    assert!(started.elapsed() >= ms(990), "{:?}", started.elapsed());
    assert_eq!(server.count(REVOKE), 2);
}

#[tokio::test]
async fn revoke_rate_limited_to_the_end_is_rate_limited() {
    let server = server().await;
    server.script(REVOKE, vec![Reply::too_many("1")]);
    let err = basic_client(&server, fast().max_attempts(2).retry_after_cap(ms(5)))
        .revoke("t1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), attempts: 2 } if d == Duration::from_secs(1)),
        "{err:?}"
    );
}

#[tokio::test]
async fn revoke_refused_credentials_are_permanent_and_keep_the_cache() {
    let server = server().await;
    server.script(REVOKE, vec![invalid_client()]);
    let client = basic_client(&server, fast());
    client.customer().await.unwrap();

    let err = client.revoke("t1").await.unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials { .. }), "{err:?}");
    assert_eq!(server.count(REVOKE), 1, "not retried");

    client.customer().await.unwrap();
    assert_eq!(
        server.count(TOKEN),
        1,
        "nothing was revoked, the token stays"
    );
}

#[tokio::test]
async fn revoke_400_is_rejected_with_the_envelope() {
    let server = server().await;
    server.script(
        REVOKE,
        vec![Reply::json(
            400,
            r#"{"error":"invalid_request","error_description":"The token parameter is required."}"#,
        )],
    );
    let err = basic_client(&server, fast()).revoke("").await.unwrap_err();
    match err {
        Error::Rejected { status: 400, body } => {
            assert_eq!(body.error.as_deref(), Some("invalid_request"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(
        server.requests(REVOKE)[0].body,
        b"token=&token_type_hint=access_token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_fetched_during_the_revocation_is_dropped_too() {
    let server = server().await;
    server.script(
        TOKEN,
        vec![
            Reply::token("t1", 3600).delay(ms(200)),
            Reply::token("t2", 3600),
        ],
    );
    let client = basic_client(&server, fast());

    let fetching = {
        let client = client.clone();
        tokio::spawn(async move { client.customer().await })
    };
    tokio::time::sleep(ms(50)).await;
    client.revoke("x").await.unwrap();
    fetching.await.unwrap().unwrap();

    client.customer().await.unwrap();
    assert_eq!(last_bearer(&server), "Bearer t2");
}

// -- introspect --------------------------------------------------------------------------

#[tokio::test]
async fn introspect_posts_the_token_and_reads_the_answer() {
    let server = server().await;
    let found = basic_client(&server, fast())
        .introspect("some.access.token")
        .await
        .unwrap();

    let request = &server.requests(INTROSPECT)[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("authorization"),
        Some(basic_header().as_str())
    );
    assert_eq!(request.body, b"token=some.access.token");

    assert!(found.active);
    assert_eq!(found.sub.as_deref(), Some(CODE));
    assert_eq!(found.client_id.as_deref(), Some(CODE));
    assert_eq!(found.scopes().collect::<Vec<_>>(), ["customer:read"]);
    assert_eq!(found.aud, ["customer-api"]);
    assert_eq!(found.exp, Some(1_900_003_600));
    assert_eq!(found.token_type.as_deref(), Some("Bearer"));
    assert_eq!(found.cnf, None);
}

#[tokio::test]
async fn introspect_with_private_key_jwt_carries_the_assertion_in_the_body() {
    let key = PrivateKeyJwt::generate_ed25519().unwrap();
    let server = server().await;
    let client = Client::with_private_key_jwt(&server.url, CODE, key.clone(), fast()).unwrap();
    client.introspect("a.b.c").await.unwrap();

    let request = &server.requests(INTROSPECT)[0];
    assert_eq!(
        field_names(request),
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "token"
        ]
    );
    assert_eq!(form(request)["token"], "a.b.c");
    assertion_of(request, &key.public_jwk());
}

#[tokio::test]
async fn introspect_of_an_inactive_token_is_just_inactive() {
    let server = server().await;
    server.script(INTROSPECT, vec![Reply::json(200, r#"{"active":false}"#)]);
    let found = basic_client(&server, fast()).introspect("x").await.unwrap();
    assert!(!found.active);
    assert_eq!((found.sub, found.exp, found.scope), (None, None, None));
}

#[tokio::test]
async fn introspect_is_retried_on_429_and_5xx() {
    let server = server().await;
    server.script(
        INTROSPECT,
        vec![
            Reply::too_many("1"),
            Reply::server_error(),
            Reply::json(200, ACTIVE),
        ],
    );
    let found = basic_client(&server, fast()).introspect("t").await.unwrap();
    assert!(found.active);
    assert_eq!(server.count(INTROSPECT), 3);
}

#[tokio::test]
async fn introspect_server_error_to_the_end_is_a_server_error() {
    let server = server().await;
    server.script(INTROSPECT, vec![Reply::server_error()]);
    let err = basic_client(&server, fast().max_attempts(3))
        .introspect("t")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Server {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn introspect_refused_credentials_and_malformed_answers() {
    let server = server().await;
    server.script(INTROSPECT, vec![invalid_client()]);
    let err = basic_client(&server, fast())
        .introspect("t")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials { .. }), "{err:?}");
    assert_eq!(server.count(INTROSPECT), 1);

    for body in ["", "{}", r#"{"active":"yes"}"#, "<html>"] {
        let server = Server::start().await;
        server.script(INTROSPECT, vec![Reply::json(200, body)]);
        let err = basic_client(&server, fast())
            .introspect("t")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{body}: {err:?}");
        assert_eq!(server.count(INTROSPECT), 1, "{body}: not retried");
    }
}

#[tokio::test]
async fn introspect_leaves_the_token_cache_alone() {
    let server = server().await;
    let client = basic_client(&server, fast());
    client.customer().await.unwrap();
    client.introspect("t1").await.unwrap();
    client.customer().await.unwrap();
    assert_eq!(server.count(TOKEN), 1);
}

// -- access_token ------------------------------------------------------------------------

#[tokio::test]
async fn access_token_is_the_cached_token_and_debug_hides_it() {
    let server = server().await;
    let client = basic_client(&server, fast());

    let token = client.access_token().await.unwrap();
    assert_eq!(token.as_str(), "t1");
    assert_eq!(format!("{token:?}"), "AccessToken(***)");
    client.customer().await.unwrap();
    assert_eq!(client.access_token().await.unwrap(), token);
    assert_eq!(server.count(TOKEN), 1);

    let found = client.introspect(token.as_str()).await.unwrap();
    assert!(found.active);
    assert_eq!(form(&server.requests(INTROSPECT)[0])["token"], "t1");
}

#[tokio::test]
async fn errors_never_show_the_token_being_revoked_or_introspected() {
    let server = server().await;
    server.script(
        REVOKE,
        vec![Reply::json(400, r#"{"error":"invalid_request"}"#)],
    );
    server.script(INTROSPECT, vec![Reply::json(200, "not json")]);
    let client = basic_client(&server, fast());
    let secret = "secret-access-token";

    let revoked = client.revoke(secret).await.unwrap_err();
    let introspected = client.introspect(secret).await.unwrap_err();
    for err in [revoked, introspected] {
        for text in [format!("{err:?}"), err.to_string()] {
            assert!(!text.contains(secret), "{text}");
            assert!(!text.contains(KEY), "{text}");
        }
    }
}
