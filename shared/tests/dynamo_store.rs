//! The DynamoDB store and Secrets Manager source against a real moto server: single round
//! trips, exact limits under concurrency, and keys. (The admin crate tests its own writes.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::moto;
use common::{CODE, NOW};
use shared::keys::{KeyCache, KeyDocument, SecretsManagerSource};
use shared::model::{Credential, CustomerCode, CustomerStatus};
use shared::rate_limit::window_start;
use shared::store::dynamo::DynamoStore;
use shared::store::{CustomerStore, Effect, Lookup, StoreError, TokenAuth};
use shared::test_util::{self, DynamoFixtures, SecretFixtures};
use std::sync::Arc;

struct Setup {
    store: DynamoStore,
    calls: moto::CallCounter,
    hash: String,
    key_id: String,
    code: CustomerCode,
}

impl Setup {
    /// The customer's API key as the token route presents it.
    fn key(&self) -> Credential<'_> {
        Credential::ApiKey {
            id: &self.key_id,
            hash: &self.hash,
        }
    }

    /// A token of the customer's key as the lookup routes present it.
    fn token(&self) -> Credential<'_> {
        Credential::Token {
            key_id: &self.key_id,
            epoch: 0,
        }
    }
}

async fn setup() -> Setup {
    let (client, calls) = moto::dynamodb();
    let table = moto::table(&client).await;
    let store = DynamoStore::new(client, table);
    let created = test_util::customer(CODE, NOW);
    store.create(&created.customer).await.unwrap();
    Setup {
        store,
        calls,
        hash: created.api_key.hash_hex(),
        key_id: created.key_id,
        code: created.customer.code,
    }
}

#[tokio::test]
async fn token_authorization_is_one_call_in_the_steady_state() {
    let s = setup().await;
    let now = window_start(NOW) + 5;
    let before = s.calls.get();
    let first = s
        .store
        .authorize_token(&s.code, s.key(), Effect::Count, now, 20)
        .await
        .unwrap();
    assert_eq!(
        s.calls.get() - before,
        2,
        "first request of a window: count refused, then reset"
    );
    let TokenAuth::Granted { rate, .. } = first else {
        panic!("{first:?}")
    };
    assert_eq!((rate.remaining, rate.reset), (19, 55));
    let before = s.calls.get();
    let second = s
        .store
        .authorize_token(&s.code, s.key(), Effect::Count, now + 1, 20)
        .await
        .unwrap();
    assert!(matches!(second, TokenAuth::Granted { ref rate, .. } if rate.remaining == 18));
    assert_eq!(s.calls.get() - before, 1, "steady state: one UpdateItem");
    let wrong = "f".repeat(64);
    let wrong_key = Credential::ApiKey {
        id: &s.key_id,
        hash: &wrong,
    };
    for (code, key) in [
        (s.code.clone(), wrong_key),
        (CustomerCode::parse("NOBODY").unwrap(), s.key()),
    ] {
        let before = s.calls.get();
        let outcome = s
            .store
            .authorize_token(&code, key, Effect::Count, now + 2, 20)
            .await
            .unwrap();
        assert!(matches!(outcome, TokenAuth::InvalidClient));
        assert_eq!(
            s.calls.get() - before,
            1,
            "unknown customer and wrong key cost the same one call"
        );
    }
    s.store
        .set_status(&s.code, CustomerStatus::Suspended)
        .await
        .unwrap();
    let suspended = s
        .store
        .authorize_token(&s.code, s.key(), Effect::Count, now + 3, 20)
        .await
        .unwrap();
    assert!(matches!(suspended, TokenAuth::InvalidClient));
}

#[tokio::test]
async fn wrong_credentials_x100_leave_the_quota_untouched() {
    let s = setup().await;
    let now = window_start(NOW) + 1;
    s.store
        .authorize_token(&s.code, s.key(), Effect::Count, now, 20)
        .await
        .unwrap();
    let wrong = "0".repeat(64);
    for _ in 0..100 {
        let wrong_key = Credential::ApiKey {
            id: &s.key_id,
            hash: &wrong,
        };
        let outcome = s
            .store
            .authorize_token(&s.code, wrong_key, Effect::Count, now, 20)
            .await
            .unwrap();
        assert!(matches!(outcome, TokenAuth::InvalidClient));
    }
    assert_eq!(
        s.store
            .get(&s.code)
            .await
            .unwrap()
            .unwrap()
            .token_counter
            .count,
        1
    );
}

#[tokio::test]
async fn a_rejected_request_writes_nothing_and_overrides_apply_next_request() {
    let s = setup().await;
    let now = window_start(NOW) + 1;
    s.store.set_limits(&s.code, Some(2), Some(1)).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(
            s.store
                .authorize_token(&s.code, s.key(), Effect::Count, now, 20)
                .await
                .unwrap(),
            TokenAuth::Granted { .. }
        ));
    }
    let before = s.calls.get();
    let limited = s
        .store
        .authorize_token(&s.code, s.key(), Effect::Count, now, 20)
        .await
        .unwrap();
    assert!(matches!(limited, TokenAuth::Limited(ref r) if r.limit == 2 && r.remaining == 0));
    assert_eq!(s.calls.get() - before, 1);
    assert_eq!(
        s.store
            .get(&s.code)
            .await
            .unwrap()
            .unwrap()
            .token_counter
            .count,
        2
    );
    s.store.set_limits(&s.code, Some(3), None).await.unwrap();
    assert!(matches!(
        s.store
            .authorize_token(&s.code, s.key(), Effect::Count, now, 20)
            .await
            .unwrap(),
        TokenAuth::Granted { .. }
    ));
    assert!(matches!(
        s.store.lookup(&s.code, s.token(), now, 120).await.unwrap(),
        Lookup::Found { .. }
    ));
    assert!(matches!(
        s.store.lookup(&s.code, s.token(), now, 120).await.unwrap(),
        Lookup::Limited(_)
    ));
}

#[tokio::test]
async fn lookup_is_one_call_and_tells_missing_from_limited() {
    let s = setup().await;
    let now = window_start(NOW) + 1;
    s.store.lookup(&s.code, s.token(), now, 120).await.unwrap();
    let before = s.calls.get();
    let found = s.store.lookup(&s.code, s.token(), now, 120).await.unwrap();
    assert!(matches!(found, Lookup::Found { ref rate, .. } if rate.remaining == 118));
    let missing = s
        .store
        .lookup(&CustomerCode::parse("NOBODY").unwrap(), s.token(), now, 120)
        .await
        .unwrap();
    assert!(matches!(missing, Lookup::NotFound));
    assert_eq!(s.calls.get() - before, 2);
}

async fn concurrent_tokens(store: &Arc<DynamoStore>, s: &Setup, n: usize, now: u64) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (store, code, hash, id) = (
            store.clone(),
            s.code.clone(),
            s.hash.clone(),
            s.key_id.clone(),
        );
        tasks.spawn(async move {
            let key = Credential::ApiKey {
                id: &id,
                hash: &hash,
            };
            store
                .authorize_token(&code, key, Effect::Count, now, 20)
                .await
                .unwrap()
        });
    }
    let mut granted = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            TokenAuth::Granted { .. } => granted += 1,
            TokenAuth::Limited(_) => {}
            other => panic!("{other:?}"),
        }
    }
    granted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_token_requests_admit_exactly_twenty_per_window() {
    let s = setup().await;
    let store = Arc::new(s.store.clone());
    let now = window_start(NOW) + 3;
    assert_eq!(concurrent_tokens(&store, &s, 50, now).await, 20);
    assert_eq!(
        concurrent_tokens(&store, &s, 50, now + 60).await,
        20,
        "again after the window rolls"
    );
    assert_eq!(
        s.store
            .get(&s.code)
            .await
            .unwrap()
            .unwrap()
            .token_counter
            .count,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_parallel_lookups_admit_exactly_one_hundred_twenty() {
    let s = setup().await;
    let store = Arc::new(s.store.clone());
    let now = window_start(NOW) + 3;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (store, code, id) = (store.clone(), s.code.clone(), s.key_id.clone());
        tasks.spawn(async move {
            let token = Credential::Token {
                key_id: &id,
                epoch: 0,
            };
            store.lookup(&code, token, now, 120).await.unwrap()
        });
    }
    let mut found = 0;
    while let Some(outcome) = tasks.join_next().await {
        if let Lookup::Found { .. } = outcome.unwrap() {
            found += 1;
        }
    }
    assert_eq!(found, 120);
}

#[tokio::test]
async fn malformed_items_are_errors_not_guesses() {
    let (client, _) = moto::dynamodb();
    let table = moto::table(&client).await;
    client
        .put_item()
        .table_name(&table)
        .item(
            "customer_code",
            aws_sdk_dynamodb::types::AttributeValue::S("BROKEN".into()),
        )
        .item(
            "status",
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        )
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(client, table);
    let code = CustomerCode::parse("BROKEN").unwrap();
    assert!(matches!(
        store
            .lookup(
                &code,
                Credential::Token {
                    key_id: "key_x",
                    epoch: 0
                },
                NOW,
                120
            )
            .await,
        Err(StoreError::Malformed(_))
    ));
}

#[tokio::test]
async fn secrets_manager_keys_rotate_and_are_cached() {
    let (client, calls) = moto::secrets();
    let id = moto::secret(&client, r#"{"keys":[]}"#).await;
    let source = SecretsManagerSource::new(client, id);
    let mut doc = KeyDocument::parse(&source.read().await.unwrap()).unwrap();
    doc.rotate(NOW).unwrap();
    source.write(&doc).await.unwrap();
    let first_kid = doc.active.clone().unwrap().kid;
    let cache = KeyCache::new(source.clone(), 300);
    let before = calls.get();
    for i in 0..10 {
        let keys = cache.current(NOW + i).await.unwrap();
        assert_eq!(keys.signer(NOW + i).unwrap().0, first_kid);
    }
    assert_eq!(
        calls.get() - before,
        1,
        "one GetSecretValue, then the cache"
    );
    doc.rotate(NOW + 20).unwrap();
    source.write(&doc).await.unwrap();
    let keys = cache
        .with_kid(&doc.active.clone().unwrap().kid, NOW + 21)
        .await
        .unwrap();
    assert!(keys.is_some(), "an unknown kid refreshes at once");
    let keys = keys.unwrap();
    assert!(
        keys.verifier(&first_kid).is_some(),
        "the previous public key stays published"
    );
    let jwks: serde_json::Value = serde_json::from_str(keys.jwks_json()).unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn signing_key_activation_uses_the_secret_version_date_not_the_admin_clock() {
    let (client, _) = moto::secrets();
    let id = moto::secret(&client, r#"{"keys":[]}"#).await;
    let source = SecretsManagerSource::new(client, id);
    let now = shared::model::unix_now();
    for skew in [-3600_i64, 3600] {
        // An operator whose clock is an hour behind, then one an hour ahead, rotates twice.
        let admin_now = now.saturating_add_signed(skew);
        let mut doc = KeyDocument::parse(&source.read().await.unwrap()).unwrap();
        let first = doc.rotate(admin_now).unwrap().kid;
        let second = doc.rotate(admin_now).unwrap().kid;
        source.write(&doc).await.unwrap();
        let published = shared::model::unix_now();
        let cache = KeyCache::new(source.clone(), 300);
        let keys = cache.current(published).await.unwrap();
        assert_eq!(
            keys.signer(published).unwrap().0,
            first,
            "skew {skew}: not yet published for one refresh interval"
        );
        assert_eq!(
            keys.signer(published + 301).unwrap().0,
            second,
            "skew {skew}: active one refresh interval after Secrets Manager published it"
        );
    }
}
