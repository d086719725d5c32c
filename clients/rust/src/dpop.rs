//! DPoP (RFC 9449): the proof key, the proofs sent with token requests and API calls, and
//! the nonces servers may ask for.

use crate::error::{Error, ErrorBody};
use crate::jws::{self, JwsAlgorithm, KeyPair, PublicJwk};
use crate::secret::SecretHeader;
use crate::transport::Reply;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use serde::Serialize;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// The request header that carries a proof.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The response header that carries a server's nonce.
const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The error code of a server that wants a nonce in the next proof (RFC 9449 §8, §9).
const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// A longer `DPoP-Nonce` is ignored rather than copied into every proof.
const MAX_NONCE_BYTES: usize = 1024;

/// The key a client proves possession of with DPoP (RFC 9449): its tokens are bound to
/// the key's thumbprint, so a stolen token is useless without it. Ed25519 (`EdDSA`, the
/// default) or P-256 (`ES256`); generated here or read from PKCS#8 like a
/// [`PrivateKeyJwt`](crate::PrivateKeyJwt) key. Nothing needs registering: the public
/// key travels in every proof.
///
/// Turn DPoP on with [`ClientConfig::dpop`](crate::ClientConfig::dpop). `Debug` shows
/// the algorithm and thumbprint, never the key. Cheap to clone; two `DpopKey`s are equal
/// when their public keys are.
///
/// ```
/// use kiss_customer_api::{ClientConfig, DpopKey};
///
/// let key = DpopKey::generate_ed25519()?;
/// println!("tokens will carry cnf.jkt = {}", key.thumbprint());
/// let config = ClientConfig::default().dpop(key);
/// # let _ = config;
/// # Ok::<(), kiss_customer_api::Error>(())
/// ```
#[derive(Clone)]
pub struct DpopKey {
    key: Arc<KeyPair>,
    jwk: PublicJwk,
    thumbprint: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.algorithm().as_str())
            .field("thumbprint", &self.thumbprint)
            .field("key", &"***")
            .finish()
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.jwk == other.jwk
    }
}

impl Eq for DpopKey {}

impl DpopKey {
    /// A new random Ed25519 key (`EdDSA`).
    pub fn generate_ed25519() -> Result<Self, Error> {
        KeyPair::generate_ed25519().map(Self::new)
    }

    /// A new random ECDSA P-256 key (`ES256`).
    pub fn generate_es256() -> Result<Self, Error> {
        KeyPair::generate_p256().map(Self::new)
    }

    /// An Ed25519 or P-256 private key in PEM, read as [`PrivateKeyJwt::from_pem`] reads it.
    ///
    /// [`PrivateKeyJwt::from_pem`]: crate::PrivateKeyJwt::from_pem
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        KeyPair::from_pem(pem).map(Self::new)
    }

    /// An unencrypted Ed25519 or P-256 private key in DER: PKCS#8 (v1 or v2), or SEC 1
    /// for P-256.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        KeyPair::from_der(der).map(Self::new)
    }

    fn new(key: KeyPair) -> Self {
        let jwk = key.public_jwk();
        // The members in lexicographic order, no white space: RFC 7638 §3's input.
        let canonical = serde_json::to_vec(&jwk).unwrap_or_default();
        let thumbprint = URL_SAFE_NO_PAD.encode(digest(&SHA256, &canonical));
        Self {
            key: Arc::new(key),
            jwk,
            thumbprint,
        }
    }

    /// The `alg` of the proofs: `EdDSA` or `ES256`.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.key.default_algorithm()
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url: the `cnf.jkt` of the
    /// tokens bound to this key (as [`Client::introspect`](crate::Client::introspect)
    /// reports it).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The public key as a JWK (JSON, no private members), as each proof carries it.
    pub fn public_jwk(&self) -> String {
        serde_json::to_string(&self.jwk).unwrap_or_default()
    }

    /// The private key as unencrypted PKCS#8 v1 PEM, for a client that keeps its key (and
    /// so its bound tokens) across restarts. A secret: store it like one.
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        self.key.to_pkcs8_pem()
    }

    /// A new proof for `method` on `uri`: a fresh `jti` and `iat`, the access token's hash
    /// `ath` for API calls, and the server's `nonce` when it asked for one.
    pub(crate) fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        ath: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<SecretHeader, Error> {
        #[derive(Serialize)]
        struct Header<'a> {
            typ: &'static str,
            alg: &'static str,
            jwk: &'a PublicJwk,
        }
        #[derive(Serialize)]
        struct Claims<'a> {
            jti: String,
            htm: &'a str,
            htu: String,
            iat: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            ath: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            nonce: Option<&'a str>,
        }
        let header = Header {
            typ: "dpop+jwt",
            alg: self.algorithm().as_str(),
            jwk: &self.jwk,
        };
        let claims = Claims {
            jti: jws::random_id()?,
            htm: method.as_str(),
            htu: htu(uri)?,
            iat: jws::now()?,
            ath,
            nonce,
        };
        let proof = self.key.sign(&header, &claims)?;
        SecretHeader::new(&proof)
            .ok_or_else(|| Error::config("the DPoP proof cannot be sent in a header"))
    }
}

/// `htu`: the request URL without query and fragment (RFC 9449 §4.2).
fn htu(uri: &Uri) -> Result<String, Error> {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok(format!("{scheme}://{authority}{}", uri.path())),
        _ => Err(Error::config("a DPoP proof needs an absolute URL")),
    }
}

/// `ath`: base64url(SHA-256(access token)), binding an API call's proof to the token.
pub(crate) fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, access_token.as_bytes()))
}

/// Which server a nonce belongs to: RFC 9449 nonces are per server, and the token
/// endpoint and the API may be different ones.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Server {
    Authorization,
    Resource,
}

/// The latest `DPoP-Nonce` of each server, put into every later proof to it.
#[derive(Debug, Default)]
pub(crate) struct Nonces {
    authorization: Mutex<Option<String>>,
    resource: Mutex<Option<String>>,
}

impl Nonces {
    fn slot(&self, server: Server) -> &Mutex<Option<String>> {
        match server {
            Server::Authorization => &self.authorization,
            Server::Resource => &self.resource,
        }
    }

    /// The nonce to put in the next proof to `server`, if it ever sent one.
    pub(crate) fn get(&self, server: Server) -> Option<String> {
        self.slot(server)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps the `DPoP-Nonce` of a response from `server`, whatever its status.
    pub(crate) fn remember(&self, server: Server, headers: &HeaderMap) {
        let nonce = headers
            .get(DPOP_NONCE)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.len() <= MAX_NONCE_BYTES);
        if let Some(nonce) = nonce {
            *self
                .slot(server)
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(nonce.to_owned());
        }
    }
}

/// The token endpoint wants a nonce: 400 `{"error":"use_dpop_nonce"}` with a `DPoP-Nonce`
/// (RFC 9449 §8). An OAuth error code, not human text, so the client may act on it.
pub(crate) fn token_endpoint_wants_nonce(reply: &Reply) -> bool {
    reply.status == StatusCode::BAD_REQUEST
        && reply.headers.contains_key(DPOP_NONCE)
        && ErrorBody::parse(&reply.body).error.as_deref() == Some(USE_DPOP_NONCE)
}

/// The API wants a nonce: 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a
/// `DPoP-Nonce` (RFC 9449 §9).
pub(crate) fn resource_wants_nonce(reply: &Reply) -> bool {
    reply.status == StatusCode::UNAUTHORIZED
        && reply.headers.contains_key(DPOP_NONCE)
        && reply
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| dpop_challenge_error(v) == Some(USE_DPOP_NONCE))
}

/// The `error` of the `DPoP` challenge in a `WWW-Authenticate` value, which may hold
/// several challenges (`Bearer realm="x", DPoP error="…", algs="EdDSA ES256"`). Error
/// codes never contain commas, so splitting on them is enough here.
fn dpop_challenge_error(value: &str) -> Option<&str> {
    let mut in_dpop = false;
    for part in value.split(',').map(str::trim) {
        // `Scheme name=value` opens a challenge; `name=value` continues one.
        let param = match part.split_once(' ') {
            Some((scheme, rest)) if !scheme.contains('=') => {
                in_dpop = scheme.eq_ignore_ascii_case("DPoP");
                rest.trim()
            }
            _ => part,
        };
        if let Some((name, value)) = param.split_once('=')
            && in_dpop
            && name.trim().eq_ignore_ascii_case("error")
        {
            return Some(value.trim().trim_matches('"'));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::tests::{OPENSSL_P256, b64, rfc8032_seed, verified};
    use http::HeaderValue;
    use hyper::body::Bytes;
    use serde_json::{Value, json};

    fn key() -> DpopKey {
        DpopKey::generate_ed25519().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Verifies `proof` with the JWK in its own header; returns header and claims.
    fn opened(proof: &SecretHeader) -> (Value, Value) {
        let text = proof.header().to_str().unwrap_or_default().to_owned();
        let header: Value = text
            .split('.')
            .next()
            .and_then(|h| serde_json::from_slice(&b64(h)).ok())
            .unwrap_or_default();
        verified(&text, &header["jwk"]).unwrap_or_else(|| panic!("does not verify: {text}"))
    }

    #[test]
    fn proof_has_the_rfc_9449_header_and_claims() {
        let keys = [
            (key(), "EdDSA"),
            (
                DpopKey::from_pem(OPENSSL_P256).unwrap_or_else(|e| panic!("{e}")),
                "ES256",
            ),
        ];
        for (key, alg) in keys {
            let uri: Uri = "https://api.example.com:8443/Prod/auth/token?x=1"
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
            let before = jws::now().unwrap_or_default();
            let proof = key.proof(&Method::POST, &uri, None, None);
            let (header, claims) = opened(&proof.unwrap_or_else(|e| panic!("{e}")));
            let jwk: Value = serde_json::from_str(&key.public_jwk()).unwrap_or_default();
            assert_eq!(header, json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk}));
            assert_eq!(claims["htm"], "POST");
            assert_eq!(
                claims["htu"],
                "https://api.example.com:8443/Prod/auth/token"
            );
            let iat = claims["iat"].as_u64().unwrap_or_default();
            assert!(iat >= before && iat <= before + 5, "{claims}");
            assert_eq!(b64(claims["jti"].as_str().unwrap_or_default()).len(), 16);
            assert_eq!(claims.as_object().map(serde_json::Map::len), Some(4));
        }
    }

    #[test]
    fn api_proof_carries_ath_and_nonce() {
        let uri: Uri = "http://127.0.0.1:9000/customer"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let proof = key().proof(&Method::GET, &uri, Some(&ath("t1")), Some("n-1"));
        let (_, claims) = opened(&proof.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(claims["htu"], "http://127.0.0.1:9000/customer");
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["nonce"], "n-1");
        // echo -n t1 | openssl dgst -sha256 -binary | base64url
        assert_eq!(claims["ath"], "YotJ2W3N6XpDDdT1l3BYmeCalo95NJHktwTK4zpA3AI");
    }

    #[test]
    fn thumbprint_is_rfc_7638() {
        // RFC 8037 Appendix A.3: the thumbprint of the RFC 8032 test key.
        let pkcs8 = [
            &b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20"[..],
            &rfc8032_seed(),
        ]
        .concat();
        let key = DpopKey::from_der(&pkcs8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let again = DpopKey::from_pem(&key.to_pkcs8_pem().unwrap_or_default());
        assert_eq!(again.as_ref().ok(), Some(&key));
        assert_ne!(DpopKey::generate_ed25519().ok(), Some(key));
    }

    #[test]
    fn debug_shows_algorithm_and_thumbprint_never_the_key() {
        let key = DpopKey::from_pem(OPENSSL_P256).unwrap_or_else(|e| panic!("{e}"));
        let text = format!("{key:?}");
        assert!(
            text.contains("ES256") && text.contains(key.thumbprint()) && text.contains("***"),
            "{text}"
        );
        assert!(
            !text.contains("MIGHAgEA") && !text.contains("tJDYRqs4"),
            "{text}"
        );
        let uri: Uri = "http://h/customer"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let proof = key.proof(&Method::GET, &uri, None, None);
        assert!(
            matches!(proof, Ok(ref p) if format!("{p:?}") == "***" && p.header().is_sensitive())
        );
    }

    fn reply(status: u16, headers: &[(&str, &str)], body: &'static str) -> Reply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                map.append(name, value);
            }
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            headers: map,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn nonce_requests_are_recognised_only_in_full() {
        let nonce = ("DPoP-Nonce", "n1");
        let body = r#"{"error":"use_dpop_nonce","error_description":"Use a nonce."}"#;
        assert!(token_endpoint_wants_nonce(&reply(400, &[nonce], body)));
        assert!(!token_endpoint_wants_nonce(&reply(400, &[], body)));
        assert!(!token_endpoint_wants_nonce(&reply(401, &[nonce], body)));
        let other = r#"{"error":"invalid_dpop_proof"}"#;
        assert!(!token_endpoint_wants_nonce(&reply(400, &[nonce], other)));

        let challenge = (
            "WWW-Authenticate",
            r#"DPoP error="use_dpop_nonce", algs="EdDSA ES256""#,
        );
        assert!(resource_wants_nonce(&reply(401, &[challenge, nonce], "")));
        assert!(!resource_wants_nonce(&reply(401, &[challenge], "")));
        assert!(!resource_wants_nonce(&reply(400, &[challenge, nonce], "")));
        let invalid = (
            "WWW-Authenticate",
            r#"DPoP error="invalid_token", algs="EdDSA ES256""#,
        );
        assert!(!resource_wants_nonce(&reply(401, &[invalid, nonce], "")));
        let bearer = ("WWW-Authenticate", r#"Bearer error="use_dpop_nonce""#);
        assert!(!resource_wants_nonce(&reply(401, &[bearer, nonce], "")));
        let second = (
            "WWW-Authenticate",
            r#"Bearer realm="api", dpop algs="ES256", error=use_dpop_nonce"#,
        );
        assert!(resource_wants_nonce(&reply(401, &[second, nonce], "")));
        let separate = [bearer, challenge, nonce];
        assert!(resource_wants_nonce(&reply(401, &separate, "")));
    }

    #[test]
    fn nonces_are_kept_per_server_latest_first() {
        let nonces = Nonces::default();
        assert_eq!(nonces.get(Server::Authorization), None);
        nonces.remember(
            Server::Authorization,
            &reply(200, &[("DPoP-Nonce", "a1")], "").headers,
        );
        nonces.remember(
            Server::Resource,
            &reply(401, &[("DPoP-Nonce", "r1")], "").headers,
        );
        nonces.remember(
            Server::Authorization,
            &reply(200, &[("DPoP-Nonce", "a2")], "").headers,
        );
        nonces.remember(Server::Authorization, &reply(200, &[], "").headers);
        let huge = "x".repeat(MAX_NONCE_BYTES + 1);
        nonces.remember(
            Server::Resource,
            &reply(200, &[("DPoP-Nonce", &huge)], "").headers,
        );
        assert_eq!(nonces.get(Server::Authorization).as_deref(), Some("a2"));
        assert_eq!(nonces.get(Server::Resource).as_deref(), Some("r1"));
    }
}
