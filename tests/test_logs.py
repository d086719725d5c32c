"""Log hygiene: full request flows leave exactly one JSON summary line per request, and no
API key, client_secret, Authorization value or access token ever reaches the logs."""

import json
import time

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
    assert "Authorization" not in text and "authorization" not in text
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
