//! `make bench` summary: DynamoDB and Secrets Manager calls per request for every route and
//! outcome (against moto, counting SDK calls), handler time without I/O (in-memory store),
//! and release binary sizes, printed as one table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use aws_lc_rs::signature::{self, KeyPair};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::moto;
use common::*;
use lambda_http::{Body, Request};
use shared::config::Config;
use shared::customer_api::CustomerApi;
use shared::handler::Api;
use shared::jwk::PublicJwk;
use shared::keys::{KeyDocument, SecretsManagerSource};
use shared::model::CustomerCode;
use shared::model::StoredKey;
use shared::rate_limit::window_start;
use shared::store::dynamo::DynamoStore;
use shared::test_util::{self, DynamoFixtures};
use shared::token_api::TokenApi;
use std::time::Instant;

struct Row {
    case: &'static str,
    status: u16,
    dynamodb: usize,
    secrets: usize,
    /// Capacity units of the DynamoDB calls made, by the pricing rules.
    capacity: String,
}

/// Capacity units of `operations` by DynamoDB's pricing rules for items under 1 KB
/// (`main` checks the bench's items are): a write 1 WCU (also when its condition fails), a
/// transactional write 2 WCU per item, a strongly consistent read 1 RCU per item.
fn capacity(operations: &[String]) -> String {
    let (mut wcu, mut rcu) = (0, 0);
    for operation in operations {
        let (name, items) = operation
            .split_once('×')
            .map_or((operation.as_str(), 1), |(n, i)| (n, i.parse().unwrap()));
        match name {
            "UpdateItem" | "PutItem" => wcu += 1,
            "TransactWriteItems" => wcu += 2 * items,
            "GetItem" | "BatchGetItem" => rcu += items,
            other => panic!("no pricing rule for {other}"),
        }
    }
    match (wcu, rcu) {
        (0, 0) => "—".to_owned(),
        (w, 0) => format!("{w} WCU"),
        (0, r) => format!("{r} RCU"),
        (w, r) => format!("{w} WCU + {r} RCU"),
    }
}

async fn measure<A: Api>(
    api: &A,
    request: Request,
    now: u64,
    counters: (&moto::CallCounter, &moto::CallCounter),
    case: &'static str,
) -> Row {
    let (db, sm) = (counters.0.get(), counters.1.get());
    let seen = counters.0.operations().len();
    let status = api.handle(request, now).await.response.status().as_u16();
    Row {
        case,
        status,
        dynamodb: counters.0.get() - db,
        secrets: counters.1.get() - sm,
        capacity: capacity(&counters.0.operations()[seen..]),
    }
}

fn form(code: &str, key: &str) -> Request {
    post_form(&format!(
        "grant_type=client_credentials&client_id={code}&client_secret={key}"
    ))
}

async fn calls_per_request() -> Vec<Row> {
    let (db, db_calls) = moto::dynamodb();
    let (sm, sm_calls) = moto::secrets();
    let table = moto::table(&db).await;
    let mut doc = KeyDocument::default();
    doc.rotate(NOW).unwrap();
    let signing = moto::secret(&sm, &doc.to_secret_string()).await;
    let public = doc.public();
    let verification = moto::secret(&sm, &public.to_secret_string()).await;
    let store = DynamoStore::new(db.clone(), &table);
    let config = Config {
        issuer: "https://api.test".into(),
        ..Config::default()
    };
    let token_api = TokenApi::new(
        store.clone(),
        SecretsManagerSource::new(sm.clone(), signing.clone()),
        &config,
    );
    let customer_api = CustomerApi::new(
        store.clone(),
        SecretsManagerSource::new(sm.clone(), verification.clone()),
        &config,
    );
    // DPoP rows run on instances of their own: each function's cache starts empty, as in
    // Lambda, where the two functions never share one.
    let dpop_token_api = TokenApi::new(
        DynamoStore::new(db.clone(), &table),
        SecretsManagerSource::new(sm.clone(), signing.clone()),
        &config,
    );
    let dpop_customer_api = CustomerApi::new(
        DynamoStore::new(db.clone(), &table),
        SecretsManagerSource::new(sm, verification),
        &config,
    );
    let mut customers = Vec::new();
    for code in ["BENCH-1", "BENCH-2", "BENCH-3"] {
        let c = test_util::customer(code, NOW);
        store.create(&c.customer).await.unwrap();
        customers.push((code, c.api_key.expose().to_owned()));
    }
    let limited = CustomerCode::parse("BENCH-2").unwrap();
    store.set_limits(&limited, Some(1), Some(1)).await.unwrap();
    let counters = (&db_calls, &sm_calls);
    let now = window_start(NOW) + 60 + 5;
    let (code, key) = (customers[0].0, customers[0].1.clone());
    let mut rows = Vec::new();
    rows.push(
        measure(
            &token_api,
            form(code, &key),
            now,
            counters,
            "token 200, first of window (+ key load)",
        )
        .await,
    );
    rows.push(
        measure(
            &token_api,
            form(code, &key),
            now,
            counters,
            "token 200, steady state",
        )
        .await,
    );
    let wrong = shared::api_key::ApiKey::generate().unwrap();
    rows.push(
        measure(
            &token_api,
            form(code, wrong.expose()),
            now,
            counters,
            "token 401 wrong key",
        )
        .await,
    );
    let mut mangled = key.clone();
    mangled.replace_range(10..11, if &key[10..11] == "x" { "y" } else { "x" });
    rows.push(
        measure(
            &token_api,
            form(code, &mangled),
            now,
            counters,
            "token 401 key failing its checksum (no I/O)",
        )
        .await,
    );
    rows.push(
        measure(
            &token_api,
            form("NOBODY", &key),
            now,
            counters,
            "token 401 unknown customer",
        )
        .await,
    );
    rows.push(
        measure(
            &token_api,
            post_form("grant_type=password"),
            now,
            counters,
            "token 400 (no I/O)",
        )
        .await,
    );
    let (code2, key2) = (customers[1].0, customers[1].1.clone());
    let token =
        |raw: &lambda_http::Response<Body>| json(raw)["access_token"].as_str().unwrap().to_owned();
    let t2 = token(&token_api.handle(form(code2, &key2), now).await.response);
    rows.push(measure(&token_api, form(code2, &key2), now, counters, "token 429").await);
    let t1 = token(&token_api.handle(form(code, &key), now).await.response);
    let t3 = token(
        &token_api
            .handle(form(customers[2].0, &customers[2].1), now)
            .await
            .response,
    );
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customer", &t1),
            now,
            counters,
            "lookup 200, first of window (+ key load)",
        )
        .await,
    );
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customer", &t1),
            now,
            counters,
            "lookup 200, steady state",
        )
        .await,
    );
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customers/OTHER-1", &t1),
            now,
            counters,
            "lookup 404 other code",
        )
        .await,
    );
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customer", "garbage"),
            now,
            counters,
            "lookup 401 bad token (no I/O)",
        )
        .await,
    );
    measure(
        &customer_api,
        get_with_token("/customer", &t2),
        now,
        counters,
        "",
    )
    .await;
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customer", &t2),
            now,
            counters,
            "lookup 429",
        )
        .await,
    );
    let third = CustomerCode::parse(customers[2].0).unwrap();
    // `keys rotate --grace 0`: only a fresh key is left.
    let (_, _, rotated) = test_util::add_key(&Default::default(), now).unwrap();
    store.set_keys(&third, &rotated).await.unwrap();
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customer", &t3),
            now,
            counters,
            "lookup 401 token of a revoked key (nothing counted)",
        )
        .await,
    );
    store
        .set_status(&limited, shared::model::CustomerStatus::Suspended)
        .await
        .unwrap();
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customer", &t2),
            now,
            counters,
            "lookup 401 suspended customer (nothing counted)",
        )
        .await,
    );
    store.delete(&third).await.unwrap();
    rows.push(
        measure(
            &customer_api,
            get_with_token("/customer", &t3),
            now,
            counters,
            "lookup 404 deleted customer",
        )
        .await,
    );
    rows.extend(private_key_jwt_rows(&token_api, &store, counters, now).await);
    let dpop = DpopApis {
        token: &dpop_token_api,
        customer: &dpop_customer_api,
        warm_token: &token_api,
        warm_customer: &customer_api,
    };
    rows.extend(dpop_rows(dpop, &store, counters, now).await);
    // The capacity column assumes items under 1 KB: check every item the bench wrote.
    let items = db.scan().table_name(&table).send().await.unwrap();
    let largest = items.items().iter().map(item_size).max().unwrap();
    assert!(
        largest < 1024,
        "an item of {largest} bytes: the 1 KB pricing rule is off"
    );
    println!("\nLargest item in the table: {largest} bytes (DynamoDB's item size, upper bound)");
    rows
}

/// An upper bound of DynamoDB's size of an item: names and values in bytes, numbers at one
/// byte per digit, 3 bytes per map or list plus 1 per element.
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>()
            }
            AttributeValue::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            _ => 1,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

struct DpopApis<'a, K: shared::keys::KeySource> {
    /// Fresh instances (empty caches).
    token: &'a TokenApi<DynamoStore, K>,
    customer: &'a CustomerApi<DynamoStore, K>,
    /// Instances whose keys are loaded, to open the rate-limit windows.
    warm_token: &'a TokenApi<DynamoStore, K>,
    warm_customer: &'a CustomerApi<DynamoStore, K>,
}

/// Calls of DPoP token requests and DPoP lookups.
async fn dpop_rows<K: shared::keys::KeySource + 'static>(
    apis: DpopApis<'_, K>,
    store: &DynamoStore,
    counters: (&moto::CallCounter, &moto::CallCounter),
    now: u64,
) -> Vec<Row> {
    const TOKEN_URL: &str = "https://api.test/auth/token";
    const CUSTOMER_URL: &str = "https://api.test/customer";
    let c = test_util::customer("BENCH-5", NOW);
    store.create(&c.customer).await.unwrap();
    let form = format!(
        "grant_type=client_credentials&client_id=BENCH-5&client_secret={}",
        c.api_key.expose()
    );
    // A Bearer token and lookup open both windows, and load the fresh instances' keys.
    let bearer = apis.warm_token.handle(post_form(&form), now).await.response;
    let bearer = json(&bearer)["access_token"].as_str().unwrap().to_owned();
    let _ = apis
        .warm_customer
        .handle(get_with_token("/customer", &bearer), now)
        .await;
    let _ = apis.token.handle(post_form(&form), now).await;
    let _ = apis
        .customer
        .handle(get_with_token("/customer", &bearer), now)
        .await;
    let key = test_util::ProofKey::ed25519();
    let token_request = |proof: &str| post_form_with_dpop(&form, &[proof]);
    let mut rows = Vec::new();
    let used = key.proof_for("POST", TOKEN_URL, None, now);
    let token_cases = [
        (
            used.clone(),
            "token 200 DPoP, instance's first (marker PutItem + count)",
        ),
        (
            key.proof_for("POST", TOKEN_URL, None, now),
            "token 200 DPoP, steady state (TransactWriteItems)",
        ),
        (
            used,
            "token 400 DPoP, replayed proof (transaction cancelled, then counted)",
        ),
        (
            "garbage".to_owned(),
            "token 400 DPoP, malformed proof (counted)",
        ),
    ];
    for (proof, case) in token_cases {
        rows.push(measure(apis.token, token_request(&proof), now, counters, case).await);
    }
    let issued = apis
        .token
        .handle(
            token_request(&key.proof_for("POST", TOKEN_URL, None, now)),
            now,
        )
        .await
        .response;
    let token = json(&issued)["access_token"].as_str().unwrap().to_owned();
    let lookup = |proof: &str| {
        let authorization = format!("DPoP {token}");
        request(
            "GET",
            "/customer",
            &[("authorization", &authorization), ("dpop", proof)],
            Body::Empty,
        )
    };
    let used = key.proof_for("GET", CUSTOMER_URL, Some(&token), now);
    let other = test_util::ProofKey::ed25519();
    let lookup_cases = [
        (
            used.clone(),
            "lookup 200 DPoP, instance's first (marker PutItem + count)",
        ),
        (
            key.proof_for("GET", CUSTOMER_URL, Some(&token), now),
            "lookup 200 DPoP, steady state (TransactWriteItems)",
        ),
        (
            used,
            "lookup 401 DPoP, replayed proof (transaction cancelled, nothing counted)",
        ),
        (
            other.proof_for("GET", CUSTOMER_URL, Some(&token), now),
            "lookup 401 DPoP, proof by a key not the token's (before I/O)",
        ),
    ];
    for (proof, case) in lookup_cases {
        rows.push(measure(apis.customer, lookup(&proof), now, counters, case).await);
    }
    let _ = apis
        .customer
        .handle(get_with_token("/customer", &bearer), now)
        .await;
    let proof = key.proof_for("GET", CUSTOMER_URL, Some(&token), now);
    let case = "lookup 200 DPoP, right after a Bearer lookup of the customer";
    rows.push(measure(apis.customer, lookup(&proof), now, counters, case).await);
    rows
}

/// A signed `private_key_jwt` assertion of `code` with the Ed25519 `pair`.
fn assertion(pair: &signature::Ed25519KeyPair, code: &str, jti: &str, now: u64) -> String {
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
    let claims = serde_json::json!({"iss": code, "sub": code, "aud": "https://api.test/auth/token",
                                    "iat": now, "exp": now + 60, "jti": jti});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref());
    format!("{input}.{sig}")
}

fn assertion_form(assertion: &str, extra: &str) -> Request {
    post_form(&format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}{extra}"
    ))
}

/// Calls of `private_key_jwt` token requests and of the revocation and introspection
/// endpoints.
async fn private_key_jwt_rows<K: shared::keys::KeySource + 'static>(
    token_api: &TokenApi<DynamoStore, K>,
    store: &DynamoStore,
    counters: (&moto::CallCounter, &moto::CallCounter),
    now: u64,
) -> Vec<Row> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let jwk = PublicJwk::parse(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#)).unwrap();
    let mut c = test_util::customer("BENCH-4", NOW);
    c.customer.keys.insert(
        jwk.key_id(),
        StoredKey {
            hash: None,
            created_at: NOW,
            expires_at: None,
        },
    );
    store.create(&c.customer).await.unwrap();
    store
        .put_jwks(&c.customer.code, &[(jwk.key_id(), jwk.to_json())])
        .await
        .unwrap();
    let mut rows = Vec::new();
    let first = assertion(&pair, "BENCH-4", "j1", now);
    let cases = [
        (
            first.clone(),
            "token 200 private_key_jwt, instance's first (BatchGetItem + transaction)",
        ),
        (
            assertion(&pair, "BENCH-4", "j2", now),
            "token 200 private_key_jwt, steady state (TransactWriteItems)",
        ),
        (
            first,
            "token 401 private_key_jwt, replayed assertion (transaction cancelled)",
        ),
    ];
    for (assertion, case) in cases {
        rows.push(
            measure(
                token_api,
                assertion_form(&assertion, ""),
                now,
                counters,
                case,
            )
            .await,
        );
    }
    let stranger = signature::Ed25519KeyPair::from_pkcs8(
        signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    rows.push(
        measure(
            token_api,
            assertion_form(&assertion(&stranger, "BENCH-4", "j3", now), ""),
            now,
            counters,
            "token 401 private_key_jwt, unregistered key (re-read of the JWKs, no write)",
        )
        .await,
    );
    let issued = token_api
        .handle(
            assertion_form(&assertion(&pair, "BENCH-4", "j4", now), ""),
            now,
        )
        .await
        .response;
    let token = json(&issued)["access_token"].as_str().unwrap().to_owned();
    let operation = |path: &str, jti: &str| {
        request(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Body::Text(format!(
                "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}&token={token}",
                assertion(&pair, "BENCH-4", jti, now)
            )),
        )
    };
    rows.push(
        measure(
            token_api,
            operation("/auth/introspect", "j5"),
            now,
            counters,
            "introspect 200 (private_key_jwt)",
        )
        .await,
    );
    rows.push(
        measure(
            token_api,
            operation("/auth/revoke", "j6"),
            now,
            counters,
            "revoke 200 (private_key_jwt)",
        )
        .await,
    );
    rows
}

/// Mean handler time over many iterations with the in-memory store (no I/O).
fn handler_times() -> Vec<(&'static str, f64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = Fixture::with_config(Config {
        token_rate_limit: u64::MAX / 2,
        api_rate_limit: u64::MAX / 2,
        ..config()
    });
    let token = rt.block_on(f.access_token(NOW));
    let time = |run: &dyn Fn() -> u16| {
        for _ in 0..200 {
            run();
        }
        let n = 3000;
        let start = Instant::now();
        for _ in 0..n {
            run();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    };
    let form = f.form();
    let wrong = format!(
        "grant_type=client_credentials&client_id={CODE}&client_secret={}",
        shared::api_key::ApiKey::generate().unwrap().expose()
    );
    let malformed =
        format!("grant_type=client_credentials&client_id={CODE}&client_secret=kiss_sk_wrong");
    let forged = format!("{}x", &token[..token.len() - 1]);
    // DPoP: proofs made ahead (each is single use), one per timed request.
    let key = test_util::ProofKey::ed25519();
    let proof_request = |proof: &str| post_form_with_dpop(&form, &[proof]);
    let issued = rt.block_on(call(
        &f.token,
        proof_request(&key.proof_for("POST", "https://api.test/auth/token", None, NOW)),
        NOW,
    ));
    let bound = json(&issued)["access_token"].as_str().unwrap().to_owned();
    let token_proofs: Vec<String> = (0..3200)
        .map(|_| key.proof_for("POST", "https://api.test/auth/token", None, NOW + 1))
        .collect();
    let lookup_proofs: Vec<String> = (0..3200)
        .map(|_| key.proof_for("GET", "https://api.test/customer", Some(&bound), NOW + 1))
        .collect();
    let next = std::cell::Cell::new(0usize);
    let take = |proofs: &[String]| {
        let i = next.get();
        next.set(i + 1);
        proofs[i % proofs.len()].clone()
    };
    let dpop_authorization = format!("DPoP {bound}");
    let mut times = vec![(
        "token issue, DPoP (proof checked, token bound)",
        time(&|| {
            let proof = take(&token_proofs);
            rt.block_on(call(&f.token, proof_request(&proof), NOW + 1))
                .status()
                .as_u16()
        }),
    )];
    next.set(0);
    times.push((
        "lookup, DPoP (token and proof checked)",
        time(&|| {
            let proof = take(&lookup_proofs);
            let request = request(
                "GET",
                "/customer",
                &[("authorization", &dpop_authorization), ("dpop", &proof)],
                Body::Empty,
            );
            rt.block_on(call(&f.customer, request, NOW + 1))
                .status()
                .as_u16()
        }),
    ));
    let mut plain = vec![
        (
            "token issue",
            time(&|| {
                rt.block_on(call(&f.token, post_form(&form), NOW + 1))
                    .status()
                    .as_u16()
            }),
        ),
        (
            "token reject (wrong key)",
            time(&|| {
                rt.block_on(call(&f.token, post_form(&wrong), NOW + 1))
                    .status()
                    .as_u16()
            }),
        ),
        (
            "token reject (malformed key, before I/O)",
            time(&|| {
                rt.block_on(call(&f.token, post_form(&malformed), NOW + 1))
                    .status()
                    .as_u16()
            }),
        ),
        (
            "lookup",
            time(&|| {
                rt.block_on(call(
                    &f.customer,
                    get_with_token("/customer", &token),
                    NOW + 1,
                ))
                .status()
                .as_u16()
            }),
        ),
        (
            "bearer reject (bad signature)",
            time(&|| {
                rt.block_on(call(
                    &f.customer,
                    get_with_token("/customer", &forged),
                    NOW + 1,
                ))
                .status()
                .as_u16()
            }),
        ),
    ];
    plain.append(&mut times);
    plain
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(calls_per_request());
    println!(
        "\n| Route and outcome | Status | DynamoDB calls | Capacity (pricing rules) | Secrets Manager calls |"
    );
    println!("|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            row.case, row.status, row.dynamodb, row.capacity, row.secrets
        );
    }
    println!("\n| Handler work without I/O (in-memory store) | Mean per request |");
    println!("|---|---|");
    for (case, micros) in handler_times() {
        println!("| {case} | {micros:.1} µs |");
    }
    let release = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    println!("\n| Release binary (stripped, host target) | Size |");
    println!("|---|---|");
    for name in ["token", "customer"] {
        match std::fs::metadata(release.join(name)) {
            Ok(meta) => println!("| {name} | {:.2} MB |", meta.len() as f64 / 1e6),
            Err(_) => println!("| {name} | not built (run `make bench`) |"),
        }
    }
}
