"""GET /customer and GET /customers/{customer_code} over real HTTP (docs/contract.md: Routes, Error envelopes, Customer lookup, Rate limits)."""

import hashlib
import hmac
import json
import re
import time
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import e2e_helpers as h

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def expected_record(code, created_at, plan="standard", status="active"):
    return {
        "customer_code": code,
        **h.profile(code),
        "status": status,
        "plan": plan,
        "created_at": created_at,
    }


def assert_record(resp, code, plan="standard"):
    assert resp.status_code == 200, h.describe(resp)
    h.assert_json_headers(resp)
    body = resp.json()
    assert set(body) == {"customer_code", "name", "email", "status", "plan", "created_at"}, body
    assert RFC3339_UTC.match(body["created_at"]), body["created_at"]
    created = datetime.strptime(body["created_at"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs(created.timestamp() - time.time()) < 600
    assert body == expected_record(code, body["created_at"], plan=plan)
    return body


# -- 200 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/customer", "/customers/{code}"])
def test_own_record_is_returned(stack, path):
    c = h.new_customer(stack, plan="gold")
    tok = h.access_token(stack, c.code, c.api_key)
    resp = h.get_customer(stack, tok, path.format(code=c.code))
    assert_record(resp, c.code, plan="gold")
    assert "WWW-Authenticate" not in resp.headers
    for secret in (c.api_key, h.sha256_hex(c.api_key), c.key_id):
        assert secret not in resp.text


def test_both_routes_return_the_same_record(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    own = h.get_customer(stack, tok).json()
    by_code = h.get_customer(stack, tok, f"/customers/{customer.code}").json()
    assert own == by_code


def test_bearer_scheme_is_case_insensitive(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = h.get(stack, "/customer", headers={"Authorization": f"bearer {tok}"})
    assert_record(resp, customer.code)


def test_customer_response_carries_api_rate_limit_fields(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = h.get_customer(stack, tok)
    assert resp.status_code == 200
    limit = h.SUITE_API_LIMIT
    assert resp.headers["X-RateLimit-Limit"] == str(limit)
    assert resp.headers["X-RateLimit-Remaining"] == str(limit - 1)
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert 1 <= reset <= 60
    assert resp.headers["RateLimit-Policy"] == f'"api";q={limit};w=60'
    assert resp.headers["RateLimit"] == f'"api";r={limit - 1};t={reset}'
    assert "Retry-After" not in resp.headers


# -- 404 -------------------------------------------------------------------------------------
def test_other_customers_code_is_customer_not_found(stack, customer):
    other = h.new_customer(stack)
    tok = h.access_token(stack, customer.code, customer.api_key)
    existing = h.get_customer(stack, tok, f"/customers/{other.code}")
    missing = h.get_customer(stack, tok, f"/customers/{h.unique_code('NOBODY')}")
    malformed = h.get_customer(stack, tok, "/customers/x")
    for resp in (existing, missing, malformed):
        h.assert_standard_error(resp, 404, h.CUSTOMER_NOT_FOUND)
    # Never reveal that the other customer exists: identical answers.
    assert existing.content == missing.content == malformed.content


def test_code_comparison_is_exact(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = h.get_customer(stack, tok, f"/customers/{customer.code.lower()}")
    h.assert_standard_error(resp, 404, h.CUSTOMER_NOT_FOUND)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/nope"),
        ("GET", "/customers"),
        ("GET", "/customers/"),
        ("GET", "/customer/extra"),
        ("GET", "/customers/{code}/keys"),
        ("POST", "/customer"),
        ("PUT", "/customer"),
        ("DELETE", "/customers/{code}"),
        ("POST", "/customers/{code}"),
        ("POST", "/.well-known/jwks.json"),
    ],
)
def test_unknown_path_or_method_is_not_found(stack, customer, method, path):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = h.http(stack, method, path.format(code=customer.code), headers=h.bearer(tok))
    h.assert_standard_error(resp, 404, h.NOT_FOUND)


def test_unknown_path_without_token_is_not_found(stack):
    h.assert_standard_error(h.get(stack, "/does/not/exist"), 404, h.NOT_FOUND)


# -- bearer 401 ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJub25lIn0.e30.",
        "Token abc",
        "Bearer " + "x" * 5000,
    ],
    ids=["missing", "empty", "scheme-only", "scheme-space", "garbage", "three-parts", "alg-none-empty", "other-scheme",
         "huge"],
)
@pytest.mark.parametrize("path", ["/customer", "/customers/{code}"])
def test_missing_or_garbage_authorization_is_bearer_401(stack, customer, authorization, path):
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = h.get(stack, path.format(code=customer.code), headers=headers)
    h.assert_bearer_401(resp)


def test_basic_authorization_is_bearer_401(stack, customer):
    resp = h.get(stack, "/customer", headers={"Authorization": h.basic_header(customer.code, customer.api_key)})
    h.assert_bearer_401(resp)


def test_api_key_as_bearer_is_bearer_401(stack, customer):
    h.assert_bearer_401(h.get_customer(stack, customer.api_key))


def test_token_with_trailing_garbage_is_bearer_401(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.assert_bearer_401(h.get_customer(stack, tok + "x"))
    h.assert_bearer_401(h.get(stack, "/customer", headers={"Authorization": f"Bearer {tok} extra"}))


def test_token_without_customer_read_scope_is_bearer_401(stack):
    c = h.new_customer(stack, scopes=["billing:read"])
    body = h.token(stack, c.code, c.api_key).json()
    assert body["scope"] == "billing:read"
    h.assert_bearer_401(h.get_customer(stack, body["access_token"]))


# -- JWT attack corpus (docs/contract.md, Access tokens) ---------------------------------------------
def encode(header, claims, sign):
    signing_input = f"{h.b64url_encode(json.dumps(header).encode())}.{h.b64url_encode(json.dumps(claims).encode())}"
    return f"{signing_input}.{h.b64url_encode(sign(signing_input.encode()))}"


def forge(stack, customer, case):
    kid, private = h.signing_key(stack)
    now = int(time.time())
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
    claims = {
        "iss": stack.api_url, "sub": customer.code, "aud": h.AUDIENCE, "client_id": customer.code,
        "scope": "customer:read", "iat": now, "nbf": now, "exp": now + 3600, "jti": "f" * 32,
        "key_id": customer.key_id,
    }
    sign = private.sign
    if case == "expired":
        claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 120)
    elif case == "not-yet-valid":
        claims.update(iat=now, nbf=now + 600)
    elif case == "wrong-iss":
        claims["iss"] = "https://evil.example"
    elif case == "wrong-aud":
        claims["aud"] = "another-api"
    elif case == "aud-list-without-ours":
        claims["aud"] = ["another-api"]
    elif case == "typ-jwt":
        header["typ"] = "JWT"
    elif case == "no-typ":
        del header["typ"]
    elif case == "no-kid":
        del header["kid"]
    elif case == "unknown-kid":
        header["kid"] = "sig_0000000000000000"
    elif case == "foreign-key":
        sign = Ed25519PrivateKey.generate().sign
    elif case == "alg-none":
        header["alg"] = "none"
        sign = lambda _: b""  # noqa: E731
    elif case == "hs256-with-public-key":
        header["alg"] = "HS256"
        public_x = private.public_key().public_bytes_raw()
        sign = lambda data: hmac.new(public_x, data, hashlib.sha256).digest()  # noqa: E731
    elif case == "hs256-with-jwk-x":
        header["alg"] = "HS256"
        x = h.b64url_encode(private.public_key().public_bytes_raw()).encode()
        sign = lambda data: hmac.new(x, data, hashlib.sha256).digest()  # noqa: E731
    elif case in ("no-exp", "no-sub", "no-iss", "no-aud", "no-nbf"):
        del claims[case[3:]]
    elif case == "no-scope-claim":
        del claims["scope"]
    elif case == "unknown-key-id":
        claims["key_id"] = "key_doesnotexist"
    elif case != "valid":
        raise AssertionError(case)
    return encode(header, claims, sign)


FORGED = ["expired", "not-yet-valid", "wrong-iss", "wrong-aud", "aud-list-without-ours", "typ-jwt", "no-typ",
          "no-kid", "unknown-kid", "foreign-key", "alg-none", "hs256-with-public-key", "hs256-with-jwk-x", "no-exp",
          "no-sub", "no-iss", "no-aud", "no-nbf", "no-scope-claim", "unknown-key-id"]


def test_self_minted_valid_token_is_accepted(stack, customer):
    # Control for the corpus below: the forger makes tokens the API accepts when nothing is wrong.
    assert_record(h.get_customer(stack, forge(stack, customer, "valid")), customer.code)


@pytest.mark.parametrize("case", FORGED)
def test_invalid_or_forged_token_is_bearer_401(stack, customer, case):
    h.assert_bearer_401(h.get_customer(stack, forge(stack, customer, case)))


def test_tampered_payload_is_bearer_401(stack, customer):
    victim = h.new_customer(stack)
    tok = h.access_token(stack, customer.code, customer.api_key)
    header, payload, signature = tok.split(".")
    claims = json.loads(h.b64url_decode(payload))
    claims["sub"] = claims["client_id"] = victim.code
    tampered = f"{header}.{h.b64url_encode(json.dumps(claims).encode())}.{signature}"
    h.assert_bearer_401(h.get_customer(stack, tampered, f"/customers/{victim.code}"))
    h.assert_bearer_401(h.get_customer(stack, tampered))


def test_token_of_one_customer_does_not_read_another(stack, customer):
    other = h.new_customer(stack)
    tok = h.access_token(stack, other.code, other.api_key)
    h.assert_standard_error(h.get_customer(stack, tok, f"/customers/{customer.code}"), 404, h.CUSTOMER_NOT_FOUND)
    assert_record(h.get_customer(stack, tok), other.code)


# -- lifecycle: suspend, reactivate, revoke, delete ------------------------------------------
def test_token_follows_customer_and_key_lifecycle(stack, customer):
    code = customer.code
    first = h.access_token(stack, code, customer.api_key)
    assert_record(h.get_customer(stack, first), code)

    h.admin_ok(stack, "customers", "suspend", "--code", code)
    h.assert_bearer_401(h.get_customer(stack, first))
    h.assert_bearer_401(h.get_customer(stack, first, f"/customers/{code}"))

    h.admin_ok(stack, "customers", "reactivate", "--code", code)
    assert_record(h.get_customer(stack, first), code)

    rotated = h.admin_ok(stack, "keys", "rotate", "--code", code)
    second = h.access_token(stack, code, rotated["api_key"])
    h.admin_ok(stack, "keys", "revoke", "--code", code, "--key-id", customer.key_id)
    h.assert_bearer_401(h.get_customer(stack, first))  # minted by the revoked key
    assert_record(h.get_customer(stack, second), code)  # the other key's token still works

    h.admin_ok(stack, "customers", "delete", "--code", code)
    h.assert_standard_error(h.get_customer(stack, second), 404, h.CUSTOMER_NOT_FOUND)
    h.assert_standard_error(h.get_customer(stack, second, f"/customers/{code}"), 404, h.CUSTOMER_NOT_FOUND)


RATE_FIELDS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit", "Retry-After")


def assert_forged_token_401(resp, forged):
    """Exactly the 401 a forged token gets: same status, body and headers (but Date)."""
    h.assert_bearer_401(resp)
    strip = lambda headers: {k.lower(): v for k, v in headers.items() if k.lower() != "date"}
    assert strip(resp.headers) == strip(forged.headers), h.describe(resp)
    assert not any(name in resp.headers for name in RATE_FIELDS), h.describe(resp)


def test_revoked_token_sent_1000_times_spends_nothing_and_never_gets_429(stack, customer):
    code = customer.code
    h.set_limits(stack, code, api_per_minute=3)
    old = h.access_token(stack, code, customer.api_key)
    rotated = h.admin_ok(stack, "keys", "rotate", "--code", code)
    fresh = h.access_token(stack, code, rotated["api_key"])
    forged = h.get_customer(stack, old[:-2] + ("AA" if not old.endswith("AA") else "BB"))
    h.admin_ok(stack, "keys", "revoke", "--code", code, "--key-id", customer.key_id)
    h.ensure_window_room(seconds=30)
    window = int(time.time() // 60)
    before = h.get_customer(stack, fresh)
    assert before.status_code == 200 and before.headers["X-RateLimit-Remaining"] == "2", h.describe(before)
    for _ in range(1000):
        assert_forged_token_401(h.get_customer(stack, old), forged)
    after = h.get_customer(stack, fresh)
    assert after.status_code == 200, h.describe(after)
    same_window = int(time.time() // 60) == window
    assert after.headers["X-RateLimit-Remaining"] == ("1" if same_window else "2"), h.describe(after)


def test_suspended_customer_token_counts_nothing(stack, customer):
    code = customer.code
    h.set_limits(stack, code, api_per_minute=2)
    tok = h.access_token(stack, code, customer.api_key)
    forged = h.get_customer(stack, tok + "A")
    h.ensure_window_room(seconds=15)
    window = int(time.time() // 60)
    assert h.get_customer(stack, tok).headers["X-RateLimit-Remaining"] == "1"
    h.admin_ok(stack, "customers", "suspend", "--code", code)
    for _ in range(5):
        assert_forged_token_401(h.get_customer(stack, tok), forged)
    h.admin_ok(stack, "customers", "reactivate", "--code", code)
    after = h.get_customer(stack, tok)
    assert after.status_code == 200, h.describe(after)
    assert after.headers["X-RateLimit-Remaining"] == ("0" if int(time.time() // 60) == window else "1")


def test_revoking_the_only_key_revokes_its_tokens(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.admin_ok(stack, "keys", "revoke", "--code", customer.code, "--key-id", customer.key_id)
    h.assert_bearer_401(h.get_customer(stack, tok))


def test_token_of_deleted_customer_is_customer_not_found(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.admin_ok(stack, "customers", "delete", "--code", customer.code)
    h.assert_standard_error(h.get_customer(stack, tok), 404, h.CUSTOMER_NOT_FOUND)


def test_recreated_customer_does_not_accept_tokens_of_its_predecessor(stack, customer):
    # The old token's key id belongs to the deleted customer, not to the new one with the same code.
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.admin_ok(stack, "customers", "delete", "--code", customer.code)
    h.new_customer(stack, code=customer.code)
    h.assert_bearer_401(h.get_customer(stack, tok))


# -- §8: api bucket --------------------------------------------------------------------------
def test_api_rate_limit_answers_429_standard_envelope(stack, customer):
    h.set_limits(stack, customer.code, api_per_minute=2)
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.ensure_window_room()
    first, second, third = (h.get_customer(stack, tok) for _ in range(3))
    assert [first.status_code, second.status_code] == [200, 200]
    assert [first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]] == ["1", "0"]
    assert third.status_code == 429, h.describe(third)
    h.assert_json_headers(third)
    body = third.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    retry_after = int(third.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert third.headers["X-RateLimit-Limit"] == "2"
    assert third.headers["X-RateLimit-Remaining"] == "0"
    assert third.headers["RateLimit-Policy"] == '"api";q=2;w=60'
    assert third.headers["RateLimit"].startswith('"api";r=0;t=')
    # The token endpoint has its own bucket.
    assert h.token(stack, customer.code, customer.api_key).status_code == 200
