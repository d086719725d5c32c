"""The SAM template keeps every response the edge makes (API Gateway, AWS WAF) inside the
published contract, its dashboard is valid, and the release artifacts match the architecture
that `sam deploy` will give the functions."""

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_STATUSES = {"400", "404", "429", "500"}
# Every response type API Gateway (REST) can generate itself.
ALL_TYPES = {
    "ACCESS_DENIED", "API_CONFIGURATION_ERROR", "AUTHORIZER_CONFIGURATION_ERROR", "AUTHORIZER_FAILURE",
    "BAD_REQUEST_PARAMETERS", "BAD_REQUEST_BODY", "DEFAULT_4XX", "DEFAULT_5XX", "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE", "INTEGRATION_TIMEOUT", "INVALID_API_KEY", "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN", "QUOTA_EXCEEDED", "REQUEST_TOO_LARGE", "RESOURCE_NOT_FOUND",
    "THROTTLED", "UNAUTHORIZED", "UNSUPPORTED_MEDIA_TYPE", "WAF_FILTERED",
}


class CfnLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation's short-form tags (!Ref, !Sub, …) as plain values."""


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


class CfnTagLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form tags in their long form
    (`!Ref X` → `{"Ref": "X"}`, `!Sub s` → `{"Fn::Sub": s}`, `!GetAtt A.B` → `{"Fn::GetAtt": [A, B]}`)."""


def _long_form(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnTagLoader.add_multi_constructor("!", _long_form)


def load_template(path=ROOT / "template.yaml"):
    return yaml.load(path.read_text(), Loader=CfnTagLoader)


def gateway_responses():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    return template["Resources"]["Api"]["Properties"]["GatewayResponses"]


def test_every_gateway_response_type_is_mapped():
    assert set(gateway_responses()) == ALL_TYPES


def test_every_gateway_error_is_a_contract_status_with_a_standard_body():
    expected_texts = {
        "404": "Not found.",
        "429": "Too many requests. Retry after the time given in Retry-After.",
        "500": "An unexpected error occurred.",
    }
    for name, response in gateway_responses().items():
        status = response["StatusCode"]
        assert status in CONTRACT_STATUSES, name
        body = json.loads(response["ResponseTemplates"]["application/json"])
        assert list(body) == ["error"] and body["error"], name
        if status in expected_texts:
            assert body["error"] == expected_texts[status], name
        headers = response["ResponseParameters"]["Headers"]
        assert headers["Content-Type"] == "'application/json'", name
        assert headers["Cache-Control"] == "'no-store'", name
        assert headers["X-Content-Type-Options"] == "'nosniff'", name
        if status == "429":
            assert int(headers["Retry-After"].strip("'")) >= 1, name
    statuses = {name: r["StatusCode"] for name, r in gateway_responses().items()}
    assert statuses["DEFAULT_5XX"] == statuses["INTEGRATION_FAILURE"] == statuses["INTEGRATION_TIMEOUT"] == "500"
    assert statuses["THROTTLED"] == "429" and statuses["DEFAULT_4XX"] == "400"
    assert statuses["MISSING_AUTHENTICATION_TOKEN"] == statuses["RESOURCE_NOT_FOUND"] == "404"


# ---------------------------------------------------------------- AWS WAF

# The sentences the functions send (shared/src), so WAF's answers read like theirs.
TOO_MANY_TOKEN_REQUESTS = "Too many token requests. Retry after the time given in Retry-After."
TOO_MANY_REQUESTS = "Too many requests. Retry after the time given in Retry-After."
BODY_TOO_LARGE = "The request body is too large."
# Status → (OAuth envelope on /auth/token, /auth/revoke, /auth/introspect; standard elsewhere).
WAF_CONTRACT = {
    429: (
        {"error": "too_many_requests", "error_description": TOO_MANY_TOKEN_REQUESTS},
        {"error": TOO_MANY_REQUESTS},
    ),
    400: (
        {"error": "invalid_request", "error_description": BODY_TOO_LARGE},
        {"error": BODY_TOO_LARGE},
    ),
}


def compact(document):
    """The byte form the functions send (serde_json: no spaces, keys in order)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def web_acl():
    return load_template()["Resources"]["WebAcl"]


def waf_rules():
    return web_acl()["Properties"]["Rules"]


def statements(statement):
    """The statement and every statement nested in it."""
    yield statement
    for nested in statement.values():
        if isinstance(nested, dict):
            for child in nested.get("Statements", []):
                yield from statements(child)
            if "ScopeDownStatement" in nested:
                yield from statements(nested["ScopeDownStatement"])
            if "Statement" in nested:
                yield from statements(nested["Statement"])


def is_oauth_rule(rule):
    return any(
        s.get("RegexPatternSetReferenceStatement", {}).get("Arn") == {"Fn::GetAtt": ["OAuthPaths", "Arn"]}
        for s in statements(rule["Statement"])
    )


def blocking_rules():
    return [rule for rule in waf_rules() if "Block" in rule["Action"]]


def test_the_waf_is_on_by_default_and_guards_the_stage():
    template = load_template()
    assert template["Parameters"]["EnableWaf"]["Default"] == "true"
    assert template["Conditions"]["WafEnabled"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    resources = template["Resources"]
    for name in ("OAuthPaths", "WebAcl", "WebAclAssociation"):
        assert resources[name]["Condition"] == "WafEnabled", name
    assert resources["WebAcl"]["Properties"]["Scope"] == "REGIONAL"
    assert resources["WebAcl"]["Properties"]["DefaultAction"] == {"Allow": {}}
    association = resources["WebAclAssociation"]["Properties"]
    assert association["WebACLArn"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}
    assert association["ResourceArn"]["Fn::Sub"].endswith("/restapis/${Api}/stages/${Api.Stage}")


def test_every_waf_block_is_a_contract_response_with_the_envelope_of_its_path():
    bodies = web_acl()["Properties"]["CustomResponseBodies"]
    seen = set()
    for rule in blocking_rules():
        name = rule["Name"]
        response = rule["Action"]["Block"].get("CustomResponse")
        assert response, f"{name}: a block without a custom response would be WAF's 403"
        status = response["ResponseCode"]
        assert status in WAF_CONTRACT, name
        oauth = is_oauth_rule(rule)
        expected = WAF_CONTRACT[status][0 if oauth else 1]
        body = bodies[response["CustomResponseBodyKey"]]
        assert body["ContentType"] == "APPLICATION_JSON", name
        assert body["Content"] == compact(expected), name
        headers = {h["Name"]: h["Value"] for h in response["ResponseHeaders"]}
        assert "Content-Type" not in {h.title() for h in headers}, name
        assert headers["Cache-Control"] == "no-store", name
        assert headers["X-Content-Type-Options"] == "nosniff", name
        if status == 429:
            assert re.fullmatch(r"[1-9][0-9]*", headers["Retry-After"]), name
        else:
            assert "Retry-After" not in headers, name
        seen.add((status, oauth))
    # Both envelopes for both statuses, and no body left unused.
    assert seen == {(status, oauth) for status in WAF_CONTRACT for oauth in (True, False)}
    used = {rule["Action"]["Block"]["CustomResponse"]["CustomResponseBodyKey"] for rule in blocking_rules()}
    assert used == set(bodies)


def test_the_oauth_rule_of_each_pair_runs_first_so_the_other_sees_only_other_paths():
    rules = blocking_rules()
    for status in WAF_CONTRACT:
        pair = [r for r in rules if r["Action"]["Block"]["CustomResponse"]["ResponseCode"] == status]
        oauth = [r["Priority"] for r in pair if is_oauth_rule(r)]
        standard = [r["Priority"] for r in pair if not is_oauth_rule(r)]
        assert len(oauth) == len(standard) == 1, status
        assert oauth[0] < standard[0], status
        # The standard rule has the same condition, minus the path.
        (oauth_rule,) = [r for r in pair if is_oauth_rule(r)]
        (standard_rule,) = [r for r in pair if not is_oauth_rule(r)]
        conditions = [s for s in oauth_rule["Statement"]["AndStatement"]["Statements"] if not is_oauth_rule({"Statement": s})]
        assert conditions == [standard_rule["Statement"]], status


def test_the_oauth_paths_are_the_three_oauth_endpoints_under_any_stage_or_base_path():
    patterns = load_template()["Resources"]["OAuthPaths"]["Properties"]["RegularExpressionList"]

    def oauth(path):
        return any(re.search(p, path) for p in patterns)

    for path in ("/v1/auth/token", "/auth/token", "/v1/auth/revoke", "/v1/auth/introspect", "/api/v2/auth/token"):
        assert oauth(path), path
    for path in ("/v1/customer", "/v1/customers/AUTH-TOKEN", "/v1/.well-known/jwks.json",
                 "/v1/auth/tokens", "/v1/auth/token/x", "/v1/", "/v1/AUTH/TOKEN"):
        assert not oauth(path), path


def test_one_per_ip_rate_limit_counts_every_request_and_labels_the_ones_to_block():
    rules = waf_rules()
    rate_rules = [r for r in rules if "RateBasedStatement" in r["Statement"]]
    assert len(rate_rules) == 1, "one counter, so the limit is not split per envelope"
    (counter,) = rate_rules
    statement = counter["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "IP"
    assert "ScopeDownStatement" not in statement, "every route counts against the same limit"
    assert statement["Limit"] == {"Ref": "WafRateLimitPerIp"}
    assert counter["Action"] == {"Count": {}}
    assert counter["Priority"] == min(r["Priority"] for r in rules), "counts requests the other rules block"
    (label,) = counter["RuleLabels"]
    limited = [r for r in rules if {"LabelMatchStatement": {"Scope": "LABEL", "Key": label["Name"]}}
               in list(statements(r["Statement"]))]
    assert {r["Action"]["Block"]["CustomResponse"]["ResponseCode"] for r in limited} == {429}
    assert len(limited) == 2
    # Retry-After covers the evaluation window, so a client that waits it out is counted afresh.
    for rule in limited:
        headers = {h["Name"]: h["Value"] for h in rule["Action"]["Block"]["CustomResponse"]["ResponseHeaders"]}
        assert int(headers["Retry-After"]) >= statement["EvaluationWindowSec"]
    parameter = load_template()["Parameters"]["WafRateLimitPerIp"]
    assert parameter["MinValue"] >= 10 and parameter["Default"] >= parameter["MinValue"]


def test_bodies_over_8_kib_are_blocked_including_the_ones_waf_cannot_read_whole():
    size_statements = [
        s["SizeConstraintStatement"]
        for rule in waf_rules()
        for s in statements(rule["Statement"])
        if "SizeConstraintStatement" in s
    ]
    assert len(size_statements) == 2
    for statement in size_statements:
        # API Gateway lets WAF read the first 8 KB; anything longer is "oversize" → MATCH.
        assert statement["FieldToMatch"] == {"Body": {"OversizeHandling": "MATCH"}}
        assert statement["ComparisonOperator"] == "GT" and statement["Size"] == 8192


def test_every_waf_rule_reports_metrics_and_samples():
    acl = web_acl()["Properties"]
    names = set()
    for config in [acl["VisibilityConfig"]] + [r["VisibilityConfig"] for r in acl["Rules"]]:
        assert config["CloudWatchMetricsEnabled"] is True and config["SampledRequestsEnabled"] is True
        names.add(json.dumps(config["MetricName"]))
    assert len(names) == len(acl["Rules"]) + 1, "metric names are unique"


def test_the_waf_sentences_are_the_ones_the_functions_send():
    rust = "".join(path.read_text() for path in (ROOT / "shared" / "src").rglob("*.rs"))
    for sentence in (TOO_MANY_TOKEN_REQUESTS, TOO_MANY_REQUESTS, BODY_TOO_LARGE):
        assert json.dumps(sentence) in rust, sentence


# ---------------------------------------------------------------- Dashboard


def resolve(value, conditions, refs):
    """Evaluates the intrinsics the dashboard body uses, with `refs` for every ${…}."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolve(v, conditions, refs) for v in value]
    ((key, argument),) = value.items()
    if key == "Fn::Join":
        separator, parts = argument
        return separator.join(resolve(p, conditions, refs) for p in parts)
    if key == "Fn::If":
        condition, when_true, when_false = argument
        return resolve(when_true if conditions[condition] else when_false, conditions, refs)
    if key == "Fn::Sub":
        assert isinstance(argument, str)
        return re.sub(r"\$\{([^}!]+)\}", lambda m: refs[m.group(1)], argument)
    raise AssertionError(f"unexpected intrinsic {key}")


DASHBOARD_REFS = {
    "AWS::Region": "eu-west-1",
    "AWS::StackName": "customer-api",
    "StageName": "v1",
    "TokenFunction": "customer-api-TokenFunction-1",
    "CustomerFunction": "customer-api-CustomerFunction-1",
    "CustomerTable": "customer-api-CustomerTable-1",
}


def dashboard(waf_enabled):
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    return json.loads(resolve(body, {"WafEnabled": waf_enabled}, DASHBOARD_REFS))


def dashboard_metrics(document):
    """(namespace, metric name, dimensions, stat) of every series."""
    found = set()
    for widget in document["widgets"]:
        properties = widget["properties"]
        assert properties["region"] == "eu-west-1"
        for series in properties["metrics"]:
            options = series[-1] if isinstance(series[-1], dict) else {}
            names = [s for s in series if isinstance(s, str)]
            dims = tuple(zip(names[2::2], names[3::2]))
            found.add((names[0], names[1], dims, options.get("stat", properties.get("stat"))))
    return found


def test_the_dashboard_shows_traffic_errors_limits_latency_and_capacity():
    for waf_enabled in (True, False):
        metrics = dashboard_metrics(dashboard(waf_enabled))
        api = (("ApiName", "customer-api-api"), ("Stage", "v1"))
        for name in ("Count", "4XXError", "5XXError"):
            assert ("AWS/ApiGateway", name, api, "Sum") in metrics, name
        assert ("AWS/ApiGateway", "Latency", api, "p50") in metrics
        assert ("AWS/ApiGateway", "Latency", api, "p99") in metrics
        # The EMF metrics exactly as the functions write them (shared/src/log.rs).
        for name, function in (("TokensIssued", "token"), ("AuthenticationFailures", "token"),
                               ("AuthenticationFailures", "customer"), ("RateLimited", "token"),
                               ("RateLimited", "customer")):
            assert ("CustomerApi", name, (("Function", function),), "Sum") in metrics, (name, function)
        for function in ("customer-api-TokenFunction-1", "customer-api-CustomerFunction-1"):
            for name in ("Errors", "Throttles"):
                assert ("AWS/Lambda", name, (("FunctionName", function),), "Sum") in metrics
            for stat in ("p50", "p99"):
                assert ("AWS/Lambda", "Duration", (("FunctionName", function),), stat) in metrics
        table = (("TableName", "customer-api-CustomerTable-1"),)
        for name in ("ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits"):
            assert ("AWS/DynamoDB", name, table, "Sum") in metrics, name
        waf = {m for m in metrics if m[0] == "AWS/WAFV2"}
        assert bool(waf) == waf_enabled


def test_the_dashboard_waf_series_are_the_web_acl_rules():
    acl = web_acl()["Properties"]
    acl_metric = resolve(acl["VisibilityConfig"]["MetricName"], {}, DASHBOARD_REFS)
    rule_metrics = {r["VisibilityConfig"]["MetricName"] for r in acl["Rules"] if "Block" in r["Action"]}
    shown = set()
    for namespace, name, dims, _ in dashboard_metrics(dashboard(True)):
        if namespace == "AWS/WAFV2":
            dims = dict(dims)
            assert dims["WebACL"] == acl_metric and dims["Region"] == "eu-west-1"
            shown.add(dims["Rule"])
    assert rule_metrics <= shown


def test_the_dashboard_is_named_in_the_outputs():
    outputs = load_template()["Outputs"]
    assert outputs["DashboardName"]["Value"] == {"Ref": "Dashboard"}
    assert "#dashboards/dashboard/${Dashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]


# ---------------------------------------------------------------- Architecture

# ELF e_machine of each Lambda architecture.
ELF_MACHINE = {"arm64": 0xB7, "x86_64": 0x3E}
BUILD_DIR = ROOT / ".aws-sam" / "build"


def samconfig_overrides(command):
    """The parameter overrides SAM CLI gives `command` from samconfig.toml: the command's own
    section replaces the global one (samcli.lib.config.samconfig.SamConfig.get_all)."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    parameters = dict(config.get("global", {}).get("parameters", {}))
    parameters.update(config.get(command, {}).get("parameters", {}))
    overrides = {}
    for item in shlex.split(parameters.get("parameter_overrides", "")):
        key, _, value = item.partition("=")
        overrides[key] = value
    return overrides


def deployed_architecture(template, function):
    """The architecture `sam deploy` gives `function`: its own or the global Architectures,
    with Ref resolved by samconfig's deploy overrides or else the parameter default."""
    properties = template["Resources"][function]["Properties"]
    architectures = properties.get("Architectures") or template["Globals"]["Function"].get("Architectures", ["x86_64"])
    (architecture,) = architectures
    if isinstance(architecture, dict):
        parameter = architecture["Ref"]
        architecture = samconfig_overrides("deploy").get(parameter, template["Parameters"][parameter]["Default"])
    return architecture


def functions(template):
    return sorted(name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function")


def test_build_deploy_and_sync_read_one_architecture():
    template = load_template()
    allowed = template["Parameters"]["Architecture"]["AllowedValues"]
    values = {command: samconfig_overrides(command).get("Architecture") for command in ("build", "deploy", "sync")}
    assert len(set(values.values())) == 1, values
    assert values["build"] in allowed, values
    assert template["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]


def test_release_bootstraps_match_the_architecture_sam_deploy_gives_the_functions():
    built_template = BUILD_DIR / "template.yaml"
    if not built_template.exists():
        pytest.fail(
            "No release build in .aws-sam/build, so the bootstraps sam deploy would upload "
            "cannot be checked: run `make release` (`make test` does when none exists)."
        )
    built = load_template(built_template)
    assert functions(built) == functions(load_template()), "stale build: run `make release`"
    for function in functions(built):
        architecture = deployed_architecture(built, function)
        bootstrap = BUILD_DIR / built["Resources"][function]["Properties"]["CodeUri"] / "bootstrap"
        header = bootstrap.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", f"{bootstrap} is not an ELF executable"
        assert header[5] == 1, f"{bootstrap} is not little-endian"
        machine = int.from_bytes(header[18:20], "little")
        assert machine == ELF_MACHINE[architecture], (
            f"{function}: bootstrap is {next((a for a, m in ELF_MACHINE.items() if m == machine), hex(machine))}, "
            f"sam deploy would give the function {architecture}: run `make release` "
            f"(or `make release ARCH={architecture}`)"
        )


def test_table_ttl_names_an_attribute_items_carry_at_their_top_level():
    """A TTL on an attribute no item has deletes nothing: the TTL attribute must be the one the
    store writes at the top level of the items that expire (the jti markers)."""
    tables = [r for r in load_template()["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert tables
    source = (ROOT / "shared" / "src" / "store" / "single_use.rs").read_text()
    marker = re.search(r'pub const MARKER_EXPIRES: &str = "(\w+)";', source).group(1)
    # The marker item (a client assertion's or a DPoP proof's jti) is written with that
    # attribute at its top level.
    assert "(MARKER_EXPIRES.to_owned(), n(used.until))" in source
    for table in tables:
        ttl = table["Properties"]["TimeToLiveSpecification"]
        assert ttl == {"AttributeName": marker, "Enabled": True}, ttl
