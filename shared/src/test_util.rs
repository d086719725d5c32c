//! Fixtures for tests, benches and fuzz targets (feature `test-util`; the functions never
//! enable it): customers with a fresh API key, and plain seeding of the table and the key
//! secrets. The operator's writes, conditional and retried, live in the admin crate.

use crate::api_key::{ApiKey, RandomError};
use crate::jwk::PublicJwk;
use crate::keys::{KeyDocument, KeyError, SecretsManagerSource};
use crate::model::{Customer, CustomerCode, CustomerStatus, DEFAULT_SCOPE, StoredKey, rfc3339};
use crate::rate_limit::{Bucket, Counter};
use crate::store::StoreError;
use crate::store::dynamo::DynamoStore;
use crate::store::item::{self, bucket_attr, from_item};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A customer and its one API key (`key_id` → its hash in `customer.keys`).
pub struct TestCustomer {
    pub customer: Customer,
    pub api_key: ApiKey,
    pub key_id: String,
}

/// An active customer `code` ("Acme", default scope and limits) with one fresh API key.
///
/// Panics on a malformed `code`: fixtures are written by hand.
pub fn customer(code: &str, now: u64) -> TestCustomer {
    let api_key = ApiKey::generate().unwrap_or_else(|_| panic!("the OS random source failed"));
    let key_id = api_key.key_id();
    let keys = BTreeMap::from([(key_id.clone(), stored(&api_key, now))]);
    TestCustomer {
        customer: Customer {
            code: CustomerCode::parse(code)
                .unwrap_or_else(|| panic!("fixture code {code:?} is malformed")),
            name: "Acme".into(),
            email: "ops@acme.example".into(),
            status: CustomerStatus::Active,
            plan: "standard".into(),
            created_at: rfc3339(now),
            scopes: vec![DEFAULT_SCOPE.to_owned()],
            keys,
            token_limit: None,
            api_limit: None,
            token_counter: Counter::default(),
            api_counter: Counter::default(),
            token_epoch: 0,
        },
        api_key,
        key_id,
    }
}

fn stored(key: &ApiKey, now: u64) -> StoredKey {
    StoredKey {
        hash: Some(key.hash_hex()),
        created_at: now,
        expires_at: None,
    }
}

/// `keys` plus one fresh key created at `now`; the other keys stay as they are.
pub fn add_key(
    keys: &BTreeMap<String, StoredKey>,
    now: u64,
) -> Result<(ApiKey, String, BTreeMap<String, StoredKey>), RandomError> {
    let api_key = ApiKey::generate()?;
    let key_id = api_key.key_id();
    let mut next = keys.clone();
    next.insert(key_id.clone(), stored(&api_key, now));
    Ok((api_key, key_id, next))
}

fn unavailable<E: std::error::Error + 'static>(err: E) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

/// Plain (unconditional) seeding and inspection of the customer table.
#[allow(async_fn_in_trait)]
pub trait DynamoFixtures {
    /// Writes the whole item of `customer` (counters absent).
    async fn create(&self, customer: &Customer) -> Result<(), StoreError>;
    /// Reads a customer (strongly consistent).
    async fn get(&self, code: &CustomerCode) -> Result<Option<Customer>, StoreError>;
    /// Suspends or reactivates a customer.
    async fn set_status(
        &self,
        code: &CustomerCode,
        status: CustomerStatus,
    ) -> Result<(), StoreError>;
    /// Sets per-customer limit overrides.
    async fn set_limits(
        &self,
        code: &CustomerCode,
        token: Option<u64>,
        api: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Replaces the key map.
    async fn set_keys(
        &self,
        code: &CustomerCode,
        keys: &BTreeMap<String, StoredKey>,
    ) -> Result<(), StoreError>;
    /// Deletes a customer.
    async fn delete(&self, code: &CustomerCode) -> Result<(), StoreError>;
    /// Writes the JWKs item of `code` (key id → stored JWK JSON), replacing it.
    async fn put_jwks(
        &self,
        code: &CustomerCode,
        jwks: &[(String, String)],
    ) -> Result<(), StoreError>;
}

async fn set(
    store: &DynamoStore,
    code: &CustomerCode,
    pairs: Vec<(String, AttributeValue)>,
) -> Result<(), StoreError> {
    let (client, table) = store.parts();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::new();
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        names.insert(format!("#a{i}"), name);
        values.insert(format!(":v{i}"), value);
        sets.push(format!("#a{i} = :v{i}"));
    }
    if sets.is_empty() {
        return Ok(());
    }
    client
        .update_item()
        .table_name(table)
        .key(item::CODE, AttributeValue::S(code.as_str().into()))
        .update_expression(format!("SET {}", sets.join(", ")))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .send()
        .await
        .map(|_| ())
        .map_err(unavailable)
}

impl DynamoFixtures for DynamoStore {
    async fn put_jwks(
        &self,
        code: &CustomerCode,
        jwks: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (client, table) = self.parts();
        let map = jwks
            .iter()
            .map(|(id, json)| (id.clone(), AttributeValue::S(json.clone())))
            .collect();
        client
            .put_item()
            .table_name(table)
            .item(item::CODE, AttributeValue::S(crate::store::jwks_key(code)))
            .item(crate::store::JWKS, AttributeValue::M(map))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn create(&self, customer: &Customer) -> Result<(), StoreError> {
        let (client, table) = self.parts();
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item::to_item(customer)))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn get(&self, code: &CustomerCode) -> Result<Option<Customer>, StoreError> {
        let (client, table) = self.parts();
        let output = client
            .get_item()
            .table_name(table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(from_item).transpose()
    }

    async fn set_status(
        &self,
        code: &CustomerCode,
        status: CustomerStatus,
    ) -> Result<(), StoreError> {
        let value = AttributeValue::S(status.as_str().into());
        set(self, code, vec![(item::STATUS.into(), value)]).await
    }

    async fn set_limits(
        &self,
        code: &CustomerCode,
        token: Option<u64>,
        api: Option<u64>,
    ) -> Result<(), StoreError> {
        let pairs = [(Bucket::Token, token), (Bucket::Api, api)]
            .into_iter()
            .filter_map(|(bucket, limit)| {
                limit.map(|l| {
                    (
                        bucket_attr(bucket, "limit"),
                        AttributeValue::N(l.to_string()),
                    )
                })
            })
            .collect();
        set(self, code, pairs).await
    }

    async fn set_keys(
        &self,
        code: &CustomerCode,
        keys: &BTreeMap<String, StoredKey>,
    ) -> Result<(), StoreError> {
        set(
            self,
            code,
            vec![(item::KEYS.into(), item::keys_value(keys))],
        )
        .await
    }

    async fn delete(&self, code: &CustomerCode) -> Result<(), StoreError> {
        let (client, table) = self.parts();
        client
            .delete_item()
            .table_name(table)
            .key(item::CODE, AttributeValue::S(code.as_str().into()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// Plain (unconditional) writes of a key secret.
#[allow(async_fn_in_trait)]
pub trait SecretFixtures {
    /// Replaces the secret's value.
    async fn write(&self, doc: &KeyDocument) -> Result<(), KeyError>;
}

impl SecretFixtures for SecretsManagerSource {
    async fn write(&self, doc: &KeyDocument) -> Result<(), KeyError> {
        let (client, secret_id) = self.parts();
        client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(doc.to_secret_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                KeyError::Unavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )
            })
    }
}

/// A client's key pair (Ed25519 or P-256) that signs compact JWSs: DPoP proofs and client
/// assertions.
pub struct ProofKey {
    pair: Pair,
    /// The public JWK as JSON.
    pub jwk: String,
}

enum Pair {
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    P256(aws_lc_rs::signature::EcdsaKeyPair),
}

impl ProofKey {
    /// A fresh Ed25519 key (`EdDSA`).
    pub fn ed25519() -> Self {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pair = Ed25519KeyPair::generate_pkcs8(&rng)
            .ok()
            .and_then(|pkcs8| Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).ok())
            .unwrap_or_else(|| panic!("Ed25519 key generation failed"));
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        Self {
            jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#),
            pair: Pair::Ed25519(pair),
        }
    }

    /// A fresh P-256 key (`ES256`).
    pub fn es256() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pair = EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .ok()
            .and_then(|pkcs8| EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).ok())
            .unwrap_or_else(|| panic!("P-256 key generation failed"));
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        );
        Self {
            jwk: format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#),
            pair: Pair::P256(pair),
        }
    }

    /// The JWS algorithm of the key.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ed25519(_) => "EdDSA",
            Pair::P256(_) => "ES256",
        }
    }

    fn parsed(&self) -> PublicJwk {
        PublicJwk::parse(&self.jwk).unwrap_or_else(|e| panic!("fixture JWK refused: {e}"))
    }

    /// Id of the key once registered (`customer-admin keys add-jwk`).
    pub fn key_id(&self) -> String {
        self.parsed().key_id()
    }

    /// RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to this key.
    pub fn thumbprint(&self) -> String {
        self.parsed().thumbprint()
    }

    /// The public JWK as a JSON value.
    pub fn public_jwk(&self) -> Value {
        serde_json::from_str(&self.jwk).unwrap_or(Value::Null)
    }

    /// The public JWK with a private member (`d`) added: what a careless client might send.
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.public_jwk();
        jwk["d"] = Value::String(URL_SAFE_NO_PAD.encode([7u8; 32]));
        jwk
    }

    /// A DPoP proof header naming `alg`.
    pub fn header(&self, alg: &str) -> Value {
        serde_json::json!({"typ": crate::dpop::TYP, "alg": alg, "jwk": self.public_jwk()})
    }

    /// Signs `header` and `claims` as a compact JWS.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.pair {
            Pair::Ed25519(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Pair::P256(pair) => pair
                .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_else(|_| panic!("P-256 signing failed")),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A DPoP proof with the usual header and `claims`.
    pub fn proof(&self, claims: Value) -> String {
        self.sign(&self.header(self.alg()), &claims)
    }

    /// A good DPoP proof for `method` `url` at `now` with a fresh `jti` (and `ath` of
    /// `token`, if any).
    pub fn proof_for(&self, method: &str, url: &str, token: Option<&str>, now: u64) -> String {
        let mut claims = serde_json::json!({"jti": fresh_jti(), "htm": method, "htu": url,
                                            "iat": now});
        if let Some(token) = token {
            claims["ath"] = Value::String(crate::dpop::access_token_hash(token));
        }
        self.proof(claims)
    }
}

/// 128 random bits, base64url: a fresh `jti`.
pub fn fresh_jti() -> String {
    let mut raw = [0u8; 16];
    crate::api_key::random_bytes(&mut raw).unwrap_or_else(|_| panic!("random source failed"));
    URL_SAFE_NO_PAD.encode(raw)
}

/// `value` with member `name` set to `member`, or removed when `member` is null: one claim
/// or header member changed for an attack corpus.
pub fn with_member(mut value: Value, name: &str, member: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        if member.is_null() {
            object.remove(name);
        } else {
            object.insert(name.to_owned(), member);
        }
    }
    value
}
