//! The token function: `POST /auth/token` and the public `/.well-known` documents.

use crate::assertion;
use crate::aws::{Production, warm_up};
use crate::config::{Config, ConfigError};
use crate::dpop::{self, Proof};
use crate::error::{ApiError, OAuthError, text};
use crate::handler::{Api, Handled, body_bytes};
use crate::http::{Headers, build, json_response, with_rate_limit};
use crate::jwk::Jws;
use crate::jwt::LEEWAY_SECONDS;
use crate::jwt::{self, TokenSettings};
use crate::keys::{KeyCache, KeySource, SecretsManagerSource};
use crate::log::Outcome;
use crate::model::{Credential, Customer, CustomerCode, DEFAULT_SCOPE};
use crate::rate_limit::RateInfo;
use crate::store::dynamo::DynamoStore;
use crate::store::{CustomerStore, Effect, SingleUse, TokenAuth, UseKind};
use crate::token_request::{self, ClientCredentials, RawTokenRequest};
use lambda_http::{Body, Request, Response};

const TOKEN_ROUTE: &str = "POST /auth/token";
/// Client authentication methods of all three OAuth endpoints.
const AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];
/// Client assertion algorithms (`Ed25519` is RFC 9864's name for `EdDSA` with Ed25519).
const ASSERTION_ALGS: [&str; 5] = ["EdDSA", "Ed25519", "ES256", "RS256", "PS256"];
const REVOKE_ROUTE: &str = "POST /auth/revoke";
const INTROSPECT_ROUTE: &str = "POST /auth/introspect";

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
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "revocation_endpoint": format!("{base}/auth/revoke"),
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "introspection_endpoint": format!("{base}/auth/introspect"),
            "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
            "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "scopes_supported": [DEFAULT_SCOPE],
            "response_types_supported": [],
            "dpop_signing_alg_values_supported": dpop::ACCEPTED_ALGS,
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

    /// `POST /auth/token` (`docs/contract.md`, "Token endpoint", steps 2–9, with a DPoP
    /// proof checked after client authentication).
    async fn token(&self, request: &Request, now: u64) -> Handled {
        let parsed = match token_request::parse(&raw_request(request)) {
            Ok(parsed) => parsed,
            Err(err) => return oauth_failure(err, None, TOKEN_ROUTE, Outcome::InvalidRequest),
        };
        // Checked before the store call so a good proof's `jti` is burned in the counting
        // write; a bad one is answered after authentication, counted like any request.
        let proof = self.dpop_proof(request, now);
        let client = match self
            .authenticate(
                &parsed.client,
                Effect::Count,
                TOKEN_ROUTE,
                now,
                proof.as_ref().and_then(|p| p.as_ref().ok()),
            )
            .await
        {
            Ok(client) => client,
            Err(failed) => return failed,
        };
        let Authenticated {
            code,
            customer,
            rate,
            key_id,
            proof_replayed,
        } = client;
        let jkt = match &proof {
            Some(Ok(proof)) if !proof_replayed => Some(proof.jkt.as_str()),
            None => None,
            Some(failed) => {
                if let Err(reason) = failed {
                    tracing::debug!(reason, "DPoP proof refused");
                }
                return oauth_failure(
                    OAuthError::InvalidDpopProof,
                    Some(&rate),
                    TOKEN_ROUTE,
                    Outcome::InvalidDpopProof,
                )
                .customer(code.as_str());
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
                return oauth_failure(
                    OAuthError::InvalidScope,
                    Some(&rate),
                    TOKEN_ROUTE,
                    Outcome::InvalidScope,
                )
                .customer(code.as_str());
            }
        };
        let grant = jwt::Grant {
            customer_code: code.as_str(),
            scope: &scope,
            key_id: &key_id,
            epoch: customer.token_epoch,
            jkt,
        };
        let signed = match self.keys.current(now).await {
            Ok(keys) => jwt::sign(&self.settings, &keys, &grant, now),
            Err(err) => Err(err.into()),
        };
        let token = match signed {
            Ok(token) => token,
            Err(err) => {
                tracing::error!(error = %err, "could not sign a token");
                return oauth_failure(
                    OAuthError::ServerError,
                    Some(&rate),
                    TOKEN_ROUTE,
                    Outcome::ServerError,
                )
                .customer(code.as_str());
            }
        };
        let body = serde_json::json!({
            "access_token": token,
            "token_type": if jkt.is_some() { dpop::TOKEN_TYPE } else { "Bearer" },
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

    /// The token request's DPoP proof: `None` without a `DPoP` header, else the checked
    /// proof or why it was refused.
    fn dpop_proof(&self, request: &Request, now: u64) -> Option<Result<Proof, &'static str>> {
        let values = request
            .headers()
            .get_all("dpop")
            .iter()
            .map(|v| v.as_bytes());
        let url = format!("{}/auth/token", self.base_url());
        match dpop::single_header(values) {
            Ok(None) => None,
            Ok(Some(compact)) => Some(dpop::verify(
                compact,
                &dpop::Expected {
                    method: "POST",
                    url: &url,
                    access_token: None,
                    now,
                },
            )),
            Err(reason) => Some(Err(reason)),
        }
    }

    /// Client authentication shared by the OAuth endpoints: one conditional write that
    /// authenticates, counts in the token bucket, applies `effect` and burns the single-use
    /// ids (an assertion's `jti`, the `jti` of `proof`); every failure is the endpoint's
    /// response. A replayed proof of a client that authenticated is counted and reported in
    /// [`Authenticated::proof_replayed`].
    async fn authenticate(
        &self,
        client: &ClientCredentials,
        effect: Effect,
        route: &'static str,
        now: u64,
        proof: Option<&Proof>,
    ) -> Result<Authenticated, Handled> {
        let failure = |err: OAuthError, outcome| oauth_failure(err, None, route, outcome);
        let invalid_client = || {
            failure(
                OAuthError::InvalidClient {
                    basic: client.is_basic(),
                },
                Outcome::InvalidClient,
            )
        };
        let (code, key_id, hash, assertion) = match client {
            ClientCredentials::Secret {
                client_id,
                client_secret,
                ..
            } => {
                // The Customer Code format is public, so refusing a malformed one early
                // reveals nothing.
                let Some(code) = CustomerCode::parse(client_id) else {
                    return Err(invalid_client());
                };
                // Our keys carry a checksum: one that fails it was never issued, so it is
                // refused before any I/O, with the same bytes as a wrong key.
                if !client_secret.is_well_formed() {
                    return Err(invalid_client());
                }
                let hash = Some(client_secret.hash_hex());
                (code, client_secret.key_id(), hash, None)
            }
            ClientCredentials::Assertion {
                client_id,
                assertion,
            } => {
                let verified = self.verify_assertion(client_id.as_deref(), assertion, now);
                match verified.await {
                    Ok((code, verified)) => {
                        let used = (verified.jti, verified.exp.saturating_add(LEEWAY_SECONDS));
                        (code, verified.key_id, None, Some(used))
                    }
                    Err(None) => return Err(invalid_client()),
                    Err(Some(err)) => {
                        tracing::error!(error = %err, "registered keys unavailable");
                        return Err(failure(OAuthError::ServerError, Outcome::ServerError));
                    }
                }
            }
        };
        let credential = match &hash {
            Some(hash) => Credential::ApiKey { id: &key_id, hash },
            None => Credential::Jwk { key_id: &key_id },
        };
        let mut uses: Vec<SingleUse<'_>> = assertion
            .iter()
            .map(|(jti, until)| SingleUse {
                kind: UseKind::Assertion,
                jti,
                until: *until,
            })
            .chain(proof.map(|proof| SingleUse {
                kind: UseKind::DpopProof,
                jti: &proof.jti,
                until: proof.replay_until(),
            }))
            .collect();
        let limit = self.token_limit;
        // Without single-use ids the stores make the plain counting write.
        let mut auth = self
            .store
            .authorize_once(&code, credential, &uses, effect, now, limit)
            .await;
        // A replayed proof fails the request but, the client having authenticated, it is
        // counted like any other, and its assertion is used up (nothing else happens: the
        // effect is not applied).
        let proof_replayed = matches!(auth, Ok(TokenAuth::Replayed(UseKind::DpopProof)));
        if proof_replayed {
            uses.retain(|used| used.kind != UseKind::DpopProof);
            auth = self
                .store
                .authorize_once(&code, credential, &uses, Effect::Count, now, limit)
                .await;
        }
        match auth {
            Ok(TokenAuth::Granted { customer, rate }) => Ok(Authenticated {
                code,
                customer,
                rate,
                key_id,
                proof_replayed,
            }),
            Ok(TokenAuth::InvalidClient | TokenAuth::Replayed(_)) => Err(invalid_client()),
            Ok(TokenAuth::Limited(rate)) => Err(oauth_failure(
                OAuthError::TooManyRequests,
                Some(&rate),
                route,
                Outcome::RateLimited,
            )
            .customer(code.as_str())),
            Err(err) => {
                tracing::error!(error = %err, "client authentication failed in the store");
                Err(failure(OAuthError::ServerError, Outcome::ServerError))
            }
        }
    }

    /// A `private_key_jwt` assertion checked against the keys registered for the client it
    /// names (signature and claims; its `jti` is the counting write's business). `Err(None)`
    /// is any defect (the same `invalid_client`), `Err(Some(_))` a store failure.
    async fn verify_assertion(
        &self,
        client_id: Option<&str>,
        assertion: &str,
        now: u64,
    ) -> Result<(CustomerCode, assertion::Assertion), Option<crate::store::StoreError>> {
        let jws = Jws::parse(assertion);
        let claimed = jws.as_ref().and_then(assertion::claimed_client);
        let code = claimed
            .filter(|iss| client_id.is_none_or(|id| id == *iss))
            .and_then(CustomerCode::parse);
        let (Some(jws), Some(code)) = (jws, code) else {
            return Err(None);
        };
        let kid = jws.header.get("kid").and_then(|k| k.as_str());
        let base = self.base_url();
        let audiences = [format!("{base}/auth/token"), self.settings.issuer.clone()];
        let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
        // Signature and claims first: an assertion that fails them counts nothing. No cached
        // key verifies it: read the registered keys once more (a key registered a moment ago
        // must work at once).
        let mut verified = Err("not tried");
        for reread in [false, true] {
            let keys = self
                .store
                .registered_jwks(&code, kid, reread, now)
                .await
                .map_err(Some)?;
            verified = assertion::verify(&jws, &keys, &audiences, now);
            if verified != Err(assertion::NO_KEY) {
                break;
            }
        }
        match verified {
            Ok(verified) => Ok((code, verified)),
            Err(reason) => {
                tracing::debug!(reason, "client assertion refused");
                Err(None)
            }
        }
    }

    /// `POST /auth/revoke` (RFC 7009): an access token this client was issued, expired or
    /// not, revokes every token of the customer issued so far, in the counting write itself.
    /// Anything else (invalid, unknown, another customer's) revokes nothing; the answer is the
    /// same empty 200 either way.
    async fn revoke(&self, request: &Request, now: u64) -> Handled {
        let operation = match token_request::parse_token_operation(&raw_request(request)) {
            Ok(operation) => operation,
            Err(err) => return oauth_failure(err, None, REVOKE_ROUTE, Outcome::InvalidRequest),
        };
        let own_token = match jwt::verify_ignoring_time(
            &operation.token,
            &self.keys,
            &self.settings,
            now,
        )
        .await
        {
            Ok(claims) => operation.client.claimed_id().as_deref() == Some(claims.sub.as_str()),
            Err(jwt::VerifyError::Invalid(_)) => false,
            Err(jwt::VerifyError::Keys(err)) => {
                tracing::error!(error = %err, "verification keys unavailable");
                return oauth_failure(
                    OAuthError::ServerError,
                    None,
                    REVOKE_ROUTE,
                    Outcome::ServerError,
                );
            }
        };
        let effect = if own_token {
            Effect::RevokeTokens
        } else {
            Effect::Count
        };
        let client = match self
            .authenticate(&operation.client, effect, REVOKE_ROUTE, now, None)
            .await
        {
            Ok(client) => client,
            Err(failed) => return failed,
        };
        let mut headers = Headers::token();
        headers.retain(|(name, _)| *name != "content-type");
        with_rate_limit(&mut headers, Some(&client.rate), false);
        let outcome = if own_token {
            Outcome::TokensRevoked
        } else {
            Outcome::NothingRevoked
        };
        Handled::new(build(200, Body::Empty, headers), REVOKE_ROUTE, outcome)
            .customer(client.code.as_str())
    }

    /// `POST /auth/introspect` (RFC 7662): active only for a token of the calling customer
    /// that `GET /customer` would accept right now, judged on the item the counting write
    /// returned (key, status, revocation epoch).
    async fn introspect(&self, request: &Request, now: u64) -> Handled {
        let operation = match token_request::parse_token_operation(&raw_request(request)) {
            Ok(operation) => operation,
            Err(err) => {
                return oauth_failure(err, None, INTROSPECT_ROUTE, Outcome::InvalidRequest);
            }
        };
        let client = match self
            .authenticate(
                &operation.client,
                Effect::Count,
                INTROSPECT_ROUTE,
                now,
                None,
            )
            .await
        {
            Ok(client) => client,
            Err(failed) => return failed,
        };
        let claims = match jwt::verify(&operation.token, &self.keys, &self.settings, now).await {
            Ok(claims) => Some(claims),
            Err(jwt::VerifyError::Invalid(_)) => None,
            Err(jwt::VerifyError::Keys(err)) => {
                tracing::error!(error = %err, "verification keys unavailable");
                return oauth_failure(
                    OAuthError::ServerError,
                    Some(&client.rate),
                    INTROSPECT_ROUTE,
                    Outcome::ServerError,
                )
                .customer(client.code.as_str());
            }
        };
        let live = claims.filter(|claims| {
            claims.sub == client.code.as_str()
                && claims.has_scope(DEFAULT_SCOPE)
                && client.customer.accepts(
                    &Credential::Token {
                        key_id: &claims.key_id,
                        epoch: claims.epoch,
                    },
                    now,
                )
        });
        let mut body = match &live {
            Some(claims) => serde_json::json!({
                "active": true,
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "iss": claims.iss,
                "aud": claims.aud,
                "exp": claims.exp,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "jti": claims.jti,
                "token_type": if claims.cnf.is_some() { dpop::TOKEN_TYPE } else { "Bearer" },
            }),
            None => serde_json::json!({ "active": false }),
        };
        if let Some(cnf) = live.as_ref().and_then(|claims| claims.cnf.as_ref()) {
            body["cnf"] = serde_json::json!({ "jkt": cnf.jkt });
        }
        let mut headers = Headers::token();
        with_rate_limit(&mut headers, Some(&client.rate), false);
        Handled::new(
            json_response(200, &body, headers),
            INTROSPECT_ROUTE,
            Outcome::Introspected,
        )
        .customer(client.code.as_str())
    }
}

fn oauth_failure(
    err: OAuthError,
    rate: Option<&RateInfo>,
    route: &'static str,
    outcome: Outcome,
) -> Handled {
    Handled::new(err.response(rate), route, outcome)
}

/// The parts of a request the OAuth endpoints read.
fn raw_request(request: &Request) -> RawTokenRequest<'_> {
    let header = |name: &str| request.headers().get(name).map(|v| v.as_bytes());
    RawTokenRequest {
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: body_bytes(request),
    }
}

/// A client that authenticated and was counted.
struct Authenticated {
    code: CustomerCode,
    customer: Box<Customer>,
    rate: RateInfo,
    /// Id of the key that authenticated.
    key_id: String,
    /// The request's DPoP proof had been used before (the request was still counted).
    proof_replayed: bool,
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
                TOKEN_ROUTE,
                Outcome::InvalidRequest,
            ),
            ("POST", "/auth/revoke") => self.revoke(&request, now).await,
            ("POST", "/auth/introspect") => self.introspect(&request, now).await,
            (_, "/auth/revoke") => oauth_failure(
                OAuthError::InvalidRequest(text::ENDPOINT_ONLY_POST),
                None,
                REVOKE_ROUTE,
                Outcome::InvalidRequest,
            ),
            (_, "/auth/introspect") => oauth_failure(
                OAuthError::InvalidRequest(text::ENDPOINT_ONLY_POST),
                None,
                INTROSPECT_ROUTE,
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
