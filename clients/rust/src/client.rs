//! The client: credentials, endpoints, the token cache and the calls.

use crate::auth::ClientAuth;
use crate::config::ClientConfig;
use crate::customer::Customer;
use crate::dpop::{self, DPOP, Nonces, Server};
use crate::error::{Error, ErrorBody};
use crate::introspection::Introspection;
use crate::private_key_jwt::PrivateKeyJwt;
use crate::retry;
use crate::token::{AccessToken, Token, TokenCache, TokenType};
use crate::transport::{Reply, Transport};
use http::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Bytes;
use std::fmt;
use std::sync::Arc;
use tokio::time::Instant;

const JSON: &str = "application/json";
const AGENT: &str = concat!("kiss-customer-api-rust/", env!("CARGO_PKG_VERSION"));

/// A Customer API client for one customer. Cheap to clone; clones share the connection
/// pool and the cached token, so create one and reuse it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    customer_code: String,
    auth: ClientAuth,
    token_uri: Uri,
    revoke_uri: Uri,
    introspect_uri: Uri,
    customer_uri: Uri,
    config: ClientConfig,
    transport: Transport,
    tokens: TokenCache,
    nonces: Nonces,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Client");
        debug
            .field("base_url", &self.inner.base_url)
            .field("customer_code", &self.inner.customer_code);
        match &self.inner.auth {
            ClientAuth::SecretBasic(_) => debug.field("api_key", &"***"),
            ClientAuth::PrivateKeyJwt { key, .. } => debug.field("private_key_jwt", key),
        };
        debug
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the default [`ClientConfig`].
    ///
    /// `base_url` is the API's base, e.g. `https://api.example.com` or an API Gateway
    /// stage URL; plain `http://` is accepted for local stacks.
    pub fn new(base_url: &str, customer_code: &str, api_key: &str) -> Result<Self, Error> {
        Self::with_config(base_url, customer_code, api_key, ClientConfig::default())
    }

    /// A client with explicit retry, budget and refresh settings.
    pub fn with_config(
        base_url: &str,
        customer_code: &str,
        api_key: &str,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        if api_key.is_empty() {
            return Err(Error::config("the API Key must not be empty"));
        }
        let auth = ClientAuth::secret_basic(customer_code, api_key)?;
        Self::build(base_url, customer_code, |_| auth, config)
    }

    /// A client that authenticates with `private_key_jwt` instead of an API key: every
    /// request to an OAuth endpoint carries a new assertion signed with `key`, whose public
    /// JWK the operator registered (`customer-admin keys add-jwk`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), kiss_customer_api::Error> {
    /// use kiss_customer_api::{Client, ClientConfig, PrivateKeyJwt};
    ///
    /// let pem = std::fs::read_to_string("key.pem").unwrap_or_default();
    /// let key = PrivateKeyJwt::from_pem(&pem)?.with_key_id("key_...");
    /// let client = Client::with_private_key_jwt(
    ///     "https://api.example.com", "ACME-1", key, ClientConfig::default())?;
    /// let me = client.customer().await?;
    /// # let _ = me;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_private_key_jwt(
        base_url: &str,
        customer_code: &str,
        key: PrivateKeyJwt,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        Self::build(
            base_url,
            customer_code,
            |token_uri| ClientAuth::private_key_jwt(key, token_uri),
            config,
        )
    }

    /// Checks the base URL, derives the endpoints and sets up the transport.
    fn build(
        base_url: &str,
        customer_code: &str,
        auth: impl FnOnce(&Uri) -> ClientAuth,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        if customer_code.is_empty() {
            return Err(Error::config("the Customer Code must not be empty"));
        }
        let base = base_url.trim().trim_end_matches('/');
        let https = match base.split_once("://").map(|(scheme, _)| scheme) {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(Error::config("the base URL must start with https://")),
        };
        let endpoint = |path: &str| -> Result<Uri, Error> {
            let uri: Uri = format!("{base}{path}")
                .parse()
                .map_err(|_| Error::config("the base URL is not a valid URL"))?;
            if uri.host().is_none_or(str::is_empty) || uri.query().is_some() {
                return Err(Error::config(
                    "the base URL needs a host and no query string",
                ));
            }
            Ok(uri)
        };
        let token_uri = endpoint("/auth/token")?;
        let revoke_uri = endpoint("/auth/revoke")?;
        let introspect_uri = endpoint("/auth/introspect")?;
        let customer_uri = endpoint("/customer")?;
        let transport = Transport::new(https, &config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                base_url: base.to_owned(),
                customer_code: customer_code.to_owned(),
                auth: auth(&token_uri),
                token_uri,
                revoke_uri,
                introspect_uri,
                customer_uri,
                config,
                transport,
                tokens: TokenCache::default(),
                nonces: Nonces::default(),
            }),
        })
    }

    /// The Customer Code this client authenticates as.
    pub fn customer_code(&self) -> &str {
        &self.inner.customer_code
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// `GET /customer`: the record of the authenticated customer.
    pub async fn customer(&self) -> Result<Customer, Error> {
        let deadline = Instant::now() + self.inner.config.total_timeout;
        let reply = self
            .authorized_get(&self.inner.customer_uri, deadline)
            .await?;
        if reply.status.is_success() {
            Customer::parse(&reply.body)
        } else {
            Err(retry::permanent(&reply))
        }
    }

    /// `GET /customers/{code}`: the record when `code` is this client's own Customer Code;
    /// any other code is [`Error::NotFound`] (the API never tells whether it exists).
    pub async fn customer_by_code(&self, code: &str) -> Result<Customer, Error> {
        if code.is_empty() {
            return Err(Error::config("the Customer Code must not be empty"));
        }
        let uri: Uri = format!("{}/customers/{}", self.inner.base_url, path_segment(code))
            .parse()
            .map_err(|_| Error::config("the Customer Code does not fit in a URL"))?;
        let deadline = Instant::now() + self.inner.config.total_timeout;
        let reply = self.authorized_get(&uri, deadline).await?;
        if reply.status.is_success() {
            Customer::parse(&reply.body)
        } else {
            Err(retry::permanent(&reply))
        }
    }

    /// A usable access token of this client: the cached one, or a new one fetched now.
    /// For handing to another component, or to [`Client::introspect`].
    /// With DPoP on, it is bound to the proof key and useless without proofs made with it.
    pub async fn access_token(&self) -> Result<AccessToken, Error> {
        let deadline = Instant::now() + self.inner.config.total_timeout;
        Ok(self.token(deadline).await?.access_token().clone())
    }

    /// `POST /auth/revoke` (RFC 7009): revokes `token`. When it is a token of this
    /// customer, the API ends **every** access token of the customer issued so far,
    /// including those other clients hold (they get a 401 and fetch a new one).
    ///
    /// The API answers 200 whether or not anything was revoked (an unknown token or another
    /// customer's is not an error), and the client then drops its own cached token: the
    /// next call fetches a new one. Errors and retries are those of the token request.
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        let deadline = Instant::now() + self.inner.config.total_timeout;
        let params = [("token", token), ("token_type_hint", "access_token")];
        self.oauth_post(&self.inner.revoke_uri, &params, deadline, false)
            .await?;
        self.inner.tokens.clear().await;
        Ok(())
    }

    /// Revokes the token this client holds, as [`Client::revoke`] does (so every token of
    /// the customer issued so far ends), and drops it. `Ok(false)`: the client held no
    /// token, and no request was made.
    pub async fn revoke_current_token(&self) -> Result<bool, Error> {
        let Some(current) = self.inner.tokens.current().await else {
            return Ok(false);
        };
        self.revoke(current.access_token().as_str()).await?;
        Ok(true)
    }

    /// `POST /auth/introspect` (RFC 7662): whether `token` is a token of this customer
    /// that the API would accept right now, and its claims when it is. Anything else,
    /// another customer's valid token included, is `active: false`. Errors and retries
    /// are those of the token request.
    pub async fn introspect(&self, token: &str) -> Result<Introspection, Error> {
        let deadline = Instant::now() + self.inner.config.total_timeout;
        let reply = self
            .oauth_post(
                &self.inner.introspect_uri,
                &[("token", token)],
                deadline,
                false,
            )
            .await?;
        Introspection::parse(&reply.body)
    }

    /// A GET with the cached token. A 401 asking for a DPoP nonce is answered once with
    /// the same token; any other 401 replaces the token and the call is made once more.
    async fn authorized_get(&self, uri: &Uri, deadline: Instant) -> Result<Reply, Error> {
        let mut token = self.token(deadline).await?;
        let (mut nonce_sent, mut refreshed) = (false, false);
        loop {
            let reply = self.get(uri, &token, deadline).await?;
            if reply.status != StatusCode::UNAUTHORIZED {
                return Ok(reply);
            }
            if token.ath().is_some() && !nonce_sent && dpop::resource_wants_nonce(&reply) {
                nonce_sent = true;
                continue;
            }
            if refreshed {
                return Err(Error::Unauthorized);
            }
            self.inner.tokens.invalidate(&token).await;
            token = self.token(deadline).await?;
            refreshed = true;
        }
    }

    /// One GET with `token`, retried on 429, 5xx and connection failures; each attempt
    /// of a DPoP token carries a new proof.
    async fn get(&self, uri: &Uri, token: &Token, deadline: Instant) -> Result<Reply, Error> {
        let inner = &self.inner;
        let key = inner.config.dpop.as_ref().filter(|_| token.ath().is_some());
        let reply = retry::send(&inner.transport, &inner.config, deadline, || {
            let mut request = request(Method::GET, uri, Bytes::new());
            let headers = request.headers_mut();
            headers.insert(AUTHORIZATION, token.authorization().header());
            if let Some(key) = key {
                let nonce = inner.nonces.get(Server::Resource);
                let proof = key.proof(&Method::GET, uri, token.ath(), nonce.as_deref())?;
                headers.insert(DPOP, proof.header());
            }
            Ok(request)
        })
        .await?;
        if key.is_some() {
            inner.nonces.remember(Server::Resource, &reply.headers);
        }
        Ok(reply)
    }

    /// A fresh token from the cache, fetched by this caller or by the one it queued behind.
    async fn token(&self, deadline: Instant) -> Result<Arc<Token>, Error> {
        self.inner.tokens.get(|| self.fetch_token(deadline)).await
    }

    /// `POST /auth/token` with the client credentials grant.
    async fn fetch_token(&self, deadline: Instant) -> Result<Token, Error> {
        // Lifetimes count from before the request: never later than the server's clock.
        let sent = Instant::now();
        let grant = [("grant_type", "client_credentials")];
        let reply = self
            .oauth_post(&self.inner.token_uri, &grant, deadline, true)
            .await?;
        let asked = match self.inner.config.dpop {
            Some(_) => TokenType::Dpop,
            None => TokenType::Bearer,
        };
        Token::parse(&reply.body, sent, self.inner.config.refresh_margin, asked)
    }

    /// A POST of `params` to an OAuth endpoint with this client's authentication, retried
    /// on 429, 5xx and connection failures. A 401 means the client's credentials were
    /// refused: permanent, like any other 4xx.
    ///
    /// `proven`: with DPoP on, each attempt carries a new proof (the token endpoint), and
    /// a request for a nonce is answered once.
    async fn oauth_post(
        &self,
        uri: &Uri,
        params: &[(&str, &str)],
        deadline: Instant,
        proven: bool,
    ) -> Result<Reply, Error> {
        let inner = &self.inner;
        let key = inner.config.dpop.as_ref().filter(|_| proven);
        let mut nonce_sent = false;
        let reply = loop {
            let reply = retry::send(&inner.transport, &inner.config, deadline, || {
                let mut request = inner.auth.request(uri, &inner.customer_code, params)?;
                if let Some(key) = key {
                    let nonce = inner.nonces.get(Server::Authorization);
                    let proof = key.proof(&Method::POST, uri, None, nonce.as_deref())?;
                    request.headers_mut().insert(DPOP, proof.header());
                }
                Ok(request)
            })
            .await?;
            if key.is_none() {
                break reply;
            }
            inner.nonces.remember(Server::Authorization, &reply.headers);
            if nonce_sent || !dpop::token_endpoint_wants_nonce(&reply) {
                break reply;
            }
            nonce_sent = true;
        };
        match reply.status {
            status if status.is_success() => Ok(reply),
            StatusCode::UNAUTHORIZED => Err(Error::InvalidCredentials {
                body: ErrorBody::parse(&reply.body),
            }),
            _ => Err(retry::permanent(&reply)),
        }
    }
}

/// `segment` percent-encoded for a URL path: everything but RFC 3986's unreserved
/// characters (a valid Customer Code has nothing else).
fn path_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn request(method: Method, uri: &Uri, body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(ACCEPT, HeaderValue::from_static(JSON));
    headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn base_url_must_be_http_or_https_with_a_host() {
        for bad in [
            "",
            "api.example.com",
            "ftp://api.example.com",
            "https://",
            "https://api.example.com/?x=1",
        ] {
            assert!(
                matches!(
                    Client::new(bad, "ACME-1", "key"),
                    Err(Error::InvalidConfig { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Client::new("http://127.0.0.1:9000", "", "key"),
            Err(Error::InvalidConfig { .. })
        ));
    }

    #[test]
    fn stage_prefix_and_trailing_slash_are_kept_right() {
        let client = Client::new("http://127.0.0.1:9000/Prod/", "ACME-1", "key");
        assert!(
            matches!(client, Ok(ref c) if c.inner.customer_uri == "http://127.0.0.1:9000/Prod/customer"
            && c.inner.token_uri == "http://127.0.0.1:9000/Prod/auth/token")
        );
    }

    #[test]
    fn debug_redacts_the_api_key() {
        let key = "kiss_sk_supersecretvalue";
        let client = Client::new("http://127.0.0.1:9000", "ACME-1", key);
        let text = format!("{client:?}");
        assert!(text.contains("ACME-1") && text.contains("***"), "{text}");
        assert!(!text.contains(key), "{text}");
        assert!(
            !text.contains(&STANDARD.encode(format!("ACME-1:{key}"))),
            "{text}"
        );
    }
}
