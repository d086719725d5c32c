//! What the fuzz targets share: one tokio runtime, a fixture like `shared/tests/common`, and
//! the response contract of `docs/contract.md` (six statuses, two error envelopes, the bearer 401).
//!
//! Everything random (signing key, customer record, one valid access token) is made once per
//! process; every input then gets fresh APIs over a fresh in-memory store and key cache, so an
//! input's outcome does not depend on the inputs before it and every crash reproduces alone.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_http::{Body, Request, Response};
use shared::api_key::ApiKey;
use shared::config::Config;
use shared::customer_api::CustomerApi;
use shared::handler::Api;
use shared::keys::{KeyDocument, MemoryKeySource};
use shared::model::{Customer, StoredKey};
use shared::store::memory::MemoryStore;
use shared::test_util;
use shared::token_api::TokenApi;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The fixed clock of every request (start of a rate-limit window, as in the tests).
pub const NOW: u64 = 1_800_000_000;
/// The one customer.
pub const CODE: &str = "ACME-1";
/// Its API key: fixed (and well-formed, checksum included), so seeds and found inputs can
/// authenticate in any run.
pub const SECRET: &str = "kiss_sk_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzth-A6w";
/// In `bearer_token` and `jwt_verify` inputs, replaced by a valid access token of this run.
pub const TOKEN_PLACEHOLDER: &[u8] = b"$T";

pub type Token = TokenApi<Arc<MemoryStore>, Arc<MemoryKeySource>>;
pub type Customers = CustomerApi<Arc<MemoryStore>, Arc<MemoryKeySource>>;

/// The statuses of the published contract.
pub const STATUSES: [u16; 6] = [200, 400, 401, 404, 429, 500];

/// The current-thread runtime, built once per process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// The parts made once per process.
pub struct Fixture {
    pub config: Config,
    /// The signing document (active private key + JWKS).
    pub doc: KeyDocument,
    pub customer: Customer,
    /// A token issued by the real token endpoint at [`NOW`].
    pub token: String,
}

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let config = Config {
        issuer: "https://api.test".into(),
        // Low limits so that repeated calls inside one input reach the 429 path.
        token_rate_limit: 1,
        api_rate_limit: 2,
        ..Config::default()
    };
    let mut customer = test_util::customer(CODE, NOW).customer;
    let key = ApiKey::presented(SECRET);
    customer.keys = BTreeMap::from([(
        key.key_id(),
        StoredKey {
            hash: Some(key.hash_hex()),
            created_at: NOW - 100,
            expires_at: None,
        },
    )]);
    let mut doc = KeyDocument::default();
    doc.rotate(NOW - 1000).expect("key generation");
    let mut fixture = Fixture {
        config,
        doc,
        customer,
        token: String::new(),
    };
    let body = format!("grant_type=client_credentials&client_id={CODE}&client_secret={SECRET}");
    let request = http::Request::builder()
        .method("POST")
        .uri("/auth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::Text(body))
        .expect("request");
    let response = runtime().block_on(fixture.token_api().handle(request, NOW));
    assert_eq!(response.response.status(), 200, "fixture token");
    let json: serde_json::Value =
        serde_json::from_str(&text(&response.response)).expect("token JSON");
    fixture.token = json["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    fixture
}

impl Fixture {
    /// A store holding only the fixture's customer, with fresh counters.
    pub fn store(&self) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::default());
        store.put(self.customer.clone());
        store
    }

    /// A token API over a fresh store and an empty key cache.
    pub fn token_api(&self) -> Token {
        TokenApi::new(
            self.store(),
            Arc::new(MemoryKeySource::new(self.doc.clone())),
            &self.config,
        )
    }

    /// The verification side's key source (public keys only).
    pub fn verification(&self) -> Arc<MemoryKeySource> {
        Arc::new(MemoryKeySource::new(self.doc.public()))
    }

    /// A customer API over a fresh store and an empty key cache.
    pub fn customer_api(&self) -> Customers {
        CustomerApi::new(self.store(), self.verification(), &self.config)
    }

    /// `data` with every [`TOKEN_PLACEHOLDER`] replaced by the valid token.
    pub fn with_token(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        let mut rest = data;
        while !rest.is_empty() {
            if rest.starts_with(TOKEN_PLACEHOLDER) {
                out.extend_from_slice(self.token.as_bytes());
                rest = &rest[TOKEN_PLACEHOLDER.len()..];
            } else {
                out.push(rest[0]);
                rest = &rest[1..];
            }
        }
        out
    }

    /// Signs arbitrary claims with the active key under a valid access-token header.
    pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
        let active = self.doc.active.as_ref().expect("active key");
        let der = STANDARD.decode(&active.private_key).expect("PKCS#8");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(shared::jwt::TYP.into());
        header.kid = Some(active.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&der),
        )
        .expect("signing")
    }
}

/// Splits `content-type \n authorization \n body`; a missing line is an absent part.
pub fn split_token_input(data: &[u8]) -> (Option<&[u8]>, Option<&[u8]>, &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let content_type = parts.next();
    let authorization = parts.next();
    let body = parts.next().unwrap_or_default();
    (content_type, authorization, body)
}

/// The response body as text.
pub fn text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// Panics unless the response is inside the published contract: one of the six statuses;
/// a JSON object body; on errors exactly the envelope's keys (`error`, `error_description`
/// on the token endpoint, `error` elsewhere); the bearer 401 with an empty body.
pub fn assert_contract(response: &Response<Body>, token_route: bool) {
    let status = response.status().as_u16();
    let body = text(response);
    assert!(STATUSES.contains(&status), "status {status}: {body}");
    if status == 401 && !token_route {
        assert_eq!(body, "", "the bearer 401 has an empty body");
        return;
    }
    let json: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {body:?}"));
    let object = json
        .as_object()
        .unwrap_or_else(|| panic!("status {status}: body is not a JSON object: {body}"));
    if status != 200 {
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let expected: &[&str] = if token_route {
            &["error", "error_description"]
        } else {
            &["error"]
        };
        assert_eq!(keys, expected, "status {status}: envelope keys of {body}");
    }
}

/// Runs one request through an API on the shared runtime.
pub fn call(api: &impl Api, request: Request) -> Response<Body> {
    runtime().block_on(api.handle(request, NOW)).response
}
