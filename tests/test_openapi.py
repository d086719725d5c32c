"""infra/openapi.yaml: a valid OpenAPI 3.1 document that is true of the running API.

The document is checked on its own (OpenAPI 3.1 validity, every route of template.yaml,
every fixed text of shared/src/error.rs among the examples), then real responses of the
local stack are validated against it with openapi-core: the status is documented for the
operation, the body validates against the documented schema, every documented required
header is present and every documented header that is present validates. Error bodies
must also equal one of the documented examples, so the examples list every sentence the
API sends.
"""

import re
from pathlib import Path

import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_document
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

import e2e_helpers as h

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "infra" / "openapi.yaml"
CONTRACT_STATUSES = {"200", "400", "401", "404", "429", "500"}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def load_document():
    return yaml.safe_load(DOCUMENT.read_text())


def resolve(doc, node):
    """`node` with every local `$ref` replaced by its target (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(doc, target)
        return {key: resolve(doc, value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(doc, item) for item in node]
    return node


def documented_response(doc, path, method, status):
    return resolve(doc, doc["paths"][path][method]["responses"][str(status)])


def example_bodies(response_object):
    media = response_object.get("content", {}).get("application/json", {})
    return [example["value"] for example in media.get("examples", {}).values()]


# -- the document itself ---------------------------------------------------------------------
def test_document_is_valid_openapi_3_1():
    doc = load_document()
    assert doc["openapi"].startswith("3.1.")
    try:
        validate_document(doc)
    except OpenAPIValidationError as err:  # pragma: no cover - the message is the point
        pytest.fail(f"infra/openapi.yaml is not valid OpenAPI 3.1: {err}")
    OpenAPI.from_dict(doc)  # openapi-core accepts it too


def test_only_contract_statuses_are_documented():
    doc = load_document()
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                statuses = set(item[method]["responses"])
                assert statuses <= CONTRACT_STATUSES, (path, method, statuses)


def test_every_example_validates_against_its_schema():
    doc = load_document()
    responses = [resolve(doc, r) for r in doc["components"]["responses"].values()]
    for path_item in doc["paths"].values():
        for method in METHODS:
            responses += [resolve(doc, r) for r in path_item.get(method, {}).get("responses", {}).values()]
    checked = 0
    for response in responses:
        media = response.get("content", {}).get("application/json")
        if not media:
            continue
        validator = OAS31Validator(media["schema"])
        for example in media.get("examples", {}).values():
            validator.validate(example["value"])
            checked += 1
    assert checked >= 20


class _IgnoreTags(yaml.SafeLoader):
    """Reads template.yaml without knowing the CloudFormation short-form tags."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_every_route_of_the_template_is_documented():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_IgnoreTags)
    routes = set()
    for resource in template["Resources"].values():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            if event["Type"] == "Api" and event["Properties"]["Path"] != "/{proxy+}":
                routes.add((event["Properties"]["Path"], event["Properties"]["Method"].lower()))
    doc = load_document()
    for path, method in routes:
        assert path in doc["paths"], path
        if method == "any":
            assert {"get", "post", "put", "patch", "delete", "options", "head"} <= set(doc["paths"][path]), path
        else:
            assert method in doc["paths"][path], (path, method)
    assert set(doc["paths"]) == {path for path, _ in routes}


def test_every_fixed_text_of_the_implementation_is_an_example():
    source = (ROOT / "shared" / "src" / "error.rs").read_text()
    texts = {name: re.sub(r"\\(.)", r"\1", text)  # the Rust escapes (\") undone
             for name, text in re.findall(r'pub const (\w+): &str\s*=\s*"((?:[^"\\]|\\.)*)";', source)}
    assert len(texts) >= 15, texts
    doc = load_document()
    sentences = set()
    for response in doc["components"]["responses"].values():
        for body in example_bodies(resolve(doc, response)):
            if "error" in body:  # error envelopes; the introspection examples are not
                sentences.add(body.get("error_description", body["error"]))
    # The fixed header values (the WWW-Authenticate challenges) are documented header values.
    for header in doc["components"]["headers"].values():
        schema = header["schema"]
        sentences.update(schema.get("enum", [schema.get("const")]))
    missing = {name: text for name, text in texts.items() if text not in sentences}
    assert not missing, f"fixed texts of shared/src/error.rs without an example in infra/openapi.yaml: {missing}"


# -- real responses --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc():
    return load_document()


@pytest.fixture(scope="module")
def api(stack, doc):
    local = dict(doc, servers=[{"url": stack.api_url}])
    return OpenAPI.from_dict(local)


def check(api, doc, resp, path, request_is_valid=False):
    """`resp` is a documented response of (path, method): status, body, headers, example text."""
    assert str(resp.status_code) in CONTRACT_STATUSES, h.describe(resp)
    openapi_request = RequestsOpenAPIRequest(resp.request)
    if request_is_valid:
        api.validate_request(openapi_request)
    try:
        api.validate_response(openapi_request, RequestsOpenAPIResponse(resp))
    except Exception as err:
        pytest.fail(f"response does not match infra/openapi.yaml: {err!r}\n{h.describe(resp)}")
    method = resp.request.method.lower()
    response_object = documented_response(doc, path, method, resp.status_code)
    if "content" in response_object:
        assert resp.headers.get("Content-Type") in response_object["content"], h.describe(resp)
    else:
        assert resp.content == b"", h.describe(resp)
    if resp.status_code != 200:
        examples = example_bodies(response_object)
        if examples:
            assert resp.json() in examples, f"{resp.json()} is not among the documented examples {examples}"
    return resp


def check_not_found(doc, resp):
    """Responses of undocumented paths/methods: the `NotFound` response of the components."""
    response_object = resolve(doc, doc["components"]["responses"]["NotFound"])
    assert resp.status_code == 404, h.describe(resp)
    assert resp.headers.get("Content-Type") == "application/json", h.describe(resp)
    OAS31Validator(response_object["content"]["application/json"]["schema"]).validate(resp.json())
    assert resp.json() in example_bodies(response_object)
    for name, header in response_object["headers"].items():
        if header.get("required"):
            assert name in resp.headers, (name, h.describe(resp))
        if name in resp.headers:
            OAS31Validator(header["schema"]).validate(resp.headers[name])


TOKEN = "/auth/token"


def test_token_200_client_secret_post(api, doc, stack, customer):
    resp = check(api, doc, h.token(stack, customer.code, customer.api_key, method="post"), TOKEN, True)
    assert resp.status_code == 200


def test_token_200_client_secret_basic(api, doc, stack, customer):
    resp = check(api, doc, h.token(stack, customer.code, customer.api_key, method="basic"), TOKEN, True)
    assert resp.status_code == 200


def test_token_200_json_body(api, doc, stack, customer):
    resp = check(api, doc, h.token(stack, customer.code, customer.api_key, method="json"), TOKEN, True)
    assert resp.status_code == 200


def _private_key_jwt_body(stack, customer, tmp_path):
    import json as _json

    from authlib.oauth2.rfc7523 import private_key_jwt_sign
    from joserfc.jwk import OKPKey

    key = OKPKey.generate_key("Ed25519")
    path = tmp_path / "key.jwk"
    path.write_text(_json.dumps(key.as_dict(private=False)))
    h.admin_ok(stack, "keys", "add-jwk", "--code", customer.code, "--jwk-file", str(path))
    assertion = private_key_jwt_sign(key, customer.code, stack.api_url + TOKEN, alg="EdDSA")
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def test_token_200_private_key_jwt(api, doc, stack, customer, tmp_path):
    body = _private_key_jwt_body(stack, customer, tmp_path)
    resp = check(api, doc, h.post(stack, TOKEN, data=body), TOKEN, True)
    assert resp.status_code == 200
    replay = check(api, doc, h.post(stack, TOKEN, data=body), TOKEN)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


def test_token_400_incomplete_assertion(api, doc, stack, customer, tmp_path):
    body = _private_key_jwt_body(stack, customer, tmp_path)
    del body["client_assertion_type"]
    resp = check(api, doc, h.post(stack, TOKEN, data=body), TOKEN)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


def test_token_200_for_the_demo_customer(api, doc, stack):
    demo = stack.demo
    resp = check(api, doc, h.token(stack, demo["customer_code"], demo["api_key"]), TOKEN, True)
    assert resp.status_code == 200


def test_token_400_invalid_request(api, doc, stack):
    resp = h.post(stack, TOKEN, data=b"grant_type=client_credentials", headers={"Content-Type": h.FORM})
    check(api, doc, resp, TOKEN)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


def test_token_400_invalid_request_content_type(api, doc, stack):
    resp = h.post(stack, TOKEN, data=b"grant_type=client_credentials", headers={"Content-Type": "text/plain"})
    check(api, doc, resp, TOKEN)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


def test_token_400_unsupported_grant_type(api, doc, stack, customer):
    resp = h.token(stack, customer.code, customer.api_key, extra={"grant_type": "password"})
    check(api, doc, resp, TOKEN)
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"


def test_token_400_invalid_scope_carries_rate_limit_fields(api, doc, stack, customer):
    resp = check(api, doc, h.token(stack, customer.code, customer.api_key, scope="admin"), TOKEN)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"
    assert "X-RateLimit-Limit" in resp.headers


def test_token_401_invalid_client_post(api, doc, stack, customer):
    resp = check(api, doc, h.token(stack, customer.code, "kiss_sk_wrong"), TOKEN)
    assert resp.status_code == 401 and "WWW-Authenticate" not in resp.headers


def test_token_401_invalid_client_basic(api, doc, stack, customer):
    resp = check(api, doc, h.token(stack, customer.code, "kiss_sk_wrong", method="basic"), TOKEN)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == h.BASIC_CHALLENGE


def test_token_429(api, doc, stack, customer):
    h.set_limits(stack, customer.code, token_per_minute=1)
    h.ensure_window_room()
    check(api, doc, h.token(stack, customer.code, customer.api_key), TOKEN)
    resp = check(api, doc, h.token(stack, customer.code, customer.api_key), TOKEN)
    assert resp.status_code == 429 and "Retry-After" in resp.headers


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_token_endpoint_other_methods_400(api, doc, stack, method):
    resp = check(api, doc, h.http(stack, method, TOKEN), TOKEN)
    assert resp.status_code == 400


REVOKE = "/auth/revoke"
INTROSPECT = "/auth/introspect"


@pytest.mark.parametrize("method", ["post", "basic", "json"])
def test_revoke_200_own_token(api, doc, stack, customer, method):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = check(api, doc, h.revoke(stack, customer.code, customer.api_key, tok, method=method, hint="access_token"),
                 REVOKE, True)
    h.assert_revocation_200(resp)
    h.assert_bearer_401(h.get_customer(stack, tok))


def test_revoke_200_garbage_token(api, doc, stack, customer):
    resp = check(api, doc, h.revoke(stack, customer.code, customer.api_key, "not-a-token"), REVOKE, True)
    h.assert_revocation_200(resp)


@pytest.mark.parametrize("method", ["post", "basic", "json"])
def test_introspect_200_active(api, doc, stack, customer, method):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = check(api, doc, h.introspect(stack, customer.code, customer.api_key, tok, method=method), INTROSPECT, True)
    h.assert_introspection(resp, h.active_introspection(stack, tok))


def test_introspect_200_inactive(api, doc, stack, customer):
    resp = check(api, doc, h.introspect(stack, customer.code, customer.api_key, "not-a-token"), INTROSPECT, True)
    h.assert_introspection(resp, h.INACTIVE)


@pytest.mark.parametrize("path", [REVOKE, INTROSPECT])
def test_token_operation_400_token_required(api, doc, stack, customer, path):
    resp = check(api, doc, h.token_operation(stack, path, customer.code, customer.api_key, None), path)
    h.assert_oauth_error(resp, 400, "invalid_request", h.TOKEN_REQUIRED)


@pytest.mark.parametrize("path", [REVOKE, INTROSPECT])
def test_token_operation_400_credentials_and_content_type(api, doc, stack, path):
    resp = check(api, doc, h.post(stack, path, data=b"token=abc", headers={"Content-Type": h.FORM}), path)
    h.assert_oauth_error(resp, 400, "invalid_request", h.CREDENTIALS_REQUIRED)
    resp = check(api, doc, h.post(stack, path, data=b"token=abc", headers={"Content-Type": "text/plain"}), path)
    h.assert_oauth_error(resp, 400, "invalid_request", h.BAD_CONTENT_TYPE)


@pytest.mark.parametrize("path", [REVOKE, INTROSPECT])
def test_token_operation_401_invalid_client_post(api, doc, stack, customer, path):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = check(api, doc, h.token_operation(stack, path, customer.code, "kiss_sk_wrong", tok), path)
    h.assert_oauth_error(resp, 401, "invalid_client", h.INVALID_CLIENT)
    assert "X-RateLimit-Limit" not in resp.headers


@pytest.mark.parametrize("path", [REVOKE, INTROSPECT])
def test_token_operation_401_invalid_client_basic(api, doc, stack, customer, path):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = check(api, doc, h.token_operation(stack, path, customer.code, "kiss_sk_wrong", tok, method="basic"), path)
    h.assert_oauth_error(resp, 401, "invalid_client", h.INVALID_CLIENT, basic_challenge=True)


@pytest.mark.parametrize("path", [REVOKE, INTROSPECT])
def test_token_operation_429(api, doc, stack, customer, path):
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.set_limits(stack, customer.code, token_per_minute=1)
    h.ensure_window_room()
    check(api, doc, h.token_operation(stack, path, customer.code, customer.api_key, "not-a-token"), path)
    resp = check(api, doc, h.token_operation(stack, path, customer.code, customer.api_key, tok), path)
    h.assert_oauth_error(resp, 429, "too_many_requests", h.TOO_MANY_TOKEN_REQUESTS)
    assert int(resp.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("path", [REVOKE, INTROSPECT])
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_token_operation_other_methods_400(api, doc, stack, path, method):
    resp = check(api, doc, h.http(stack, method, path), path)
    h.assert_oauth_error(resp, 400, "invalid_request", h.ENDPOINT_ONLY_POST)


def test_jwks_200(api, doc, stack):
    resp = check(api, doc, h.get(stack, "/.well-known/jwks.json"), "/.well-known/jwks.json", True)
    assert resp.status_code == 200 and resp.json()["keys"]


def test_authorization_server_metadata_200(api, doc, stack):
    path = "/.well-known/oauth-authorization-server"
    resp = check(api, doc, h.get(stack, path), path, True)
    assert resp.status_code == 200


def test_customer_200(api, doc, stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = check(api, doc, h.get_customer(stack, tok), "/customer", True)
    assert resp.status_code == 200


def test_customer_by_code_200(api, doc, stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = check(api, doc, h.get_customer(stack, tok, f"/customers/{customer.code}"), "/customers/{customer_code}", True)
    assert resp.status_code == 200


def test_customer_by_other_code_404(api, doc, stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = check(api, doc, h.get_customer(stack, tok, "/customers/SOMEONE-ELSE"), "/customers/{customer_code}")
    assert resp.status_code == 404


def test_deleted_customer_404(api, doc, stack):
    c = h.new_customer(stack)
    tok = h.access_token(stack, c.code, c.api_key)
    h.admin_ok(stack, "customers", "delete", "--code", c.code)
    resp = check(api, doc, h.get_customer(stack, tok), "/customer")
    assert resp.status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic Zm9vOmJhcg=="])
def test_customer_401_bearer(api, doc, stack, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    resp = check(api, doc, h.get(stack, "/customer", headers=headers), "/customer")
    assert resp.status_code == 401


def test_suspended_customer_401_has_no_rate_limit_fields(api, doc, stack):
    c = h.new_customer(stack)
    tok = h.access_token(stack, c.code, c.api_key)
    h.admin_ok(stack, "customers", "suspend", "--code", c.code)
    resp = check(api, doc, h.get_customer(stack, tok), "/customer")
    assert resp.status_code == 401 and "X-RateLimit-Limit" not in resp.headers


def test_customer_429(api, doc, stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.set_limits(stack, customer.code, api_per_minute=1)
    h.ensure_window_room()
    check(api, doc, h.get_customer(stack, tok), "/customer")
    resp = check(api, doc, h.get_customer(stack, tok), "/customer")
    assert resp.status_code == 429 and "Retry-After" in resp.headers


def test_unknown_path_is_not_in_the_document(api, stack):
    resp = h.get(stack, "/no/such/path")
    with pytest.raises(PathNotFound):
        api.validate_response(RequestsOpenAPIRequest(resp.request), RequestsOpenAPIResponse(resp))


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/no/such/path"),
        ("GET", "/customers"),
        ("GET", "/customers/DEMO-CUSTOMER/extra"),
        ("POST", "/customer"),
        ("DELETE", "/customers/DEMO-CUSTOMER"),
        ("POST", "/.well-known/jwks.json"),
        ("POST", "/.well-known/oauth-protected-resource"),
    ],
)
def test_unknown_path_or_method_404(doc, stack, method, path):
    check_not_found(doc, h.http(stack, method, path))


# -- DPoP (RFC 9449) and the protected-resource metadata (RFC 9728) ---------------------------
def dpop_bound(stack, customer, curve="Ed25519"):
    key = h.ProofKey(curve)
    return key, h.dpop_access_token(stack, customer.code, customer.api_key, key)


@pytest.mark.parametrize("method", ["post", "basic", "json"])
def test_token_200_dpop(api, doc, stack, customer, method):
    resp = h.dpop_token(stack, customer.code, customer.api_key, h.ProofKey("P-256"), method=method)
    check(api, doc, resp, TOKEN, True)
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP"


def test_token_400_invalid_dpop_proof_carries_rate_limit_fields(api, doc, stack, customer):
    resp = check(api, doc, h.dpop_token(stack, customer.code, customer.api_key, proof="not-a-proof"), TOKEN)
    h.assert_invalid_dpop_proof_400(resp)


@pytest.mark.parametrize("path", ["/customer", "/customers/{customer_code}"])
def test_customer_200_dpop(api, doc, stack, customer, path):
    key, tok = dpop_bound(stack, customer)
    resp = check(api, doc, h.dpop_get(stack, tok, key, path.format(customer_code=customer.code)), path, True)
    assert resp.status_code == 200


def test_customer_401_dpop_invalid_token(api, doc, stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)  # unbound
    resp = check(api, doc, h.dpop_get(stack, tok, h.ProofKey()), "/customer")
    h.assert_dpop_401(resp, h.DPOP_INVALID_TOKEN)


def test_customer_401_dpop_invalid_dpop_proof(api, doc, stack, customer):
    key, tok = dpop_bound(stack, customer)
    resp = check(api, doc, h.dpop_get(stack, tok, h.ProofKey()), "/customer")
    h.assert_dpop_401(resp, h.DPOP_INVALID_PROOF)
    resp = check(api, doc, h.dpop_get(stack, tok, path=f"/customers/{customer.code}"), "/customers/{customer_code}")
    h.assert_dpop_401(resp, h.DPOP_INVALID_PROOF)


def test_customer_401_bound_token_as_bearer(api, doc, stack, customer):
    _, tok = dpop_bound(stack, customer)
    h.assert_bearer_401(check(api, doc, h.get_customer(stack, tok), "/customer"))


def test_customer_404_and_429_dpop(api, doc, stack, customer):
    key, tok = dpop_bound(stack, customer)
    resp = check(api, doc, h.dpop_get(stack, tok, key, "/customers/SOMEONE-ELSE"), "/customers/{customer_code}")
    assert resp.status_code == 404
    h.set_limits(stack, customer.code, api_per_minute=1)
    h.ensure_window_room()
    check(api, doc, h.dpop_get(stack, tok, key), "/customer")
    resp = check(api, doc, h.dpop_get(stack, tok, key), "/customer")
    assert resp.status_code == 429


def test_introspect_200_active_dpop(api, doc, stack, customer):
    key, tok = dpop_bound(stack, customer, "P-256")
    resp = check(api, doc, h.introspect(stack, customer.code, customer.api_key, tok), INTROSPECT, True)
    assert resp.json()["token_type"] == "DPoP" and resp.json()["cnf"] == {"jkt": key.thumbprint}


def test_protected_resource_metadata_200(api, doc, stack):
    path = "/.well-known/oauth-protected-resource"
    resp = check(api, doc, h.get(stack, path), path, True)
    assert resp.status_code == 200 and resp.json()["resource"] == stack.api_url


def test_authorization_server_metadata_lists_dpop_algs(api, doc, stack):
    path = "/.well-known/oauth-authorization-server"
    resp = check(api, doc, h.get(stack, path), path, True)
    assert resp.json()["dpop_signing_alg_values_supported"] == ["EdDSA", "Ed25519", "ES256"]
