//! Admin writes against a real moto server: each conditional on what the command read, so
//! commands running at the same time never undo each other (a revoked key never comes back,
//! no signing key is lost), and the request path's counting writes never get in the way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../shared/tests/common/moto.rs"]
mod moto;

use customer_admin::AdminError;
use customer_admin::rules::{self, InputError};
use customer_admin::secret::KeySecret;
use customer_admin::signing::{self, Outcome};
use customer_admin::table::{Change, CustomerTable};
use shared::keys::{KeyDocument, KeySource, SecretsManagerSource};
use shared::model::{Credential, CustomerCode, CustomerStatus};
use shared::store::dynamo::DynamoStore;
use shared::store::item;
use shared::store::{CustomerStore, Effect, TokenAuth};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const NOW: u64 = 1_800_000_000;

struct Setup {
    table: CustomerTable,
    client: aws_sdk_dynamodb::Client,
    table_name: String,
    code: CustomerCode,
    key_id: String,
    hash: String,
}

async fn setup(code: &str) -> Setup {
    let (client, _) = moto::dynamodb();
    let table_name = moto::table(&client).await;
    let table = CustomerTable::new(client.clone(), &table_name);
    let created = rules::new_customer(code, "Acme", "ops@acme.example", "standard", &[], NOW)
        .unwrap()
        .unwrap();
    table.create(&created.customer).await.unwrap();
    Setup {
        table,
        client,
        table_name,
        code: created.customer.code,
        key_id: created.key_id,
        hash: created.api_key.hash_hex(),
    }
}

impl Setup {
    async fn version(&self) -> u64 {
        self.table.get(&self.code).await.unwrap().unwrap().version
    }

    async fn key_ids(&self) -> BTreeSet<String> {
        let now = self.table.get(&self.code).await.unwrap().unwrap();
        now.customer.keys.keys().cloned().collect()
    }
}

#[tokio::test]
async fn admin_operations_round_trip_and_refuse_bad_targets() {
    let s = setup("ACME-1").await;
    let stored = s.table.get(&s.code).await.unwrap().unwrap();
    assert_eq!(stored.customer.name, "Acme");
    assert_eq!(stored.customer.status, CustomerStatus::Active);
    assert_eq!(stored.version, 1, "a created item starts at version 1");
    assert_eq!(
        stored
            .customer
            .keys
            .get(&s.key_id)
            .and_then(|k| k.hash.as_deref()),
        Some(s.hash.as_str())
    );
    let again = rules::new_customer("ACME-1", "Other", "x@y.example", "standard", &[], NOW)
        .unwrap()
        .unwrap();
    assert!(matches!(
        s.table.create(&again.customer).await,
        Err(AdminError::AlreadyExists)
    ));
    assert_eq!(
        s.table.get(&s.code).await.unwrap().unwrap().customer.name,
        "Acme",
        "nothing overwritten"
    );
    s.table
        .set_status(&s.code, CustomerStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(
        s.table.set_limits(&s.code, Some(5), None).await.unwrap(),
        (Some(5), None)
    );
    assert_eq!(
        s.table.set_limits(&s.code, None, None).await.unwrap(),
        (Some(5), None),
        "no flags: the limits in force, nothing written"
    );
    let changed = s.table.get(&s.code).await.unwrap().unwrap();
    assert_eq!(
        (
            changed.customer.status,
            changed.customer.token_limit,
            changed.customer.api_limit
        ),
        (CustomerStatus::Suspended, Some(5), None)
    );
    assert_eq!(changed.version, 3, "two writes since the creation");
    assert_eq!(s.table.list().await.unwrap().len(), 1);
    let ghost = CustomerCode::parse("GHOST-1").unwrap();
    assert!(matches!(
        s.table.set_status(&ghost, CustomerStatus::Active).await,
        Err(AdminError::NotFound)
    ));
    assert!(matches!(
        s.table.rotate_key(&ghost, NOW, 60).await,
        Err(AdminError::NotFound)
    ));
    assert!(matches!(
        s.table.delete(&ghost).await,
        Err(AdminError::NotFound)
    ));
    assert!(
        s.table.get(&ghost).await.unwrap().is_none(),
        "a refused update creates nothing"
    );
    assert!(matches!(
        s.table.revoke_key(&s.code, "key_unknown").await,
        Err(AdminError::Input(InputError::UnknownKey(_)))
    ));
    assert_eq!(s.version().await, 3, "a refused rule writes nothing");
    s.table.delete(&s.code).await.unwrap();
    assert!(s.table.get(&s.code).await.unwrap().is_none());
}

#[tokio::test]
async fn items_written_before_versioning_are_updated_from_version_zero() {
    let s = setup("ACME-1").await;
    s.client
        .update_item()
        .table_name(&s.table_name)
        .key(
            item::CODE,
            aws_sdk_dynamodb::types::AttributeValue::S("ACME-1".into()),
        )
        .update_expression("REMOVE #v")
        .expression_attribute_names("#v", item::ADMIN_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(s.version().await, 0);
    s.table.rotate_key(&s.code, NOW, 60).await.unwrap();
    assert_eq!(s.version().await, 1);
}

/// The race that resurrected revoked keys: `keys rotate` reads {K}, `keys revoke K` writes {},
/// then the rotation writes {K (grace), new}. Here the revocation runs to completion inside
/// the rotation's rule, between its read and its write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_between_a_rotations_read_and_write_stays_revoked() {
    let s = setup("ACME-1").await;
    let calls = AtomicUsize::new(0);
    let (table, code, revoked) = (s.table.clone(), s.code.clone(), s.key_id.clone());
    let rotated = s
        .table
        .update(&s.code, |customer| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                assert!(
                    customer.keys.contains_key(&revoked),
                    "read before the revoke"
                );
                let handle = tokio::runtime::Handle::current();
                tokio::task::block_in_place(|| handle.block_on(table.revoke_key(&code, &revoked)))
                    .unwrap();
            }
            let (_, key_id, keys) = rules::rotate_keys(&customer.keys, NOW + 10, 3600)?;
            Ok(Change {
                set: vec![(item::KEYS.into(), item::keys_value(&keys))],
                output: key_id,
            })
        })
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the stale write lost; the rule ran again"
    );
    assert_eq!(s.key_ids().await, BTreeSet::from([rotated]));
    assert_eq!(s.version().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_rotations_and_a_revocation_never_bring_the_revoked_key_back() {
    for round in 0..3 {
        let s = setup(&format!("ACME-{round}")).await;
        let s = Arc::new(s);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let s = s.clone();
            tasks.spawn(async move {
                if i == round {
                    s.table.revoke_key(&s.code, &s.key_id).await.map(|()| None)
                } else {
                    s.table
                        .rotate_key(&s.code, NOW + 10, 86_400)
                        .await
                        .map(|(_, id)| Some(id))
                }
            });
        }
        let mut rotated = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                Ok(Some(id)) => rotated.push(id),
                Ok(None) => {}
                // Two rotations before the revocation already retired the original key.
                Err(AdminError::Input(InputError::UnknownKey(_))) => {}
                Err(other) => panic!("{other}"),
            }
        }
        let keys = s.key_ids().await;
        assert!(
            !keys.contains(&s.key_id),
            "round {round}: revoked key is back"
        );
        assert!(keys.len() <= 2 && !keys.is_empty(), "{keys:?}");
        assert!(
            keys.iter().all(|k| rotated.contains(k)),
            "{keys:?} {rotated:?}"
        );
        assert_eq!(rotated.len(), 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_limits_and_status_changes_are_serialised_beside_counting() {
    let s = Arc::new(setup("ACME-1").await);
    let store = DynamoStore::new(s.client.clone(), &s.table_name);
    let mut admin = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let s = s.clone();
        admin.spawn(async move {
            match i % 4 {
                0 => s
                    .table
                    .set_limits(&s.code, Some(1000 + i), None)
                    .await
                    .map(|_| ()),
                1 => s
                    .table
                    .set_limits(&s.code, None, Some(2000 + i))
                    .await
                    .map(|_| ()),
                2 => s.table.set_status(&s.code, CustomerStatus::Suspended).await,
                _ => s.table.set_status(&s.code, CustomerStatus::Active).await,
            }
        });
    }
    // Token requests at the same time: the counting writes leave `admin_version` alone.
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (store, s) = (store.clone(), s.clone());
        requests.spawn(async move {
            let key = Credential::ApiKey {
                id: &s.key_id,
                hash: &s.hash,
            };
            store
                .authorize_token(&s.code, key, Effect::Count, NOW + 5, 10_000)
                .await
                .unwrap()
        });
    }
    while let Some(done) = admin.join_next().await {
        done.unwrap().unwrap();
    }
    let mut granted = 0;
    while let Some(done) = requests.join_next().await {
        granted += u64::from(matches!(done.unwrap(), TokenAuth::Granted { .. }));
    }
    let end = s.table.get(&s.code).await.unwrap().unwrap();
    assert_eq!(
        end.version,
        1 + 8,
        "every admin write built on the one before"
    );
    assert_eq!(
        end.customer.token_counter.count, granted,
        "every grant counted"
    );
    assert!(
        end.customer
            .token_limit
            .is_some_and(|l| (1000..1008).contains(&l))
    );
    assert!(
        end.customer
            .api_limit
            .is_some_and(|l| (2000..2008).contains(&l))
    );
}

async fn secrets() -> (
    KeySecret,
    KeySecret,
    aws_sdk_secretsmanager::Client,
    String,
    String,
) {
    let (client, _) = moto::secrets();
    let signing_id = moto::secret(&client, r#"{"keys":[]}"#).await;
    let verification_id = moto::secret(&client, r#"{"keys":[]}"#).await;
    (
        KeySecret::new(client.clone(), &signing_id),
        KeySecret::new(client.clone(), &verification_id),
        client,
        signing_id,
        verification_id,
    )
}

#[tokio::test]
async fn a_secret_write_based_on_a_stale_read_is_refused() {
    let (signing, _, _, _, _) = secrets().await;
    let stale = signing.read().await.unwrap();
    let mut first = stale.doc.clone();
    let first_kid = first.rotate(NOW).unwrap().kid;
    assert!(signing.replace(&first, &stale.version).await.unwrap());
    let mut second = stale.doc.clone();
    second.rotate(NOW).unwrap();
    assert!(
        !signing.replace(&second, &stale.version).await.unwrap(),
        "AWSCURRENT moved since the read"
    );
    let now = signing.read().await.unwrap();
    assert_eq!(now.doc.active.map(|a| a.kid), Some(first_kid));
}

#[tokio::test]
async fn the_functions_read_what_a_rotation_wrote() {
    let (signing, verification, client, signing_id, verification_id) = secrets().await;
    let mut kids = Vec::new();
    for _ in 0..2 {
        match signing::rotate(&signing, &verification, false, || NOW)
            .await
            .unwrap()
        {
            Outcome::Created { kid, .. } => kids.push(kid),
            other => panic!("{other:?}"),
        }
    }
    // The functions' reader: a plain GetSecretValue, as in production.
    let token_side = SecretsManagerSource::new(client.clone(), signing_id)
        .fetch()
        .await
        .unwrap();
    assert_eq!(token_side.active.map(|a| a.kid).as_ref(), kids.last());
    assert_eq!(token_side.previous.map(|p| p.kid).as_ref(), kids.first());
    let verifier_side = SecretsManagerSource::new(client, verification_id)
        .fetch()
        .await
        .unwrap();
    let published: BTreeSet<_> = verifier_side.keys.into_iter().map(|k| k.kid).collect();
    assert!(kids.iter().all(|k| published.contains(k)), "{published:?}");
    assert!(verifier_side.active.is_none() && verifier_side.previous.is_none());
}

#[tokio::test]
async fn rotation_keeps_a_concurrent_rotations_public_key_and_retires_the_active_key_now() {
    let mut signing = KeyDocument::default();
    let first = signing.rotate(NOW).unwrap().kid;
    // The verification secret as rotations that lost their race left it: one, long ago,
    // retired `first` and published a key of its own (retired since); another has just
    // published its key and is about to store the private one.
    let mut long_ago = signing.clone();
    let stale = long_ago.rotate(NOW - 90_000).unwrap().kid;
    let mut verification = long_ago.public();
    verification.keys.iter_mut().for_each(|k| {
        k.retired_at.get_or_insert(NOW - 90_000);
    });
    let mut racing = signing.clone();
    let pending = racing.rotate(NOW + 50).unwrap().kid;
    let pending_key = racing.keys.iter().find(|k| k.kid == pending).unwrap();
    verification.keys.push(pending_key.clone());

    let (next, active) = signing::plan(&signing, &verification, NOW + 100).unwrap();
    let kids: BTreeSet<_> = next.keys.iter().map(|k| k.kid.as_str()).collect();
    assert!(
        kids.contains(first.as_str()),
        "the key that signed until now stays published"
    );
    assert!(
        kids.contains(pending.as_str()),
        "a concurrent rotation's key stays published"
    );
    assert!(
        !kids.contains(stale.as_str()),
        "a key retired over 24 h ago is pruned"
    );
    assert!(kids.contains(active.kid.as_str()));
    let first_entry = next.keys.iter().find(|k| k.kid == first).unwrap();
    assert_eq!(
        first_entry.retired_at,
        Some(NOW + 100),
        "retired now, not 25 h ago"
    );
    assert_eq!(next.public().keys, next.keys);
    assert_eq!(next.previous.map(|p| p.kid), Some(first));
}

/// Reads the signing secret, then the verification secret, and checks that the active and
/// previous private keys' public keys are published.
async fn published_invariant(signing: &KeySecret, verification: &KeySecret) {
    let private = signing.read().await.unwrap().doc;
    let public = verification.read().await.unwrap().doc;
    let kids: BTreeSet<_> = public.keys.iter().map(|k| k.kid.clone()).collect();
    for key in private.active.iter().chain(private.previous.iter()) {
        assert!(
            kids.contains(&key.kid),
            "private key {} is not published",
            key.kid
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_signing_key_rotations_lose_no_key() {
    let (signing, verification, _, _, _) = secrets().await;
    let first = signing::rotate(&signing, &verification, true, || NOW)
        .await
        .unwrap();
    let Outcome::Created { kid: first, .. } = first else {
        panic!("{first:?}")
    };
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (signing, verification, done) = (signing.clone(), verification.clone(), done.clone());
        tokio::spawn(async move {
            let mut checks = 0;
            while !done.load(Ordering::SeqCst) {
                published_invariant(&signing, &verification).await;
                checks += 1;
            }
            checks
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (signing, verification) = (signing.clone(), verification.clone());
        tasks.spawn(async move { signing::rotate(&signing, &verification, false, || NOW).await });
    }
    let mut successor = std::collections::BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap().unwrap() {
            Outcome::Created { kid, previous } => {
                let previous = previous.expect("there was an active key");
                assert!(
                    successor.insert(previous.clone(), kid).is_none(),
                    "two rotations replaced the same key {previous}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap() > 0);
    // The reported (previous → new) pairs form one chain: every rotation built on the one
    // before it, none was overwritten.
    let mut chain = vec![first];
    while let Some(next) = successor.get(chain.last().unwrap()) {
        chain.push(next.clone());
    }
    assert_eq!(chain.len(), 7, "{chain:?} {successor:?}");
    let private = signing.read().await.unwrap().doc;
    assert_eq!(private.active.map(|a| a.kid).as_ref(), chain.last());
    assert_eq!(private.previous.map(|p| p.kid).as_ref(), chain.get(5));
    let public: BTreeSet<_> = verification
        .read()
        .await
        .unwrap()
        .doc
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    let listed: BTreeSet<_> = private.keys.into_iter().map(|k| k.kid).collect();
    for kid in &chain {
        assert!(
            public.contains(kid),
            "{kid} missing from the verification secret"
        );
        assert!(listed.contains(kid), "{kid} missing from the served JWKS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_inits_create_exactly_one_key() {
    let (signing, verification, _, _, _) = secrets().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (signing, verification) = (signing.clone(), verification.clone());
        tasks.spawn(async move { signing::rotate(&signing, &verification, true, || NOW).await });
    }
    let (mut created, mut kids) = (0, BTreeSet::new());
    while let Some(result) = tasks.join_next().await {
        match result.unwrap().unwrap() {
            Outcome::Created { kid, previous } => {
                assert_eq!(previous, None);
                created += 1;
                kids.insert(kid);
            }
            Outcome::Exists { kid } => {
                kids.insert(kid);
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(kids.len(), 1, "everyone reports the one key: {kids:?}");
    published_invariant(&signing, &verification).await;
}
