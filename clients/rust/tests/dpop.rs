//! DPoP (RFC 9449) against a scripted local server: the proofs on token requests and API
//! calls (each verified with aws-lc-rs against the JWK it carries), `token_type`, nonces,
//! and the Errors page's retries with a new proof every time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kiss_customer_api::{Client, ClientConfig, DpopKey, Error, PrivateKeyJwt};
use serde_json::{Value, json};
use std::collections::HashSet;
use support::dpop::{ath, has_proof, members, proof_of, thumbprint};
use support::oauth::{Jws, assertion_of};
use support::{CODE, CUSTOMER, Recorded, Reply, Server, TOKEN, fast, now};

const KEY: &str = "kiss_sk_test+key";
const BY_CODE: &str = "/customers/ACME-1";

/// Each kind of proof key, with the `alg` its proofs must carry.
fn keys() -> Vec<(DpopKey, &'static str)> {
    vec![
        (DpopKey::generate_ed25519().unwrap(), "EdDSA"),
        (DpopKey::generate_es256().unwrap(), "ES256"),
    ]
}

fn client(server: &Server, key: &DpopKey, config: ClientConfig) -> Client {
    Client::with_config(&server.url, CODE, KEY, config.dpop(key.clone())).unwrap()
}

/// Issues the DPoP token `t1` and answers both lookups with the record.
async fn dpop_server() -> Server {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::dpop_token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);
    server.script(BY_CODE, vec![Reply::customer(CODE)]);
    server
}

fn jwk(key: &DpopKey) -> Value {
    serde_json::from_str(&key.public_jwk()).unwrap()
}

fn jti(proof: &Jws) -> String {
    proof.jti()
}

fn use_nonce_at_token_endpoint(nonce: &str) -> Reply {
    Reply::json(
        400,
        r#"{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}"#,
    )
    .header("DPoP-Nonce", nonce)
}

fn dpop_401(error: &str) -> Reply {
    Reply::new(401, "").header(
        "WWW-Authenticate",
        &format!(r#"DPoP error="{error}", algs="EdDSA ES256""#),
    )
}

fn nonce_claim(request: &Recorded) -> Option<String> {
    proof_of(request).claims["nonce"]
        .as_str()
        .map(str::to_owned)
}

// -- the proofs ----------------------------------------------------------------------------

#[tokio::test]
async fn token_request_carries_a_proof_with_the_rfc_9449_header_and_claims() {
    for (key, alg) in keys() {
        let server = dpop_server().await;
        let before = now();
        client(&server, &key, fast()).customer().await.unwrap();
        let after = now();

        let request = &server.requests(TOKEN)[0];
        // Client authentication is unchanged: Basic, and only the grant in the body.
        assert!(
            request
                .header("authorization")
                .unwrap()
                .starts_with("Basic ")
        );
        assert_eq!(request.body, b"grant_type=client_credentials");

        let proof = proof_of(request);
        assert_eq!(
            proof.header,
            json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk(&key)}),
            "{alg}"
        );
        let public = members(&proof.header["jwk"]);
        assert!(
            public == ["crv", "kty", "x"] || public == ["crv", "kty", "x", "y"],
            "public members only: {public:?}"
        );
        let claims = &proof.claims;
        assert_eq!(members(claims), ["htm", "htu", "iat", "jti"], "{claims}");
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], format!("{}/auth/token", server.url));
        assert!(
            (before..=after).contains(&proof.claim_u64("iat")),
            "{claims}"
        );
        // 128 random bits at least, base64url.
        assert!(support::oauth::b64(&jti(&proof)).len() >= 16, "{claims}");
    }
}

#[tokio::test]
async fn api_calls_send_the_dpop_scheme_and_a_proof_bound_to_the_token() {
    for (key, alg) in keys() {
        let server = dpop_server().await;
        let client = client(&server, &key, fast());
        assert_eq!(client.customer().await.unwrap().customer_code, CODE);
        assert_eq!(
            client.customer_by_code(CODE).await.unwrap().customer_code,
            CODE
        );
        assert_eq!(server.count(TOKEN), 1, "the DPoP token is cached");

        let token_key = thumbprint(&proof_of(&server.requests(TOKEN)[0]).header["jwk"]);
        for (path, request) in [
            (CUSTOMER, &server.requests(CUSTOMER)[0]),
            (BY_CODE, &server.requests(BY_CODE)[0]),
        ] {
            assert_eq!(request.method, "GET");
            assert_eq!(request.header("authorization"), Some("DPoP t1"));
            let proof = proof_of(request);
            assert_eq!(proof.header["typ"], "dpop+jwt");
            assert_eq!(proof.header["alg"], alg);
            assert_eq!(thumbprint(&proof.header["jwk"]), token_key, "same key");
            let claims = &proof.claims;
            assert_eq!(members(claims), ["ath", "htm", "htu", "iat", "jti"]);
            assert_eq!(claims["htm"], "GET");
            assert_eq!(claims["htu"], format!("{}{path}", server.url));
            assert_eq!(claims["ath"], ath("t1"));
        }
    }
}

#[tokio::test]
async fn thumbprint_is_rfc_7638_and_stable() {
    for (key, _) in keys() {
        let expected = thumbprint(&jwk(&key));
        assert_eq!(key.thumbprint(), expected);
        assert_eq!(key.clone().thumbprint(), expected);
        let reread = DpopKey::from_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(reread.thumbprint(), expected);
        assert_eq!(reread, key);

        // Every proof, to either endpoint, carries the same key.
        let server = dpop_server().await;
        server.script("/auth/revoke", vec![Reply::new(200, "")]);
        let client = client(&server, &reread, fast());
        for _ in 0..3 {
            client.customer().await.unwrap();
        }
        assert!(client.revoke_current_token().await.unwrap());
        client.customer().await.unwrap();
        let mut requests = server.requests(TOKEN);
        requests.extend(server.requests(CUSTOMER));
        assert_eq!(requests.len(), 6);
        for request in &requests {
            assert_eq!(thumbprint(&proof_of(request).header["jwk"]), expected);
        }
    }
}

#[tokio::test]
async fn every_request_gets_a_new_jti() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = dpop_server().await;
    let client = client(&server, &key, fast());
    for _ in 0..5 {
        client.customer().await.unwrap();
    }
    let mut requests = server.requests(TOKEN);
    requests.extend(server.requests(CUSTOMER));
    let jtis: HashSet<String> = requests.iter().map(|r| jti(&proof_of(r))).collect();
    assert_eq!(jtis.len(), 6);
}

// -- retries -------------------------------------------------------------------------------

#[tokio::test]
async fn a_retry_after_429_or_5xx_sends_a_new_proof() {
    let key = DpopKey::generate_es256().unwrap();
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            Reply::too_many("1"),
            Reply::server_error(),
            Reply::dpop_token("t1", 3600),
        ],
    );
    server.script(
        CUSTOMER,
        vec![
            Reply::too_many("1"),
            Reply::server_error(),
            Reply::customer(CODE),
        ],
    );
    client(&server, &key, fast()).customer().await.unwrap();

    for path in [TOKEN, CUSTOMER] {
        let proofs: Vec<Jws> = server.requests(path).iter().map(proof_of).collect();
        assert_eq!(proofs.len(), 3, "{path}");
        let jtis: HashSet<String> = proofs.iter().map(jti).collect();
        assert_eq!(jtis.len(), 3, "{path}: a proof is never sent twice");
    }
    for proof in server.requests(CUSTOMER).iter().map(proof_of) {
        assert_eq!(proof.claims["ath"], ath("t1"));
    }
}

#[tokio::test]
async fn invalid_token_401_drops_the_token_and_retries_once_with_a_new_one() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![Reply::dpop_token("t1", 3600), Reply::dpop_token("t2", 3600)],
    );
    server.handle(CUSTOMER, |r| match r.header("authorization") {
        Some("DPoP t2") => Reply::customer(CODE),
        _ => dpop_401("invalid_token"),
    });
    let client = client(&server, &key, fast());
    client.customer().await.unwrap();

    assert_eq!(server.count(TOKEN), 2, "exactly one refresh");
    let calls = server.requests(CUSTOMER);
    let auth: Vec<&str> = calls
        .iter()
        .map(|r| r.header("authorization").unwrap())
        .collect();
    assert_eq!(auth, ["DPoP t1", "DPoP t2"]);
    let proofs: Vec<Jws> = calls.iter().map(proof_of).collect();
    assert_eq!(proofs[0].claims["ath"], ath("t1"));
    assert_eq!(proofs[1].claims["ath"], ath("t2"));
    assert_ne!(jti(&proofs[0]), jti(&proofs[1]));

    client.customer().await.unwrap();
    assert_eq!(server.count(TOKEN), 2, "the new token is cached");
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_unauthorized() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::dpop_token("t1", 3600)]);
    server.script(CUSTOMER, vec![dpop_401("invalid_dpop_proof")]);

    let err = client(&server, &key, fast()).customer().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized), "{err:?}");
    assert_eq!(server.count(TOKEN), 2);
    assert_eq!(server.count(CUSTOMER), 2);
}

// -- token_type ----------------------------------------------------------------------------

#[tokio::test]
async fn a_bearer_token_for_a_dpop_request_is_an_error() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);

    let err = client(&server, &key, fast()).customer().await.unwrap_err();
    match &err {
        Error::Protocol { reason } => assert_eq!(
            reason,
            r#"asked for a DPoP token, but the token response has token_type "Bearer""#
        ),
        other => panic!("expected Protocol, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(server.count(TOKEN), 1, "not retried");
    assert_eq!(server.count(CUSTOMER), 0, "the unbound token is never used");
}

#[tokio::test]
async fn token_type_is_compared_case_insensitively() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token_of_type("t1", "dpop", 3600)]);
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);

    client(&server, &key, fast()).customer().await.unwrap();
    let call = &server.requests(CUSTOMER)[0];
    assert_eq!(call.header("authorization"), Some("DPoP t1"));
}

// -- nonces --------------------------------------------------------------------------------

#[tokio::test]
async fn token_endpoint_nonce_request_is_answered_once_with_the_nonce() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            use_nonce_at_token_endpoint("as-nonce-1"),
            Reply::dpop_token("t1", 3600),
        ],
    );
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);
    client(&server, &key, fast()).customer().await.unwrap();

    let requests = server.requests(TOKEN);
    assert_eq!(requests.len(), 2);
    assert_eq!(nonce_claim(&requests[0]), None);
    assert_eq!(nonce_claim(&requests[1]).as_deref(), Some("as-nonce-1"));
    assert_ne!(jti(&proof_of(&requests[0])), jti(&proof_of(&requests[1])));
    // Nonces are per server: the API has not asked for one.
    assert_eq!(nonce_claim(&server.requests(CUSTOMER)[0]), None);
}

#[tokio::test]
async fn token_endpoint_asking_for_a_nonce_again_is_rejected() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(TOKEN, vec![use_nonce_at_token_endpoint("n")]);

    let err = client(&server, &key, fast()).customer().await.unwrap_err();
    match err {
        Error::Rejected { status: 400, body } => {
            assert_eq!(body.error.as_deref(), Some("use_dpop_nonce"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(server.count(TOKEN), 2, "one retry with the nonce, no more");
}

#[tokio::test]
async fn resource_nonce_request_is_answered_once_with_the_same_token() {
    let key = DpopKey::generate_es256().unwrap();
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::dpop_token("t1", 3600)]);
    server.handle(CUSTOMER, |r| match proof_of(r).claims["nonce"].as_str() {
        Some("rs-nonce-1") => Reply::customer(CODE),
        _ => dpop_401("use_dpop_nonce").header("DPoP-Nonce", "rs-nonce-1"),
    });
    let client = client(&server, &key, fast());
    client.customer().await.unwrap();

    assert_eq!(server.count(TOKEN), 1, "the token is kept");
    let calls = server.requests(CUSTOMER);
    assert_eq!(calls.len(), 2);
    let (first, second) = (proof_of(&calls[0]), proof_of(&calls[1]));
    assert_eq!(first.claims["nonce"], Value::Null);
    assert_eq!(second.claims["nonce"], "rs-nonce-1");
    assert_eq!(second.claims["ath"], ath("t1"));
    assert_ne!(jti(&first), jti(&second));

    // The nonce is remembered: the next call sends it straight away.
    client.customer().await.unwrap();
    assert_eq!(server.count(CUSTOMER), 3);
    // …and only to the server that sent it.
    assert_eq!(nonce_claim(&server.requests(TOKEN)[0]), None);
}

#[tokio::test]
async fn resource_asking_for_nonces_forever_ends_in_unauthorized() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::dpop_token("t1", 3600)]);
    server.script(
        CUSTOMER,
        vec![dpop_401("use_dpop_nonce").header("DPoP-Nonce", "again")],
    );

    let err = client(&server, &key, fast()).customer().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized), "{err:?}");
    // One nonce retry, then one refresh: bounded.
    assert_eq!(server.count(CUSTOMER), 3);
    assert_eq!(server.count(TOKEN), 2);
}

#[tokio::test]
async fn nonces_from_successful_answers_are_remembered_per_server() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = Server::start().await;
    server.script(
        TOKEN,
        vec![
            Reply::dpop_token("t1", 3600).header("DPoP-Nonce", "as-1"),
            Reply::dpop_token("t2", 3600).header("DPoP-Nonce", "as-2"),
            Reply::dpop_token("t3", 3600),
        ],
    );
    server.script(
        CUSTOMER,
        vec![
            Reply::customer(CODE).header("DPoP-Nonce", "rs-1"),
            Reply::customer(CODE),
        ],
    );
    server.script("/auth/revoke", vec![Reply::new(200, "")]);
    let client = client(&server, &key, fast());

    for _ in 0..3 {
        client.customer().await.unwrap();
        client.revoke_current_token().await.unwrap();
    }

    let token_nonces: Vec<Option<String>> =
        server.requests(TOKEN).iter().map(nonce_claim).collect();
    assert_eq!(
        token_nonces,
        [None, Some("as-1".to_owned()), Some("as-2".to_owned())]
    );
    let api_nonces: Vec<Option<String>> =
        server.requests(CUSTOMER).iter().map(nonce_claim).collect();
    assert_eq!(
        api_nonces,
        [None, Some("rs-1".to_owned()), Some("rs-1".to_owned())]
    );
}

// -- with other features -------------------------------------------------------------------

#[tokio::test]
async fn private_key_jwt_and_dpop_use_their_own_keys() {
    let auth = PrivateKeyJwt::generate_es256()
        .unwrap()
        .with_key_id("key_1");
    let key = DpopKey::generate_ed25519().unwrap();
    let server = dpop_server().await;
    let client =
        Client::with_private_key_jwt(&server.url, CODE, auth.clone(), fast().dpop(key.clone()))
            .unwrap();
    client.customer().await.unwrap();

    let request = &server.requests(TOKEN)[0];
    let assertion = assertion_of(request, &auth.public_jwk());
    let proof = proof_of(request);
    assert_eq!(assertion.header["alg"], "ES256");
    assert_eq!(proof.header["alg"], "EdDSA");
    assert_eq!(thumbprint(&proof.header["jwk"]), key.thumbprint());
    assert_ne!(jti(&assertion), jti(&proof));
    let call = &server.requests(CUSTOMER)[0];
    assert_eq!(call.header("authorization"), Some("DPoP t1"));
}

#[tokio::test]
async fn revocation_and_introspection_carry_no_proof() {
    let key = DpopKey::generate_ed25519().unwrap();
    let server = dpop_server().await;
    server.script("/auth/revoke", vec![Reply::new(200, "")]);
    server.script(
        "/auth/introspect",
        vec![Reply::json(
            200,
            r#"{"active":true,"token_type":"DPoP","cnf":{"jkt":"x"}}"#,
        )],
    );
    let client = client(&server, &key, fast());
    let token = client.access_token().await.unwrap();
    let found = client.introspect(token.as_str()).await.unwrap();
    assert_eq!(found.token_type.as_deref(), Some("DPoP"));
    client.revoke(token.as_str()).await.unwrap();

    for path in ["/auth/revoke", "/auth/introspect"] {
        assert!(!has_proof(&server.requests(path)[0]), "{path}");
    }
}

#[tokio::test]
async fn without_dpop_nothing_carries_a_proof() {
    let server = support::happy_server().await;
    let client = Client::with_config(&server.url, CODE, KEY, fast()).unwrap();
    client.customer().await.unwrap();
    assert!(!has_proof(&server.requests(TOKEN)[0]));
    let call = &server.requests(CUSTOMER)[0];
    assert!(!has_proof(call));
    assert_eq!(call.header("authorization"), Some("Bearer t1"));
}

#[tokio::test]
async fn debug_and_errors_never_show_the_key_the_token_or_a_proof() {
    let key = DpopKey::generate_ed25519().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let pem_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::dpop_token("secret-access-token", 3600)]);
    server.script(CUSTOMER, vec![dpop_401("invalid_token")]);
    let client = client(&server, &key, fast());

    let err = client.customer().await.unwrap_err();
    let mut proofs: Vec<String> = server
        .requests(TOKEN)
        .iter()
        .chain(server.requests(CUSTOMER).iter())
        .filter_map(|r| r.header("dpop").map(str::to_owned))
        .collect();
    assert_eq!(proofs.len(), 4);
    proofs.push(pem_body[pem_body.len() - 20..].to_owned());
    for text in [
        format!("{client:?}"),
        format!("{key:?}"),
        format!("{:?}", client.config()),
        format!("{err:?}"),
        err.to_string(),
    ] {
        assert!(!text.contains("secret-access-token"), "{text}");
        for secret in &proofs {
            assert!(!text.contains(secret.as_str()), "{text}");
        }
    }
    let debug = format!("{client:?}");
    assert!(
        debug.contains(key.thumbprint()) && debug.contains("EdDSA"),
        "{debug}"
    );
}
