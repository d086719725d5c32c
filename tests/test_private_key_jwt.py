"""private_key_jwt (RFC 7523) end to end: `customer-admin keys add-jwk`, a standard client
library (authlib's PrivateKeyJWT with Ed25519, P-256 and RSA keys, its default 3,600 s
assertions), the README's openssl commands, replays, revocation of a JWK, and the token
lifecycle endpoints with the same client authentication."""

import json
import os
import subprocess
import uuid

import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey, OKPKey, RSAKey

import e2e_helpers as h

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def register(stack, tmp_path, code, public_jwk, *extra):
    path = tmp_path / f"{uuid.uuid4().hex}.jwk"
    path.write_text(json.dumps(public_jwk))
    return h.admin_raw(stack, "keys", "add-jwk", "--code", code, "--jwk-file", str(path), *extra)


def register_ok(stack, tmp_path, code, public_jwk, *extra):
    done = register(stack, tmp_path, code, public_jwk, *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def session(stack, code, key, alg):
    endpoint = stack.api_url + "/auth/token"
    return OAuth2Session(
        code,
        key,
        token_endpoint_auth_method=PrivateKeyJWT(endpoint, alg=alg),
        revocation_endpoint_auth_method=PrivateKeyJWT(endpoint, alg=alg),
    )


KEYS = {
    "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
    "ES256": lambda: ECKey.generate_key("P-256"),
    "RS256": lambda: RSAKey.generate_key(2048),
    "PS256": lambda: RSAKey.generate_key(2048),
}


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_authlib_private_key_jwt_gets_a_token_and_reads_the_record(stack, customer, tmp_path, alg):
    key = KEYS[alg]()
    public = key.as_dict(private=False)
    if alg == "PS256":
        public["alg"] = "PS256"  # an RSA JWK without alg is registered for RS256
    registered = register_ok(stack, tmp_path, customer.code, public)
    assert set(registered) == {"key_id", "kty", "alg"}
    assert registered["alg"] == alg and registered["key_id"].startswith("key_")
    client = session(stack, customer.code, key, alg)
    issued = client.fetch_token(stack.api_url + "/auth/token", grant_type="client_credentials")
    assert issued["token_type"] == "Bearer" and issued["scope"] == "customer:read"
    claims = h.jwt_parts(issued["access_token"])[1]
    assert claims["key_id"] == registered["key_id"] and claims["sub"] == customer.code
    resp = client.get(stack.api_url + "/customer", timeout=h.TIMEOUT)
    assert resp.status_code == 200 and resp.json()["customer_code"] == customer.code


def test_the_readme_openssl_commands_register_a_key_authlib_can_use(stack, customer, tmp_path):
    # README, "Client authentication without a shared secret": openssl makes the key pair,
    # a few lines of Python (cryptography) turn the public half into a JWK.
    pem = tmp_path / "key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem)], check=True)
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": h.b64url_encode(raw)}
    key_id = register_ok(stack, tmp_path, customer.code, jwk)["key_id"]
    client = session(stack, customer.code, OKPKey.import_key(pem.read_text()), "EdDSA")
    issued = client.fetch_token(stack.api_url + "/auth/token", grant_type="client_credentials")
    assert h.jwt_parts(issued["access_token"])[1]["key_id"] == key_id


def raw_assertion_request(stack, assertion, code=None):
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    if code:
        data["client_id"] = code
    return h.post(stack, "/auth/token", data=data)


def test_a_replayed_assertion_is_invalid_client_and_counts_nothing(stack, customer, tmp_path):
    key = OKPKey.generate_key("Ed25519")
    register_ok(stack, tmp_path, customer.code, key.as_dict(private=False))
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    assertion = private_key_jwt_sign(key, customer.code, stack.api_url + "/auth/token", alg="EdDSA")
    first = raw_assertion_request(stack, assertion, customer.code)
    assert first.status_code == 200, h.describe(first)
    remaining = first.headers["X-RateLimit-Remaining"]
    replay = raw_assertion_request(stack, assertion, customer.code)
    h.assert_oauth_error(replay, 401, "invalid_client", h.INVALID_CLIENT)
    assert "X-RateLimit-Remaining" not in replay.headers
    again = h.token(stack, customer.code, customer.api_key)
    assert int(again.headers["X-RateLimit-Remaining"]) in (int(remaining) - 1, h.SUITE_TOKEN_LIMIT - 1)


def test_a_revoked_jwk_authenticates_nothing_and_its_tokens_stop(stack, customer, tmp_path):
    key = ECKey.generate_key("P-256")
    key_id = register_ok(stack, tmp_path, customer.code, key.as_dict(private=False))["key_id"]
    client = session(stack, customer.code, key, "ES256")
    token = client.fetch_token(stack.api_url + "/auth/token", grant_type="client_credentials")["access_token"]
    shown = h.admin_ok(stack, "customers", "show", "--code", customer.code)
    types = {k["key_id"]: k["type"] for k in shown["keys"]}
    assert types == {customer.key_id: "api_key", key_id: "jwk"}
    h.admin_ok(stack, "keys", "revoke", "--code", customer.code, "--key-id", key_id)
    h.assert_bearer_401(h.get_customer(stack, token))
    with pytest.raises(Exception) as refused:
        client.fetch_token(stack.api_url + "/auth/token", grant_type="client_credentials")
    assert getattr(refused.value, "error", None) == "invalid_client"


def test_add_jwk_refuses_private_short_duplicate_and_sixth_keys(stack, customer, tmp_path):
    def shown_keys():
        return h.admin_ok(stack, "customers", "show", "--code", customer.code)["keys"]

    before = shown_keys()
    private = OKPKey.generate_key("Ed25519").as_dict(private=True)
    for bad in [private, {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]:
        done = register(stack, tmp_path, customer.code, bad)
        assert done.returncode == 2, done.stderr
        assert json.loads(done.stdout).keys() == {"error"}
    short = RSAKey.generate_key(1024).as_dict(private=False)
    assert register(stack, tmp_path, customer.code, short).returncode == 2
    assert shown_keys() == before, "nothing stored"
    first = OKPKey.generate_key("Ed25519").as_dict(private=False)
    register_ok(stack, tmp_path, customer.code, first, "--expires", "90d")
    assert register(stack, tmp_path, customer.code, first).returncode == 2, "already registered"
    for _ in range(4):
        register_ok(stack, tmp_path, customer.code, OKPKey.generate_key("Ed25519").as_dict(private=False))
    sixth = register(stack, tmp_path, customer.code, OKPKey.generate_key("Ed25519").as_dict(private=False))
    assert sixth.returncode == 2 and "at most 5" in sixth.stderr
    jwks = [k for k in shown_keys() if k["type"] == "jwk"]
    assert len(jwks) == 5 and sum(1 for k in jwks if k["expires_at"]) == 1


def test_revoke_and_introspect_with_private_key_jwt(stack, customer, tmp_path):
    key = OKPKey.generate_key("Ed25519")
    register_ok(stack, tmp_path, customer.code, key.as_dict(private=False))
    client = session(stack, customer.code, key, "EdDSA")
    token = client.fetch_token(stack.api_url + "/auth/token", grant_type="client_credentials")["access_token"]
    # RFC 7523 assertions name the token endpoint as audience, whatever endpoint they go to.
    introspected = client.introspect_token(stack.api_url + "/auth/introspect", token=token)
    assert introspected.status_code == 200 and introspected.json()["active"] is True
    revoked = client.revoke_token(stack.api_url + "/auth/revoke", token=token)
    assert revoked.status_code == 200 and revoked.content == b""
    h.assert_bearer_401(h.get_customer(stack, token))


def test_metadata_lists_private_key_jwt(stack):
    doc = h.get(stack, "/.well-known/oauth-authorization-server").json()
    for endpoint in ("token", "revocation", "introspection"):
        assert "private_key_jwt" in doc[f"{endpoint}_endpoint_auth_methods_supported"]
        assert {"EdDSA", "Ed25519", "ES256"} <= set(doc[f"{endpoint}_endpoint_auth_signing_alg_values_supported"])


def test_oauth4webapi_with_a_webcrypto_ed25519_key(stack, customer):
    """panva's oauth4webapi, unmodified (tests/interop/oauth4webapi.mjs): its PrivateKeyJwt with
    a WebCrypto Ed25519 key, then its introspection and revocation helpers."""
    entry = h.stack_root() / ".tools" / "node" / "node_modules" / "oauth4webapi" / "build" / "index.js"
    assert entry.exists(), "oauth4webapi is missing: `make test` installs it (.tools/node)"
    env = {
        **os.environ,
        **stack.aws_env(),
        "CUSTOMER_API_URL": stack.api_url,
        "CUSTOMER_ADMIN": str(h.stack_root() / "target" / "debug" / "customer-admin"),
        "CUSTOMER_CODE": customer.code,
        "OAUTH4WEBAPI": entry.as_uri(),
    }
    script = h.stack_root() / "tests" / "interop" / "oauth4webapi.mjs"
    done = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout)
    assert seen["exported_jwk"]["kty"] == "OKP" and "d" not in seen["exported_jwk"]
    assert seen["registered"]["kty"] == "OKP" and seen["registered"]["alg"] == "EdDSA"
    assert (seen["token_type"].lower(), seen["scope"]) == ("bearer", "customer:read")
    assert seen["lookup_before"] == 200
    assert seen["introspected_active"] is True and seen["introspected_sub"] == customer.code
    assert seen["lookup_after_revocation"] == 401
