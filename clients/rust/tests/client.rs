//! The Errors page's error-handling pattern, against a scripted local server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kiss_customer_api::{Client, ClientConfig, Error};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{CODE, CUSTOMER, Reply, Server, TOKEN, closed_port_url, fast, happy_server, ms};

const KEY: &str = "kiss_sk_test+key/with=specials";

fn client(server: &Server, config: ClientConfig) -> Client {
    Client::with_config(&server.url, CODE, KEY, config).unwrap()
}

// -- token -------------------------------------------------------------------------------

#[tokio::test]
async fn token_is_requested_with_client_secret_basic_and_cached() {
    let server = happy_server().await;
    let client = client(&server, fast());

    for _ in 0..3 {
        let me = client.customer().await.unwrap();
        assert_eq!(me.customer_code, CODE);
        assert_eq!(me.plan, "gold");
    }

    let tokens = server.requests(TOKEN);
    assert_eq!(tokens.len(), 1, "the token is cached");
    let request = &tokens[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.body, b"grant_type=client_credentials");
    // RFC 6749 §2.3.1: id and secret form-urlencoded, then Basic.
    let basic = format!(
        "Basic {}",
        STANDARD.encode("ACME-1:kiss_sk_test%2Bkey%2Fwith%3Dspecials")
    );
    assert_eq!(request.header("authorization"), Some(basic.as_str()));

    let calls = server.requests(CUSTOMER);
    assert_eq!(calls.len(), 3);
    for call in calls {
        assert_eq!(call.method, "GET");
        assert_eq!(call.header("authorization"), Some("Bearer t1"));
        assert!(call.body.is_empty());
    }
}

#[tokio::test]
async fn token_is_refreshed_shortly_before_expires_in() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 2), Reply::token("t2", 2)]);
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);
    // A 60 s margin on a 2 s token is cut to half its lifetime: refresh after 1 s.
    let client = client(&server, fast().refresh_margin(Duration::from_secs(60)));

    client.customer().await.unwrap();
    client.customer().await.unwrap();
    assert_eq!(server.count(TOKEN), 1);
    tokio::time::sleep(ms(1100)).await;
    client.customer().await.unwrap();

    assert_eq!(server.count(TOKEN), 2);
    let last = server.requests(CUSTOMER).pop().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer t2"));
}

#[tokio::test]
async fn invalid_credentials_are_permanent() {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            Reply::json(
                401,
                r#"{"error":"invalid_client","error_description":"Invalid client credentials."}"#,
            )
            .header("WWW-Authenticate", "Basic realm=\"customer-api\""),
        ],
    );
    let err = client(&server, fast()).customer().await.unwrap_err();

    match &err {
        Error::InvalidCredentials { body } => {
            assert_eq!(body.error.as_deref(), Some("invalid_client"));
            assert_eq!(
                body.error_description.as_deref(),
                Some("Invalid client credentials.")
            );
        }
        other => panic!("expected InvalidCredentials, got {other:?}"),
    }
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_transient());
    assert_eq!(server.count(TOKEN), 1, "no retry");
    assert_eq!(server.count(CUSTOMER), 0);
}

#[tokio::test]
async fn token_endpoint_5xx_and_429_are_retried() {
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
        ],
    );
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);

    client(&server, fast()).customer().await.unwrap();
    assert_eq!(server.count(TOKEN), 3);
    assert_eq!(server.count(CUSTOMER), 1);
}

#[tokio::test]
async fn other_4xx_is_permanent_and_carries_the_envelope() {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![Reply::json(
            400,
            r#"{"error":"invalid_request","error_description":"client_id and client_secret are required."}"#,
        )],
    );
    let err = client(&server, fast()).customer().await.unwrap_err();

    match err {
        Error::Rejected { status, body } => {
            assert_eq!(status, 400);
            assert_eq!(body.error.as_deref(), Some("invalid_request"));
            assert_eq!(
                body.error_description.as_deref(),
                Some("client_id and client_secret are required.")
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(server.count(TOKEN), 1);
}

// -- 401 on a protected call --------------------------------------------------------------

#[tokio::test]
async fn expired_token_401_refreshes_once_then_succeeds() {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![Reply::token("t1", 3600), Reply::token("t2", 3600)],
    );
    // The server considers t1 expired.
    server.handle(CUSTOMER, |r| match r.header("authorization") {
        Some("Bearer t2") => Reply::customer(CODE),
        _ => Reply::bearer_401(),
    });
    let client = client(&server, fast());

    let me = client.customer().await.unwrap();
    assert_eq!(me.customer_code, CODE);
    assert_eq!(server.count(TOKEN), 2, "exactly one refresh");
    let auth: Vec<_> = server
        .requests(CUSTOMER)
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer t1", "Bearer t2"]);

    client.customer().await.unwrap();
    assert_eq!(server.count(TOKEN), 2, "the refreshed token is cached");
}

#[tokio::test]
async fn second_401_after_refresh_is_unauthorized_not_a_loop() {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![Reply::token("t1", 3600), Reply::token("t2", 3600)],
    );
    server.script(CUSTOMER, vec![Reply::bearer_401()]);

    let err = client(&server, fast()).customer().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized), "{err:?}");
    assert_eq!(server.count(TOKEN), 2);
    assert_eq!(server.count(CUSTOMER), 2);
}

#[tokio::test]
async fn suspended_customer_401_then_refused_token_is_invalid_credentials() {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            Reply::token("t1", 3600),
            Reply::json(
                401,
                r#"{"error":"invalid_client","error_description":"Invalid client credentials."}"#,
            ),
        ],
    );
    server.script(CUSTOMER, vec![Reply::customer(CODE), Reply::bearer_401()]);
    let client = client(&server, fast());

    client.customer().await.unwrap();
    let err = client.customer().await.unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials { .. }), "{err:?}");
    assert_eq!(server.count(TOKEN), 2);
    assert_eq!(server.count(CUSTOMER), 2);
}

// -- 429 ---------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limited_429_waits_retry_after_then_succeeds() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::too_many("1"), Reply::customer(CODE)]);
    let client = client(&server, fast().retry_after_cap(Duration::from_secs(5)));

    let started = Instant::now();
    client.customer().await.unwrap();
    let elapsed = started.elapsed();

    assert!(elapsed >= ms(990), "waited Retry-After: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(server.count(CUSTOMER), 2);
    assert_eq!(server.count(TOKEN), 1);
}

#[tokio::test]
async fn retry_after_is_capped_by_the_config() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(
        CUSTOMER,
        vec![Reply::too_many("120"), Reply::customer(CODE)],
    );

    let started = Instant::now();
    client(&server, fast().retry_after_cap(ms(30)))
        .customer()
        .await
        .unwrap();
    assert!(started.elapsed() < ms(3000), "{:?}", started.elapsed());
    assert_eq!(server.count(CUSTOMER), 2);
}

#[tokio::test]
async fn rate_limited_past_the_time_budget_is_returned_at_once() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::too_many("30")]);
    let config = fast()
        .retry_after_cap(Duration::from_secs(60))
        .total_timeout(Duration::from_secs(10));

    let started = Instant::now();
    let err = client(&server, config).customer().await.unwrap_err();
    assert!(started.elapsed() < ms(3000), "{:?}", started.elapsed());
    match err {
        Error::RateLimited {
            retry_after,
            attempts,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)));
            assert_eq!(attempts, 1);
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(server.count(CUSTOMER), 1);
}

#[tokio::test]
async fn rate_limited_forever_stops_after_max_attempts() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::too_many("1")]);

    let err = client(&server, fast().max_attempts(3).retry_after_cap(ms(5)))
        .customer()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), attempts: 3 } if d == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(server.count(CUSTOMER), 3);
}

// -- 5xx and transport ---------------------------------------------------------------------

#[tokio::test]
async fn server_error_twice_then_success() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(
        CUSTOMER,
        vec![
            Reply::server_error(),
            Reply::server_error(),
            Reply::customer(CODE),
        ],
    );

    let me = client(&server, fast()).customer().await.unwrap();
    assert_eq!(me.customer_code, CODE);
    assert_eq!(server.count(CUSTOMER), 3);
    assert_eq!(server.count(TOKEN), 1);
}

#[tokio::test]
async fn server_error_forever_stops_after_max_attempts() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::server_error()]);

    let err = client(&server, fast().max_attempts(4))
        .customer()
        .await
        .unwrap_err();
    match &err {
        Error::Server {
            status,
            body,
            attempts,
        } => {
            assert_eq!((*status, *attempts), (500, 4));
            assert_eq!(body.error.as_deref(), Some("An unexpected error occurred."));
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert_eq!(server.count(CUSTOMER), 4);
}

#[tokio::test]
async fn server_error_forever_stops_at_the_time_budget() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::server_error()]);
    let config = fast()
        .max_attempts(10_000)
        .base_delay(ms(20))
        .max_delay(ms(20))
        .total_timeout(ms(300));

    let started = Instant::now();
    let err = client(&server, config).customer().await.unwrap_err();
    let elapsed = started.elapsed();

    assert!(matches!(err, Error::Server { status: 500, .. }), "{err:?}");
    assert!(elapsed < ms(1500), "{elapsed:?}");
    let calls = server.count(CUSTOMER);
    assert!((2..200).contains(&calls), "{calls}");
}

#[tokio::test]
async fn dropped_connection_is_retried_then_succeeds() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::hang_up(), Reply::customer(CODE)]);

    client(&server, fast()).customer().await.unwrap();
    assert_eq!(server.count(CUSTOMER), 2);
}

#[tokio::test]
async fn slow_response_times_out_and_is_retried() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(
        CUSTOMER,
        vec![Reply::customer(CODE).delay(ms(5000)), Reply::customer(CODE)],
    );

    let started = Instant::now();
    client(&server, fast().request_timeout(ms(100)))
        .customer()
        .await
        .unwrap();
    assert!(started.elapsed() < ms(3000), "{:?}", started.elapsed());
    assert_eq!(server.count(CUSTOMER), 2);
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error_after_bounded_attempts() {
    let url = closed_port_url().await;
    let client = Client::with_config(&url, CODE, KEY, fast().max_attempts(3)).unwrap();

    let err = client.customer().await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.status(), None);
}

// -- permanent and malformed -------------------------------------------------------------

#[tokio::test]
async fn not_found_is_permanent() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(
        CUSTOMER,
        vec![Reply::json(404, r#"{"error":"Customer not found."}"#)],
    );

    let err = client(&server, fast()).customer().await.unwrap_err();
    match &err {
        Error::NotFound { body } => {
            assert_eq!(body.error.as_deref(), Some("Customer not found."))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(err.status(), Some(404));
    assert_eq!(server.count(CUSTOMER), 1, "no retry");
}

#[tokio::test]
async fn decisions_follow_the_status_never_the_error_text() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    // A 500 whose text looks permanent is still retried...
    server.script(
        CUSTOMER,
        vec![
            Reply::json(500, r#"{"error":"Customer not found."}"#),
            Reply::json(404, r#"{"error":"Temporary problem, please retry."}"#),
        ],
    );
    // ...and a 404 whose text invites a retry is still permanent.
    let err = client(&server, fast()).customer().await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(server.count(CUSTOMER), 2);
}

#[tokio::test]
async fn malformed_customer_bodies_are_protocol_errors() {
    for body in [
        "not json",
        "",
        r#"{"customer_code":"ACME-1"}"#,
        r#"["ACME-1"]"#,
    ] {
        let server = Server::start().await;
        server.script(TOKEN, vec![Reply::token("t1", 3600)]);
        server.script(CUSTOMER, vec![Reply::json(200, body)]);

        let err = client(&server, fast()).customer().await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{body}: {err:?}");
        assert_eq!(server.count(CUSTOMER), 1, "{body}: not retried");
    }
}

#[tokio::test]
async fn malformed_token_bodies_are_protocol_errors() {
    for body in [
        "<html>",
        r#"{"access_token":5,"token_type":"Bearer","expires_in":3600}"#,
        r#"{"token_type":"Bearer","expires_in":3600}"#,
        r#"{"access_token":"t1","token_type":"Bearer"}"#,
    ] {
        let server = Server::start().await;
        server.script(TOKEN, vec![Reply::json(200, body)]);
        server.script(CUSTOMER, vec![Reply::customer(CODE)]);

        let err = client(&server, fast()).customer().await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{body}: {err:?}");
        assert_eq!(server.count(TOKEN), 1, "{body}: not retried");
        assert_eq!(server.count(CUSTOMER), 0);
    }
}

#[tokio::test]
async fn oversized_body_is_a_protocol_error() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::json(200, &"x".repeat(200_000))]);

    let err = client(&server, fast()).customer().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
}

// -- concurrency -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_token_request() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600).delay(ms(150))]);
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);
    let client = client(&server, fast());

    let calls: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.customer().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }

    assert_eq!(server.count(TOKEN), 1);
    assert_eq!(server.count(CUSTOMER), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_share_one_refresh() {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![Reply::token("t1", 3600), Reply::token("t2", 3600)],
    );
    let expired = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&expired);
    server.handle(CUSTOMER, move |r| match r.header("authorization") {
        Some("Bearer t2") => Reply::customer(CODE),
        _ if seen.load(Ordering::SeqCst) == 0 => Reply::customer(CODE),
        // Once "expired", t1 is refused; slowly, so the callers overlap.
        _ => Reply::bearer_401().delay(ms(50)),
    });
    let client = client(&server, fast());
    client.customer().await.unwrap();
    expired.store(1, Ordering::SeqCst);

    let calls: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.customer().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }

    assert_eq!(server.count(TOKEN), 2, "one initial token, one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_a_failed_token_request() {
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            Reply::json(
                401,
                r#"{"error":"invalid_client","error_description":"Invalid client credentials."}"#,
            )
            .delay(ms(300)),
        ],
    );
    let client = client(&server, fast());

    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.customer().await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::InvalidCredentials { .. }), "{err:?}");
    }
    assert_eq!(server.count(TOKEN), 1);
}

// -- secrets -----------------------------------------------------------------------------

#[tokio::test]
async fn debug_and_errors_never_show_the_api_key_or_token() {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("secret-access-token", 3600)]);
    server.script(CUSTOMER, vec![Reply::bearer_401()]);
    let client = client(&server, fast());

    let err = client.customer().await.unwrap_err();
    for text in [format!("{client:?}"), format!("{err:?}"), err.to_string()] {
        assert!(!text.contains(KEY), "{text}");
        assert!(!text.contains("secret-access-token"), "{text}");
    }
    assert!(format!("{client:?}").contains("api_key: \"***\""));
}
