//! Test fixtures: both APIs over the in-memory store and key source, and request builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fault_server;
pub mod moto;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use lambda_http::{Body, Request, Response};
use shared::api_key::ApiKey;
use shared::config::Config;
use shared::customer_api::CustomerApi;
use shared::handler::Api;
use shared::keys::{KeyDocument, MemoryKeySource};
use shared::model::CustomerCode;
use shared::store::memory::MemoryStore;
use shared::test_util;
use shared::token_api::TokenApi;
use std::sync::Arc;

/// A fixed clock at the start of a rate-limit window.
pub const NOW: u64 = 1_800_000_000;
pub const CODE: &str = "ACME-1";

pub type Token = TokenApi<Arc<MemoryStore>, Arc<MemoryKeySource>>;
pub type Customer = CustomerApi<Arc<MemoryStore>, Arc<MemoryKeySource>>;

pub struct Fixture {
    pub store: Arc<MemoryStore>,
    pub signing: Arc<MemoryKeySource>,
    pub verification: Arc<MemoryKeySource>,
    pub doc: KeyDocument,
    pub token: Token,
    pub customer: Customer,
    pub api_key: ApiKey,
    pub key_id: String,
    pub config: Config,
}

pub fn config() -> Config {
    Config {
        issuer: "https://api.test".into(),
        ..Config::default()
    }
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_config(config())
    }

    pub fn with_config(config: Config) -> Self {
        let store = Arc::new(MemoryStore::default());
        let created = test_util::customer(CODE, NOW - 100);
        store.put(created.customer);
        let mut doc = KeyDocument::default();
        doc.rotate(NOW - 100).unwrap();
        let signing = Arc::new(MemoryKeySource::new(doc.clone()));
        let verification = Arc::new(MemoryKeySource::new(doc.public()));
        Self {
            token: TokenApi::new(store.clone(), signing.clone(), &config),
            customer: CustomerApi::new(store.clone(), verification.clone(), &config),
            store,
            signing,
            verification,
            doc,
            api_key: created.api_key,
            key_id: created.key_id,
            config,
        }
    }

    pub fn code(&self) -> CustomerCode {
        CustomerCode::parse(CODE).unwrap()
    }

    pub fn form(&self) -> String {
        format!(
            "grant_type=client_credentials&client_id={CODE}&client_secret={}",
            self.api_key.expose()
        )
    }

    /// A token from the real token endpoint.
    pub async fn access_token(&self, now: u64) -> String {
        let response = call(&self.token, post_form(&self.form()), now).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        json(&response)["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs arbitrary header and claims with the active private key.
    pub fn sign_raw(&self, header: &jsonwebtoken::Header, claims: &serde_json::Value) -> String {
        let der = STANDARD
            .decode(&self.doc.active.as_ref().unwrap().private_key)
            .unwrap();
        jsonwebtoken::encode(
            header,
            claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&der),
        )
        .unwrap()
    }

    /// Valid claims for this fixture at `now`.
    pub fn claims(&self, now: u64) -> serde_json::Value {
        serde_json::json!({
            "iss": self.config.issuer, "sub": CODE, "aud": self.config.audience, "client_id": CODE,
            "scope": "customer:read", "iat": now, "nbf": now, "exp": now + 3600,
            "jti": "j1", "key_id": self.key_id,
        })
    }

    pub fn header(&self) -> jsonwebtoken::Header {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.doc.active.as_ref().unwrap().kid.clone());
        header
    }
}

pub async fn call(api: &impl Api, request: Request, now: u64) -> Response<Body> {
    api.handle(request, now).await.response
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Body) -> Request {
    let mut builder = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap()
}

pub fn post_form(body: &str) -> Request {
    post_form_with_dpop(body, &[])
}

/// `POST /auth/token` with a form `body` and one `DPoP` header per proof.
pub fn post_form_with_dpop(body: &str, proofs: &[&str]) -> Request {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend(proofs.iter().map(|proof| ("dpop", *proof)));
    request("POST", "/auth/token", &headers, Body::Text(body.into()))
}

pub fn get_with_token(path: &str, token: &str) -> Request {
    let value = format!("Bearer {token}");
    request("GET", path, &[("authorization", &value)], Body::Empty)
}

pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

pub fn text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Empty => String::new(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

pub fn json(response: &Response<Body>) -> serde_json::Value {
    serde_json::from_str(&text(response)).unwrap()
}

pub fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Decodes one base64url JWT segment.
pub fn segment(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Asserts the OAuth envelope byte for byte and the token endpoint's headers.
pub fn assert_oauth(response: &Response<Body>, status: u16, code: &str, description: &str) {
    assert_eq!(response.status(), status, "{}", text(response));
    let expected = serde_json::json!({"error": code, "error_description": description}).to_string();
    assert_eq!(text(response), expected);
    assert_eq!(
        header(response, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(response, "cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(header(response, "pragma").as_deref(), Some("no-cache"));
    assert_eq!(
        header(response, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
}

/// Asserts the bearer 401.
pub fn assert_bearer_401(response: &Response<Body>) {
    assert_eq!(response.status(), 401);
    assert_eq!(text(response), "");
    assert_eq!(
        header(response, "www-authenticate").as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(header(response, "content-type"), None);
}
