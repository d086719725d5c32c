//! The token function: `POST /auth/token` and the public `/.well-known` documents.

use crate::aws::{Production, warm_up};
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, OAuthError, text};
use crate::handler::{Api, Handled, body_bytes};
use crate::http::{Headers, build, json_response, with_rate_limit};
use crate::jwt::{self, TokenSettings};
use crate::keys::{KeyCache, KeySource, SecretsManagerSource};
use crate::log::Outcome;
use crate::model::{CustomerCode, DEFAULT_SCOPE};
use crate::store::dynamo::DynamoStore;
use crate::store::{CustomerStore, TokenAuth};
use crate::token_request::{self, AuthMethod, RawTokenRequest};
use lambda_http::{Body, Request, Response};

const TOKEN_ROUTE: &str = "POST /auth/token";

/// The token function's state: built once per instance.
pub struct TokenApi<S, K> {
    store: S,
    keys: KeyCache<K>,
    settings: TokenSettings,
    token_limit: u64,
}

impl TokenApi<DynamoStore, SecretsManagerSource> {
    /// Builds the AWS clients, opens the DynamoDB connection and loads the signing keys
    /// during init, so the first request pays no handshake.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let parts =
            Production::from_env(|c| c.signing_secret_id.clone(), "SIGNING_SECRET_ID").await?;
        let api = Self::new(parts.store, parts.source, &parts.config);
        warm_up(&api.store, &api.keys).await;
        Ok(api)
    }
}

impl<S: CustomerStore, K: KeySource> TokenApi<S, K> {
    /// A token API over any store and key source.
    pub fn new(store: S, source: K, config: &Config) -> Self {
        Self {
            store,
            keys: KeyCache::new(source, config.key_refresh_seconds),
            settings: TokenSettings::from_config(config),
            token_limit: config.token_rate_limit,
        }
    }

    fn base_url(&self) -> &str {
        self.settings.issuer.trim_end_matches('/')
    }

    /// RFC 8414 metadata.
    fn metadata(&self) -> serde_json::Value {
        let base = self.base_url();
        serde_json::json!({
            "issuer": self.settings.issuer,
            "token_endpoint": format!("{base}/auth/token"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": [DEFAULT_SCOPE],
            "response_types_supported": [],
        })
    }

    async fn jwks(&self, now: u64) -> Handled {
        const ROUTE: &str = "GET /.well-known/jwks.json";
        match self.keys.current(now).await {
            Ok(keys) => Handled::new(
                build(
                    200,
                    Body::Text(keys.jwks_json().to_owned()),
                    Headers::public_document(),
                ),
                ROUTE,
                Outcome::Document,
            ),
            Err(err) => {
                tracing::error!(error = %err, "cannot serve the JWKS");
                Handled::new(
                    ApiError::Internal.response(None),
                    ROUTE,
                    Outcome::ServerError,
                )
            }
        }
    }

    /// `POST /auth/token`, SPEC §5 steps 2–9.
    async fn token(&self, request: &Request, now: u64) -> Handled {
        let header = |name: &str| request.headers().get(name).map(|v| v.as_bytes());
        let raw = RawTokenRequest {
            content_type: header("content-type"),
            authorization: header("authorization"),
            body: body_bytes(request),
        };
        let parsed = match token_request::parse(&raw) {
            Ok(parsed) => parsed,
            Err(err) => return oauth_failure(err, None, Outcome::InvalidRequest),
        };
        let basic = parsed.method == AuthMethod::Basic;
        let invalid_client = OAuthError::InvalidClient { basic };
        // The Customer Code format is public, so refusing a malformed one early reveals nothing.
        let Some(code) = CustomerCode::parse(&parsed.client_id) else {
            return oauth_failure(invalid_client, None, Outcome::InvalidClient);
        };
        let hash = parsed.client_secret.hash_hex();
        let auth = self
            .store
            .authorize_token(&code, &hash, now, self.token_limit)
            .await;
        let (customer, key_id, rate) = match auth {
            Ok(TokenAuth::Granted {
                customer,
                key_id,
                rate,
            }) => (customer, key_id, rate),
            Ok(TokenAuth::InvalidClient) => {
                return oauth_failure(invalid_client, None, Outcome::InvalidClient);
            }
            Ok(TokenAuth::Limited(rate)) => {
                return oauth_failure(
                    OAuthError::TooManyRequests,
                    Some(&rate),
                    Outcome::RateLimited,
                )
                .customer(code.as_str());
            }
            Err(err) => {
                tracing::error!(error = %err, "token request failed in the store");
                return oauth_failure(OAuthError::ServerError, None, Outcome::ServerError);
            }
        };
        let granted = match parsed.scope.as_deref().map(token_request::parse_scope) {
            None => Ok(customer.scopes.clone()),
            Some(Ok(asked)) if asked.iter().all(|s| customer.scopes.contains(s)) => Ok(asked),
            Some(_) => Err(OAuthError::InvalidScope),
        };
        let scope = match granted {
            Ok(scopes) if !scopes.is_empty() => scopes.join(" "),
            _ => {
                return oauth_failure(OAuthError::InvalidScope, Some(&rate), Outcome::InvalidScope)
                    .customer(code.as_str());
            }
        };
        let signed = match self.keys.current(now).await {
            Ok(keys) => jwt::sign(&self.settings, &keys, code.as_str(), &scope, &key_id, now),
            Err(err) => Err(err.into()),
        };
        let token = match signed {
            Ok(token) => token,
            Err(err) => {
                tracing::error!(error = %err, "could not sign a token");
                return oauth_failure(OAuthError::ServerError, Some(&rate), Outcome::ServerError)
                    .customer(code.as_str());
            }
        };
        let body = serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.settings.ttl_seconds,
            "scope": scope,
        });
        let mut headers = Headers::token();
        with_rate_limit(&mut headers, Some(&rate), false);
        Handled::new(
            json_response(200, &body, headers),
            TOKEN_ROUTE,
            Outcome::TokenIssued,
        )
        .customer(code.as_str())
    }
}

fn oauth_failure(
    err: OAuthError,
    rate: Option<&crate::rate_limit::RateInfo>,
    outcome: Outcome,
) -> Handled {
    Handled::new(err.response(rate), TOKEN_ROUTE, outcome)
}

impl<S, K> Api for TokenApi<S, K>
where
    S: CustomerStore + 'static,
    K: KeySource + 'static,
{
    const FUNCTION: &'static str = "token";

    async fn handle(&self, request: Request, now: u64) -> Handled {
        let method = request.method().as_str();
        match (method, crate::handler::resource(&request)) {
            ("POST", "/auth/token") => self.token(&request, now).await,
            (_, "/auth/token") => oauth_failure(
                OAuthError::InvalidRequest(text::ONLY_POST),
                None,
                Outcome::InvalidRequest,
            ),
            ("GET", "/.well-known/jwks.json") => self.jwks(now).await,
            ("GET", "/.well-known/oauth-authorization-server") => Handled::new(
                json_response(200, &self.metadata(), Headers::public_document()),
                "GET /.well-known/oauth-authorization-server",
                Outcome::Document,
            ),
            _ => Handled::new(
                ApiError::RouteNotFound.response(None),
                "unknown",
                Outcome::NotFound,
            ),
        }
    }

    fn internal_error(&self) -> Response<Body> {
        OAuthError::ServerError.response(None)
    }
}
