//! The client against the local stack (moto + `cargo lambda watch`).
//!
//! Ignored by default; `tests/test_rust_client.py` starts the stack and runs them with
//! `cargo test -p kiss-customer-api --test live -- --ignored --test-threads=1`.
//! By hand: `make run`, then in another shell `source .local/env` and the same command.
//!
//! Needs `CUSTOMER_API_URL`, the AWS variables of `.local/env` (for `customer-admin`) and
//! `target/debug/customer-admin` (or `CUSTOMER_ADMIN` naming the binary).
//! `CUSTOMER_API_URL` must be the stack's issuer (as `.local/env` sets it): it is the
//! audience of the `private_key_jwt` assertions and the base of the DPoP proofs' `htu`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use kiss_customer_api::{Client, ClientConfig, DpopKey, Error, JwsAlgorithm, PrivateKeyJwt};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn api_url() -> String {
    std::env::var("CUSTOMER_API_URL")
        .expect("CUSTOMER_API_URL must point at the local stack (source .local/env)")
}

fn admin_binary() -> PathBuf {
    std::env::var_os("CUSTOMER_ADMIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/customer-admin"),
        PathBuf::from,
    )
}

/// Runs `customer-admin <args> --json`, which must succeed; returns its JSON object.
fn admin(args: &[&str]) -> Value {
    let binary = admin_binary();
    let out = Command::new(&binary)
        .args(args)
        .arg("--json")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    assert!(
        out.status.success(),
        "customer-admin {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("customer-admin printed no JSON object")
}

struct NewCustomer {
    code: String,
    api_key: String,
    key_id: String,
}

fn name_of(code: &str) -> String {
    format!("Rust Client {code}")
}

fn email_of(code: &str) -> String {
    format!("ops+{}@example.com", code.to_lowercase())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn new_customer() -> NewCustomer {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let code = format!(
        "RC-{:x}-{}-{}",
        nanos % (1 << 40),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let out = admin(&[
        "customers",
        "create",
        "--code",
        &code,
        "--name",
        &name_of(&code),
        "--email",
        &email_of(&code),
    ]);
    assert_eq!(out["customer_code"], code.as_str());
    NewCustomer {
        code,
        api_key: out["api_key"].as_str().unwrap().to_owned(),
        key_id: out["key_id"].as_str().unwrap().to_owned(),
    }
}

fn client(customer: &NewCustomer, config: ClientConfig) -> Client {
    Client::with_config(&api_url(), &customer.code, &customer.api_key, config).unwrap()
}

fn quick() -> ClientConfig {
    ClientConfig::default()
        .max_attempts(3)
        .base_delay(Duration::from_millis(50))
        .total_timeout(Duration::from_secs(30))
}

/// Fixed 60 s windows: when fewer than `seconds` remain in this one, wait for the next.
fn ensure_window_room(seconds: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.as_secs_f64() % 60.0;
    if into > (60 - seconds) as f64 {
        std::thread::sleep(Duration::from_secs_f64(60.0 - into + 0.25));
    }
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn happy_path_returns_the_record() {
    let c = new_customer();
    let client = client(&c, quick());

    let me = client.customer().await.unwrap();
    assert_eq!(me.customer_code, c.code);
    assert_eq!(me.name, name_of(&c.code));
    assert_eq!(me.email, email_of(&c.code));
    assert_eq!(me.status, "active");
    assert_eq!(me.plan, "standard");
    assert!(me.created_at.ends_with('Z'), "{}", me.created_at);

    // The cached token serves the next call too.
    assert_eq!(client.customer().await.unwrap(), me);
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn suspended_customer_gets_invalid_credentials() {
    let c = new_customer();
    let client = client(&c, quick());
    client.customer().await.unwrap();

    admin(&["customers", "suspend", "--code", &c.code]);

    // The cached token now gets the bearer 401; the refresh is refused with invalid_client.
    let err = client.customer().await.unwrap_err();
    match &err {
        Error::InvalidCredentials { body } => {
            assert_eq!(body.error.as_deref(), Some("invalid_client"))
        }
        other => panic!("expected InvalidCredentials, got {other:?}"),
    }
    let fresh = self::client(&c, quick()).customer().await.unwrap_err();
    assert!(
        matches!(fresh, Error::InvalidCredentials { .. }),
        "{fresh:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn revoked_key_gets_invalid_credentials() {
    let c = new_customer();
    let client = client(&c, quick());
    client.customer().await.unwrap();

    admin(&["keys", "revoke", "--code", &c.code, "--key-id", &c.key_id]);

    let err = client.customer().await.unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials { .. }), "{err:?}");
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn rate_limit_is_hit_and_recovered() {
    let c = new_customer();
    admin(&[
        "customers",
        "set-limits",
        "--code",
        &c.code,
        "--api-per-minute",
        "2",
    ]);
    // Waits up to a whole window for the reset.
    let patient = client(
        &c,
        quick()
            .retry_after_cap(Duration::from_secs(65))
            .total_timeout(Duration::from_secs(120)),
    );
    let impatient = client(&c, quick().max_attempts(1));
    ensure_window_room(15);

    patient.customer().await.unwrap();
    patient.customer().await.unwrap();

    let err = impatient.customer().await.unwrap_err();
    match err {
        Error::RateLimited {
            retry_after: Some(wait),
            attempts: 1,
        } => assert!(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&wait),
            "{wait:?}"
        ),
        other => panic!("expected RateLimited with Retry-After, got {other:?}"),
    }

    let started = Instant::now();
    let me = patient.customer().await.unwrap();
    assert_eq!(me.customer_code, c.code);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "recovered only by waiting Retry-After: {:?}",
        started.elapsed()
    );
}

// -- private_key_jwt, revocation, introspection ------------------------------------------

/// Registers the public JWK of `key` for `customer` with `customer-admin keys add-jwk`
/// and returns the key with the `key_id` it printed.
fn register(customer: &NewCustomer, key: PrivateKeyJwt) -> PrivateKeyJwt {
    let path = std::env::temp_dir().join(format!(
        "kiss-rust-client-jwk-{}-{}.json",
        customer.code,
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, key.public_jwk()).unwrap();
    let out = admin(&[
        "keys",
        "add-jwk",
        "--code",
        &customer.code,
        "--jwk-file",
        path.to_str().unwrap(),
    ]);
    std::fs::remove_file(&path).ok();
    let (kty, alg) = match key.algorithm() {
        JwsAlgorithm::Es256 => ("EC", "ES256"),
        _ => ("OKP", key.algorithm().as_str()),
    };
    assert_eq!(out["kty"], kty, "{out}");
    assert_eq!(out["alg"], alg, "{out}");
    let key_id = out["key_id"].as_str().unwrap();
    assert!(key_id.starts_with("key_"), "{out}");
    key.with_key_id(key_id)
}

fn jwt_client(customer: &NewCustomer, key: &PrivateKeyJwt) -> Client {
    Client::with_private_key_jwt(&api_url(), &customer.code, key.clone(), quick()).unwrap()
}

/// The status of `GET /customer` with `token`, sent by hand (not through the client,
/// which would replace a refused token).
async fn status_with(token: &str) -> u16 {
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("{}/customer", api_url().trim_end_matches('/')))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    http.request(request).await.unwrap().status().as_u16()
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn private_key_jwt_ed25519_and_es256_get_the_record() {
    let c = new_customer();
    let ed25519 = register(&c, PrivateKeyJwt::generate_ed25519().unwrap());
    let es256 = register(&c, PrivateKeyJwt::generate_es256().unwrap());

    for key in [&ed25519, &es256] {
        let client = jwt_client(&c, key);
        let me = client.customer().await.unwrap();
        assert_eq!(me.customer_code, c.code, "{key:?}");
        assert_eq!(me.name, name_of(&c.code));
        // The cached token serves the next call too.
        assert_eq!(client.customer().await.unwrap(), me);
    }

    // Without `kid` the server tries each key of the customer.
    let anonymous = PrivateKeyJwt::from_pem(&ed25519.to_pkcs8_pem().unwrap()).unwrap();
    assert_eq!(anonymous.key_id(), None);
    jwt_client(&c, &anonymous).customer().await.unwrap();

    // RFC 9864's name for the same Ed25519 key is accepted as well.
    let fully_specified = ed25519
        .clone()
        .with_algorithm(JwsAlgorithm::Ed25519)
        .unwrap();
    jwt_client(&c, &fully_specified).customer().await.unwrap();
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn unregistered_or_revoked_jwk_gets_invalid_credentials() {
    let c = new_customer();
    let stranger = PrivateKeyJwt::generate_ed25519().unwrap();
    let err = jwt_client(&c, &stranger).customer().await.unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials { .. }), "{err:?}");

    let key = register(&c, PrivateKeyJwt::generate_es256().unwrap());
    let client = jwt_client(&c, &key);
    client.customer().await.unwrap();

    admin(&[
        "keys",
        "revoke",
        "--code",
        &c.code,
        "--key-id",
        key.key_id().unwrap(),
    ]);

    // Its token dies with it; the refresh is refused.
    let err = client.customer().await.unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials { .. }), "{err:?}");
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn revoked_token_gets_401_and_a_new_token_works() {
    let c = new_customer();
    let client = client(&c, quick());
    // Another client of the same customer, holding its own token.
    let other = jwt_client(
        &c,
        &register(&c, PrivateKeyJwt::generate_ed25519().unwrap()),
    );
    other.customer().await.unwrap();

    let old = client.access_token().await.unwrap();
    assert_eq!(status_with(old.as_str()).await, 200);

    client.revoke(old.as_str()).await.unwrap();

    assert_eq!(
        status_with(old.as_str()).await,
        401,
        "the revoked token is refused"
    );
    assert!(!client.introspect(old.as_str()).await.unwrap().active);

    // The client dropped it: the next call fetches a new token, which works at once.
    let me = client.customer().await.unwrap();
    assert_eq!(me.customer_code, c.code);
    let new = client.access_token().await.unwrap();
    assert_ne!(new, old);
    assert_eq!(status_with(new.as_str()).await, 200);
    assert!(client.introspect(new.as_str()).await.unwrap().active);

    // Every token of the customer issued before the revocation ended: the other client
    // gets a 401, fetches a new token and carries on.
    assert_eq!(other.customer().await.unwrap().customer_code, c.code);
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn revoke_current_token_with_private_key_jwt() {
    let c = new_customer();
    let client = jwt_client(&c, &register(&c, PrivateKeyJwt::generate_es256().unwrap()));
    assert!(
        !client.revoke_current_token().await.unwrap(),
        "no token yet"
    );

    client.customer().await.unwrap();
    let old = client.access_token().await.unwrap();
    assert!(client.revoke_current_token().await.unwrap());
    assert_eq!(status_with(old.as_str()).await, 401);

    client.customer().await.unwrap();
    assert_ne!(client.access_token().await.unwrap(), old);
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn introspection_says_active_for_own_token_only() {
    let c = new_customer();
    let client = client(&c, quick());
    let token = client.access_token().await.unwrap();

    let own = client.introspect(token.as_str()).await.unwrap();
    assert!(own.active, "{own:?}");
    assert_eq!(own.sub.as_deref(), Some(c.code.as_str()));
    assert_eq!(own.client_id.as_deref(), Some(c.code.as_str()));
    assert!(own.scopes().any(|s| s == "customer:read"), "{own:?}");
    assert_eq!(own.token_type.as_deref(), Some("Bearer"));
    assert_eq!(
        own.iss.as_deref().map(|i| i.trim_end_matches('/')),
        Some(api_url().trim_end_matches('/'))
    );
    let (iat, exp) = (own.iat.unwrap(), own.exp.unwrap());
    assert!(iat <= now() + 5 && exp > now(), "{own:?}");
    assert!(own.jti.is_some() && !own.aud.is_empty(), "{own:?}");

    // The same answer through private_key_jwt.
    let jwt = jwt_client(
        &c,
        &register(&c, PrivateKeyJwt::generate_ed25519().unwrap()),
    );
    assert!(jwt.introspect(token.as_str()).await.unwrap().active);

    // Anything else is inactive, another customer's valid token included.
    assert!(!client.introspect("not-a-token").await.unwrap().active);
    let stranger = new_customer();
    let theirs = self::client(&stranger, quick())
        .access_token()
        .await
        .unwrap();
    let answer = client.introspect(theirs.as_str()).await.unwrap();
    assert!(!answer.active, "{answer:?}");
    assert_eq!(answer.sub, None);
}

// -- DPoP ----------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn dpop_with_an_api_key_gets_a_bound_token_and_the_record() {
    let c = new_customer();
    let key = DpopKey::generate_ed25519().unwrap();
    let client =
        Client::with_config(&api_url(), &c.code, &c.api_key, quick().dpop(key.clone())).unwrap();

    // The client refuses any token_type but DPoP, so getting the record proves the binding
    // was made; introspection shows it.
    let me = client.customer().await.unwrap();
    assert_eq!(me.customer_code, c.code);
    assert_eq!(me.name, name_of(&c.code));
    assert_eq!(client.customer_by_code(&c.code).await.unwrap(), me);

    let token = client.access_token().await.unwrap();
    let info = client.introspect(token.as_str()).await.unwrap();
    assert!(info.active, "{info:?}");
    assert_eq!(info.token_type.as_deref(), Some("DPoP"));
    assert_eq!(
        info.cnf.and_then(|c| c.jkt).as_deref(),
        Some(key.thumbprint())
    );

    // Without a proof, as a Bearer token, it is refused: no downgrade.
    assert_eq!(status_with(token.as_str()).await, 401);
    // The client's own next call still works (a new proof, the cached token).
    assert_eq!(client.customer().await.unwrap(), me);
}

#[tokio::test]
#[ignore = "needs the local stack; run by tests/test_rust_client.py"]
async fn dpop_with_private_key_jwt_and_an_es256_proof_key() {
    let c = new_customer();
    let auth = register(&c, PrivateKeyJwt::generate_ed25519().unwrap());
    let key = DpopKey::generate_es256().unwrap();
    let client =
        Client::with_private_key_jwt(&api_url(), &c.code, auth, quick().dpop(key.clone())).unwrap();

    assert_eq!(client.customer().await.unwrap().customer_code, c.code);
    let old = client.access_token().await.unwrap();
    let info = client.introspect(old.as_str()).await.unwrap();
    assert_eq!(info.token_type.as_deref(), Some("DPoP"));
    assert_eq!(
        info.cnf.and_then(|c| c.jkt).as_deref(),
        Some(key.thumbprint())
    );

    // Revocation works on bound tokens too; the next call gets a new bound token.
    assert!(client.revoke_current_token().await.unwrap());
    assert!(!client.introspect(old.as_str()).await.unwrap().active);
    assert_eq!(client.customer().await.unwrap().customer_code, c.code);
    assert_ne!(client.access_token().await.unwrap(), old);
}
