//! The customer function: `GET /customer`, `GET /customers/{customer_code}` (Bearer or
//! DPoP-bound tokens) and the RFC 9728 protected-resource metadata.

use crate::aws::{Production, warm_up};
use crate::config::{Config, ConfigError};
use crate::dpop::{self, Proof};
use crate::error::ApiError;
use crate::handler::{Api, Handled};
use crate::http::{Headers, json_response, with_rate_limit};
use crate::jwt::{self, Scheme, TokenSettings, VerifyError};
use crate::keys::{KeyCache, KeySource, SecretsManagerSource};
use crate::log::Outcome;
use crate::model::{Credential, CustomerCode, DEFAULT_SCOPE};
use crate::store::dynamo::DynamoStore;
use crate::store::{CustomerStore, Lookup, SingleUse, UseKind};
use lambda_http::{Body, Request, Response};

const OWN_ROUTE: &str = "GET /customer";
const CODE_ROUTE: &str = "GET /customers/{customer_code}";
const RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource";

/// The customer function's state: built once per instance.
pub struct CustomerApi<S, K> {
    store: S,
    keys: KeyCache<K>,
    settings: TokenSettings,
    api_limit: u64,
}

impl CustomerApi<DynamoStore, SecretsManagerSource> {
    /// Builds the AWS clients, opens the DynamoDB connection and loads the verification keys
    /// during init.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let parts = Production::from_env(
            |c| c.verification_secret_id.clone(),
            "VERIFICATION_SECRET_ID",
        )
        .await?;
        let api = Self::new(parts.store, parts.source, &parts.config);
        warm_up(&api.store, &api.keys).await;
        Ok(api)
    }
}

impl<S: CustomerStore, K: KeySource> CustomerApi<S, K> {
    /// A customer API over any store and key source.
    pub fn new(store: S, source: K, config: &Config) -> Self {
        Self {
            store,
            keys: KeyCache::new(source, config.key_refresh_seconds),
            settings: TokenSettings::from_config(config),
            api_limit: config.api_rate_limit,
        }
    }

    /// Token (and, for a DPoP-bound token, proof) check, one counted read, then the record
    /// if the caller may see it.
    async fn customer(
        &self,
        request: &Request,
        wanted: Option<&str>,
        route: &'static str,
        now: u64,
    ) -> Handled {
        let fail = |err: ApiError, outcome| Handled::new(err.response(None), route, outcome);
        let header = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let Some((scheme, token)) = jwt::access_token(header) else {
            return fail(ApiError::InvalidToken, Outcome::InvalidToken);
        };
        // Each scheme's own challenge: Bearer failures keep the Bearer contract exactly.
        let (bad_token, bad_proof) = match scheme {
            Scheme::Bearer => (ApiError::InvalidToken, ApiError::InvalidToken),
            Scheme::Dpop => (ApiError::DpopInvalidToken, ApiError::DpopInvalidProof),
        };
        let claims = match jwt::verify(token, &self.keys, &self.settings, now).await {
            // A bound token needs its proof (no downgrade to Bearer); the DPoP scheme needs
            // a bound token.
            Ok(claims)
                if claims.has_scope(DEFAULT_SCOPE)
                    && claims.jkt().is_some() == (scheme == Scheme::Dpop) =>
            {
                claims
            }
            Ok(_) | Err(VerifyError::Invalid(_)) => {
                return fail(bad_token, Outcome::InvalidToken);
            }
            Err(VerifyError::Keys(err)) => {
                tracing::error!(error = %err, "verification keys unavailable");
                return fail(ApiError::Internal, Outcome::ServerError);
            }
        };
        let Some(code) = CustomerCode::parse(&claims.sub) else {
            return fail(bad_token, Outcome::InvalidToken);
        };
        let proof = match claims.jkt() {
            None => None,
            Some(jkt) => match self.dpop_proof(request, token, wanted, now) {
                Ok(proof) if proof.jkt == jkt => Some(proof),
                Ok(_) | Err(_) => {
                    return fail(bad_proof, Outcome::InvalidDpopProof).customer(code.as_str());
                }
            },
        };
        // The write re-checks the customer's status and the token's key: a revoked key's or a
        // suspended customer's token is refused without being counted. A proof's `jti` is
        // burned in the same round trip.
        let credential = Credential::Token {
            key_id: &claims.key_id,
            epoch: claims.epoch,
        };
        let limit = self.api_limit;
        let lookup = match &proof {
            None => self.store.lookup(&code, credential, now, limit).await,
            Some(proof) => {
                let used = SingleUse {
                    kind: UseKind::DpopProof,
                    jti: &proof.jti,
                    until: proof.replay_until(),
                };
                let lookup = self.store.lookup_once(&code, credential, used, now, limit);
                lookup.await
            }
        };
        let (customer, rate) = match lookup {
            Ok(Lookup::Found { customer, rate }) => (customer, rate),
            Ok(Lookup::Denied) => {
                return fail(bad_token, Outcome::InvalidToken).customer(code.as_str());
            }
            Ok(Lookup::Replayed) => {
                return fail(bad_proof, Outcome::InvalidDpopProof).customer(code.as_str());
            }
            Ok(Lookup::NotFound) => {
                return fail(ApiError::CustomerNotFound, Outcome::NotFound).customer(code.as_str());
            }
            Ok(Lookup::Limited(rate)) => {
                return Handled::new(
                    ApiError::TooManyRequests.response(Some(&rate)),
                    route,
                    Outcome::RateLimited,
                )
                .customer(code.as_str());
            }
            Err(err) => {
                tracing::error!(error = %err, "customer lookup failed in the store");
                return fail(ApiError::Internal, Outcome::ServerError).customer(code.as_str());
            }
        };
        if wanted.is_some_and(|w| w != code.as_str()) {
            let response = ApiError::CustomerNotFound.response(Some(&rate));
            return Handled::new(response, route, Outcome::NotFound).customer(code.as_str());
        }
        let mut headers = Headers::standard();
        with_rate_limit(&mut headers, Some(&rate), false);
        let response = json_response(200, &customer.public_json(), headers);
        Handled::new(response, route, Outcome::Found).customer(code.as_str())
    }

    /// The request's one DPoP proof, checked against the request (`htu`: the public base
    /// URL and the route's path) and the access token beside it (`ath`).
    fn dpop_proof(
        &self,
        request: &Request,
        token: &str,
        wanted: Option<&str>,
        now: u64,
    ) -> Result<Proof, &'static str> {
        let values = request
            .headers()
            .get_all("dpop")
            .iter()
            .map(|v| v.as_bytes());
        let compact = dpop::single_header(values)?.ok_or("no DPoP header")?;
        let url = match wanted {
            None => format!("{}/customer", self.base_url()),
            Some(code) => format!("{}/customers/{code}", self.base_url()),
        };
        let expected = dpop::Expected {
            method: request.method().as_str(),
            url: &url,
            access_token: Some(token),
            now,
        };
        dpop::verify(compact, &expected).inspect_err(|reason| {
            tracing::debug!(reason, "DPoP proof refused");
        })
    }

    fn base_url(&self) -> &str {
        self.settings.issuer.trim_end_matches('/')
    }

    /// RFC 9728 protected-resource metadata.
    fn resource_metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "resource": self.base_url(),
            "authorization_servers": [self.settings.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": [DEFAULT_SCOPE],
            "dpop_signing_alg_values_supported": dpop::ALGS,
            "dpop_bound_access_tokens_required": false,
        })
    }
}

impl<S, K> Api for CustomerApi<S, K>
where
    S: CustomerStore + 'static,
    K: KeySource + 'static,
{
    const FUNCTION: &'static str = "customer";

    async fn handle(&self, request: Request, now: u64) -> Handled {
        let is_get = request.method() == http::Method::GET;
        // `Some(None)`: the caller's own record; `Some(Some(code))`: the record of `code`.
        let wanted = match crate::handler::resource(&request) {
            "/customer" => Some(None),
            "/customers/{customer_code}" => {
                crate::handler::path_parameter(&request, "customer_code").map(Some)
            }
            path => path.strip_prefix("/customers/").map(Some),
        }
        .filter(|code| code.is_none_or(|c| !c.is_empty() && !c.contains('/')));
        if is_get && crate::handler::resource(&request) == RESOURCE_METADATA {
            return Handled::new(
                json_response(200, &self.resource_metadata(), Headers::public_document()),
                "GET /.well-known/oauth-protected-resource",
                Outcome::Document,
            );
        }
        match wanted {
            Some(None) if is_get => self.customer(&request, None, OWN_ROUTE, now).await,
            Some(Some(code)) if is_get => {
                self.customer(&request, Some(code), CODE_ROUTE, now).await
            }
            _ => Handled::new(
                ApiError::RouteNotFound.response(None),
                "unknown",
                Outcome::NotFound,
            ),
        }
    }

    fn internal_error(&self) -> Response<Body> {
        ApiError::Internal.response(None)
    }
}
