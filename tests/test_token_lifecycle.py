"""POST /auth/revoke (RFC 7009) and POST /auth/introspect (RFC 7662) over real HTTP (docs/contract.md:
Routes, Error envelopes, Token endpoint, Rate limits).

Revoking an own token (valid or expired) revokes every token of the customer issued so far,
and a token requested afterwards works at once; anything else gets the same empty 200 and
revokes nothing. Introspection is `active: true` exactly for a token of the caller that
GET /customer would accept now. Both endpoints authenticate like /auth/token and count in
its bucket. Expired tokens are minted with the stack's signing key (as
tests/test_customer_endpoint.py does), since no test can wait an hour.
"""

import json
import time

import pytest
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import e2e_helpers as h
from e2e_helpers import FORM

REVOKE = "/auth/revoke"
INTROSPECT = "/auth/introspect"
PATHS = [REVOKE, INTROSPECT]


def works(stack, token_value, code):
    """The token reads its owner's record (GET /customer 200)."""
    resp = h.get_customer(stack, token_value)
    assert resp.status_code == 200, h.describe(resp)
    assert resp.json()["customer_code"] == code
    return True


def refused_everywhere(stack, token_value, code):
    """The plain bearer 401 on both customer routes, as for a forged token: no rate-limit
    fields, which would tell the holder that the signature is still good."""
    for resp in (h.get_customer(stack, token_value), h.get_customer(stack, token_value, f"/customers/{code}")):
        h.assert_bearer_401(resp)
        assert "X-RateLimit-Limit" not in resp.headers and "RateLimit" not in resp.headers, h.describe(resp)


# -- tokens the API did not issue just now ---------------------------------------------------
def test_minted_tokens_are_accepted_while_valid(stack, customer):
    # Control for the expired-token tests: the minter makes tokens the API accepts.
    assert works(stack, h.mint_token(stack, customer.code, customer.key_id), customer.code)
    h.assert_bearer_401(h.get_customer(stack, h.mint_token(stack, customer.code, customer.key_id, expired=True)))


# -- revocation ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["post", "basic", "json"])
def test_revoking_an_own_token_revokes_every_earlier_token_and_a_new_one_works_at_once(stack, customer, method):
    first = h.access_token(stack, customer.code, customer.api_key)
    second = h.access_token(stack, customer.code, customer.api_key, method="basic")
    assert works(stack, first, customer.code) and works(stack, second, customer.code)

    h.assert_revocation_200(h.revoke(stack, customer.code, customer.api_key, first, method=method, hint="access_token"))

    for revoked in (first, second):
        refused_everywhere(stack, revoked, customer.code)
    fresh = h.access_token(stack, customer.code, customer.api_key)
    assert works(stack, fresh, customer.code)
    h.assert_introspection(h.introspect(stack, customer.code, customer.api_key, fresh), h.active_introspection(stack, fresh))


def test_revoking_the_second_token_revokes_the_first_too(stack, customer):
    first = h.access_token(stack, customer.code, customer.api_key)
    second = h.access_token(stack, customer.code, customer.api_key)
    h.assert_revocation_200(h.revoke(stack, customer.code, customer.api_key, second))
    refused_everywhere(stack, first, customer.code)
    refused_everywhere(stack, second, customer.code)


def test_revoking_an_already_revoked_own_token_again_revokes_the_tokens_issued_since(stack, customer):
    # §12.2: a token this client was issued, valid or expired, revokes every token issued
    # so far; a revoked token is still one this client was issued.
    old = h.access_token(stack, customer.code, customer.api_key)
    h.assert_revocation_200(h.revoke(stack, customer.code, customer.api_key, old))
    fresh = h.access_token(stack, customer.code, customer.api_key)
    assert works(stack, fresh, customer.code)
    h.assert_revocation_200(h.revoke(stack, customer.code, customer.api_key, old))
    refused_everywhere(stack, fresh, customer.code)
    assert works(stack, h.access_token(stack, customer.code, customer.api_key), customer.code)


def test_revoking_an_expired_own_token_revokes_every_token(stack, customer):
    live = h.access_token(stack, customer.code, customer.api_key)
    expired = h.mint_token(stack, customer.code, customer.key_id, expired=True)
    h.assert_revocation_200(h.revoke(stack, customer.code, customer.api_key, expired))
    refused_everywhere(stack, live, customer.code)
    assert works(stack, h.access_token(stack, customer.code, customer.api_key), customer.code)


def test_another_customers_or_an_invalid_token_revokes_nothing_and_gets_the_same_answer(stack, customer):
    other = h.new_customer(stack)
    own = h.access_token(stack, customer.code, customer.api_key)
    others = h.access_token(stack, other.code, other.api_key)
    header, payload, signature = own.split(".")
    claims = json.loads(h.b64url_decode(payload))
    claims["exp"] += 1
    tampered = f"{header}.{h.b64url_encode(json.dumps(claims).encode())}.{signature}"
    candidates = {
        "another customer's live token": others,
        "another customer's expired token": h.mint_token(stack, other.code, other.key_id, expired=True),
        "garbage": "garbage",
        "three dots": "a.b.c",
        "own token with a byte added": own + "A",
        "own token with a tampered payload": tampered,
        "own claims signed by another key": h.mint_token(stack, customer.code, customer.key_id,
                                                 private=Ed25519PrivateKey.generate()),
        "the API key itself": customer.api_key,
    }
    answers = []
    for what, candidate in candidates.items():
        resp = h.revoke(stack, customer.code, customer.api_key, candidate, hint="access_token")
        h.assert_revocation_200(resp)
        answers.append((what, sorted(resp.headers), resp.content))
        assert works(stack, own, customer.code), what
        assert works(stack, others, other.code), what
    h.assert_introspection(h.introspect(stack, customer.code, customer.api_key, own), h.active_introspection(stack, own))
    h.assert_introspection(h.introspect(stack, other.code, other.api_key, others), h.active_introspection(stack, others))

    # The answer that revoked something has the same fields and body as the ones that did not.
    revoked = h.revoke(stack, customer.code, customer.api_key, own)
    h.assert_revocation_200(revoked)
    for what, names, content in answers:
        assert (names, content) == (sorted(revoked.headers), revoked.content), what
    refused_everywhere(stack, own, customer.code)
    assert works(stack, others, other.code)


def test_revoked_tokens_spend_nothing_of_the_api_quota(stack, customer):
    revoked = h.access_token(stack, customer.code, customer.api_key)
    h.assert_revocation_200(h.revoke(stack, customer.code, customer.api_key, revoked))
    fresh = h.access_token(stack, customer.code, customer.api_key)
    h.set_limits(stack, customer.code, api_per_minute=3)
    h.ensure_window_room(20)
    h.assert_rate_limit_fields(h.get_customer(stack, fresh), "api", 3, 2)
    for _ in range(10):
        refused_everywhere(stack, revoked, customer.code)
    resp = h.get_customer(stack, fresh)
    assert resp.status_code == 200, h.describe(resp)
    h.assert_rate_limit_fields(resp, "api", 3, 1)


def test_wrong_client_credentials_revoke_nothing(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = h.revoke(stack, customer.code, "kiss_sk_wrong", tok)
    h.assert_oauth_error(resp, 401, "invalid_client", h.INVALID_CLIENT)
    assert "X-RateLimit-Limit" not in resp.headers
    resp = h.revoke(stack, customer.code, customer.api_key + "x", tok, method="basic")
    h.assert_oauth_error(resp, 401, "invalid_client", h.INVALID_CLIENT, basic_challenge=True)
    assert "X-RateLimit-Limit" not in resp.headers
    # Another customer's valid credentials with this customer's token: nothing revoked.
    other = h.new_customer(stack)
    h.assert_revocation_200(h.revoke(stack, other.code, other.api_key, tok))
    assert works(stack, tok, customer.code)


def test_suspended_customer_can_neither_revoke_nor_introspect(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.admin_ok(stack, "customers", "suspend", "--code", customer.code)
    for path, method in [(REVOKE, "post"), (INTROSPECT, "post"), (REVOKE, "basic"), (INTROSPECT, "basic")]:
        resp = h.token_operation(stack, path, customer.code, customer.api_key, tok, method=method)
        h.assert_oauth_error(resp, 401, "invalid_client", h.INVALID_CLIENT, basic_challenge=method == "basic")
        assert "X-RateLimit-Limit" not in resp.headers
    h.admin_ok(stack, "customers", "reactivate", "--code", customer.code)
    assert works(stack, tok, customer.code)  # the refused revocation revoked nothing


# -- introspection ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["post", "basic", "json"])
def test_introspecting_an_own_live_token_returns_its_claims(stack, customer, method):
    before = int(time.time())
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = h.introspect(stack, customer.code, customer.api_key, tok, method=method, hint="access_token")
    expected = h.active_introspection(stack, tok)
    h.assert_introspection(resp, expected)
    body = resp.json()
    assert body["sub"] == body["client_id"] == customer.code
    assert body["scope"] == h.DEFAULT_SCOPE
    assert before - 1 <= body["iat"] <= int(time.time()) + 1
    assert body["exp"] - body["iat"] == 3600
    assert "key_id" not in body and "epoch" not in body


def test_introspecting_another_customers_live_token_is_inactive(stack, customer):
    other = h.new_customer(stack)
    others = h.access_token(stack, other.code, other.api_key)
    h.assert_introspection(h.introspect(stack, customer.code, customer.api_key, others), h.INACTIVE)
    h.assert_introspection(h.introspect(stack, other.code, other.api_key, others), h.active_introspection(stack, others))
    assert works(stack, others, other.code)


def test_introspecting_a_token_revoked_by_the_revocation_endpoint_is_inactive(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    h.assert_introspection(h.introspect(stack, customer.code, customer.api_key, tok), h.active_introspection(stack, tok))
    h.assert_revocation_200(h.revoke(stack, customer.code, customer.api_key, tok))
    h.assert_introspection(h.introspect(stack, customer.code, customer.api_key, tok), h.INACTIVE)
    fresh = h.access_token(stack, customer.code, customer.api_key)
    h.assert_introspection(h.introspect(stack, customer.code, customer.api_key, fresh), h.active_introspection(stack, fresh))


def test_introspecting_a_token_of_a_key_revoked_with_customer_admin_is_inactive(stack, customer):
    old = h.access_token(stack, customer.code, customer.api_key)
    rotated = h.admin_ok(stack, "keys", "rotate", "--code", customer.code)
    new_key = rotated["api_key"]
    new = h.access_token(stack, customer.code, new_key)
    h.assert_introspection(h.introspect(stack, customer.code, new_key, old), h.active_introspection(stack, old))

    h.admin_ok(stack, "keys", "revoke", "--code", customer.code, "--key-id", customer.key_id)

    h.assert_introspection(h.introspect(stack, customer.code, new_key, old), h.INACTIVE)
    h.assert_introspection(h.introspect(stack, customer.code, new_key, new), h.active_introspection(stack, new))
    h.assert_bearer_401(h.get_customer(stack, old))
    h.assert_oauth_error(h.introspect(stack, customer.code, customer.api_key, new), 401, "invalid_client",
                         h.INVALID_CLIENT)


def test_introspecting_expired_forged_or_unscoped_tokens_is_inactive(stack, customer):
    tok = h.access_token(stack, customer.code, customer.api_key)
    for what, candidate in {
        "expired": h.mint_token(stack, customer.code, customer.key_id, expired=True),
        "another key's signature": h.mint_token(stack, customer.code, customer.key_id, private=Ed25519PrivateKey.generate()),
        "byte added": tok + "A",
        "garbage": "garbage",
        "the API key": customer.api_key,
    }.items():
        resp = h.introspect(stack, customer.code, customer.api_key, candidate)
        h.assert_introspection(resp, h.INACTIVE)
        assert resp.content == b'{"active":false}', what
    # A token without customer:read is not accepted by GET /customer, so it is not active.
    unscoped = h.new_customer(stack, scopes=["billing:read"])
    unscoped_token = h.access_token(stack, unscoped.code, unscoped.api_key)
    h.assert_bearer_401(h.get_customer(stack, unscoped_token))
    h.assert_introspection(h.introspect(stack, unscoped.code, unscoped.api_key, unscoped_token), h.INACTIVE)


# -- request checks --------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_missing_or_empty_token_is_invalid_request(stack, customer, path):
    for method in ("post", "basic", "json"):
        resp = h.token_operation(stack, path, customer.code, customer.api_key, None, method=method)
        h.assert_oauth_error(resp, 400, "invalid_request", h.TOKEN_REQUIRED)
        assert "X-RateLimit-Limit" not in resp.headers
    resp = h.token_operation(stack, path, customer.code, customer.api_key, "")
    h.assert_oauth_error(resp, 400, "invalid_request", h.TOKEN_REQUIRED)
    resp = h.token_operation(stack, path, customer.code, customer.api_key, None, hint="access_token")
    h.assert_oauth_error(resp, 400, "invalid_request", h.TOKEN_REQUIRED)


@pytest.mark.parametrize("path", PATHS)
def test_client_authentication_is_checked_like_the_token_endpoint(stack, customer, path):
    tok = h.access_token(stack, customer.code, customer.api_key)
    basic = {"Authorization": h.basic_header(customer.code, customer.api_key), "Content-Type": FORM}
    cases = [
        ({"Content-Type": FORM}, f"token={tok}", h.CREDENTIALS_REQUIRED),
        ({"Content-Type": FORM}, f"client_id={customer.code}&token={tok}", h.CREDENTIALS_REQUIRED),
        (basic, f"client_secret={customer.api_key}&token={tok}", h.TWO_AUTH_METHODS),
        (basic, f"client_id=SOMEONE-ELSE&token={tok}", h.TWO_AUTH_METHODS),
        ({"Authorization": "Basic !!!", "Content-Type": FORM}, f"token={tok}", h.MALFORMED_BASIC),
    ]
    for headers, body, description in cases:
        resp = h.post(stack, path, data=body.encode(), headers=headers)
        h.assert_oauth_error(resp, 400, "invalid_request", description)
        assert "X-RateLimit-Limit" not in resp.headers
    # Basic plus a body client_id equal to the Basic id is one method (some libraries send it).
    resp = h.post(stack, path, data=f"client_id={customer.code}&token=garbage".encode(), headers=basic)
    assert resp.status_code == 200, h.describe(resp)


@pytest.mark.parametrize("path", PATHS)
def test_body_checks_are_those_of_the_token_endpoint(stack, customer, path):
    credentials = f"client_id={customer.code}&client_secret={customer.api_key}"
    cases = [
        (FORM, f"{credentials}&token={'a' * 8192}", h.BODY_TOO_LARGE),
        (None, f"{credentials}&token=abc", h.BAD_CONTENT_TYPE),
        ("text/plain", f"{credentials}&token=abc", h.BAD_CONTENT_TYPE),
        ("application/json", '{"token": 1}', h.MALFORMED_BODY),
        ("application/json", "[]", h.MALFORMED_BODY),
        (FORM, f"{credentials}&token=abc&token=def", h.REPEATED_PARAMETER),
        ("application/json", f'{{"client_id":"{customer.code}","client_secret":"{customer.api_key}",'
                             f'"token":"a","token":"b"}}', h.REPEATED_PARAMETER),
    ]
    for content_type, body, description in cases:
        headers = {"Content-Type": content_type} if content_type else {}
        resp = h.post(stack, path, data=body.encode(), headers=headers)
        h.assert_oauth_error(resp, 400, "invalid_request", description)
    # Content-Type parameters are accepted, as on /auth/token.
    resp = h.post(stack, path, data=f"{credentials}&token=abc".encode(), headers={"Content-Type": FORM + "; charset=UTF-8"})
    assert resp.status_code == 200, h.describe(resp)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_invalid_request(stack, customer, path, method):
    tok = h.access_token(stack, customer.code, customer.api_key)
    resp = h.http(
        stack, method, path, data=f"client_id={customer.code}&client_secret={customer.api_key}&token={tok}".encode(),
        headers={"Content-Type": FORM},
    )
    h.assert_oauth_error(resp, 400, "invalid_request", h.ENDPOINT_ONLY_POST)
    assert "X-RateLimit-Limit" not in resp.headers
    # With Basic credentials: no Basic challenge (nothing was authenticated), nothing revoked.
    resp = h.http(stack, method, path, headers={"Authorization": h.basic_header(customer.code, customer.api_key)})
    h.assert_oauth_error(resp, 400, "invalid_request", h.ENDPOINT_ONLY_POST)
    assert works(stack, tok, customer.code)


@pytest.mark.parametrize("path", PATHS)
def test_head_is_the_400_without_a_body(stack, path):
    resp = h.http(stack, "HEAD", path)
    assert resp.status_code == 400, h.describe(resp)
    assert resp.content == b""
    assert resp.headers.get("Cache-Control") == "no-store"
    assert resp.headers.get("Pragma") == "no-cache"


# -- the token bucket (docs/contract.md, Rate limits) ---------------------------------------------------------
def test_revocation_and_introspection_count_in_the_token_bucket(stack, customer):
    limit = 4
    h.set_limits(stack, customer.code, token_per_minute=limit)
    h.ensure_window_room(20)
    issued = h.token(stack, customer.code, customer.api_key)
    h.assert_token_issued(issued)
    h.assert_rate_limit_fields(issued, "token", limit, 3)
    tok = issued.json()["access_token"]

    introspected = h.introspect(stack, customer.code, customer.api_key, tok)
    h.assert_introspection(introspected, h.active_introspection(stack, tok))
    h.assert_rate_limit_fields(introspected, "token", limit, 2)

    # Wrong credentials and malformed requests never reach the limiter.
    h.assert_oauth_error(h.revoke(stack, customer.code, "kiss_sk_wrong", tok), 401, "invalid_client", h.INVALID_CLIENT)
    h.assert_oauth_error(h.introspect(stack, customer.code, customer.api_key, None), 400, "invalid_request",
                         h.TOKEN_REQUIRED)

    nothing = h.revoke(stack, customer.code, customer.api_key, "garbage")
    h.assert_revocation_200(nothing)
    h.assert_rate_limit_fields(nothing, "token", limit, 1)

    last = h.introspect(stack, customer.code, customer.api_key, "garbage", method="basic")
    h.assert_introspection(last, h.INACTIVE)
    h.assert_rate_limit_fields(last, "token", limit, 0)

    for resp in (
        h.revoke(stack, customer.code, customer.api_key, tok),
        h.introspect(stack, customer.code, customer.api_key, tok),
        h.token(stack, customer.code, customer.api_key),
    ):
        h.assert_oauth_error(resp, 429, "too_many_requests", h.TOO_MANY_TOKEN_REQUESTS)
        h.assert_rate_limit_fields(resp, "token", limit, 0)
        assert 1 <= int(resp.headers["Retry-After"]) <= 61
    # The refused revocation revoked nothing, and the api bucket is another bucket.
    assert works(stack, tok, customer.code)


# -- a standard OAuth client library ---------------------------------------------------------
@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_standard_oauth_client_revokes_and_introspects(stack, customer, auth_method):
    metadata = h.get(stack, "/.well-known/oauth-authorization-server").json()
    assert auth_method in metadata["revocation_endpoint_auth_methods_supported"]
    assert auth_method in metadata["introspection_endpoint_auth_methods_supported"]
    client = OAuth2Session(
        customer.code, customer.api_key,
        token_endpoint_auth_method=auth_method, revocation_endpoint_auth_method=auth_method,
    )
    issued = client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    tok = issued["access_token"]
    assert client.get(stack.api_url + "/customer", timeout=h.TIMEOUT).status_code == 200

    resp = client.introspect_token(metadata["introspection_endpoint"], token=tok, timeout=h.TIMEOUT)
    h.assert_introspection(resp, h.active_introspection(stack, tok))
    sent_basic = resp.request.headers.get("Authorization", "").startswith("Basic ")
    assert sent_basic == (auth_method == "client_secret_basic"), resp.request.headers
    body = resp.request.body if isinstance(resp.request.body, bytes) else resp.request.body.encode()
    assert (b"client_secret=" in body) == (auth_method == "client_secret_post")

    resp = client.revoke_token(metadata["revocation_endpoint"], token=tok, token_type_hint="access_token",
                               timeout=h.TIMEOUT)
    h.assert_revocation_200(resp)
    assert resp.request.headers.get("Authorization", "").startswith("Basic ") == (auth_method == "client_secret_basic")
    h.assert_bearer_401(client.get(stack.api_url + "/customer", timeout=h.TIMEOUT))
    h.assert_introspection(client.introspect_token(metadata["introspection_endpoint"], token=tok, timeout=h.TIMEOUT),
                           h.INACTIVE)

    # The client's usual recovery (401 → new token) works at once.
    client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    resp = client.get(stack.api_url + "/customer", timeout=h.TIMEOUT)
    assert resp.status_code == 200 and resp.json()["customer_code"] == customer.code
