"""POST /auth/token and the public documents over real HTTP (docs/contract.md: Routes, Error envelopes, Token endpoint, Rate limits)."""

import base64
import json
import time

import pytest
from authlib.integrations.requests_client import OAuth2Session
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import e2e_helpers as h
from e2e_helpers import FORM


def form(**params):
    return "&".join(f"{k}={v}" for k, v in params.items()).encode()


def raw_post(stack, body, content_type=FORM, headers=None):
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return h.post(stack, "/auth/token", data=body, headers=all_headers)


# -- §3: method ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_token_endpoint_are_invalid_request(stack, customer, method):
    resp = h.http(
        stack, method, "/auth/token",
        data=form(grant_type="client_credentials", client_id=customer.code, client_secret=customer.api_key),
        headers={"Content-Type": FORM},
    )
    h.assert_oauth_error(resp, 400, "invalid_request", h.ONLY_POST)


def test_other_method_with_basic_credentials_gets_no_basic_challenge(stack, customer):
    resp = h.get(stack, "/auth/token", headers={"Authorization": h.basic_header(customer.code, customer.api_key)})
    h.assert_oauth_error(resp, 400, "invalid_request", h.ONLY_POST)


# -- §5 step 2: body size --------------------------------------------------------------------
def test_body_over_8_kib_is_invalid_request(stack, customer):
    body = form(grant_type="client_credentials", client_id=customer.code, client_secret=customer.api_key)
    body += b"&pad=" + b"x" * (8 * 1024 + 1 - len(body) - 5)
    assert len(body) == 8 * 1024 + 1
    h.assert_oauth_error(raw_post(stack, body), 400, "invalid_request", h.BODY_TOO_LARGE)


def test_body_size_is_checked_before_content_type(stack):
    resp = raw_post(stack, b"x" * 9000, content_type="text/plain")
    h.assert_oauth_error(resp, 400, "invalid_request", h.BODY_TOO_LARGE)


def test_body_of_exactly_8_kib_is_accepted(stack, customer):
    body = form(grant_type="client_credentials", client_id=customer.code, client_secret=customer.api_key)
    body += b"&pad=" + b"x" * (8 * 1024 - len(body) - 5)
    assert len(body) == 8 * 1024
    h.assert_token_issued(raw_post(stack, body))


# -- §5 step 3: content type -----------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "multipart/form-data; boundary=x", "application/xml", "application/jsonx", ""],
    ids=["missing", "text-plain", "multipart", "xml", "jsonx", "empty"],
)
def test_missing_or_other_content_type_is_invalid_request(stack, customer, content_type):
    body = form(grant_type="client_credentials", client_id=customer.code, client_secret=customer.api_key)
    resp = raw_post(stack, body, content_type=content_type)
    h.assert_oauth_error(resp, 400, "invalid_request", h.BAD_CONTENT_TYPE)


# -- §5 step 4: parsing ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [b'{"grant_type":', b"not json", b"[]", b'"client_credentials"', b'{"grant_type":5}', b'{"grant_type":null}'],
    ids=["truncated", "not-json", "array", "string", "number-value", "null-value"],
)
def test_malformed_json_body_is_invalid_request(stack, body):
    h.assert_oauth_error(raw_post(stack, body, "application/json"), 400, "invalid_request", h.MALFORMED_BODY)


def test_non_utf8_form_body_is_invalid_request(stack):
    resp = raw_post(stack, b"grant_type=client_credentials&client_id=\xff\xfe")
    h.assert_oauth_error(resp, 400, "invalid_request", h.MALFORMED_BODY)


@pytest.mark.parametrize("repeated", ["grant_type", "client_id", "client_secret", "scope"])
def test_repeated_form_parameter_is_invalid_request(stack, customer, repeated):
    params = [
        ("grant_type", "client_credentials"),
        ("client_id", customer.code),
        ("client_secret", customer.api_key),
        ("scope", "customer:read"),
    ]
    params += [p for p in params if p[0] == repeated]
    body = "&".join(f"{k}={v}" for k, v in params).encode()
    h.assert_oauth_error(raw_post(stack, body), 400, "invalid_request", h.REPEATED_PARAMETER)


def test_repeated_json_member_is_invalid_request(stack, customer):
    body = (
        '{"grant_type":"client_credentials","client_id":"%s","client_secret":"%s","grant_type":"client_credentials"}'
        % (customer.code, customer.api_key)
    ).encode()
    h.assert_oauth_error(raw_post(stack, body, "application/json"), 400, "invalid_request", h.REPEATED_PARAMETER)


# -- §5 step 5: grant type -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["post", "json", "basic"])
def test_missing_grant_type_is_invalid_request(stack, customer, method):
    if method == "json":
        resp = raw_post(stack, json.dumps({"client_id": customer.code, "client_secret": customer.api_key}).encode(),
                        "application/json")
    elif method == "basic":
        resp = raw_post(stack, b"", headers={"Authorization": h.basic_header(customer.code, customer.api_key)})
    else:
        resp = raw_post(stack, form(client_id=customer.code, client_secret=customer.api_key))
    h.assert_oauth_error(resp, 400, "invalid_request", h.GRANT_TYPE_REQUIRED)


def test_empty_grant_type_counts_as_missing(stack, customer):
    # RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
    resp = raw_post(stack, form(grant_type="", client_id=customer.code, client_secret=customer.api_key))
    h.assert_oauth_error(resp, 400, "invalid_request", h.GRANT_TYPE_REQUIRED)


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token", "CLIENT_CREDENTIALS",
                                        "client_credentials%20"])
def test_unsupported_grant_type(stack, customer, grant_type):
    resp = raw_post(stack, form(grant_type=grant_type, client_id=customer.code, client_secret=customer.api_key))
    h.assert_oauth_error(resp, 400, "unsupported_grant_type", h.UNSUPPORTED_GRANT_TYPE)


def test_unsupported_grant_type_in_json_body(stack, customer):
    body = json.dumps({"grant_type": "password", "client_id": customer.code, "client_secret": customer.api_key})
    h.assert_oauth_error(raw_post(stack, body.encode(), "application/json"), 400, "unsupported_grant_type",
                         h.UNSUPPORTED_GRANT_TYPE)


def test_grant_type_is_checked_before_credentials(stack):
    h.assert_oauth_error(raw_post(stack, b"grant_type=password"), 400, "unsupported_grant_type",
                         h.UNSUPPORTED_GRANT_TYPE)


# -- §5 step 6: credentials ------------------------------------------------------------------
@pytest.mark.parametrize(
    "case",
    ["none", "only-client_id", "only-client_secret", "empty-client_id", "empty-client_secret", "json-none",
     "json-empty-secret", "basic-empty-secret", "basic-empty-id"],
)
def test_missing_or_empty_credentials_are_invalid_request(stack, customer, case):
    code, key = customer.code, customer.api_key
    grant = "grant_type=client_credentials"
    requests_by_case = {
        "none": lambda: raw_post(stack, grant.encode()),
        "only-client_id": lambda: raw_post(stack, f"{grant}&client_id={code}".encode()),
        "only-client_secret": lambda: raw_post(stack, f"{grant}&client_secret={key}".encode()),
        "empty-client_id": lambda: raw_post(stack, f"{grant}&client_id=&client_secret={key}".encode()),
        "empty-client_secret": lambda: raw_post(stack, f"{grant}&client_id={code}&client_secret=".encode()),
        "json-none": lambda: raw_post(stack, b'{"grant_type":"client_credentials"}', "application/json"),
        "json-empty-secret": lambda: raw_post(
            stack, json.dumps({"grant_type": "client_credentials", "client_id": code, "client_secret": ""}).encode(),
            "application/json"),
        "basic-empty-secret": lambda: raw_post(stack, grant.encode(),
                                               headers={"Authorization": h.basic_header(code, "")}),
        "basic-empty-id": lambda: raw_post(stack, grant.encode(), headers={"Authorization": h.basic_header("", key)}),
    }
    h.assert_oauth_error(requests_by_case[case](), 400, "invalid_request", h.CREDENTIALS_REQUIRED)


@pytest.mark.parametrize("body_credentials", ["secret", "id-and-secret", "other-id"])
def test_basic_and_body_credentials_together_are_invalid_request(stack, customer, body_credentials):
    code, key = customer.code, customer.api_key
    extra = {
        "secret": f"&client_secret={key}",
        "id-and-secret": f"&client_id={code}&client_secret={key}",
        "other-id": "&client_id=SOMEONE-ELSE",
    }[body_credentials]
    resp = raw_post(stack, f"grant_type=client_credentials{extra}".encode(),
                    headers={"Authorization": h.basic_header(code, key)})
    h.assert_oauth_error(resp, 400, "invalid_request", h.TWO_AUTH_METHODS)


@pytest.mark.parametrize("header", ["Basic !!!notbase64", "Basic " + "bm9jb2xvbg==", "Basic"],
                         ids=["not-base64", "no-colon", "no-credentials"])
def test_malformed_basic_header_is_invalid_request(stack, header):
    resp = raw_post(stack, b"grant_type=client_credentials", headers={"Authorization": header})
    h.assert_oauth_error(resp, 400, "invalid_request", h.MALFORMED_BASIC)


# -- §5 step 7: verification -----------------------------------------------------------------
def _refused_credentials(stack, case):
    """Credentials the token endpoint must refuse with invalid_client; (code, key)."""
    c = h.new_customer(stack)
    if case == "unknown-customer":
        return h.unique_code("NOBODY"), c.api_key
    if case == "malformed-code":
        return "has space", c.api_key
    if case == "wrong-key":
        other = h.new_customer(stack)  # a real key, of another customer
        return c.code, other.api_key
    if case == "garbage-key":
        return c.code, "kiss_sk_" + "A" * 49
    if case == "suspended":
        h.admin_ok(stack, "customers", "suspend", "--code", c.code)
        return c.code, c.api_key
    if case == "revoked-key":
        h.admin_ok(stack, "keys", "revoke", "--code", c.code, "--key-id", c.key_id)
        return c.code, c.api_key
    if case == "expired-key":
        h.admin_ok(stack, "keys", "rotate", "--code", c.code, "--grace", "0")
        return c.code, c.api_key
    if case == "deleted-customer":
        h.admin_ok(stack, "customers", "delete", "--code", c.code)
        return c.code, c.api_key
    raise AssertionError(case)


REFUSED = ["unknown-customer", "malformed-code", "wrong-key", "garbage-key", "suspended", "revoked-key",
           "expired-key", "deleted-customer"]


@pytest.mark.parametrize("method", ["post", "json", "basic"])
@pytest.mark.parametrize("case", REFUSED)
def test_refused_credentials_get_identical_invalid_client(stack, case, method):
    code, key = _refused_credentials(stack, case)
    resp = h.token(stack, code, key, method=method)
    h.assert_oauth_error(resp, 401, "invalid_client", h.INVALID_CLIENT, basic_challenge=(method == "basic"))
    assert key not in resp.text


def test_credentials_are_checked_before_scope(stack, customer):
    resp = h.token(stack, customer.code, customer.api_key + "x", scope="admin")
    h.assert_oauth_error(resp, 401, "invalid_client", h.INVALID_CLIENT)


# -- success ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,content_type",
    [
        ("post", FORM),
        ("post", FORM + "; charset=utf-8"),
        ("post", "Application/X-WWW-Form-URLEncoded;charset=UTF-8"),
        ("basic", FORM),
        ("basic", FORM + "; charset=utf-8"),
        ("json", "application/json"),
        ("json", "application/json; charset=utf-8"),
    ],
)
def test_client_credentials_grant_issues_token(stack, customer, method, content_type):
    resp = h.token(stack, customer.code, customer.api_key, method=method, content_type=content_type)
    body = h.assert_token_issued(resp)
    assert h.get_customer(stack, body["access_token"]).status_code == 200


def test_basic_credentials_are_form_urlencoded_inside_basic(stack):
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Base64; an encoded `-`/`_`
    # must decode to the same Customer Code.
    c = h.new_customer(stack, code=h.unique_code("T_x"))
    raw = f"{c.code.replace('-', '%2D').replace('_', '%5F')}:{c.api_key}".encode()
    resp = raw_post(stack, b"grant_type=client_credentials",
                    headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})
    h.assert_token_issued(resp)


def test_access_token_is_an_eddsa_at_jwt_with_the_documented_claims(stack, customer):
    before = int(time.time())
    body = h.assert_token_issued(h.token(stack, customer.code, customer.api_key))
    after = int(time.time())
    header, claims, signature = h.jwt_parts(body["access_token"])

    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    jwks = h.get(stack, "/.well-known/jwks.json").json()
    published = {k["kid"]: k for k in jwks["keys"]}
    assert header["kid"] in published

    # The signature verifies with the published public key of that kid.
    public = Ed25519PublicKey.from_public_bytes(h.b64url_decode(published[header["kid"]]["x"]))
    signing_input = body["access_token"].rsplit(".", 1)[0].encode()
    public.verify(signature, signing_input)
    with pytest.raises(InvalidSignature):
        public.verify(signature, signing_input + b"x")

    required = {"iss", "sub", "aud", "client_id", "scope", "iat", "nbf", "exp", "jti", "key_id"}
    assert required <= set(claims), claims
    assert claims["iss"] == stack.api_url
    assert claims["sub"] == customer.code
    assert claims["client_id"] == customer.code
    assert claims["aud"] == h.AUDIENCE
    assert claims["scope"] == "customer:read"
    assert claims["key_id"] == customer.key_id
    assert before - 1 <= claims["iat"] <= after + 1
    assert claims["nbf"] <= claims["iat"] + 1
    assert claims["exp"] - claims["iat"] == 3600
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16

    # jti is random: a second token gets another one.
    second = h.jwt_parts(h.access_token(stack, customer.code, customer.api_key))[1]
    assert second["jti"] != claims["jti"]


def test_token_never_echoes_the_secret(stack, customer):
    resp = h.token(stack, customer.code, customer.api_key)
    assert resp.status_code == 200
    assert customer.api_key not in resp.text
    header, claims, _ = h.jwt_parts(resp.json()["access_token"])
    assert customer.api_key not in json.dumps([header, claims])
    assert h.sha256_hex(customer.api_key) not in json.dumps([header, claims])


# -- §5 step 9: scope ------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["admin", "customer:write", "customer:read admin", "customer:read\\x"])
def test_unknown_scope_is_invalid_scope(stack, customer, scope):
    resp = h.token(stack, customer.code, customer.api_key, scope=scope)
    h.assert_oauth_error(resp, 400, "invalid_scope", h.INVALID_SCOPE)


@pytest.mark.parametrize("method", ["post", "basic", "json"])
def test_requested_scope_customer_read_is_granted(stack, customer, method):
    h.assert_token_issued(h.token(stack, customer.code, customer.api_key, method=method, scope="customer:read"))


def test_absent_scope_grants_all_granted_scopes(stack):
    c = h.new_customer(stack, scopes=["customer:read", "billing:read"])
    body = h.token(stack, c.code, c.api_key).json()
    assert set(body["scope"].split(" ")) == {"customer:read", "billing:read"}
    assert h.jwt_parts(body["access_token"])[1]["scope"] == body["scope"]


def test_scope_can_narrow_the_grant(stack):
    c = h.new_customer(stack, scopes=["customer:read", "billing:read"])
    h.assert_token_issued(h.token(stack, c.code, c.api_key, scope="billing:read"), scope="billing:read")


def test_scope_not_granted_to_this_customer_is_invalid_scope(stack):
    c = h.new_customer(stack, scopes=["billing:read"])
    resp = h.token(stack, c.code, c.api_key, scope="customer:read")
    h.assert_oauth_error(resp, 400, "invalid_scope", h.INVALID_SCOPE)


# -- §8: rate-limit fields on a token response -----------------------------------------------
def test_token_response_carries_rate_limit_fields(stack, customer):
    resp = h.token(stack, customer.code, customer.api_key)
    h.assert_token_issued(resp)
    limit = h.SUITE_TOKEN_LIMIT
    assert resp.headers["X-RateLimit-Limit"] == str(limit)
    assert resp.headers["X-RateLimit-Remaining"] == str(limit - 1)
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert 1 <= reset <= 60
    assert resp.headers["RateLimit-Policy"] == f'"token";q={limit};w=60'
    assert resp.headers["RateLimit"] == f'"token";r={limit - 1};t={reset}'
    assert "Retry-After" not in resp.headers


def test_per_customer_limit_shows_in_rate_limit_fields(stack, customer):
    h.set_limits(stack, customer.code, token_per_minute=7)
    resp = h.token(stack, customer.code, customer.api_key)
    h.assert_token_issued(resp)
    assert resp.headers["X-RateLimit-Limit"] == "7"
    assert resp.headers["X-RateLimit-Remaining"] == "6"
    assert resp.headers["RateLimit-Policy"] == '"token";q=7;w=60'
    assert resp.headers["RateLimit"].startswith('"token";r=6;t=')


# -- a standard OAuth client library ---------------------------------------------------------
@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_standard_oauth_client_obtains_a_token(stack, customer, auth_method):
    client = OAuth2Session(customer.code, customer.api_key, token_endpoint_auth_method=auth_method)
    issued = client.fetch_token(stack.api_url + "/auth/token", grant_type="client_credentials")
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] == 3600
    assert issued["scope"] == "customer:read"
    resp = client.get(stack.api_url + "/customer", timeout=h.TIMEOUT)
    assert resp.status_code == 200
    assert resp.json()["customer_code"] == customer.code


def test_standard_oauth_client_sees_invalid_client(stack, customer):
    client = OAuth2Session(customer.code, customer.api_key + "x", token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(Exception) as raised:
        client.fetch_token(stack.api_url + "/auth/token", grant_type="client_credentials")
    assert getattr(raised.value, "error", None) == "invalid_client"


# -- public documents ------------------------------------------------------------------------
def assert_public_document_headers(resp):
    assert resp.headers.get("Content-Type") == "application/json", h.describe(resp)
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", h.describe(resp)
    cache = resp.headers.get("Cache-Control", "")
    # no-store, or cacheable "for a few minutes" (docs/contract.md, Error envelopes).
    if cache != "no-store":
        directives = dict(
            (d.split("=", 1) + [""])[:2] for d in (p.strip() for p in cache.split(",")) if d
        )
        assert "max-age" in directives, h.describe(resp)
        assert 0 < int(directives["max-age"]) <= 900, h.describe(resp)
        assert "private" not in directives


def test_authorization_server_metadata(stack):
    resp = h.get(stack, "/.well-known/oauth-authorization-server")
    assert resp.status_code == 200, h.describe(resp)
    assert_public_document_headers(resp)
    doc = resp.json()
    assert doc["issuer"] == stack.api_url
    assert doc["token_endpoint"] == stack.api_url + "/auth/token"
    assert doc["jwks_uri"] == stack.api_url + "/.well-known/jwks.json"
    assert doc["grant_types_supported"] == ["client_credentials"]
    # RFC 8414 §2 with RFC 7009 and RFC 7662: the two other OAuth endpoints, and how to
    # authenticate at all three (the same methods and assertion algorithms everywhere).
    assert doc["revocation_endpoint"] == stack.api_url + "/auth/revoke"
    assert doc["introspection_endpoint"] == stack.api_url + "/auth/introspect"
    for endpoint in ("token", "revocation", "introspection"):
        methods = doc[f"{endpoint}_endpoint_auth_methods_supported"]
        assert methods == ["client_secret_basic", "client_secret_post", "private_key_jwt"], (endpoint, doc)
        algs = doc[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert algs == ["EdDSA", "Ed25519", "ES256", "RS256", "PS256"], (endpoint, doc)
    assert "customer:read" in doc["scopes_supported"]
    assert isinstance(doc["response_types_supported"], list)  # REQUIRED by RFC 8414 §2
    assert "authorization_endpoint" not in doc


def test_jwks_publishes_only_public_ed25519_keys(stack):
    resp = h.get(stack, "/.well-known/jwks.json")
    assert resp.status_code == 200, h.describe(resp)
    assert_public_document_headers(resp)
    keys = resp.json()["keys"]
    assert keys, "the JWKS must publish at least the active key"
    for key in keys:
        assert key["kty"] == "OKP"
        assert key["crv"] == "Ed25519"
        assert key["alg"] == "EdDSA"
        assert key.get("use", "sig") == "sig"
        assert isinstance(key["kid"], str) and key["kid"]
        assert len(h.b64url_decode(key["x"])) == 32
        for private in ("d", "p", "q", "dp", "dq", "qi", "k", "private_key"):
            assert private not in key, key
    assert len({k["kid"] for k in keys}) == len(keys)


def test_unknown_well_known_path_is_not_found(stack):
    h.assert_standard_error(h.get(stack, "/.well-known/openid-configuration"), 404, h.NOT_FOUND)
