//! Revocation and limiter edges, on the in-memory store and on DynamoDB (moto): a revoked or
//! suspended customer's token counts nothing, a request from a clock still in window W is
//! counted in the W+1 another instance opened, and keys that fail their checksum never reach
//! the table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::moto;
use common::*;
use lambda_http::Body;
use shared::api_key::ApiKey;
use shared::customer_api::CustomerApi;
use shared::keys::MemoryKeySource;
use shared::model::{Credential, CustomerCode};
use shared::rate_limit::WINDOW_SECONDS;
use shared::store::dynamo::DynamoStore;
use shared::store::memory::MemoryStore;
use shared::store::{CustomerStore, Effect, Lookup, TokenAuth};
use shared::test_util::{self, DynamoFixtures};
use shared::token_api::TokenApi;
use std::sync::Arc;

/// A window boundary: the last second of window W is `EDGE - 1`, the first of W+1 is `EDGE`.
const EDGE: u64 = NOW + 10 * WINDOW_SECONDS;

struct Customer {
    code: CustomerCode,
    key: ApiKey,
    key_id: String,
    record: shared::model::Customer,
}

fn new_customer() -> Customer {
    let created = test_util::customer(CODE, NOW);
    Customer {
        code: created.customer.code.clone(),
        key_id: created.key_id,
        key: created.api_key,
        record: created.customer,
    }
}

/// Counts `n` lookups at each of two clocks concurrently; returns (found, limited) per clock.
async fn lookups_on_both_sides<S: CustomerStore + 'static>(
    store: &Arc<S>,
    c: &Customer,
    n: usize,
    limit: u64,
) -> [(usize, usize); 2] {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 * n {
        let now = if i % 2 == 0 { EDGE - 1 } else { EDGE + 1 };
        let (store, code, id) = (store.clone(), c.code.clone(), c.key_id.clone());
        tasks.spawn(async move {
            let token = Credential::Token {
                key_id: &id,
                epoch: 0,
            };
            (now, store.lookup(&code, token, now, limit).await.unwrap())
        });
    }
    let mut tally = [(0, 0); 2];
    while let Some(joined) = tasks.join_next().await {
        let (now, outcome) = joined.unwrap();
        let side = &mut tally[usize::from(now > EDGE)];
        match outcome {
            Lookup::Found { .. } => side.0 += 1,
            Lookup::Limited(_) => side.1 += 1,
            other => panic!("{other:?}"),
        }
    }
    tally
}

/// Two instances, clocks one second either side of a window boundary, one item.
async fn window_edge_admission<S: CustomerStore + 'static>(store: Arc<S>, c: &Customer) {
    let token = Credential::Token {
        key_id: &c.key_id,
        epoch: 0,
    };
    for _ in 0..3 {
        let early = store.lookup(&c.code, token, EDGE - 2, 5).await.unwrap();
        assert!(matches!(early, Lookup::Found { .. }), "{early:?}");
    }
    // The instance whose clock is ahead opens W+1 ...
    let ahead = store.lookup(&c.code, token, EDGE + 1, 5).await.unwrap();
    assert!(matches!(ahead, Lookup::Found { ref rate, .. } if rate.remaining == 4));
    // ... and the one still in W is counted there, not refused: the customer is under 5.
    let behind = store.lookup(&c.code, token, EDGE - 1, 5).await.unwrap();
    let Lookup::Found { rate, .. } = behind else {
        panic!("a request under the limit was refused: {behind:?}")
    };
    assert_eq!((rate.remaining, rate.reset), (3, WINDOW_SECONDS + 1));
    // Both clocks at once: exactly the 3 requests left in W+1 are admitted.
    let [behind, ahead] = lookups_on_both_sides(&store, c, 10, 5).await;
    assert_eq!(behind.0 + ahead.0, 3, "behind {behind:?}, ahead {ahead:?}");
    assert_eq!(behind.1 + ahead.1, 17);
    // W+1 is full: across the next boundary only W+2 admits, exactly the limit, whichever
    // clock gets there first.
    let next = EDGE + WINDOW_SECONDS;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u64 {
        let (store, code, id) = (store.clone(), c.code.clone(), c.key_id.clone());
        tasks.spawn(async move {
            let token = Credential::Token {
                key_id: &id,
                epoch: 0,
            };
            let now = next - 1 + 2 * (i % 2);
            store.lookup(&code, token, now, 5).await.unwrap()
        });
    }
    let mut found = 0;
    while let Some(outcome) = tasks.join_next().await {
        found += usize::from(matches!(outcome.unwrap(), Lookup::Found { .. }));
    }
    assert_eq!(found, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn window_edge_in_memory_counts_in_the_newer_window() {
    let c = new_customer();
    let store = Arc::new(MemoryStore::default());
    store.put(c.record.clone());
    window_edge_admission(store, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn window_edge_on_dynamodb_counts_in_the_newer_window() {
    let c = new_customer();
    let (client, _) = moto::dynamodb();
    let store = DynamoStore::new(client.clone(), moto::table(&client).await);
    store.create(&c.record).await.unwrap();
    window_edge_admission(Arc::new(store), &c).await;
}

#[tokio::test]
async fn token_bucket_at_the_window_edge_on_dynamodb() {
    let c = new_customer();
    let (client, _) = moto::dynamodb();
    let store = DynamoStore::new(client.clone(), moto::table(&client).await);
    store.create(&c.record).await.unwrap();
    let hash = c.key.hash_hex();
    let key = Credential::ApiKey {
        id: &c.key_id,
        hash: &hash,
    };
    let ahead = store
        .authorize_token(&c.code, key, Effect::Count, EDGE, 2)
        .await
        .unwrap();
    assert!(matches!(ahead, TokenAuth::Granted { .. }));
    let behind = store
        .authorize_token(&c.code, key, Effect::Count, EDGE - 1, 2)
        .await
        .unwrap();
    assert!(
        matches!(behind, TokenAuth::Granted { ref rate, .. } if rate.remaining == 0),
        "{behind:?}"
    );
    let over = store
        .authorize_token(&c.code, key, Effect::Count, EDGE - 1, 2)
        .await
        .unwrap();
    assert!(matches!(over, TokenAuth::Limited(ref r) if r.reset == WINDOW_SECONDS + 1));
}

/// Both functions over one moto table, with a DynamoDB call counter.
struct Moto {
    token: TokenApi<DynamoStore, Arc<MemoryKeySource>>,
    customer: CustomerApi<DynamoStore, Arc<MemoryKeySource>>,
    store: DynamoStore,
    calls: moto::CallCounter,
    c: Customer,
}

impl Moto {
    async fn new() -> Self {
        let c = new_customer();
        let (client, calls) = moto::dynamodb();
        let store = DynamoStore::new(client.clone(), moto::table(&client).await);
        store.create(&c.record).await.unwrap();
        let mut doc = shared::keys::KeyDocument::default();
        doc.rotate(NOW - 1000).unwrap();
        let config = config();
        Self {
            token: TokenApi::new(
                store.clone(),
                Arc::new(MemoryKeySource::new(doc.clone())),
                &config,
            ),
            customer: CustomerApi::new(
                store.clone(),
                Arc::new(MemoryKeySource::new(doc.public())),
                &config,
            ),
            store,
            calls,
            c,
        }
    }

    async fn token_for(&self, key: &ApiKey, now: u64) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={CODE}&client_secret={}",
            key.expose()
        );
        let response = call(&self.token, post_form(&form), now).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        json(&response)["access_token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn revoked_token_1000_times_on_dynamodb_counts_nothing_one_call_each() {
    let m = Moto::new().await;
    m.store.set_limits(&m.c.code, None, Some(3)).await.unwrap();
    let old = m.token_for(&m.c.key, NOW).await;
    let stored = m.store.get(&m.c.code).await.unwrap().unwrap();
    let (second, _, keys) = test_util::add_key(&stored.keys, NOW).unwrap();
    m.store.set_keys(&m.c.code, &keys).await.unwrap();
    let fresh = m.token_for(&second, NOW).await;
    let mut forged = old.clone();
    forged.push('A');
    let reference = call(&m.customer, get_with_token("/customer", &forged), NOW).await;
    assert_bearer_401(&reference);
    let first = call(&m.customer, get_with_token("/customer", &fresh), NOW).await;
    assert_eq!(
        header(&first, "x-ratelimit-remaining").as_deref(),
        Some("2")
    );

    let mut revoked = keys.clone();
    revoked.remove(&m.c.key_id);
    m.store.set_keys(&m.c.code, &revoked).await.unwrap();
    let before = m.calls.get();
    for _ in 0..1000 {
        let response = call(&m.customer, get_with_token("/customer", &old), NOW + 1).await;
        assert_bearer_401(&response);
        assert_eq!(response.headers(), reference.headers());
    }
    assert_eq!(m.calls.get() - before, 1000, "one round trip each");
    let after = call(&m.customer, get_with_token("/customer", &fresh), NOW + 2).await;
    assert_eq!(after.status(), 200);
    assert_eq!(
        header(&after, "x-ratelimit-remaining").as_deref(),
        Some("1")
    );
    let item = m.store.get(&m.c.code).await.unwrap().unwrap();
    assert_eq!(item.api_counter.count, 2, "only the valid token's requests");
}

#[tokio::test]
async fn malformed_or_checksum_failing_keys_cost_no_dynamodb_call() {
    let m = Moto::new().await;
    let wrong = ApiKey::generate().unwrap();
    let form = |secret: &str| {
        format!("grant_type=client_credentials&client_id={CODE}&client_secret={secret}")
    };
    let before = m.calls.get();
    let reference = call(&m.token, post_form(&form(wrong.expose())), NOW).await;
    assert_oauth(
        &reference,
        401,
        "invalid_client",
        "Invalid client credentials.",
    );
    assert_eq!(
        m.calls.get() - before,
        1,
        "a well-formed wrong key: one call"
    );
    let real = m.c.key.expose();
    let mut flipped = real.to_owned();
    flipped.replace_range(20..21, if &real[20..21] == "x" { "y" } else { "x" });
    let before = m.calls.get();
    for secret in [
        flipped.as_str(),
        "kiss_sk_short",
        "not-our-format",
        &real[1..],
    ] {
        let response = call(&m.token, post_form(&form(secret)), NOW).await;
        assert_eq!(text(&response), text(&reference));
        assert_eq!(response.headers(), reference.headers());
    }
    assert_eq!(m.calls.get() - before, 0, "refused before any I/O");
}

#[tokio::test]
async fn revocation_is_one_write_and_lookups_enforce_it_in_their_one_call() {
    let m = Moto::new().await;
    let old = m.token_for(&m.c.key, NOW).await;
    let client = format!("client_id={CODE}&client_secret={}", m.c.key.expose());
    let post = |path: &'static str, body: String| {
        request(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Body::Text(body),
        )
    };
    let opened = call(&m.customer, get_with_token("/customer", &old), NOW).await;
    assert_eq!(opened.status(), 200, "opens the api window");
    let before = m.calls.get();
    let revoked = call(
        &m.token,
        post("/auth/revoke", format!("{client}&token={old}")),
        NOW,
    )
    .await;
    assert_eq!(
        (revoked.status().as_u16(), text(&revoked)),
        (200, String::new())
    );
    assert_eq!(m.calls.get() - before, 1, "revocation: one UpdateItem");
    let before = m.calls.get();
    assert_bearer_401(&call(&m.customer, get_with_token("/customer", &old), NOW).await);
    assert_eq!(m.calls.get() - before, 1);
    let fresh = m.token_for(&m.c.key, NOW).await;
    let before = m.calls.get();
    let found = call(&m.customer, get_with_token("/customer", &fresh), NOW).await;
    assert_eq!(found.status(), 200);
    let introspected = call(
        &m.token,
        post("/auth/introspect", format!("{client}&token={fresh}")),
        NOW,
    )
    .await;
    assert_eq!(json(&introspected)["active"], true);
    assert_eq!(
        m.calls.get() - before,
        2,
        "lookup and introspection: one call each"
    );
    let item = m.store.get(&m.c.code).await.unwrap().unwrap();
    assert_eq!(item.token_epoch, 1);
}
