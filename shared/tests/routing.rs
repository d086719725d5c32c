//! Routing on the API Gateway resource: real REST (v1) proxy events, with and without a custom
//! domain's base-path mapping, parsed by `lambda_http`'s own event parsing, under both settings
//! of `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH`; and the HTTP API (v2) events of
//! `cargo lambda watch`, which carry no resource and are routed on their path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lambda_http::{Body, Request, Response};
use shared::error::text;
use std::process::Command;

/// The template sets it ('true'); `lambda_http` reads it while it converts an event.
const IGNORE_STAGE: &str = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH";
const EXECUTE_API: &str = "abc123.execute-api.eu-west-1.amazonaws.com";
const CUSTOM_DOMAIN: &str = "api.example.com";

/// Where a request came from: the execute-api URL (the stage is in the URL, not in `path`), or
/// a custom domain whose base-path mapping (`/v1`) API Gateway keeps in `path`.
#[derive(Clone, Copy)]
enum Via {
    ExecuteApi,
    BasePath(&'static str),
}

/// A REST API proxy event as API Gateway sends it (AWS's sample event, trimmed of nothing
/// `lambda_http` reads): `path` is the path inside the API, `resource` the matched resource.
fn rest_event(
    via: Via,
    method: &str,
    path: &str,
    resource: &str,
    path_parameters: Option<serde_json::Value>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let (host, public_path, context_path) = match via {
        Via::ExecuteApi => (EXECUTE_API, path.to_owned(), format!("/Prod{path}")),
        Via::BasePath(base) => (
            CUSTOM_DOMAIN,
            format!("{base}{path}"),
            format!("{base}{path}"),
        ),
    };
    let mut all = serde_json::Map::new();
    for (name, value) in [
        ("Host", host),
        ("User-Agent", "curl/8.5.0"),
        ("X-Forwarded-For", "203.0.113.10"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
    ]
    .iter()
    .chain(headers)
    {
        all.insert((*name).to_owned(), (*value).into());
    }
    let multi: serde_json::Map<_, _> = all
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!([v])))
        .collect();
    serde_json::json!({
        "resource": resource,
        "path": public_path,
        "httpMethod": method,
        "headers": all,
        "multiValueHeaders": multi,
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "Xy1AbCdEFiAFaLw=",
            "requestTime": "28/Nov/2026:10:00:00 +0000",
            "path": context_path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "Prod",
            "domainPrefix": host.split('.').next(),
            "requestTimeEpoch": 1_800_000_000_000_u64,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "curl/8.5.0"},
            "domainName": host,
            "apiId": "abc123"
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

/// The HTTP API (v2) event `cargo lambda watch` makes for `make run` (captured from 1.9.2): route
/// key `$default`, no resource, its router's path parameters.
fn watch_event(method: &str, path: &str, path_parameters: Option<serde_json::Value>) -> String {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "127.0.0.1:9000", "user-agent": "curl/8.5.0"},
        "pathParameters": path_parameters,
        "requestContext": {
            "routeKey": "$default",
            "stage": "$default",
            "requestId": "6e71f0e1-33b4-4701-850b-8dd7fcbb6ec5",
            "domainName": "localhost",
            "domainPrefix": "customer",
            "time": "28/Nov/2026:02:51:40 +0000",
            "timeEpoch": 1_795_834_300,
            "http": {"method": method, "path": path, "protocol": "http",
                     "sourceIp": "127.0.0.1", "userAgent": "cargo-lambda"}
        },
        "isBase64Encoded": false
    })
    .to_string()
}

fn parse(event: &str) -> Request {
    lambda_http::request::from_str(event).unwrap()
}

fn by_code(code: &str) -> Option<serde_json::Value> {
    Some(serde_json::json!({"customer_code": code}))
}

/// True when this process has `ignore_stage` as wanted. Otherwise runs `test` alone in a child
/// process of this test binary that has it (a test cannot set a variable for itself without
/// `unsafe`), asserts that it ran and passed, and returns false.
fn with_stage_setting(ignore_stage: bool, test: &str) -> bool {
    if std::env::var_os(IGNORE_STAGE).is_some() == ignore_stage {
        return true;
    }
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.args([test, "--exact", "--test-threads=1"]);
    if ignore_stage {
        child.env(IGNORE_STAGE, "true");
    } else {
        child.env_remove(IGNORE_STAGE);
    }
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// The path `lambda_http` puts in the request URI: raw-path routing would have to match this.
fn uri_path(event: &str) -> String {
    parse(event).uri().path().to_owned()
}

fn assert_not_found(response: &Response<Body>) {
    assert_eq!(response.status(), 404);
    assert_eq!(text(response), r#"{"error":"Not found."}"#);
}

/// Every route of both functions through REST events, with and without a base path.
async fn rest_events_route_on_the_resource(ignore_stage: bool) {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let own = text(&call(&f.customer, get_with_token("/customer", &token), NOW).await);
    let vias = [
        Via::ExecuteApi,
        Via::BasePath("/v1"),
        Via::BasePath("/customer-api/v2"),
    ];

    // What lambda_http makes of the path: the stage unless the variable is set, and the base
    // path always, so only the resource names the route.
    let stage = if ignore_stage { "" } else { "/Prod" };
    for (via, expected) in [
        (Via::ExecuteApi, format!("{stage}/customer")),
        (Via::BasePath("/v1"), format!("{stage}/v1/customer")),
    ] {
        let event = rest_event(via, "GET", "/customer", "/customer", None, &auth, None);
        assert_eq!(uri_path(&event), expected);
    }

    for via in vias {
        let get = |path: &str, resource: &str, params| {
            parse(&rest_event(via, "GET", path, resource, params, &auth, None))
        };
        let response = call(&f.customer, get("/customer", "/customer", None), NOW).await;
        assert_eq!(response.status(), 200);
        assert_eq!(text(&response), own);

        let path = format!("/customers/{CODE}");
        let request = get(&path, "/customers/{customer_code}", by_code(CODE));
        let response = call(&f.customer, request, NOW).await;
        assert_eq!(response.status(), 200);
        assert_eq!(text(&response), own);

        let request = get(
            "/customers/OTHER-1",
            "/customers/{customer_code}",
            by_code("OTHER-1"),
        );
        let response = call(&f.customer, request, NOW).await;
        assert_eq!(response.status(), 404);
        assert_eq!(text(&response), r#"{"error":"Customer not found."}"#);

        let unknown = Some(serde_json::json!({"proxy": "customers/ACME-1/keys"}));
        let request = get("/customers/ACME-1/keys", "/{proxy+}", unknown);
        assert_not_found(&call(&f.customer, request, NOW).await);
        // The catch-all resource for a path that looks like a route is still not found.
        let proxy = Some(serde_json::json!({"proxy": "customer"}));
        let request = get("/customer", "/{proxy+}", proxy);
        assert_not_found(&call(&f.customer, request, NOW).await);
        // A resource without its parameter cannot name a customer.
        let request = get(&path, "/customers/{customer_code}", None);
        assert_not_found(&call(&f.customer, request, NOW).await);

        let event = rest_event(via, "POST", "/customer", "/customer", None, &auth, None);
        assert_not_found(&call(&f.customer, parse(&event), NOW).await);
        let event = rest_event(via, "GET", "/customer", "/customer", None, &[], None);
        assert_bearer_401(&call(&f.customer, parse(&event), NOW).await);

        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let body = f.form();
        let event = rest_event(
            via,
            "POST",
            "/auth/token",
            "/auth/token",
            None,
            &form,
            Some(&body),
        );
        let response = call(&f.token, parse(&event), NOW).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        assert_eq!(json(&response)["token_type"], "Bearer");

        for method in ["GET", "PUT", "DELETE"] {
            let event = rest_event(via, method, "/auth/token", "/auth/token", None, &[], None);
            let response = call(&f.token, parse(&event), NOW).await;
            assert_oauth(&response, 400, "invalid_request", text::ONLY_POST);
        }

        for document in [
            "/.well-known/jwks.json",
            "/.well-known/oauth-authorization-server",
        ] {
            let event = rest_event(via, "GET", document, document, None, &[], None);
            let response = call(&f.token, parse(&event), NOW).await;
            assert_eq!(response.status(), 200, "{document}");
        }
        let other = Some(serde_json::json!({"proxy": ".well-known/other"}));
        let event = rest_event(
            via,
            "GET",
            "/.well-known/other",
            "/{proxy+}",
            other,
            &[],
            None,
        );
        assert_not_found(&call(&f.token, parse(&event), NOW).await);
    }
}

#[tokio::test]
async fn rest_events_route_on_the_resource_with_the_stage_ignored_as_the_template_sets_it() {
    if with_stage_setting(
        true,
        "rest_events_route_on_the_resource_with_the_stage_ignored_as_the_template_sets_it",
    ) {
        rest_events_route_on_the_resource(true).await;
    }
}

#[tokio::test]
async fn rest_events_route_on_the_resource_with_the_stage_kept_in_the_path() {
    if with_stage_setting(
        false,
        "rest_events_route_on_the_resource_with_the_stage_kept_in_the_path",
    ) {
        rest_events_route_on_the_resource(false).await;
    }
}

/// `make run`: `cargo lambda watch` sends HTTP API events without a resource; the path routes.
#[tokio::test]
async fn events_without_a_resource_route_on_the_path() {
    let f = Fixture::new();
    let token = f.access_token(NOW).await;
    let own = text(&call(&f.customer, get_with_token("/customer", &token), NOW).await);
    let with_token = |event: String| {
        let mut request = parse(&event);
        let value = format!("Bearer {token}").parse().unwrap();
        request.headers_mut().insert("authorization", value);
        request
    };

    let response = call(
        &f.customer,
        with_token(watch_event("GET", "/customer", None)),
        NOW,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(&response), own);
    let params = Some(serde_json::json!({"code": CODE}));
    let path = format!("/customers/{CODE}");
    let response = call(
        &f.customer,
        with_token(watch_event("GET", &path, params)),
        NOW,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(&response), own);
    for path in ["/customers/", "/customers/a/b", "/customer/", "/nope"] {
        let request = with_token(watch_event("GET", path, None));
        assert_not_found(&call(&f.customer, request, NOW).await);
    }
    // Without a resource there is no base path to see: only the API's own paths route.
    let request = with_token(watch_event("GET", "/v1/customer", None));
    assert_not_found(&call(&f.customer, request, NOW).await);

    let response = call(
        &f.token,
        parse(&watch_event("GET", "/auth/token", None)),
        NOW,
    )
    .await;
    assert_oauth(&response, 400, "invalid_request", text::ONLY_POST);
    let jwks = parse(&watch_event("GET", "/.well-known/jwks.json", None));
    assert_eq!(call(&f.token, jwks, NOW).await.status(), 200);
}

/// `event` with header `name` repeated: API Gateway puts every line in `multiValueHeaders`
/// and the last one in `headers`.
fn with_repeated_header(event: &str, name: &str, values: &[&str]) -> String {
    let mut event: serde_json::Value = serde_json::from_str(event).unwrap();
    event["multiValueHeaders"][name] = serde_json::json!(values);
    event["headers"][name] = serde_json::json!(values.last());
    event.to_string()
}

/// Two `DPoP` lines reach the functions through a REST event (`cargo lambda watch` forwards
/// only the first line of a repeated header, so `make run` cannot show this), and are refused
/// at both ends; one line works. The RFC 9728 document routes on its own resource.
#[tokio::test]
async fn rest_events_carry_repeated_dpop_headers_and_the_resource_metadata_route() {
    let f = Fixture::new();
    let key = shared::test_util::ProofKey::ed25519();
    let token_url = "https://api.test/auth/token";
    let form = f.form();
    let content_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let token_event = |proofs: &[&str]| {
        let event = rest_event(
            Via::ExecuteApi,
            "POST",
            "/auth/token",
            "/auth/token",
            None,
            &content_type,
            Some(&form),
        );
        parse(&with_repeated_header(&event, "DPoP", proofs))
    };
    let one = key.proof_for("POST", token_url, None, NOW);
    let response = call(&f.token, token_event(&[&one]), NOW).await;
    assert_eq!(response.status(), 200, "{}", text(&response));
    let token = json(&response)["access_token"].as_str().unwrap().to_owned();
    let two = [
        key.proof_for("POST", token_url, None, NOW),
        key.proof_for("POST", token_url, None, NOW),
    ];
    let request = token_event(&[&two[0], &two[1]]);
    assert_eq!(request.headers().get_all("dpop").iter().count(), 2);
    assert_oauth(
        &call(&f.token, request, NOW).await,
        400,
        "invalid_dpop_proof",
        "The DPoP proof is invalid.",
    );

    let authorization = format!("DPoP {token}");
    let auth = [("Authorization", authorization.as_str())];
    let lookup = |proofs: &[&str]| {
        let event = rest_event(
            Via::BasePath("/v1"),
            "GET",
            "/customer",
            "/customer",
            None,
            &auth,
            None,
        );
        parse(&with_repeated_header(&event, "DPoP", proofs))
    };
    let url = "https://api.test/customer";
    let good = key.proof_for("GET", url, Some(&token), NOW);
    let response = call(&f.customer, lookup(&[&good]), NOW).await;
    assert_eq!(response.status(), 200, "{}", text(&response));
    let first = key.proof_for("GET", url, Some(&token), NOW);
    let second = key.proof_for("GET", url, Some(&token), NOW);
    let response = call(&f.customer, lookup(&[&first, &second]), NOW).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(&response, "www-authenticate").as_deref(),
        Some("DPoP error=\"invalid_dpop_proof\", algs=\"EdDSA ES256\"")
    );

    let metadata = "/.well-known/oauth-protected-resource";
    for via in [Via::ExecuteApi, Via::BasePath("/v1")] {
        let event = rest_event(via, "GET", metadata, metadata, None, &[], None);
        let response = call(&f.customer, parse(&event), NOW).await;
        assert_eq!(response.status(), 200);
        assert_eq!(json(&response)["resource"], "https://api.test");
    }
}
