//! The client against the local stack (moto + `cargo lambda watch`).
//!
//! Ignored by default; `tests/test_rust_client.py` starts the stack and runs them with
//! `cargo test -p kiss-customer-api --test live -- --ignored --test-threads=1`.
//! By hand: `make run`, then in another shell `source .local/env` and the same command.
//!
//! Needs `CUSTOMER_API_URL`, the AWS variables of `.local/env` (for `customer-admin`) and
//! `target/debug/customer-admin` (or `CUSTOMER_ADMIN` naming the binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kiss_customer_api::{Client, ClientConfig, Error};
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

fn new_customer() -> NewCustomer {
    static SEQ: AtomicU32 = AtomicU32::new(0);
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
