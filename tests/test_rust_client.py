"""The Rust client (clients/rust, crate kiss-customer-api) against the local stack.

Runs the crate's ignored live tests (clients/rust/tests/live.rs: happy path, suspended
customer, revoked key, rate limit hit and recovered, private_key_jwt, revocation,
introspection, DPoP) with cargo, pointed at this session's stack, and the `whoami` example a
customer would run first, with and without DPoP.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import e2e_helpers as h

ROOT = Path(__file__).resolve().parents[1]

CARGO_TIMEOUT = 1800  # the first run compiles the crate's tests


def cargo_env(stack, **extra):
    return {
        **os.environ,
        **stack.aws_env(),
        "CUSTOMER_API_URL": stack.api_url,
        "CUSTOMER_ADMIN": str(ROOT / "target" / "debug" / "customer-admin"),
        "AWS_LC_SYS_NO_JITTER_ENTROPY": "1",
        **extra,
    }


def run_cargo(args, env):
    done = subprocess.run(
        ["cargo", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=CARGO_TIMEOUT
    )
    return done, done.stdout + done.stderr


def test_rust_client_live_suite_passes(stack):
    done, output = run_cargo(
        ["test", "-p", "kiss-customer-api", "--test", "live", "--", "--ignored", "--test-threads=1"],
        cargo_env(stack),
    )
    assert done.returncode == 0, output[-6000:]
    assert re.search(r"test result: ok\. 11 passed; 0 failed", output), output[-6000:]


def test_whoami_example_prints_the_record(stack, customer):
    done, output = run_cargo(
        ["run", "-q", "-p", "kiss-customer-api", "--example", "whoami"],
        cargo_env(stack, CUSTOMER_CODE=customer.code, CUSTOMER_API_KEY=customer.api_key),
    )
    assert done.returncode == 0, output[-6000:]
    record = json.loads(done.stdout)
    assert record["customer_code"] == customer.code
    assert record["name"] == h.profile(customer.code)["name"]
    assert record["status"] == "active"
    assert customer.api_key not in output


def test_whoami_example_with_dpop_gets_a_bound_token(stack, customer):
    done, output = run_cargo(
        ["run", "-q", "-p", "kiss-customer-api", "--example", "whoami", "--", "--dpop"],
        cargo_env(stack, CUSTOMER_CODE=customer.code, CUSTOMER_API_KEY=customer.api_key),
    )
    assert done.returncode == 0, output[-6000:]
    record = json.loads(done.stdout)
    assert record["customer_code"] == customer.code
    assert record["status"] == "active"
    # The client refuses any token_type but DPoP, so a record means the token was bound.
    assert re.search(r"DPoP-bound token, proof key thumbprint \(cnf\.jkt\) [A-Za-z0-9_-]{43}$",
                     done.stderr, re.M), done.stderr
    assert customer.api_key not in output


def test_whoami_example_reports_bad_credentials(stack, customer):
    done, output = run_cargo(
        ["run", "-q", "-p", "kiss-customer-api", "--example", "whoami"],
        cargo_env(stack, CUSTOMER_CODE=customer.code, CUSTOMER_API_KEY=customer.api_key + "x"),
    )
    assert done.returncode == 1, output[-6000:]
    assert done.stdout == ""
    assert "invalid client credentials" in done.stderr
    assert customer.api_key not in output
