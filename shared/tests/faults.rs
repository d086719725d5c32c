//! Fault injection (`docs/contract.md`, "Reliability and security"): DynamoDB and Secrets Manager unreachable, slower
//! than the SDK timeout, throttling, failing, or answering malformed data.
//!
//! Every route answers its contract 500 within the SDK budget, the same API instance serves
//! the next request once the fault clears (no crash, no poisoned cache), and a failed key
//! refresh keeps the cached keys. The APIs are the production types over real SDK clients
//! whose timeouts and retries come from `shared::aws::lambda_sdk_config` (with a small
//! `SDK_TIMEOUT_MS`); only endpoint, region and credentials are set here. Each client talks
//! to a scripted fault server (`common::fault_server`) that forwards to this binary's moto
//! server while healthy. Requests go straight to `Api::handle` with an injected clock, so a
//! panic would fail the test instead of being turned into a 500 by `handler::serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::{RetryConfig, RetryMode};
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use common::fault_server::{Canned, Fault, FaultServer};
use common::moto;
use common::{
    CODE, NOW, assert_oauth, call, get_with_token, json, post_form, post_form_with_dpop, request,
    segment, text,
};
use lambda_http::{Body, Response};
use shared::config::Config;
use shared::customer_api::CustomerApi;
use shared::keys::{KeyDocument, SecretsManagerSource};
use shared::store::dynamo::DynamoStore;
use shared::test_util::{self, DynamoFixtures, SecretFixtures};
use shared::token_api::TokenApi;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Token = TokenApi<DynamoStore, SecretsManagerSource>;
type Customer = CustomerApi<DynamoStore, SecretsManagerSource>;

/// Per-attempt SDK timeout under test: small so the suite is quick, large enough that a
/// healthy moto call through the forwarding server never hits it on a loaded machine.
const SDK_TIMEOUT_MS: u64 = 500;
const SDK_MAX_ATTEMPTS: u32 = 2;
/// Upper bound on a faulted request: SLACK × (faulted SDK operations) × the SDK's operation
/// timeout. The operation timeout (attempts × attempt timeout, backoff included) is the
/// SDK's hard cap and the handler adds microseconds; the 3× absorbs timers firing late on a
/// shared 2-core machine that is also running moto (Python) and cargo. It still catches a
/// missing or unapplied timeout: a held request then lasts the fault server's 10 s hold
/// per attempt.
/// Attempts beyond `SDK_MAX_ATTEMPTS` are caught exactly, by counting the client's attempts.
const SLACK: u32 = 3;
const OTHER_CODE: &str = "BETA-2";

const TOKEN_500: &str =
    r#"{"error":"server_error","error_description":"An unexpected error occurred."}"#;
const STANDARD_500: &str = r#"{"error":"An unexpected error occurred."}"#;

fn config() -> Config {
    Config {
        issuer: "https://api.test".into(),
        sdk_timeout_ms: SDK_TIMEOUT_MS,
        sdk_max_attempts: SDK_MAX_ATTEMPTS,
        token_rate_limit: 10_000,
        api_rate_limit: 10_000,
        ..Config::default()
    }
}

fn attempt_timeout(config: &Config) -> Duration {
    Duration::from_millis(config.sdk_timeout_ms)
}

/// The SDK's cap on one operation, retries and backoff included.
fn operation_budget(config: &Config) -> Duration {
    attempt_timeout(config) * config.sdk_max_attempts
}

/// Asserts the timeouts and retries `shared::aws::lambda_sdk_config` promises for `config`.
fn assert_production_budget(
    timeouts: Option<&TimeoutConfig>,
    retries: Option<&RetryConfig>,
    config: &Config,
) {
    let attempt = attempt_timeout(config);
    let timeouts = timeouts.expect("timeouts are configured explicitly");
    assert_eq!(timeouts.operation_attempt_timeout(), Some(attempt));
    assert_eq!(timeouts.operation_timeout(), Some(operation_budget(config)));
    let connect = timeouts
        .connect_timeout()
        .expect("connect timeout is explicit");
    assert!(
        connect <= attempt.min(Duration::from_secs(1)),
        "{connect:?}"
    );
    let retries = retries.expect("retries are configured explicitly");
    assert_eq!(retries.mode(), RetryMode::Standard);
    assert_eq!(retries.max_attempts(), config.sdk_max_attempts);
}

/// Counts the operations an SDK client starts and the attempts (retries included) it makes,
/// on the client side: an attempt that never reaches a server still counts.
#[derive(Debug, Default, Clone)]
struct SdkCounter {
    operations: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
}

impl SdkCounter {
    fn snapshot(&self) -> (usize, usize) {
        (
            self.operations.load(Ordering::SeqCst),
            self.attempts.load(Ordering::SeqCst),
        )
    }

    /// Operations and attempts since `before`.
    fn since(&self, before: (usize, usize)) -> (usize, usize) {
        let now = self.snapshot();
        (now.0 - before.0, now.1 - before.1)
    }
}

impl Intercept for SdkCounter {
    fn name(&self) -> &'static str {
        "SdkCounter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.operations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A DynamoDB client with the production SDK config, pointed at `endpoint`, counted.
fn dynamodb_client(sdk: &SdkConfig, endpoint: &str) -> (aws_sdk_dynamodb::Client, SdkCounter) {
    let calls = SdkCounter::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "faults",
        ))
        .interceptor(calls.clone())
        .build();
    (aws_sdk_dynamodb::Client::from_conf(conf), calls)
}

/// A Secrets Manager client with the production SDK config, pointed at `endpoint`.
fn secrets_client(sdk: &SdkConfig, endpoint: &str) -> (aws_sdk_secretsmanager::Client, SdkCounter) {
    let calls = SdkCounter::default();
    let conf = aws_sdk_secretsmanager::config::Builder::from(sdk)
        .endpoint_url(endpoint)
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "faults",
        ))
        .interceptor(calls.clone())
        .build();
    (aws_sdk_secretsmanager::Client::from_conf(conf), calls)
}

#[derive(Clone, Copy, Debug)]
enum Route {
    Token,
    Customer,
    Jwks,
}

/// Both APIs over fault servers in front of moto, plus direct moto clients to seed data.
struct Env {
    config: Config,
    dynamodb: FaultServer,
    secrets: FaultServer,
    /// Operations and attempts of the APIs' clients.
    dynamodb_sdk: SdkCounter,
    secrets_sdk: SdkCounter,
    token: Token,
    customer: Customer,
    /// A healthy token API straight on moto, to mint tokens while the APIs under test fail.
    minter: Token,
    seed: aws_sdk_dynamodb::Client,
    seed_secrets: aws_sdk_secretsmanager::Client,
    table: String,
    signing_secret: String,
    verification_secret: String,
    doc: KeyDocument,
    form: String,
    other_form: String,
}

impl Env {
    async fn new() -> Self {
        let config = config();
        let (seed, _) = moto::dynamodb();
        let (seed_secrets, _) = moto::secrets();
        let table = moto::table(&seed).await;
        let mut doc = KeyDocument::default();
        doc.rotate(NOW - 1000).unwrap();
        let signing_secret = moto::secret(&seed_secrets, &doc.to_secret_string()).await;
        let verification_secret =
            moto::secret(&seed_secrets, &doc.public().to_secret_string()).await;
        let direct = DynamoStore::new(seed.clone(), &table);
        let mut forms = Vec::new();
        for code in [CODE, OTHER_CODE] {
            let created = test_util::customer(code, NOW - 100);
            direct.create(&created.customer).await.unwrap();
            forms.push(format!(
                "grant_type=client_credentials&client_id={code}&client_secret={}",
                created.api_key.expose()
            ));
        }
        let sdk = shared::aws::lambda_sdk_config(&config, |_| None);
        let dynamodb = FaultServer::start(&moto::endpoint());
        let secrets = FaultServer::start(&moto::endpoint());
        let (dynamodb_client, dynamodb_sdk) = dynamodb_client(&sdk, &dynamodb.endpoint());
        let (secrets_client, secrets_sdk) = secrets_client(&sdk, &secrets.endpoint());
        // The clients under test carry the production timeouts and retries, not defaults.
        let conf = dynamodb_client.config();
        assert_production_budget(conf.timeout_config(), conf.retry_config(), &config);
        let conf = secrets_client.config();
        assert_production_budget(conf.timeout_config(), conf.retry_config(), &config);
        let token = TokenApi::new(
            DynamoStore::new(dynamodb_client.clone(), &table),
            SecretsManagerSource::new(secrets_client.clone(), &signing_secret),
            &config,
        );
        let customer = CustomerApi::new(
            DynamoStore::new(dynamodb_client, &table),
            SecretsManagerSource::new(secrets_client, &verification_secret),
            &config,
        );
        let minter = TokenApi::new(
            direct,
            SecretsManagerSource::new(seed_secrets.clone(), &signing_secret),
            &config,
        );
        let other_form = forms.pop().unwrap();
        let form = forms.pop().unwrap();
        Self {
            config,
            dynamodb,
            secrets,
            dynamodb_sdk,
            secrets_sdk,
            token,
            customer,
            minter,
            seed,
            seed_secrets,
            table,
            signing_secret,
            verification_secret,
            doc,
            form,
            other_form,
        }
    }

    /// Sends one request to the API owning `route` and times it.
    async fn hit(&self, route: Route, access: &str, now: u64) -> (Response<Body>, Duration) {
        let started = Instant::now();
        let response = match route {
            Route::Token => call(&self.token, post_form(&self.form), now).await,
            Route::Customer => call(&self.customer, get_with_token("/customer", access), now).await,
            Route::Jwks => {
                let jwks = request("GET", "/.well-known/jwks.json", &[], Body::Empty);
                call(&self.token, jwks, now).await
            }
        };
        (response, started.elapsed())
    }

    /// A token from the API under test; asserts it was issued.
    async fn issue(&self, form: &str, now: u64) -> String {
        issued(call(&self.token, post_form(form), now).await)
    }

    /// A token from the healthy minter (straight on moto).
    async fn mint(&self, now: u64) -> String {
        issued(call(&self.minter, post_form(&self.form), now).await)
    }

    /// Asserts `GET /customer` with `access` answers the record of `code`.
    async fn assert_customer(&self, access: &str, code: &str, now: u64) {
        let response = call(&self.customer, get_with_token("/customer", access), now).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        assert_eq!(json(&response)["customer_code"], code);
    }

    /// Asserts the JWKS is served; returns its body.
    async fn assert_jwks(&self, now: u64) -> String {
        let (response, _) = self.hit(Route::Jwks, "", now).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        text(&response)
    }

    /// Every route works through the fault servers; returns a token of the API under test.
    async fn assert_serves(&self, now: u64) -> String {
        let access = self.issue(&self.form, now).await;
        self.assert_customer(&access, CODE, now).await;
        self.assert_jwks(now).await;
        access
    }
}

fn issued(response: Response<Body>) -> String {
    assert_eq!(response.status(), 200, "{}", text(&response));
    json(&response)["access_token"].as_str().unwrap().to_owned()
}

/// Asserts the route's contract 500, byte for byte, with its headers.
fn assert_contract_500(route: Route, response: &Response<Body>) {
    match route {
        Route::Token => {
            assert_oauth(
                response,
                500,
                "server_error",
                "An unexpected error occurred.",
            );
            assert_eq!(text(response), TOKEN_500);
        }
        Route::Customer | Route::Jwks => {
            assert_eq!(response.status(), 500, "{route:?}: {}", text(response));
            assert_eq!(text(response), STANDARD_500, "{route:?}");
            for (name, value) in [
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
                ("x-content-type-options", "nosniff"),
            ] {
                assert_eq!(
                    common::header(response, name).as_deref(),
                    Some(value),
                    "{route:?}: {name}"
                );
            }
        }
    }
}

/// Asserts a faulted request ended inside the SDK budget of `operations` failing SDK
/// operations, after no more attempts than the retry budget allows.
fn assert_budget(
    config: &Config,
    fault: &Fault,
    what: &str,
    elapsed: Duration,
    (operations, attempts): (usize, usize),
) {
    let ops = u32::try_from(operations).unwrap();
    let deadline = operation_budget(config) * ops * SLACK;
    assert!(
        elapsed < deadline,
        "{what}: took {elapsed:?}; the SDK budget is {:?} per operation",
        operation_budget(config)
    );
    let max_attempts = config.sdk_max_attempts as usize * operations;
    assert!(
        (operations..=max_attempts).contains(&attempts),
        "{what}: {attempts} attempts for {operations} operations, budget {max_attempts}"
    );
    if *fault == Fault::Hang {
        assert!(
            elapsed >= attempt_timeout(config) * ops,
            "{what}: answered after {elapsed:?}, before the SDK timeout: the fault was not hit"
        );
    }
}

/// For a canned-response fault: asserts the fault server answered since `before`.
fn assert_answered(server: &FaultServer, fault: &Fault, before: usize, what: &str) {
    if let Fault::Respond(_) = fault {
        assert!(
            server.requests() > before,
            "{what}: the fault server answered"
        );
    }
}

// ------------------------------------------------------------------------------ DynamoDB

/// DynamoDB faulted: token and customer routes answer their 500 after one DynamoDB call;
/// the JWKS (no DynamoDB) is still served; once healthy, the same instances serve again.
async fn dynamodb_fault(fault: Fault) {
    let env = Env::new().await;
    let access = env.assert_serves(NOW).await;
    env.dynamodb.set(fault.clone());
    let answered = env.dynamodb.requests();
    for route in [Route::Token, Route::Customer] {
        let before = env.dynamodb_sdk.snapshot();
        let (response, elapsed) = env.hit(route, &access, NOW + 1).await;
        let what = format!("DynamoDB {}, {route:?}", fault.label());
        assert_contract_500(route, &response);
        let counts = env.dynamodb_sdk.since(before);
        assert_eq!(counts.0, 1, "{what}: one operation");
        assert_budget(&env.config, &fault, &what, elapsed, counts);
    }
    assert_answered(&env.dynamodb, &fault, answered, "DynamoDB");
    env.assert_jwks(NOW + 1).await;
    env.dynamodb.set(Fault::Healthy);
    env.assert_serves(NOW + 2).await;
    env.assert_customer(&access, CODE, NOW + 2).await;
}

#[tokio::test]
async fn dynamodb_unreachable_answers_500_on_every_route_then_recovers() {
    dynamodb_fault(Fault::Unreachable).await;
}

#[tokio::test]
async fn dynamodb_slower_than_the_sdk_timeout_answers_500_within_the_budget_then_recovers() {
    dynamodb_fault(Fault::Hang).await;
}

#[tokio::test]
async fn dynamodb_throttling_answers_500_within_the_retry_budget_then_recovers() {
    dynamodb_fault(Fault::Respond(Canned::dynamodb_throttling())).await;
}

#[tokio::test]
async fn dynamodb_internal_failure_answers_500_then_recovers() {
    dynamodb_fault(Fault::Respond(Canned::internal_failure(true))).await;
}

#[tokio::test]
async fn dynamodb_malformed_response_answers_500_then_recovers() {
    dynamodb_fault(Fault::Respond(Canned::malformed_json(true))).await;
}

// ------------------------------------------------------------------------ Secrets Manager

/// Secrets Manager faulted before any key was loaded: all three routes answer their 500
/// after one `GetSecretValue` each (nothing cached to fall back on); once healthy, the same
/// instances load the keys and serve.
async fn secrets_manager_fault(fault: Fault) {
    let env = Env::new().await;
    let access = env.mint(NOW).await;
    env.secrets.set(fault.clone());
    let answered = env.secrets.requests();
    for route in [Route::Token, Route::Customer, Route::Jwks] {
        let before = env.secrets_sdk.snapshot();
        let (response, elapsed) = env.hit(route, &access, NOW + 1).await;
        let what = format!("Secrets Manager {}, {route:?}", fault.label());
        assert_contract_500(route, &response);
        let counts = env.secrets_sdk.since(before);
        assert_eq!(counts.0, 1, "{what}: one operation");
        assert_budget(&env.config, &fault, &what, elapsed, counts);
    }
    assert_answered(&env.secrets, &fault, answered, "Secrets Manager");
    env.secrets.set(Fault::Healthy);
    env.assert_serves(NOW + 2).await;
    env.assert_customer(&access, CODE, NOW + 2).await;
}

#[tokio::test]
async fn secrets_manager_unreachable_answers_500_on_every_route_then_recovers() {
    secrets_manager_fault(Fault::Unreachable).await;
}

#[tokio::test]
async fn secrets_manager_slower_than_the_sdk_timeout_answers_500_within_the_budget() {
    secrets_manager_fault(Fault::Hang).await;
}

#[tokio::test]
async fn secrets_manager_throttling_answers_500_within_the_retry_budget_then_recovers() {
    secrets_manager_fault(Fault::Respond(Canned::secrets_manager_throttling())).await;
}

#[tokio::test]
async fn secrets_manager_internal_failure_answers_500_then_recovers() {
    secrets_manager_fault(Fault::Respond(Canned::internal_failure(false))).await;
}

#[tokio::test]
async fn secrets_manager_malformed_response_answers_500_then_recovers() {
    secrets_manager_fault(Fault::Respond(Canned::malformed_json(false))).await;
}

#[tokio::test]
async fn a_malformed_key_document_answers_500_then_recovers() {
    secrets_manager_fault(Fault::Respond(Canned::secret_value(
        r#"{"keys":"not a list"}"#,
    )))
    .await;
}

// ------------------------------------------------------------------------------ Key cache

/// Keys loaded, then Secrets Manager fails past the refresh interval: every route keeps
/// answering 200 with the cached keys, each cache tries one refresh (not one per request),
/// and once healthy the next refresh picks up a rotation made during the outage.
async fn failed_refresh_keeps_cached_keys(fault: Fault) {
    let env = Env::new().await;
    let access = env.assert_serves(NOW).await;
    let cached_kid = env.doc.active.as_ref().unwrap().kid.clone();
    let jwks_before = env.assert_jwks(NOW).await;
    // A rotation lands in Secrets Manager during the outage.
    let mut rotated = env.doc.clone();
    let new_kid = rotated.rotate(NOW + 10).unwrap().kid;
    for (secret, doc) in [
        (&env.signing_secret, rotated.clone()),
        (&env.verification_secret, rotated.public()),
    ] {
        SecretsManagerSource::new(env.seed_secrets.clone(), secret)
            .write(&doc)
            .await
            .unwrap();
    }
    env.secrets.set(fault.clone());
    let later = NOW + env.config.key_refresh_seconds + 1;
    let before = env.secrets_sdk.snapshot();

    let (response, elapsed) = env.hit(Route::Token, &access, later).await;
    let what = format!("key refresh failing: {}", fault.label());
    assert!(
        elapsed < operation_budget(&env.config) * SLACK,
        "{what}: {elapsed:?}"
    );
    let fresh = issued(response);
    assert_eq!(segment(&fresh, 0)["kid"], cached_kid.as_str(), "{what}");
    let (response, elapsed) = env.hit(Route::Customer, &access, later).await;
    assert_eq!(response.status(), 200, "{what}: {}", text(&response));
    assert!(
        elapsed < operation_budget(&env.config) * SLACK,
        "{what}: {elapsed:?}"
    );
    env.assert_customer(&fresh, CODE, later).await;
    assert_eq!(env.assert_jwks(later).await, jwks_before, "{what}");
    let (operations, attempts) = env.secrets_sdk.since(before);
    assert_eq!(
        operations, 2,
        "{what}: one refresh per cache (token, customer), not one per request"
    );
    let max_attempts = 2 * env.config.sdk_max_attempts as usize;
    assert!(
        (2..=max_attempts).contains(&attempts),
        "{what}: {attempts} attempts"
    );

    env.secrets.set(Fault::Healthy);
    let recovered = later + env.config.key_refresh_seconds + 1;
    let jwks = env.assert_jwks(recovered).await;
    assert!(
        jwks.contains(&new_kid) && jwks.contains(&cached_kid),
        "{what}: the refresh after recovery loads the rotated document: {jwks}"
    );
    let rotated_token = env.issue(&env.form, recovered).await;
    assert_eq!(segment(&rotated_token, 0)["kid"], new_kid.as_str());
    env.assert_customer(&rotated_token, CODE, recovered).await;
    env.assert_customer(&access, CODE, recovered).await;
}

#[tokio::test]
async fn a_failed_key_refresh_keeps_the_cached_keys_when_secrets_manager_is_unreachable() {
    failed_refresh_keeps_cached_keys(Fault::Unreachable).await;
}

#[tokio::test]
async fn a_failed_key_refresh_keeps_the_cached_keys_when_secrets_manager_throttles() {
    failed_refresh_keeps_cached_keys(Fault::Respond(Canned::secrets_manager_throttling())).await;
}

#[tokio::test]
async fn a_failed_key_refresh_keeps_the_cached_keys_when_secrets_manager_is_slow() {
    failed_refresh_keeps_cached_keys(Fault::Hang).await;
}

#[tokio::test]
async fn a_failed_key_refresh_keeps_the_cached_keys_when_the_secret_is_malformed() {
    failed_refresh_keeps_cached_keys(Fault::Respond(Canned::secret_value("{not json"))).await;
}

// ------------------------------------------------------------------- Both, malformed items

/// The longest failing path of a request: the key refresh is due and Secrets Manager hangs
/// (cached keys kept), then DynamoDB hangs. Two operations, each inside its budget.
#[tokio::test]
async fn secrets_manager_and_dynamodb_both_slow_end_in_500_within_two_operation_budgets() {
    let env = Env::new().await;
    let access = env.assert_serves(NOW).await;
    env.secrets.set(Fault::Hang);
    env.dynamodb.set(Fault::Hang);
    let later = NOW + env.config.key_refresh_seconds + 1;
    let snapshot = |env: &Env| (env.secrets_sdk.snapshot(), env.dynamodb_sdk.snapshot());
    let since = |env: &Env, (secrets, dynamodb)| {
        (
            env.secrets_sdk.since(secrets),
            env.dynamodb_sdk.since(dynamodb),
        )
    };

    let before = snapshot(&env);
    let (response, elapsed) = env.hit(Route::Customer, &access, later).await;
    assert_contract_500(Route::Customer, &response);
    let (secrets, dynamodb) = since(&env, before);
    assert_eq!(
        (secrets.0, dynamodb.0),
        (1, 1),
        "one key refresh, one lookup"
    );
    let both = (2, secrets.1 + dynamodb.1);
    assert_budget(
        &env.config,
        &Fault::Hang,
        "both slow, customer",
        elapsed,
        both,
    );

    let before = snapshot(&env);
    let (response, elapsed) = env.hit(Route::Token, &access, later).await;
    assert_contract_500(Route::Token, &response);
    let (secrets, dynamodb) = since(&env, before);
    assert_eq!(
        (secrets.0, dynamodb.0),
        (0, 1),
        "the store answers first: no key work for a request that already failed"
    );
    assert_budget(
        &env.config,
        &Fault::Hang,
        "both slow, token",
        elapsed,
        dynamodb,
    );

    env.secrets.set(Fault::Healthy);
    env.dynamodb.set(Fault::Healthy);
    env.assert_serves(later + 1).await;
    env.assert_customer(&access, CODE, later + 1).await;
}

/// Items with wrong attribute types: both routes answer their 500 for that customer, other
/// customers are still served meanwhile, and the repaired item is served again.
#[tokio::test]
async fn malformed_items_answer_500_on_both_routes_and_other_customers_are_still_served() {
    let env = Env::new().await;
    let access = env.assert_serves(NOW).await;
    let other_access = env.issue(&env.other_form, NOW).await;
    let original = env
        .seed
        .get_item()
        .table_name(&env.table)
        .key("customer_code", AttributeValue::S(CODE.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let corruptions = [
        ("name", AttributeValue::N("42".into())),
        ("status", AttributeValue::N("1".into())),
        ("api_keys", AttributeValue::S("none".into())),
        ("created_at", AttributeValue::Bool(true)),
        ("scopes", AttributeValue::S("customer:read".into())),
        ("token_count", AttributeValue::S("many".into())),
    ];
    for (i, (attribute, wrong)) in corruptions.into_iter().enumerate() {
        let now = NOW + 1 + i as u64;
        let mut broken = original.clone();
        broken.insert(attribute.to_owned(), wrong.clone());
        let put = |item| {
            env.seed
                .put_item()
                .table_name(&env.table)
                .set_item(Some(item))
                .send()
        };
        put(broken).await.unwrap();
        for route in [Route::Token, Route::Customer] {
            let (response, _) = env.hit(route, &access, now).await;
            assert_eq!(
                response.status(),
                500,
                "{attribute} = {wrong:?}, {route:?}: {}",
                text(&response)
            );
            assert_contract_500(route, &response);
        }
        env.assert_customer(&other_access, OTHER_CODE, now).await;
        env.issue(&env.other_form, now).await;
        put(original.clone()).await.unwrap();
        let repaired = env.issue(&env.form, now).await;
        env.assert_customer(&repaired, CODE, now).await;
    }
}

// ------------------------------------------------------------------------- SDK budget

/// The `Globals` section of template.yaml.
fn template_globals() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template = std::fs::read_to_string(path).unwrap();
    let start = template.find("\nGlobals:").expect("template has Globals");
    let globals = &template[start + 1..];
    let end = globals.find("\nResources:").unwrap_or(globals.len());
    globals[..end].to_owned()
}

/// `name: value` of the first line in `text` with that key (quotes removed).
fn yaml_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        line.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
    })
}

/// The defaults and the template's deployed values both keep the SDK budget below every
/// function timeout in the template (the Globals one and any per-function override), even
/// for the longest failing path: a key refresh, then one DynamoDB call.
#[tokio::test]
async fn the_sdk_budget_stays_below_the_lambda_timeout() {
    let globals = template_globals();
    let global_timeout: u64 = yaml_value(&globals, "Timeout").unwrap().parse().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template = std::fs::read_to_string(path).unwrap();
    let timeouts: Vec<u64> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Timeout:"))
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("a function Timeout must be a number here: {v}"))
        })
        .collect();
    assert!(timeouts.contains(&global_timeout), "{timeouts:?}");
    let lambda_timeout = Duration::from_secs(*timeouts.iter().min().unwrap());

    let deployed = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some("customers".into()),
        "SDK_TIMEOUT_MS" | "SDK_MAX_ATTEMPTS" => yaml_value(&globals, name),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        (deployed.sdk_timeout_ms, deployed.sdk_max_attempts),
        (
            yaml_value(&globals, "SDK_TIMEOUT_MS")
                .unwrap()
                .parse()
                .unwrap(),
            yaml_value(&globals, "SDK_MAX_ATTEMPTS")
                .unwrap()
                .parse()
                .unwrap(),
        ),
        "the template sets the SDK budget explicitly"
    );
    for config in [Config::default(), deployed] {
        let sdk = shared::aws::lambda_sdk_config(&config, |_| None);
        assert_production_budget(sdk.timeout_config(), sdk.retry_config(), &config);
        let timeouts = sdk.timeout_config().unwrap();
        let operation = timeouts.operation_timeout().unwrap();
        let connect = timeouts.connect_timeout().unwrap();
        assert!(
            operation + connect < lambda_timeout,
            "{config:?}: one operation ({operation:?} + connect {connect:?}) must end before \
             the Lambda timeout ({lambda_timeout:?})"
        );
        assert!(
            operation * 2 < lambda_timeout,
            "{config:?}: a key refresh then a DynamoDB call ({:?}) must end before the \
             Lambda timeout ({lambda_timeout:?})",
            operation * 2
        );
    }
}

/// A DPoP write whose answer is lost after it committed: the SDK retries it, and the retry
/// must not read the request's own `jti` marker as a replay. Both paths: an instance's first
/// request (marker `PutItem`, then the count) and the steady state (`TransactWriteItems`).
/// The client retries after 10 ms (the production backoff of up to 1 s would make the test
/// slow, not different).
#[tokio::test]
async fn a_lost_answer_to_a_dpop_write_is_retried_without_looking_like_a_replay() {
    let (seed, _) = moto::dynamodb();
    let table = moto::table(&seed).await;
    let created = test_util::customer(CODE, NOW - 100);
    DynamoStore::new(seed, &table)
        .create(&created.customer)
        .await
        .unwrap();
    let form = format!(
        "grant_type=client_credentials&client_id={CODE}&client_secret={}",
        created.api_key.expose()
    );
    let server = FaultServer::start(&moto::endpoint());
    let calls = SdkCounter::default();
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(server.endpoint())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "faults",
        ))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(500))
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .interceptor(calls.clone())
        .build();
    let mut doc = KeyDocument::default();
    doc.rotate(NOW - 1000).unwrap();
    let token = TokenApi::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), &table),
        Arc::new(shared::keys::MemoryKeySource::new(doc)),
        &config(),
    );
    let key = test_util::ProofKey::ed25519();
    let url = "https://api.test/auth/token";
    let send = |proof: Option<String>| {
        let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
        call(&token, post_form_with_dpop(&form, &proofs), NOW)
    };
    // Opens the window: the next request is the instance's first DPoP one.
    assert_eq!(send(None).await.status(), 200);
    for path in ["two calls (no image yet)", "one transaction"] {
        let before = calls.snapshot();
        server.set(Fault::LoseAnswer);
        let response = send(Some(key.proof_for("POST", url, None, NOW))).await;
        assert_eq!(response.status(), 200, "{path}: {}", text(&response));
        assert_eq!(json(&response)["token_type"], "DPoP", "{path}");
        let (operations, attempts) = calls.since(before);
        assert!(
            attempts > operations,
            "{path}: the lost answer was retried ({operations} operations, {attempts} attempts)"
        );
    }
    // A real replay is still one.
    let proof = key.proof_for("POST", url, None, NOW);
    assert_eq!(send(Some(proof.clone())).await.status(), 200);
    assert_oauth(
        &send(Some(proof)).await,
        400,
        "invalid_dpop_proof",
        "The DPoP proof is invalid.",
    );
}
