//! What both functions share around their routes: clock, panic containment, the log line.

use crate::log::{Outcome, RequestSummary};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time kept back from Lambda's deadline to answer the contract 500 ourselves.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// Request budget when no Lambda deadline is known (local runs, tests).
const DEFAULT_BUDGET: Duration = Duration::from_secs(8);

/// A routed response with what the log line needs.
pub struct Handled {
    pub response: Response<Body>,
    pub route: &'static str,
    pub outcome: Outcome,
    pub customer_code: Option<String>,
}

impl Handled {
    /// A response not tied to a customer.
    pub fn new(response: Response<Body>, route: &'static str, outcome: Outcome) -> Self {
        Self {
            response,
            route,
            outcome,
            customer_code: None,
        }
    }

    /// Records the customer the request was about.
    pub fn customer(mut self, code: impl Into<String>) -> Self {
        self.customer_code = Some(code.into());
        self
    }
}

/// One Lambda function's routes.
pub trait Api: Send + Sync + 'static {
    /// Function name in logs and metric dimensions.
    const FUNCTION: &'static str;

    /// Routes and answers one request at time `now` (Unix seconds).
    fn handle(&self, request: Request, now: u64) -> impl Future<Output = Handled> + Send;

    /// The contract 500 of this function's envelope.
    fn internal_error(&self) -> Response<Body>;
}

/// Time left before Lambda's deadline (ms since the epoch), less the margin.
fn budget(deadline_ms: Option<u64>) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    deadline_ms
        .filter(|d| *d > now_ms)
        .map_or(DEFAULT_BUDGET, |d| Duration::from_millis(d - now_ms))
        .saturating_sub(DEADLINE_MARGIN)
        .max(Duration::from_millis(100))
}

/// Serves one request: a panic in the handler, or a request that would outlive the Lambda
/// deadline (several slow dependencies in a row), becomes the contract 500 and the instance
/// keeps serving; every request leaves exactly one summary line.
pub async fn serve<A: Api>(api: Arc<A>, request: Request) -> Response<Body> {
    let started = Instant::now();
    let context = request.lambda_context_ref();
    let request_id = context.map(|c| c.request_id.clone()).unwrap_or_default();
    let limit = budget(context.map(|c| c.deadline));
    let mut task = {
        let api = api.clone();
        tokio::spawn(async move { api.handle(request, crate::model::unix_now()).await })
    };
    let handled = match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(handled)) => handled,
        Ok(Err(_)) => {
            tracing::error!("handler panicked; answered 500");
            Handled::new(api.internal_error(), "panic", Outcome::ServerError)
        }
        Err(_) => {
            task.abort();
            tracing::error!("request outlived its deadline; answered 500");
            Handled::new(api.internal_error(), "deadline", Outcome::ServerError)
        }
    };
    RequestSummary {
        function: A::FUNCTION,
        request_id,
        route: handled.route,
        status: handled.response.status().as_u16(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        customer_code: handled.customer_code,
        outcome: handled.outcome,
    }
    .emit();
    handled.response
}

/// The route a request is for: the API Gateway resource it matched (`/auth/token`,
/// `/customers/{customer_code}`, `/{proxy+}`), which stays the same behind a custom domain's
/// base-path mapping (`/v1/customer` is still the resource `/customer`). Events without a
/// resource path (HTTP API and `cargo lambda watch` events, whose route key is `$default`)
/// fall back to the request path.
pub fn resource(request: &Request) -> &str {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context
            .resource_path
            .as_deref()
            .unwrap_or_else(|| request.uri().path()),
        _ => request.uri().path(),
    }
}

/// A path parameter of the matched resource (`customer_code` of `/customers/{customer_code}`).
pub fn path_parameter<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.path_parameters_ref().and_then(|p| p.first(name))
}

/// The request body as bytes, whatever encoding API Gateway used.
pub fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Runs a function: `lambda_http` loop over [`serve`].
pub async fn run<A: Api>(api: Arc<A>) -> Result<(), lambda_http::Error> {
    lambda_http::run(lambda_http::service_fn(move |request: Request| {
        let api = api.clone();
        async move { Ok::<_, std::convert::Infallible>(serve(api, request).await) }
    }))
    .await
}
