//! The customer function: `GET /customer` and `GET /customers/{customer_code}`.

use crate::aws::{Production, warm_up};
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::handler::{Api, Handled};
use crate::http::{Headers, json_response, with_rate_limit};
use crate::jwt::{self, TokenSettings, VerifyError};
use crate::keys::{KeyCache, KeySource, SecretsManagerSource};
use crate::log::Outcome;
use crate::model::{Credential, CustomerCode, DEFAULT_SCOPE};
use crate::store::dynamo::DynamoStore;
use crate::store::{CustomerStore, Lookup};
use lambda_http::{Body, Request, Response};

const OWN_ROUTE: &str = "GET /customer";
const CODE_ROUTE: &str = "GET /customers/{customer_code}";

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

    /// Bearer check, one counted read, then the record if the caller may see it.
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
        let Some(token) = jwt::bearer_token(header) else {
            return fail(ApiError::InvalidToken, Outcome::InvalidToken);
        };
        let claims = match jwt::verify(token, &self.keys, &self.settings, now).await {
            Ok(claims) if claims.has_scope(DEFAULT_SCOPE) => claims,
            Ok(_) | Err(VerifyError::Invalid(_)) => {
                return fail(ApiError::InvalidToken, Outcome::InvalidToken);
            }
            Err(VerifyError::Keys(err)) => {
                tracing::error!(error = %err, "verification keys unavailable");
                return fail(ApiError::Internal, Outcome::ServerError);
            }
        };
        let Some(code) = CustomerCode::parse(&claims.sub) else {
            return fail(ApiError::InvalidToken, Outcome::InvalidToken);
        };
        // The write re-checks the customer's status and the token's key: a revoked key's or a
        // suspended customer's token is refused without being counted.
        let credential = Credential::Token {
            key_id: &claims.key_id,
            epoch: claims.epoch,
        };
        let lookup = self
            .store
            .lookup(&code, credential, now, self.api_limit)
            .await;
        let (customer, rate) = match lookup {
            Ok(Lookup::Found { customer, rate }) => (customer, rate),
            Ok(Lookup::Denied) => {
                return fail(ApiError::InvalidToken, Outcome::InvalidToken).customer(code.as_str());
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
}

impl<S, K> Api for CustomerApi<S, K>
where
    S: CustomerStore + 'static,
    K: KeySource + 'static,
{
    const FUNCTION: &'static str = "customer";

    async fn handle(&self, request: Request, now: u64) -> Handled {
        let path = request.uri().path().to_owned();
        let is_get = request.method() == http::Method::GET;
        match path.strip_prefix("/customers/") {
            _ if is_get && path == "/customer" => {
                self.customer(&request, None, OWN_ROUTE, now).await
            }
            Some(code) if is_get && !code.is_empty() && !code.contains('/') => {
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
