"""Helpers of the end-to-end suite: customers via the admin CLI, token requests, HTTP checks.

Everything here talks to the running local stack over HTTP or through `customer-admin`,
exactly as a client or an operator would.
"""

import base64
import hashlib
import json
import os
import subprocess
import time
import uuid
from collections import namedtuple
from urllib.parse import quote_plus

import requests

TIMEOUT = 30
AUDIENCE = "customer-api"
DEFAULT_SCOPE = "customer:read"

# Global limits of the suite's functions: high, so ordinary tests never meet them.
# Rate-limit tests lower the limits of their own customer with `customers set-limits`.
SUITE_TOKEN_LIMIT = 1000
SUITE_API_LIMIT = 1000

# Fixed texts (docs/contract.md, docs/errors.md) and the other descriptions of
# shared/src/error.rs.
INVALID_CLIENT = "Invalid client credentials."
UNSUPPORTED_GRANT_TYPE = "Only 'client_credentials' grant type is supported."
CREDENTIALS_REQUIRED = "client_id and client_secret are required."
INVALID_SCOPE = "The requested scope is invalid."
ONLY_POST = "The token endpoint accepts only POST."
CUSTOMER_NOT_FOUND = "Customer not found."
NOT_FOUND = "Not found."
BODY_TOO_LARGE = "The request body is too large."
BAD_CONTENT_TYPE = "Content-Type must be application/x-www-form-urlencoded or application/json."
MALFORMED_BODY = "The request body is malformed."
REPEATED_PARAMETER = "A request parameter was repeated."
GRANT_TYPE_REQUIRED = "grant_type is required."
TWO_AUTH_METHODS = "Use only one client authentication method."
MALFORMED_BASIC = "The Authorization header is malformed."
TOKEN_REQUIRED = "token is required."
ENDPOINT_ONLY_POST = "This endpoint accepts only POST."
TOO_MANY_TOKEN_REQUESTS = "Too many token requests. Retry after the time given in Retry-After."

BEARER_CHALLENGE = 'Bearer error="invalid_token"'
BASIC_CHALLENGE = 'Basic realm="customer-api"'

FORM = "application/x-www-form-urlencoded"

NewCustomer = namedtuple("NewCustomer", "code api_key key_id")

_session = requests.Session()


# -- the admin CLI ---------------------------------------------------------------------------
def admin_raw(stack, *args):
    """Runs `customer-admin ... --json`; returns the CompletedProcess (raw stdout/stderr)."""
    env = {**os.environ, **stack.aws_env()}
    binary = stack_root() / "target" / "debug" / "customer-admin"
    return subprocess.run([str(binary), *args, "--json"], env=env, capture_output=True, text=True, timeout=60)


def admin_ok(stack, *args):
    """Runs a CLI command that must succeed; returns its JSON object."""
    code, out = stack.admin(*args)
    assert code == 0, f"customer-admin {' '.join(args)} exited {code}: {out}"
    assert isinstance(out, dict), f"customer-admin {' '.join(args)} printed no JSON object: {out!r}"
    return out


def stack_root():
    from stack import ROOT  # infra/local/stack.py, put on sys.path by conftest

    return ROOT


def unique_code(prefix="T"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def profile(code):
    """The name and email the suite gives a customer."""
    return {"name": f"Test Customer {code}", "email": f"ops+{code.lower()}@example.com"}


def new_customer(stack, code=None, scopes=None, plan=None):
    """A fresh customer created with the CLI: (code, api_key, key_id)."""
    code = code or unique_code()
    args = ["customers", "create", "--code", code, "--name", profile(code)["name"], "--email", profile(code)["email"]]
    if plan:
        args += ["--plan", plan]
    if scopes:
        args += ["--scopes", *scopes]
    out = admin_ok(stack, *args)
    assert out["customer_code"] == code
    return NewCustomer(out["customer_code"], out["api_key"], out["key_id"])


def set_limits(stack, code, token_per_minute=None, api_per_minute=None):
    args = ["customers", "set-limits", "--code", code]
    if token_per_minute is not None:
        args += ["--token-per-minute", str(token_per_minute)]
    if api_per_minute is not None:
        args += ["--api-per-minute", str(api_per_minute)]
    return admin_ok(stack, *args)


# -- HTTP ------------------------------------------------------------------------------------
def http(stack, method, path, **kwargs):
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("allow_redirects", False)
    return _session.request(method, stack.api_url + path, **kwargs)


def get(stack, path, **kwargs):
    return http(stack, "GET", path, **kwargs)


def post(stack, path, **kwargs):
    return http(stack, "POST", path, **kwargs)


def basic_header(client_id, client_secret):
    """`client_secret_basic` per RFC 6749 §2.3.1: each part form-urlencoded, then Basic."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def token(stack, code, key, method="post", scope=None, extra=None, content_type=None, headers=None):
    """POST /auth/token with the client credentials grant; returns the requests.Response.

    method: 'post' (client_secret_post, form body), 'basic' (client_secret_basic, form body)
    or 'json' (client_secret_post, JSON body). `headers` are added (e.g. a `DPoP` proof).
    """
    params = {"grant_type": "client_credentials"}
    headers = dict(headers or {})
    if method == "basic":
        headers["Authorization"] = basic_header(code, key)
    else:
        params.update({"client_id": code, "client_secret": key})
    if scope is not None:
        params["scope"] = scope
    params.update(extra or {})
    if method == "json":
        body = json.dumps(params).encode()
        headers["Content-Type"] = content_type or "application/json"
    else:
        body = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in params.items()).encode()
        headers["Content-Type"] = content_type or FORM
    return post(stack, "/auth/token", data=body, headers=headers)


def token_operation(stack, path, code, key, token_value, method="post", hint=None, extra=None, content_type=None):
    """POST /auth/revoke or /auth/introspect with `token`; returns the requests.Response.

    method as in `token`: 'post', 'basic' or 'json'. `token_value=None` omits `token`.
    """
    params = {}
    headers = {}
    if token_value is not None:
        params["token"] = token_value
    if hint is not None:
        params["token_type_hint"] = hint
    if method == "basic":
        headers["Authorization"] = basic_header(code, key)
    else:
        params.update({"client_id": code, "client_secret": key})
    params.update(extra or {})
    if method == "json":
        body = json.dumps(params).encode()
        headers["Content-Type"] = content_type or "application/json"
    else:
        body = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in params.items()).encode()
        headers["Content-Type"] = content_type or FORM
    return post(stack, path, data=body, headers=headers)


def revoke(stack, code, key, token_value, **kwargs):
    """POST /auth/revoke (RFC 7009)."""
    return token_operation(stack, "/auth/revoke", code, key, token_value, **kwargs)


def introspect(stack, code, key, token_value, **kwargs):
    """POST /auth/introspect (RFC 7662)."""
    return token_operation(stack, "/auth/introspect", code, key, token_value, **kwargs)


def access_token(stack, code, key, **kwargs):
    """A token that must be issued; returns the access token string."""
    resp = token(stack, code, key, **kwargs)
    assert resp.status_code == 200, f"token request failed: {resp.status_code} {resp.text}"
    return resp.json()["access_token"]


def bearer(token_value):
    return {"Authorization": f"Bearer {token_value}"}


def get_customer(stack, token_value, path="/customer"):
    return get(stack, path, headers=bearer(token_value))


# -- assertions ------------------------------------------------------------------------------
def compact(obj):
    """The exact bytes of a compact JSON document."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def describe(resp):
    return f"{resp.request.method} {resp.request.url} -> {resp.status_code} {dict(resp.headers)} {resp.content!r}"


def assert_json_headers(resp, token_endpoint=False):
    assert resp.headers.get("Content-Type") == "application/json", describe(resp)
    assert resp.headers.get("Cache-Control") == "no-store", describe(resp)
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", describe(resp)
    if token_endpoint:
        assert resp.headers.get("Pragma") == "no-cache", describe(resp)


def assert_oauth_error(resp, status, error, description, basic_challenge=False, exact_bytes=True):
    """An OAuth-envelope error of /auth/token with exactly this body and the token headers."""
    assert resp.status_code == status, describe(resp)
    expected = {"error": error, "error_description": description}
    assert resp.json() == expected, describe(resp)
    if exact_bytes:
        assert resp.content == compact(expected), describe(resp)
    assert_json_headers(resp, token_endpoint=True)
    if basic_challenge:
        assert resp.headers.get("WWW-Authenticate") == BASIC_CHALLENGE, describe(resp)
    else:
        assert "WWW-Authenticate" not in resp.headers, describe(resp)


def assert_standard_error(resp, status, message):
    """A standard-envelope error with exactly this body (byte-exact)."""
    assert resp.status_code == status, describe(resp)
    expected = {"error": message}
    assert resp.json() == expected, describe(resp)
    assert resp.content == compact(expected), describe(resp)
    assert_json_headers(resp)
    assert "WWW-Authenticate" not in resp.headers, describe(resp)


def assert_bearer_401(resp):
    """The bearer failure: 401, empty body, exactly `WWW-Authenticate: Bearer error="invalid_token"`."""
    assert resp.status_code == 401, describe(resp)
    assert resp.content == b"", describe(resp)
    assert resp.headers.get("WWW-Authenticate") == BEARER_CHALLENGE, describe(resp)


def assert_rate_limit_fields(resp, bucket, limit, remaining):
    """The rate-limit fields of a response that reached the limiter, with exact counts."""
    assert resp.headers.get("X-RateLimit-Limit") == str(limit), describe(resp)
    assert resp.headers.get("X-RateLimit-Remaining") == str(remaining), describe(resp)
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert 1 <= reset <= 61, describe(resp)
    assert resp.headers.get("RateLimit-Policy") == f'"{bucket}";q={limit};w=60', describe(resp)
    assert resp.headers.get("RateLimit") == f'"{bucket}";r={remaining};t={reset}', describe(resp)


def assert_revocation_200(resp):
    """The RFC 7009 answer: 200, empty body, no Content-Type, the token endpoint's cache
    headers and the token bucket's rate-limit fields — the same bytes whatever was revoked."""
    assert resp.status_code == 200, describe(resp)
    assert resp.content == b"", describe(resp)
    assert "Content-Type" not in resp.headers, describe(resp)
    assert resp.headers.get("Cache-Control") == "no-store", describe(resp)
    assert resp.headers.get("Pragma") == "no-cache", describe(resp)
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", describe(resp)
    assert "WWW-Authenticate" not in resp.headers, describe(resp)
    assert "Retry-After" not in resp.headers, describe(resp)
    assert resp.headers.get("RateLimit-Policy", "").startswith('"token";'), describe(resp)
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit"):
        assert name in resp.headers, (name, describe(resp))


def assert_introspection(resp, expected):
    """An RFC 7662 answer with exactly this body and the token endpoint's headers."""
    assert resp.status_code == 200, describe(resp)
    assert resp.json() == expected, describe(resp)
    assert resp.content == compact(resp.json()), describe(resp)  # compact JSON, nothing else
    assert_json_headers(resp, token_endpoint=True)
    assert "WWW-Authenticate" not in resp.headers, describe(resp)
    assert resp.headers.get("RateLimit-Policy", "").startswith('"token";'), describe(resp)
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit"):
        assert name in resp.headers, (name, describe(resp))


INACTIVE = {"active": False}


def active_introspection(stack, token_value):
    """The `active: true` body the API must give for a live token: its own claims."""
    claims = jwt_parts(token_value)[1]
    return {
        "active": True,
        "scope": claims["scope"],
        "client_id": claims["client_id"],
        "sub": claims["sub"],
        "iss": stack.api_url,
        "aud": AUDIENCE,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "nbf": claims["nbf"],
        "jti": claims["jti"],
        "token_type": "Bearer",
    }


def assert_token_issued(resp, scope=DEFAULT_SCOPE):
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}, describe(resp)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == scope
    assert isinstance(body["access_token"], str) and body["access_token"].count(".") == 2
    assert_json_headers(resp, token_endpoint=True)
    assert "WWW-Authenticate" not in resp.headers, describe(resp)
    return body


# -- JWT -------------------------------------------------------------------------------------
def b64url_decode(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt_parts(token_value):
    header, payload, signature = token_value.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), b64url_decode(signature)


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


# -- rate-limit windows ----------------------------------------------------------------------
def ensure_window_room(seconds=8):
    """Fixed 60 s windows: if fewer than `seconds` remain in this minute, wait for the next one."""
    into = time.time() % 60
    if into > 60 - seconds:
        time.sleep(60 - into + 0.25)


def poll(check, timeout, interval=0.5):
    """Calls `check` until it returns a truthy value or `timeout` seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# -- DPoP (RFC 9449) -------------------------------------------------------------------------
# Built with `cryptography` alone, so every byte of a proof is the suite's own choice: the
# attack corpus needs proofs that no client library would make.
DPOP_PROOF_INVALID = "The DPoP proof is invalid."
DPOP_ALGS = "EdDSA ES256"
DPOP_INVALID_TOKEN = f'DPoP error="invalid_token", algs="{DPOP_ALGS}"'
DPOP_INVALID_PROOF = f'DPoP error="invalid_dpop_proof", algs="{DPOP_ALGS}"'
RATE_LIMIT_FIELDS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy",
                     "RateLimit", "Retry-After")

DROP = object()  # in a proof's header or claim changes: leave the member out


def b64url_json(obj):
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def jwk_thumbprint(jwk):
    """RFC 7638 SHA-256 thumbprint: the required members only, sorted, no whitespace."""
    required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token_value):
    """The `ath` of a proof sent with this access token: base64url(SHA-256(ASCII))."""
    return b64url_encode(hashlib.sha256(token_value.encode("ascii")).digest())


def _int_bytes(value, length=32):
    return value.to_bytes(length, "big")


class ProofKey:
    """A DPoP key pair: Ed25519 (`EdDSA`, or RFC 9864's `Ed25519`) or P-256 (`ES256`)."""

    def __init__(self, curve="Ed25519"):
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.curve = curve
        if curve == "Ed25519":
            self.private = Ed25519PrivateKey.generate()
            raw = self.private.public_key().public_bytes_raw()
            self.public_jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
            self.private_jwk = {**self.public_jwk, "d": b64url_encode(self.private.private_bytes_raw())}
            self.alg = "EdDSA"
        elif curve == "P-256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            numbers = self.private.public_key().public_numbers()
            self.public_jwk = {"kty": "EC", "crv": "P-256", "x": b64url_encode(_int_bytes(numbers.x)),
                               "y": b64url_encode(_int_bytes(numbers.y))}
            self.private_jwk = {**self.public_jwk,
                                "d": b64url_encode(_int_bytes(self.private.private_numbers().private_value))}
            self.alg = "ES256"
        else:
            raise ValueError(curve)

    @property
    def thumbprint(self):
        return jwk_thumbprint(self.public_jwk)

    def sign(self, data):
        """The JWS signature of `data` under this key (ES256: r || s, 64 bytes, RFC 7518 §3.4)."""
        if self.curve == "Ed25519":
            return self.private.sign(data)
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return _int_bytes(r) + _int_bytes(s)

    def proof(self, htm, htu, access_token=None, header=None, claims=None, sign=None, iat_offset=0):
        """A compact DPoP proof JWS for (htm, htu), with `ath` when `access_token` is given.

        `header` and `claims` change members of the correct proof (DROP removes one);
        `sign(signing_input) -> bytes` replaces the signature of this key.
        """
        head = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        body = {"jti": uuid.uuid4().hex, "htm": htm, "htu": htu, "iat": int(time.time()) + iat_offset}
        if access_token is not None:
            body["ath"] = access_token_hash(access_token)
        for target, changes in ((head, header), (body, claims)):
            for name, value in (changes or {}).items():
                if value is DROP:
                    target.pop(name, None)
                else:
                    target[name] = value
        signing_input = f"{b64url_json(head)}.{b64url_json(body)}"
        signature = (sign or self.sign)(signing_input.encode())
        return f"{signing_input}.{b64url_encode(signature)}"


def verify_proof(proof):
    """Verifies a proof the way a server must (signature under the header's own jwk, with
    `cryptography` only); returns (header, claims). Raises on any failure."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    header_part, claims_part, signature_part = proof.split(".")
    header = json.loads(b64url_decode(header_part))
    claims = json.loads(b64url_decode(claims_part))
    signature = b64url_decode(signature_part)
    signing_input = f"{header_part}.{claims_part}".encode()
    jwk = header["jwk"]
    assert header["typ"] == "dpop+jwt" and "d" not in jwk
    if header["alg"] in ("EdDSA", "Ed25519"):
        assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
        Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"])).verify(signature, signing_input)
    elif header["alg"] == "ES256":
        assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256") and len(signature) == 64
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64url_decode(jwk["x"]), "big"), int.from_bytes(b64url_decode(jwk["y"]), "big"),
            ec.SECP256R1(),
        ).public_key()
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    else:
        raise AssertionError(f"alg {header['alg']}")
    return header, claims


def dpop_token(stack, code, key, proof_key=None, proof=None, **kwargs):
    """POST /auth/token with a `DPoP` header: `proof`, or a fresh proof of `proof_key`."""
    if proof is None:
        proof = proof_key.proof("POST", stack.api_url + "/auth/token")
    return token(stack, code, key, headers={"DPoP": proof}, **kwargs)


def dpop_access_token(stack, code, key, proof_key, **kwargs):
    """A DPoP-bound token that must be issued; returns the access token string."""
    resp = dpop_token(stack, code, key, proof_key, **kwargs)
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP", describe(resp)
    return resp.json()["access_token"]


def dpop_get(stack, token_value, proof_key=None, path="/customer", proof=None, scheme="DPoP"):
    """GET a customer route with `Authorization: <scheme> <token>` and a `DPoP` proof
    (`proof`, or a fresh one of `proof_key` for this path; no `DPoP` header if both are None)."""
    headers = {"Authorization": f"{scheme} {token_value}"}
    if proof is None and proof_key is not None:
        proof = proof_key.proof("GET", stack.api_url + path, token_value)
    if proof is not None:
        headers["DPoP"] = proof
    return get(stack, path, headers=headers)


def raw_request(stack, method, path, headers, body=b""):
    """An HTTP request with exactly these header lines, repeated names included (requests
    merges them); returns a requests.Response so the usual assertions apply."""
    import http.client
    from urllib.parse import urlsplit

    import urllib3

    url = urlsplit(stack.api_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        answer = conn.getresponse()
        content = answer.read()
        header_lines = answer.getheaders()
    finally:
        conn.close()
    resp = requests.Response()
    resp.status_code = answer.status
    resp._content = content
    resp.raw = urllib3.HTTPResponse(body=b"", headers=urllib3.HTTPHeaderDict(header_lines), status=answer.status)
    resp.headers = requests.structures.CaseInsensitiveDict(resp.raw.headers)
    resp.url = stack.api_url + path
    resp.request = requests.Request(method, resp.url, headers=dict(headers)).prepare()
    return resp


def header_values(resp, name):
    """Every value of a response header, one per header line."""
    return resp.raw.headers.getlist(name)


def assert_dpop_401(resp, challenge):
    """A DPoP failure at a customer route: 401, empty body, exactly one `WWW-Authenticate`
    with exactly `challenge`, and no rate-limit fields (nothing was counted)."""
    assert resp.status_code == 401, describe(resp)
    assert resp.content == b"", describe(resp)
    assert header_values(resp, "WWW-Authenticate") == [challenge], describe(resp)
    assert "Content-Type" not in resp.headers, describe(resp)
    assert not any(name in resp.headers for name in RATE_LIMIT_FIELDS), describe(resp)


def assert_invalid_dpop_proof_400(resp, remaining=None, limit=SUITE_TOKEN_LIMIT):
    """The token endpoint's refusal of a proof: 400 `invalid_dpop_proof` with exactly the
    fixed body, the token headers, and the token bucket's fields (the request was counted)."""
    assert_oauth_error(resp, 400, "invalid_dpop_proof", DPOP_PROOF_INVALID)
    if remaining is None:
        for name in RATE_LIMIT_FIELDS[:5]:
            assert name in resp.headers, (name, describe(resp))
    else:
        assert_rate_limit_fields(resp, "token", limit, remaining)


# -- tokens the API did not issue just now ---------------------------------------------------
def signing_key(stack):
    """The stack's active signing key: (kid, Ed25519PrivateKey). The seed is found inside the
    PKCS#8 document whether v1 or v2 (RFC 8410; `cryptography` does not parse v2)."""
    import boto3
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from stack import REGION, SIGNING_SECRET

    secrets = boto3.client(
        "secretsmanager", endpoint_url=stack.endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    doc = json.loads(secrets.get_secret_value(SecretId=SIGNING_SECRET)["SecretString"])
    der = base64.b64decode(doc["active"]["private_key"])
    marker = bytes([0x04, 0x22, 0x04, 0x20])  # RFC 8410: the 32-byte seed inside PKCS#8
    at = der.find(marker)
    assert at >= 0, "not an Ed25519 PKCS#8 document"
    return doc["active"]["kid"], Ed25519PrivateKey.from_private_bytes(der[at + 4:at + 36])


def mint_token(stack, code, key_id, expired=False, extra_claims=None, private=None):
    """An access token exactly like the API's own (revocation epoch 0), signed with the
    stack's key (or `private`, another Ed25519 key, under the stack key's kid): optionally
    expired, with `extra_claims` (e.g. `cnf`) added."""
    kid, key = signing_key(stack)
    key = private or key
    issued = int(time.time()) - (7200 if expired else 0)
    claims = {
        "iss": stack.api_url, "sub": code, "aud": AUDIENCE, "client_id": code, "scope": DEFAULT_SCOPE,
        "iat": issued, "nbf": issued, "exp": issued + 3600, "jti": uuid.uuid4().hex, "key_id": key_id, "epoch": 0,
        **(extra_claims or {}),
    }
    signing_input = f"{b64url_json({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': kid})}.{b64url_json(claims)}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"
