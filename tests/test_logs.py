"""Log hygiene: full request flows leave exactly one JSON summary line per request, and no
API key, client_secret, Authorization value or access token ever reaches the logs, at the
most verbose log level (TRACE); at every allowed log level, exactly one metric line per
request survives Lambda's log-level filter."""

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import quote_plus

import pytest

import e2e_helpers as h


def log_lines(stack):
    return (stack.state_dir / "functions.log").read_text(errors="replace").splitlines()


def summaries(lines):
    out = []
    for line in lines:
        if line.startswith("{") and '"message":"request"' in line:
            out.append(json.loads(line))
    return out


def test_every_request_logs_one_summary_line_and_no_secret(stack, customer):
    function_env = (stack.state_dir / "function.env").read_text().splitlines()
    assert "AWS_LAMBDA_LOG_LEVEL=TRACE" in function_env and "AWS_LAMBDA_LOG_FORMAT=JSON" in function_env
    before = len(log_lines(stack))
    secrets = [customer.api_key]
    requests_made = 0

    def count(resp):
        nonlocal requests_made
        requests_made += 1
        return resp

    good = count(h.token(stack, customer.code, customer.api_key))
    assert good.status_code == 200
    access = good.json()["access_token"]
    secrets.append(access)
    assert count(h.token(stack, customer.code, customer.api_key, method="basic")).status_code == 200
    assert count(h.token(stack, customer.code, customer.api_key, method="json")).status_code == 200
    wrong = "kiss_sk_" + "A" * 49
    secrets.append(wrong)
    assert count(h.token(stack, customer.code, wrong)).status_code == 401
    assert count(h.token(stack, customer.code, wrong, method="basic")).status_code == 401
    assert count(h.token(stack, "NOBODY-X", customer.api_key)).status_code == 401
    assert count(h.post(stack, "/auth/token", data="grant_type=password")).status_code == 400
    assert count(h.get_customer(stack, access)).status_code == 200
    assert count(h.get_customer(stack, access, path="/customers/OTHER-CODE")).status_code == 404
    tampered = access[:-4] + "AAAA"
    secrets.append(tampered)
    assert count(h.get_customer(stack, tampered)).status_code == 401
    assert count(h.get(stack, "/customer", headers={"Authorization": "Basic " + customer.api_key})).status_code == 401
    assert count(h.get(stack, "/no/such/path")).status_code == 404

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = log_lines(stack)[before:]
        if len(summaries(new)) >= requests_made:
            break
        time.sleep(0.2)
    new = log_lines(stack)[before:]
    text = "\n".join(new)
    for secret in secrets:
        assert secret not in text, "a credential or token reached the logs"
        assert secret[:24] not in text
    for word in ("authorization", "client_secret", "bearer "):
        assert word not in text.lower(), f"{word!r} reached the logs"
    lines = summaries(new)
    assert len(lines) == requests_made, f"{len(lines)} summary lines for {requests_made} requests"
    for line in lines:
        assert line["request_id"], line
        assert line["route"] and line["outcome"] and isinstance(line["status"], int)
        assert isinstance(line["latency_ms"], (int, float))
        assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CustomerApi"
    outcomes = sorted(line["outcome"] for line in lines)
    assert outcomes.count("token_issued") == 3
    assert outcomes.count("invalid_client") == 3
    assert outcomes.count("invalid_token") == 2
    assert [line for line in lines if line["outcome"] == "found"][0]["customer_code"] == customer.code


# -- the release functions under a local Lambda Runtime API, at every log level --------------
# What Lambda keeps of a function's output is decided by its application log-level filter
# (template.yaml LoggingConfig.ApplicationLogLevel = the LogLevel parameter), not by the
# function. The tests below run the RELEASE bootstraps behind the bench's Runtime API
# (infra/bench/runtime_api.py) with the environment Lambda gives them at each level, apply
# Lambda's documented rule to every stdout/stderr line, and check what survives.

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra" / "bench"))

import runtime_api as rt  # noqa: E402

LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]  # the template's AllowedValues
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def lambda_level(line):
    """The level Lambda's filter gives one output line: the JSON `level` (case-insensitive,
    one of the six) of a line that also has a valid RFC 3339 `timestamp`; otherwise INFO
    ("If the level value field is invalid or missing, Lambda will assign the log output the
    level INFO ... If you don't supply a valid timestamp, Lambda will assign the log the level
    INFO", Lambda developer guide, log-level filtering)."""
    try:
        record = json.loads(line)
    except ValueError:
        return "INFO"
    if not isinstance(record, dict):
        return "INFO"
    level, stamp = record.get("level"), record.get("timestamp")
    if not isinstance(level, str) or level.upper() not in LEVELS or not rfc3339(stamp):
        return "INFO"
    return level.upper()


def rfc3339(value):
    if not isinstance(value, str) or "T" not in value or not (value.endswith("Z") or value[-6] in "+-"):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def kept_by_lambda(lines, configured):
    """The lines Lambda sends to CloudWatch Logs at application log level `configured`."""
    floor = LEVELS.index(configured)
    return [line for line in lines if LEVELS.index(lambda_level(line)) >= floor]


def emf_records(lines):
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "_aws" in record:
            out.append(record)
    return out


@pytest.fixture(scope="module")
def release_bin():
    """target/release/{token,customer}, built if missing or stale (cargo decides)."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["cargo", "build", "--release", "-p", "token", "-p", "customer"], cwd=root, check=True,
                   env={**os.environ, "AWS_LC_SYS_NO_JITTER_ENTROPY": "1"})
    return root / "target" / "release"


def run_under_runtime_api(binary, stack, level, events, log_path):
    """Starts `binary` as Lambda would at application log level `level` (JSON log format, the
    template's environment), sends `events` [(request id, event bytes)], stops it; returns the
    answers [(kind, body)] and every line it wrote to stdout and stderr."""
    name = binary.name
    api = rt.RuntimeApi(name)
    function_env = {**stack.function_env(), "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": level,
                    "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(binary)], env=rt.lambda_env(function_env, name, api.address), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    answers = []
    try:
        assert api.first_next.wait(60), f"{name}: no /next within 60 s; see {log_path}"
        assert api.init_error is None, f"{name}: init error {api.init_error!r}"
        for request_id, event in events:
            kind, body, _, _ = api.invoke(event, request_id=request_id)
            answers.append((kind, body))
    finally:
        rt.stop_process(process)
        api.close()
    return answers, log_path.read_text(errors="replace").splitlines()


def status_and_body(answer):
    kind, body = answer
    assert kind == "response", f"{kind}: {body[:300]!r}"
    response = json.loads(body)
    return response["statusCode"], response.get("body") or ""


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_keeps_one_metric_line_per_request_and_logs_no_credential(stack, customer, release_bin, level):
    code, key = customer.code, customer.api_key
    wrong = "kiss_sk_" + "B" * 49
    basic = h.basic_header(code, key)
    form = f"grant_type=client_credentials&client_id={code}&client_secret={quote_plus(key)}"
    token_cases = [
        (200, rt.rest_event("POST", "/auth/token", FORM, form)),
        (200, rt.rest_event("POST", "/auth/token", {**FORM, "Authorization": basic}, "grant_type=client_credentials")),
        (200, rt.rest_event("POST", "/auth/token", {"Content-Type": "application/json"},
                            json.dumps({"grant_type": "client_credentials", "client_id": code, "client_secret": key}))),
        (200, rt.rest_event("POST", "/auth/token", FORM, form, base_path="/v1")),
        (401, rt.rest_event("POST", "/auth/token", FORM, form.replace(quote_plus(key), wrong))),
        (400, rt.rest_event("POST", "/auth/token", FORM, f"grant_type=password&client_secret={quote_plus(key)}")),
        (400, rt.rest_event("GET", "/auth/token", {"Authorization": basic})),
        (404, rt.rest_event("GET", "/nope", {"Authorization": basic})),
    ]
    state = stack.state_dir / "levels"
    state.mkdir(exist_ok=True)
    token_ids = [str(uuid.uuid4()) for _ in token_cases]
    answers, token_lines = run_under_runtime_api(release_bin / "token", stack, level,
                                                 list(zip(token_ids, (e for _, e in token_cases))),
                                                 state / f"token-{level}.log")
    statuses = [status_and_body(a)[0] for a in answers]
    assert statuses == [s for s, _ in token_cases]
    access = json.loads(status_and_body(answers[0])[1])["access_token"]
    tampered = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
    by_code = {"customer_code": code}
    customer_cases = [
        (200, rt.rest_event("GET", "/customer", h.bearer(access))),
        (200, rt.rest_event("GET", f"/customers/{code}", h.bearer(access), resource="/customers/{customer_code}",
                            path_parameters=by_code)),
        (200, rt.rest_event("GET", f"/customers/{code}", h.bearer(access), resource="/customers/{customer_code}",
                            path_parameters=by_code, base_path="/v1")),
        (404, rt.rest_event("GET", "/customers/OTHER-CODE", h.bearer(access), resource="/customers/{customer_code}",
                            path_parameters={"customer_code": "OTHER-CODE"})),
        (401, rt.rest_event("GET", "/customer", h.bearer(tampered))),
        (401, rt.rest_event("GET", "/customer", {"Authorization": "Basic " + key})),
        (404, rt.rest_event("GET", "/no/such/path", h.bearer(access), resource="/{proxy+}",
                            path_parameters={"proxy": "no/such/path"})),
    ]
    customer_ids = [str(uuid.uuid4()) for _ in customer_cases]
    answers, customer_lines = run_under_runtime_api(release_bin / "customer", stack, level,
                                                    list(zip(customer_ids, (e for _, e in customer_cases))),
                                                    state / f"customer-{level}.log")
    assert [status_and_body(a)[0] for a in answers] == [s for s, _ in customer_cases]

    # Exactly one metric line per request survives Lambda's filter at this level.
    expected_level = level if LEVELS.index(level) > LEVELS.index("INFO") else "INFO"
    for lines, ids, function in ((token_lines, token_ids, "token"), (customer_lines, customer_ids, "customer")):
        kept = emf_records(kept_by_lambda(lines, level))
        assert sorted(r["request_id"] for r in kept) == sorted(ids), "\n".join(lines)
        assert len(emf_records(lines)) == len(ids), "one metric line per request, none extra"
        for record in kept:
            assert record["level"] == expected_level and rfc3339(record["timestamp"]), record
            assert record["Function"] == function and record["message"] == "request"
            directive = record["_aws"]["CloudWatchMetrics"][0]
            assert directive["Namespace"] == "CustomerApi" and directive["Dimensions"] == [["Function"]]
    token_records = {r["request_id"]: r for r in emf_records(token_lines)}
    assert [token_records[i]["TokensIssued"] for i in token_ids] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert [token_records[i]["AuthenticationFailures"] for i in token_ids] == [0, 0, 0, 0, 1, 0, 0, 0]
    customer_records = {r["request_id"]: r for r in emf_records(customer_lines)}
    assert [customer_records[i]["outcome"] for i in customer_ids] == [
        "found", "found", "found", "not_found", "invalid_token", "invalid_token", "not_found"]
    assert [customer_records[i]["AuthenticationFailures"] for i in customer_ids] == [0, 0, 0, 0, 1, 1, 0]

    # Nothing a client sent as a credential reaches any line, kept or not (at TRACE
    # lambda_runtime would otherwise log every raw event: headers and body).
    text = "\n".join(token_lines + customer_lines)
    for secret in (key, quote_plus(key), wrong, access, tampered, basic, basic.split()[1]):
        assert secret not in text, f"a credential or token reached the logs at {level}"
        assert secret[8:32] not in text
    for word in ("authorization", "client_secret", "grant_type", "bearer", "basic "):
        assert word not in text.lower(), f"{word!r} in the logs at {level}"
