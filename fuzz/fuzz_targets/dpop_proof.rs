//! `dpop::verify` never panics and refuses what is not a proof for this request. An input
//! that is a JSON value is signed as the claims of a proof with a valid header (a fixed
//! Ed25519 key), so the claim checks after the signature are explored too; any other input
//! is the `DPoP` header value itself.
#![no_main]

use customer_api_fuzz::NOW;
use libfuzzer_sys::fuzz_target;
use shared::dpop::{Expected, verify};
use shared::test_util::ProofKey;
use std::sync::OnceLock;

const URL: &str = "https://api.test/customer";

fn key() -> &'static ProofKey {
    static KEY: OnceLock<ProofKey> = OnceLock::new();
    KEY.get_or_init(ProofKey::ed25519)
}

fuzz_target!(|data: &[u8]| {
    let proof = match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(claims) => key().proof(claims),
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    };
    let expected = Expected {
        method: "GET",
        url: URL,
        access_token: Some("tok"),
        now: NOW,
    };
    if let Ok(verified) = verify(&proof, &expected) {
        // Only a proof signed by the key in its header, for this request, passes.
        assert_eq!(verified.jkt, key().thumbprint(), "{proof}");
        assert!(verified.iat.abs_diff(NOW) <= 300);
    }
});
