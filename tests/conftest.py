"""One local stack for the whole end-to-end session (infra/local/stack.py).

The functions run with high global rate limits so ordinary tests never meet them; the
rate-limit tests lower the limits of their own fresh customer with
`customer-admin customers set-limits`. Every test creates its own customers, so tests do not
share rate-limit buckets or key state.
"""

import fcntl
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "infra" / "local"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import Stack, free_port  # noqa: E402

import e2e_helpers as h  # noqa: E402

# Re-exported for tests that prefer `from conftest import ...`.
new_customer = h.new_customer
token = h.token
http = h.http


def claim_state_dir():
    """`.local/test-stack`, or a per-process sibling while another session holds it (the
    stack writes its function.env there, so two sessions must not share one)."""
    for state_dir in (ROOT / ".local" / "test-stack", ROOT / ".local" / f"test-stack-{os.getpid()}"):
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = open(state_dir / "session.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        for log in state_dir.glob("*.log"):
            log.unlink()
        return state_dir, lock
    raise RuntimeError("no state directory for the test stack")


@pytest.fixture(scope="session")
def stack():
    state_dir, lock = claim_state_dir()
    instance = Stack(
        state_dir=state_dir,
        api_port=free_port(),
        extra_function_env={
            "TOKEN_RATE_LIMIT": str(h.SUITE_TOKEN_LIMIT),
            "API_RATE_LIMIT": str(h.SUITE_API_LIMIT),
            "TOKEN_TTL_SECONDS": "3600",
            "KEY_REFRESH_SECONDS": "5",
            # As the template sets them, at the most verbose allowed LogLevel: the
            # log-hygiene test (test_logs.py) reads everything the functions write.
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_LAMBDA_LOG_LEVEL": "TRACE",
        },
    )

    def interrupted(*_):
        raise KeyboardInterrupt  # so the teardown below runs when CI terminates the run

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        instance.start()  # stops everything it started if it fails
        try:
            yield instance
        finally:
            instance.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
        lock.close()
        if state_dir.name != "test-stack":
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def customer(stack):
    """A fresh customer of this test only: (code, api_key, key_id)."""
    return h.new_customer(stack)
