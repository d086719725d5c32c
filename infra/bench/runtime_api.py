"""Release functions behind a local Lambda Runtime API: cold init, round trip, peak RSS, sizes.

A minimal Runtime API (the four endpoints a Rust runtime uses) on 127.0.0.1 feeds API Gateway
REST (v1) proxy events to the RELEASE bootstraps `target/release/{token,customer}`, with moto
(via infra/local/moto_server.py) as DynamoDB and Secrets Manager, set up the way `make run`
sets it up (infra/local/stack.py: table, secrets, signing key, demo customer).

Per function it measures, in one run, next to baselines measured in the same run:
  * cold init: Popen to the first `GET /runtime/invocation/next`, i.e. process start, config,
    SDK clients, key load and DynamoDB connection warm-up against moto (median of --starts);
  * init + first request: Popen to the first response (what a cold request costs);
  * warm round trip through the Runtime API (median, p99) over --requests invocations,
    every answer checked to be a 200;
  * the function's CPU time per warm request (all its threads, /proc schedstat), which the
    shared machine's noise barely moves;
  * RSS after init (VmRSS at the first /next) and peak RSS (VmHWM) after --requests;
  * bootstrap and deployment zip sizes (the binary renamed `bootstrap`, zipfile deflate);
  * a bounded soak: --soak requests (default 50,000) through one fresh process per function,
    a mix of successes and refusals, every answer checked; peak RSS (VmHWM) after the first
    --soak-warmup (1,000) and at the end. Growth of 1 MB or more fails the run (exit 1), after
    every table is printed. Each invocation carries a new X-Ray trace id, as in Lambda;
    `--soak-trace-ids fixed` sends one value throughout (README, Benchmarks: why).
Baselines: a no-op Python function on the same Runtime API (harness floor), one raw DynamoDB
GetItem to moto on a kept-alive connection (I/O floor of a warm request), the two init calls
(GetSecretValue + GetItem) on new connections (I/O floor of init), and the same requests to the
same release binaries through `cargo lambda watch --only-lambda-apis` (the emulator behind
`make run`: HTTP router, API Gateway v2 events, its own Runtime API; nothing is compiled).

Usage: python infra/bench/runtime_api.py [--requests 1000] [--starts 5] [--watch-requests 100]
                                         [--soak 50000] [--soak-warmup 1000] [--soak-trace-ids unique]
                                         [--bin-dir target/release] [--functions token,customer]
Run after `cargo build --release -p token -p customer` (`make bench` does both). Needs
target/debug/customer-admin to seed moto (built if missing). Logs: .local/bench/.
"""

import argparse
import base64
import http.client
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "local"))

from stack import REGION, SIGNING_SECRET, TABLE, VENV_BIN, Stack, free_port  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from e2e_helpers import ProofKey  # noqa: E402  (DPoP proofs, also used by the e2e tests)

RELEASE = ROOT / "target" / "release"
ADMIN = ROOT / "target" / "debug" / "customer-admin"
STATE_DIR = ROOT / ".local" / "bench"
PREFIX = "/2018-06-01"
FUNCTION_TIMEOUT_MS = 10_000  # template.yaml Globals.Function.Timeout
MEMORY_MB = 256  # template.yaml MemorySize default
SIZE_TARGET_MB = 6.0
RSS_TARGET_MB = 30.0
SOAK_GROWTH_LIMIT_MB = 1.0
FIXED_TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
HIGH_LIMIT = "1000000000"


# ---------------------------------------------------------------------------- Runtime API
class RuntimeApi:
    """One local Lambda Runtime API: queue events, hand them to `/next`, collect answers."""

    def __init__(self, function_name, fixed_trace_id=None):
        self.function_name = function_name
        self.fixed_trace_id = fixed_trace_id  # None: a new X-Ray trace id per invocation, as Lambda sends
        self.events = queue.Queue()
        self.lock = threading.Lock()
        self.waiting = {}  # request id -> threading.Event
        self.answers = {}  # request id -> (kind, body, monotonic time)
        self.first_next = threading.Event()
        self.first_next_at = None
        self.init_error = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the Rust client expects
            disable_nagle_algorithm = True  # TCP_NODELAY
            wbufsize = 1 << 16  # headers and body leave in one write (flushed per request)

            def log_message(self, *args):
                pass

            def read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def reply(self, status, body=b"", headers=None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != PREFIX + "/runtime/invocation/next":
                    return self.reply(404, b'{"errorMessage":"not found"}')
                api.saw_next()
                item = api.events.get()
                if item is None:  # shutting down
                    self.close_connection = True
                    return self.reply(503, b'{"errorMessage":"shutting down"}')
                request_id, body = item
                deadline = int(time.time() * 1000) + FUNCTION_TIMEOUT_MS
                self.reply(200, body, {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        f"arn:aws:lambda:{REGION}:123456789012:function:{api.function_name}",
                    "Lambda-Runtime-Trace-Id": api.fixed_trace_id or
                        f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0",
                })

            def do_POST(self):
                body = self.read_body()
                path = self.path
                if path == PREFIX + "/runtime/init/error":
                    api.init_error = body
                    api.first_next.set()
                    return self.reply(202, b'{"status":"OK"}')
                parts = path[len(PREFIX):].split("/")  # ['', 'runtime', 'invocation', id, kind]
                if len(parts) == 5 and parts[1:3] == ["runtime", "invocation"] and parts[4] in ("response", "error"):
                    api.answer(parts[3], parts[4], body)
                    return self.reply(202, b'{"status":"OK"}')
                return self.reply(404, b'{"errorMessage":"not found"}')

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
                    super().handle_error(request, client_address)  # a killed function is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def saw_next(self):
        if not self.first_next.is_set():
            self.first_next_at = time.monotonic()
            self.first_next.set()

    def answer(self, request_id, kind, body):
        with self.lock:
            self.answers[request_id] = (kind, body, time.monotonic())
            done = self.waiting.get(request_id)
        if done:
            done.set()

    def invoke(self, event_bytes, timeout=30, request_id=None):
        """Queues one event; returns (kind, body, start, end) once the function answered.
        `request_id` (default: a new UUID) is the Lambda request id the function sees."""
        request_id = request_id or str(uuid.uuid4())
        done = threading.Event()
        with self.lock:
            self.waiting[request_id] = done
        start = time.monotonic()
        self.events.put((request_id, event_bytes))
        if not done.wait(timeout):
            raise RuntimeError(f"{self.function_name}: no answer to {request_id} within {timeout} s")
        with self.lock:
            del self.waiting[request_id]
            kind, body, end = self.answers.pop(request_id)
        return kind, body, start, end

    def close(self):
        for _ in range(8):  # unblock any /next still waiting
            self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------- events
def rest_event(method, path, headers, body=None, resource=None, path_parameters=None, base_path=None):
    """An API Gateway REST (v1) proxy event as the deployed API sends it: `path` is the path
    inside the API, `resource` the matched resource (default: `path`). Without `base_path` the
    request came to the execute-api URL (stage `Prod` in `requestContext.path`); with one, to a
    custom domain whose base-path mapping is `base_path` (e.g. `/v1`), which API Gateway keeps
    in `path`."""
    host = "api.example.com" if base_path else "abc123.execute-api.us-east-1.amazonaws.com"
    headers = {"Host": host, "User-Agent": "bench/1.0", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443",
               **headers}
    public_path = f"{base_path}{path}" if base_path else path
    return json.dumps({
        "resource": resource or path,
        "path": public_path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "resourceId": "res123",
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": public_path if base_path else f"/Prod{path}",
            "stage": "Prod",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "domainName": host,
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "bench/1.0"},
        },
        "body": body,
        "isBase64Encoded": False,
    }).encode()


def token_event(code, key):
    form = f"grant_type=client_credentials&client_id={code}&client_secret={key}"
    return rest_event("POST", "/auth/token", {"Content-Type": "application/x-www-form-urlencoded"}, form)


def lookup_event(access_token):
    return rest_event("GET", "/customer", {"Authorization": f"Bearer {access_token}"})


def dpop_token_event(code, key, issuer, proof_key, **proof_changes):
    """A client_secret_post token request with a DPoP proof made now."""
    form = f"grant_type=client_credentials&client_id={code}&client_secret={key}"
    proof = proof_key.proof("POST", f"{issuer}/auth/token", **proof_changes)
    return rest_event("POST", "/auth/token", {"Content-Type": "application/x-www-form-urlencoded", "DPoP": proof},
                      form)


def dpop_lookup_event(bound_token, issuer, proof_key, **proof_changes):
    """GET /customer with a DPoP-bound token and a proof made now."""
    proof = proof_key.proof("GET", f"{issuer}/customer", access_token=bound_token, **proof_changes)
    return rest_event("GET", "/customer", {"Authorization": f"DPoP {bound_token}", "DPoP": proof})


def soak_cases(name, code, key, access_token, dpop):
    """The soak's request mix, cycled: [(label, expected status, event)], where an event may be
    a function making a fresh one (a DPoP proof is single use). Refusals as well as successes,
    so what a leak would need (error paths, the 404 fallback, replay markers) runs as often.
    `dpop`: (issuer, proof key, a token bound to it)."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bearer = {"Authorization": f"Bearer {access_token}"}
    issuer, proof_key, bound_token = dpop
    if name == "token":
        basic = "Basic " + base64.b64encode(f"{code}:{key}".encode()).decode()
        return [
            ("200 DPoP", 200, lambda: dpop_token_event(code, key, issuer, proof_key)),
            ("400 DPoP proof for another method", 400,
             dpop_token_event(code, key, issuer, proof_key, claims={"htm": "GET"})),
            ("200 client_secret_post", 200, token_event(code, key)),
            ("200 client_secret_basic", 200, rest_event("POST", "/auth/token", {**form, "Authorization": basic},
                                                        "grant_type=client_credentials")),
            ("401 wrong key", 401, token_event(code, "kiss_sk_" + "A" * 49)),
            ("400 unsupported grant", 400, rest_event("POST", "/auth/token", form, "grant_type=password")),
        ]
    return [
        ("200 DPoP /customer", 200, lambda: dpop_lookup_event(bound_token, issuer, proof_key)),
        ("401 DPoP proof with a wrong ath", 401,
         dpop_lookup_event(bound_token, issuer, proof_key, claims={"ath": "x"})),
        ("200 /customer", 200, lookup_event(access_token)),
        ("200 /customers/{code} via /v1", 200, rest_event("GET", f"/customers/{code}", bearer,
                                                          resource="/customers/{customer_code}",
                                                          path_parameters={"customer_code": code}, base_path="/v1")),
        ("404 another code", 404, rest_event("GET", "/customers/OTHER-CODE", bearer,
                                             resource="/customers/{customer_code}",
                                             path_parameters={"customer_code": "OTHER-CODE"})),
        ("401 bad token", 401, rest_event("GET", "/customer", {"Authorization": "Bearer not.a.token"})),
        ("404 unknown path", 404, rest_event("GET", "/nope", {}, resource="/{proxy+}",
                                             path_parameters={"proxy": "nope"})),
    ]


def status_of(kind, body):
    if kind != "response":
        return f"{kind}: {body[:200]!r}"
    try:
        return json.loads(body).get("statusCode")
    except (ValueError, AttributeError):
        return f"unparsable: {body[:200]!r}"


# ---------------------------------------------------------------------------- helpers
def lambda_env(function_env, name, runtime_api):
    """A function's environment as Lambda sets it: this process's environment without AWS_,
    CARGO and RUST variables, then `function_env` (the stack's: endpoints, table, secrets,
    limits, and the template's AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL when given), then
    the runtime's own variables. `runtime_api` is host:port[/path]."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGO", "RUST"))}
    env.update(function_env)
    env.pop("RUST_LOG", None)  # Lambda sets AWS_LAMBDA_LOG_LEVEL, not RUST_LOG
    env.update({
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    })
    return env


def proc_status(pid, field):
    """VmRSS / VmHWM of a live process in MB (from kB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid):
    """CPU time of all the process's threads so far (schedstat, ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ms(seconds):
    return seconds * 1000


def stop_process(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------- measurements
class Bench:
    def __init__(self, args):
        self.args = args
        self.stack = Stack(STATE_DIR, free_port(), extra_function_env={
            "TOKEN_RATE_LIMIT": HIGH_LIMIT,
            "API_RATE_LIMIT": HIGH_LIMIT,
            "KEY_REFRESH_SECONDS": "300",  # template default
            "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",  # template LoggingConfig
            "AWS_LAMBDA_LOG_LEVEL": "INFO",
        })
        self.bin_dir = Path(args.bin_dir).resolve()
        self.results = {}
        self.baselines = {}
        self.soaks = {}

    def function_env(self, name, runtime_api):
        """The function's environment as Lambda would set it; `runtime_api` is host:port[/path]."""
        return lambda_env(self.stack.function_env(), name, runtime_api)

    def start(self, name, fixed_trace_id=None):
        """One process start; returns (process, api, init seconds, RSS MB at the first /next)."""
        api = RuntimeApi(name, fixed_trace_id)
        log = open(STATE_DIR / f"{name}.log", "ab")
        started = time.monotonic()
        process = subprocess.Popen([str(self.bin_dir / name)], env=self.function_env(name, api.address), cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        if not api.first_next.wait(60) or api.init_error is not None:
            stop_process(process)
            api.close()
            raise RuntimeError(f"{name}: no /next within 60 s (init error: {api.init_error!r}); "
                               f"see {STATE_DIR / (name + '.log')}")
        rss = proc_status(process.pid, "VmRSS")
        return process, api, api.first_next_at - started, rss, started

    def run_function(self, name, event):
        """--starts cold starts (init, first request); the last one serves --requests in total."""
        inits, firsts, rss_after_init, bodies = [], [], [], []
        for attempt in range(self.args.starts):
            process, api, init, rss, started = self.start(name)
            try:
                kind, body, _, end = api.invoke(event)
                status = status_of(kind, body)
                if status != 200:
                    raise RuntimeError(f"{name}: cold request answered {status}: {body[:300]!r}")
                inits.append(init)
                firsts.append(end - started)
                rss_after_init.append(rss)
                bodies.append(body)
                if attempt < self.args.starts - 1:
                    continue
                trips, statuses = [], {}
                cpu_start = cpu_seconds(process.pid)
                for _ in range(self.args.requests - 1):
                    kind, body, start, end = api.invoke(event)
                    status = status_of(kind, body)
                    statuses[status] = statuses.get(status, 0) + 1
                    trips.append(end - start)
                peak = proc_status(process.pid, "VmHWM")
                cpu = (cpu_seconds(process.pid) - cpu_start) / len(trips)
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited during the run")
            finally:
                stop_process(process)
                api.close()
        if set(statuses) != {200}:
            raise RuntimeError(f"{name}: not every warm answer was 200: {statuses}")
        self.results[name] = {
            "inits": inits, "firsts": firsts, "rss_init": rss_after_init, "trips": trips,
            "peak": peak, "cpu": cpu, "ok": statuses[200] + 1,
        }
        return bodies[-1]

    def bound_token(self, code, key, dpop):
        """A DPoP-bound access token from a token function process of its own."""
        issuer, proof_key, _ = dpop
        process, api, *_ = self.start("token")
        try:
            kind, body, _, _ = api.invoke(dpop_token_event(code, key, issuer, proof_key))
        finally:
            stop_process(process)
            api.close()
        if status_of(kind, body) != 200:
            raise RuntimeError(f"token: no DPoP-bound token: {body[:300]!r}")
        token = json.loads(json.loads(body)["body"])
        if token["token_type"] != "DPoP":
            raise RuntimeError(f"token: asked for DPoP, got {token['token_type']!r}")
        return token["access_token"]

    def soak(self, name, cases):
        """--soak requests through one fresh process, cycling `cases`; every answer must have
        its expected status. Records VmHWM after --soak-warmup requests and at the end."""
        total, warmup = self.args.soak, self.args.soak_warmup
        fixed = FIXED_TRACE_ID if self.args.soak_trace_ids == "fixed" else None
        process, api, *_ = self.start(name, fixed)
        counts = {label: 0 for label, _, _ in cases}
        started = time.monotonic()
        try:
            for i in range(total):
                label, expected, event = cases[i % len(cases)]
                kind, body, _, _ = api.invoke(event() if callable(event) else event)
                status = status_of(kind, body)
                if status != expected:
                    try:
                        answer = json.loads(body).get("body")
                    except (ValueError, AttributeError):
                        answer = body[:300]
                    raise RuntimeError(f"{name} soak, request {i + 1} ({label}): {status}: {answer!r}")
                counts[label] += 1
                if i + 1 == warmup:
                    peak_warm, rss_warm = proc_status(process.pid, "VmHWM"), proc_status(process.pid, "VmRSS")
            peak_end, rss_end = proc_status(process.pid, "VmHWM"), proc_status(process.pid, "VmRSS")
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited during the soak")
        finally:
            stop_process(process)
            api.close()
        self.soaks[name] = {"counts": counts, "peak_warm": peak_warm, "rss_warm": rss_warm, "peak_end": peak_end,
                            "rss_end": rss_end, "seconds": time.monotonic() - started}

    def null_function(self, requests):
        """Harness floor: a Python runtime loop that answers at once, on the same Runtime API."""
        api = RuntimeApi("null")
        answer = json.dumps({"statusCode": 200, "headers": {}, "body": "{}", "isBase64Encoded": False}).encode()
        stop = threading.Event()

        def loop():
            conn = http.client.HTTPConnection("127.0.0.1", api.port)
            while not stop.is_set():
                conn.request("GET", PREFIX + "/runtime/invocation/next")
                response = conn.getresponse()
                response.read()
                request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
                if response.status != 200 or not request_id:
                    return
                conn.request("POST", f"{PREFIX}/runtime/invocation/{request_id}/response", answer)
                conn.getresponse().read()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        event = token_event("X", "Y")
        trips = []
        for _ in range(requests):
            _, _, start, end = api.invoke(event)
            trips.append(end - start)
        stop.set()
        api.close()
        self.baselines["null"] = trips[1:]

    def moto_floors(self, rounds=5):
        """Raw HTTP to moto: one GetItem on a kept-alive connection (warm floor), and
        GetSecretValue + GetItem on a new connection (the I/O of init)."""
        auth = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{svc}/aws4_request, "
                "SignedHeaders=host;x-amz-date, Signature=0")
        get_item = json.dumps({"TableName": TABLE, "Key": {"customer_code": {"S": "DEMO-CUSTOMER"}}}).encode()
        get_secret = json.dumps({"SecretId": SIGNING_SECRET}).encode()

        def call(conn, target, svc, body):
            conn.request("POST", "/", body, {
                "Content-Type": "application/x-amz-json-1.0" if svc == "dynamodb" else "application/x-amz-json-1.1",
                "X-Amz-Target": target, "X-Amz-Date": "20260101T000000Z",
                "Authorization": auth.format(svc=svc),
            })
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"moto {target}: {response.status} {data[:200]!r}")

        port = self.stack.moto_port
        conn = http.client.HTTPConnection("127.0.0.1", port)
        call(conn, "DynamoDB_20120810.GetItem", "dynamodb", get_item)
        warm = []
        for _ in range(200):
            start = time.monotonic()
            call(conn, "DynamoDB_20120810.GetItem", "dynamodb", get_item)
            warm.append(time.monotonic() - start)
        conn.close()
        init = []
        for _ in range(rounds):
            start = time.monotonic()
            a = http.client.HTTPConnection("127.0.0.1", port)
            b = http.client.HTTPConnection("127.0.0.1", port)
            call(a, "secretsmanager.GetSecretValue", "secretsmanager", get_secret)
            call(b, "DynamoDB_20120810.GetItem", "dynamodb", get_item)
            init.append(time.monotonic() - start)
            a.close()
            b.close()
        self.baselines["moto_warm"] = warm
        self.baselines["moto_init"] = init

    def watch(self, requests, access_token):
        """The same requests through `cargo lambda watch` (the `make run` path: HTTP router,
        API Gateway v2 events, cargo-lambda's Runtime API), serving the SAME release binaries:
        `--only-lambda-apis` makes cargo-lambda emulate without building or starting them."""
        stack = self.stack
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        with open(STATE_DIR / "watch.log", "ab") as out:
            watcher = subprocess.Popen(
                [str(VENV_BIN / "cargo-lambda"), "lambda", "watch", "--only-lambda-apis", "--disable-cors",
                 "-A", "127.0.0.1", "-P", str(stack.api_port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        functions = []
        try:
            deadline = time.monotonic() + 60
            while not port_open(stack.api_port):
                if watcher.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"cargo lambda watch did not start; see {STATE_DIR / 'watch.log'}")
                time.sleep(0.2)
            for name in self.args.functions:
                function_env = self.function_env(name, f"http://127.0.0.1:{stack.api_port}/.rt/{name}")
                with open(STATE_DIR / f"watch-{name}.log", "ab") as out:
                    functions.append(subprocess.Popen([str(self.bin_dir / name)], env=function_env, cwd=ROOT, stdout=out,
                                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            code, key = stack.demo["customer_code"], stack.demo["api_key"]
            form = f"grant_type=client_credentials&client_id={code}&client_secret={key}".encode()
            cases = {
                "token": ("POST", "/auth/token", form, {"Content-Type": "application/x-www-form-urlencoded"}),
                "customer": ("GET", "/customer", None, {"Authorization": f"Bearer {access_token}"}),
            }
            for name in self.args.functions:
                method, path, body, headers = cases[name]
                conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
                trips = []
                for i in range(requests + 5):
                    start = time.monotonic()
                    conn.request(method, path, body, headers)
                    response = conn.getresponse()
                    data = response.read()
                    elapsed = time.monotonic() - start
                    if response.status != 200:
                        raise RuntimeError(f"cargo lambda watch, {name}: {response.status} {data[:300]!r}")
                    if i >= 5:  # the first few include the cold request and the emulator's warm-up
                        trips.append(elapsed)
                conn.close()
                self.baselines[f"watch_{name}"] = trips
        finally:
            for process in functions:
                stop_process(process)
            try:
                os.killpg(watcher.pid, signal.SIGTERM)
                watcher.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(watcher.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -------------------------------------------------------------------------- run
    def run(self):
        for name in self.args.functions:
            if not (self.bin_dir / name).exists():
                sys.exit(f"{self.bin_dir / name} is missing: run `cargo build --release -p token -p customer` first.")
        if not ADMIN.exists():
            subprocess.run(["cargo", "build", "-p", "customer-admin", "--bin", "customer-admin"], cwd=ROOT, check=True,
                           env={**os.environ, "AWS_LC_SYS_NO_JITTER_ENTROPY": "1"})
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        for old in STATE_DIR.glob("*.log"):
            old.unlink()
        stack = self.stack
        try:
            stack.start_moto()
            stack.create_resources()
            stack.seed()
            code, key = stack.demo["customer_code"], stack.demo["api_key"]
            print(f"moto on {stack.endpoint}; {self.args.starts} starts and {self.args.requests} requests "
                  f"per function; logs in {STATE_DIR}", file=sys.stderr, flush=True)
            self.moto_floors()
            self.null_function(self.args.requests)
            body = self.run_function("token", token_event(code, key))
            access_token = json.loads(json.loads(body)["body"])["access_token"]
            if "customer" in self.args.functions:
                self.run_function("customer", lookup_event(access_token))
            if self.args.soak:
                dpop = (stack.api_url, ProofKey(), None)
                dpop = (*dpop[:2], self.bound_token(code, key, dpop))
                for name in self.args.functions:
                    print(f"soak: {self.args.soak} requests through {name}", file=sys.stderr, flush=True)
                    self.soak(name, soak_cases(name, code, key, access_token, dpop))
            if self.args.watch_requests:
                self.watch(self.args.watch_requests, access_token)
        finally:
            stack.stop()
        self.print_tables()
        grown = [name for name, s in self.soaks.items() if s["peak_end"] - s["peak_warm"] >= SOAK_GROWTH_LIMIT_MB]
        if grown:
            sys.exit(f"soak: peak RSS grew by {SOAK_GROWTH_LIMIT_MB:.0f} MB or more in: {', '.join(grown)}")

    def print_tables(self):
        n, starts = self.args.requests, self.args.starts
        print(f"\n| Function (release, local Runtime API, moto) | Cold init: Popen → first /next, median of {starts} "
              f"(min–max) | Init + first request, median | Warm round trip median | Warm p99 | Function CPU per "
              f"warm request | RSS after init | Peak RSS (VmHWM) after {n} requests |")
        print("|---|---|---|---|---|---|---|---|")
        for name, r in self.results.items():
            inits = [ms(x) for x in r["inits"]]
            trips = [ms(x) for x in r["trips"]]
            flag = "" if r["peak"] <= RSS_TARGET_MB else " (over 30 MB)"
            print(f"| {name} ({r['ok']}/{n} answered 200) | {statistics.median(inits):.1f} ms "
                  f"({min(inits):.1f}–{max(inits):.1f}) | {ms(statistics.median(r['firsts'])):.1f} ms "
                  f"| {statistics.median(trips):.2f} ms | {percentile(trips, 99):.2f} ms | {ms(r['cpu']):.3f} ms "
                  f"| {statistics.median(r['rss_init']):.1f} MB | {r['peak']:.1f} MB{flag} |")
        b = self.baselines
        if "moto_init" in b:
            init = [ms(x) for x in b["moto_init"]]
            warm = [ms(x) for x in b["moto_warm"]]
            print(f"| baseline: moto I/O of init (GetSecretValue + GetItem, new connections, raw HTTP) "
                  f"| {statistics.median(init):.1f} ms | — | — | — | — | — | — |")
            print(f"| baseline: moto I/O of a warm request (one GetItem, kept-alive connection, raw HTTP) "
                  f"| — | — | {statistics.median(warm):.2f} ms | {percentile(warm, 99):.2f} ms | — | — | — |")
        if "null" in b:
            trips = [ms(x) for x in b["null"]]
            print(f"| baseline: no-op Python function on the same Runtime API (harness floor) | — | — "
                  f"| {statistics.median(trips):.2f} ms | {percentile(trips, 99):.2f} ms | — | — | — |")
        for name in ("token", "customer"):
            if f"watch_{name}" in b:
                trips = [ms(x) for x in b[f"watch_{name}"]]
                print(f"| baseline: {name}, same request and binary through `cargo lambda watch` "
                      f"(HTTP, {len(trips)} requests) | — | — | {statistics.median(trips):.2f} ms "
                      f"| {percentile(trips, 99):.2f} ms | — | — | — |")
        print(f"\n| Release bootstrap (host target, stripped) | Size | ≤ {SIZE_TARGET_MB:.0f} MB | Deployment zip "
              f"(`bootstrap`, deflate) |")
        print("|---|---|---|---|")
        for name in self.args.functions:
            size, zipped = bootstrap_sizes(self.bin_dir / name)
            ok = "yes" if size / 1e6 <= SIZE_TARGET_MB else "no"
            print(f"| {name} | {size / 1e6:.2f} MB | {ok} | {zipped / 1e6:.2f} MB |")
        if self.soaks:
            total, warmup = self.args.soak, self.args.soak_warmup
            print(f"\n| Soak (release, one process, {total:,} requests, {self.args.soak_trace_ids} trace ids) | Mix (each answered as expected) "
                  f"| Peak RSS after {warmup:,} | Peak RSS after {total:,} | Growth (< {SOAK_GROWTH_LIMIT_MB:.0f} MB) "
                  f"| RSS after {warmup:,} / {total:,} | Wall time |")
            print("|---|---|---|---|---|---|---|")
            for name, s in self.soaks.items():
                mix = ", ".join(f"{label} ×{count:,}" for label, count in s["counts"].items())
                growth = s["peak_end"] - s["peak_warm"]
                verdict = "yes" if growth < SOAK_GROWTH_LIMIT_MB else "NO"
                print(f"| {name} | {mix} | {s['peak_warm']:.2f} MB | {s['peak_end']:.2f} MB "
                      f"| {growth * 1024:+.0f} kB ({verdict}) | {s['rss_warm']:.2f} / {s['rss_end']:.2f} MB "
                      f"| {s['seconds']:.0f} s ({total / s['seconds']:.0f} req/s) |")


def bootstrap_sizes(binary):
    """Binary size and the size of a Lambda zip holding it as `bootstrap` (executable)."""
    target = STATE_DIR / f"{binary.name}.zip"
    info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(info, binary.read_bytes())
    return binary.stat().st_size, target.stat().st_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="invocations per function (default 1000)")
    parser.add_argument("--starts", type=int, default=5, help="cold process starts per function (default 5)")
    parser.add_argument("--watch-requests", type=int, default=int(os.environ.get("BENCH_WATCH_REQUESTS", "100")),
                        help="requests per function through `cargo lambda watch`; 0 skips (default 100)")
    parser.add_argument("--soak", type=int, default=int(os.environ.get("BENCH_SOAK_REQUESTS", "50000")),
                        help="soak requests per function through one process; 0 skips (default 50000)")
    parser.add_argument("--soak-warmup", type=int, default=1000,
                        help="soak requests before the first peak-RSS reading (default 1000)")
    parser.add_argument("--soak-trace-ids", choices=["unique", "fixed"], default="unique",
                        help="X-Ray trace id per soak invocation: unique (as Lambda sends, default) or one "
                             "fixed value (isolates the runtime's per-invocation setenv; README, Benchmarks)")
    parser.add_argument("--bin-dir", default=str(RELEASE),
                        help="directory holding the token and customer binaries (default target/release)")
    parser.add_argument("--functions", default="token,customer",
                        help="comma-separated: token,customer or token (the customer run needs a token from token)")
    args = parser.parse_args()
    args.functions = [f for f in args.functions.split(",") if f]
    if "token" not in args.functions or not set(args.functions) <= {"token", "customer"}:
        parser.error("--functions must include token (it issues the customer run's access token)")
    if args.requests < 2 or args.starts < 1:
        parser.error("--requests must be ≥ 2 and --starts ≥ 1")
    if args.soak and not 0 < args.soak_warmup < args.soak:
        parser.error("--soak-warmup must be between 0 and --soak")
    Bench(args).run()


if __name__ == "__main__":
    main()
