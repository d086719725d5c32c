//! `jwt::verify` never panics. An input that is a JSON value is signed as the claims of a
//! token with a valid header and the fixture's key (what only the token function can make),
//! so the claim checks after the signature are explored too; any other input is the token
//! itself, with every `$T` replaced by a valid access token of this run.
#![no_main]

use customer_api_fuzz::{NOW, fixture, runtime};
use libfuzzer_sys::fuzz_target;
use shared::jwt::{TokenSettings, verify};
use shared::keys::KeyCache;

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let token = match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(claims) => fixture.sign_claims(&claims),
        Err(_) => String::from_utf8_lossy(&fixture.with_token(data)).into_owned(),
    };
    let keys = KeyCache::new(fixture.verification(), fixture.config.key_refresh_seconds);
    let settings = TokenSettings {
        issuer: fixture.config.issuer.clone(),
        audience: fixture.config.audience.clone(),
        ttl_seconds: fixture.config.token_ttl_seconds,
    };
    let _ = runtime().block_on(verify(&token, &keys, &settings, NOW));
});
