"""The SAM template keeps every gateway-generated error inside the published contract."""

import json
from pathlib import Path

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
