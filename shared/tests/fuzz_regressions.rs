//! Inputs found by fuzzing (`fuzz/`): each once panicked in a public function.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use shared::jwt::{TokenSettings, verify};
use shared::keys::{KeyCache, MemoryKeySource};

/// jwt_verify: a token signed by us with `exp` near u64::MAX overflowed `exp + leeway`.
#[tokio::test]
async fn verify_does_not_overflow_on_exp_near_u64_max() {
    let f = Fixture::new();
    let keys = KeyCache::new(MemoryKeySource::new(f.doc.public()), 300);
    let settings = TokenSettings::from_config(&f.config);
    for (claim, value) in [("exp", u64::MAX), ("nbf", u64::MAX), ("exp", u64::MAX - 59)] {
        let mut claims = f.claims(NOW);
        claims[claim] = serde_json::json!(value);
        let token = f.sign_raw(&f.header(), &claims);
        let verified = verify(&token, &keys, &settings, NOW).await;
        assert_eq!(verified.is_ok(), claim == "exp", "{claim}={value}");
    }
}
