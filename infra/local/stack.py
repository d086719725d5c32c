"""The local stack behind `make run` and the end-to-end tests.

moto (DynamoDB + Secrets Manager) on 127.0.0.1, the table and secrets, a signing key, a demo
customer, and both functions under `cargo lambda watch` on the deployed paths.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
REGION = "us-east-1"
TABLE = "customers"
SIGNING_SECRET = "customer-api/signing-keys"
VERIFICATION_SECRET = "customer-api/verification-keys"
DEMO_CODE = "DEMO-CUSTOMER"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def http(method, url, body=None, headers=None, timeout=30):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Stack:
    """One local stack; `start()` returns when both functions answer."""

    def __init__(self, state_dir, api_port, moto_port=None, extra_function_env=None):
        self.state_dir = Path(state_dir)
        self.api_port = api_port
        self.moto_port = moto_port or free_port()
        self.extra_function_env = extra_function_env or {}
        self.processes = []
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.endpoint = f"http://127.0.0.1:{self.moto_port}"
        self.demo = None

    # -- environment -----------------------------------------------------------------
    def aws_env(self):
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "TABLE_NAME": TABLE,
            "SIGNING_SECRET_ID": SIGNING_SECRET,
            "VERIFICATION_SECRET_ID": VERIFICATION_SECRET,
        }

    def function_env(self):
        env = self.aws_env()
        env.update(
            {
                "ISSUER": self.api_url,
                "AUDIENCE": "customer-api",
                "KEY_REFRESH_SECONDS": os.environ.get("KEY_REFRESH_SECONDS", "5"),
                "TOKEN_TTL_SECONDS": os.environ.get("TOKEN_TTL_SECONDS", "3600"),
                "TOKEN_RATE_LIMIT": os.environ.get("TOKEN_RATE_LIMIT", "20"),
                "API_RATE_LIMIT": os.environ.get("API_RATE_LIMIT", "120"),
                "SDK_TIMEOUT_MS": "2000",
                "SDK_MAX_ATTEMPTS": "2",
                "RUST_LOG": "info",
            }
        )
        env.update(self.extra_function_env)
        return env

    def admin(self, *args):
        """Runs customer-admin --json against this stack; returns (exit code, parsed JSON)."""
        env = {**os.environ, **self.aws_env()}
        binary = ROOT / "target" / "debug" / "customer-admin"
        done = subprocess.run([str(binary), *args, "--json"], env=env, capture_output=True, text=True)
        try:
            out = json.loads(done.stdout) if done.stdout.strip() else None
        except json.JSONDecodeError:
            out = None
        return done.returncode, out

    # -- lifecycle ---------------------------------------------------------------------
    def spawn(self, args, log_name, env=None):
        log = open(self.state_dir / log_name, "ab")
        process = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_moto(self):
        self.spawn([str(VENV_BIN / "python"), str(ROOT / "infra/local/moto_server.py"), str(self.moto_port)], "moto.log")
        wait_for(lambda: http("GET", self.endpoint + "/moto-api/")[0] < 500, 60, "the AWS emulator")

    def create_resources(self):
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        dynamodb = session.client("dynamodb", endpoint_url=self.endpoint)
        dynamodb.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "customer_code", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "customer_code", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        secrets = session.client("secretsmanager", endpoint_url=self.endpoint)
        for name in (SIGNING_SECRET, VERIFICATION_SECRET):
            secrets.create_secret(Name=name, SecretString='{"keys":[]}')

    def write_env_file(self):
        lines = [f"export {k}={v}" for k, v in self.aws_env().items()]
        lines.append(f"export CUSTOMER_API_URL={self.api_url}")
        if self.demo:
            lines.append(f"export DEMO_CUSTOMER_CODE={self.demo['customer_code']}")
            lines.append(f"export DEMO_API_KEY={self.demo['api_key']}")
        lines.append(f'export PATH="{ROOT / "target" / "debug"}:$PATH"')
        (self.state_dir / "env").write_text("\n".join(lines) + "\n")
        function_env = "\n".join(f"{k}={v}" for k, v in self.function_env().items())
        (self.state_dir / "function.env").write_text(function_env + "\n")

    def build(self):
        subprocess.run(["cargo", "build", "--bins"], cwd=ROOT, check=True, env={**os.environ, "AWS_LC_SYS_NO_JITTER_ENTROPY": "1"})

    def seed(self):
        code, out = self.admin("signing-keys", "init")
        if code != 0:
            raise RuntimeError(f"signing-keys init failed: {out}")
        code, out = self.admin(
            "customers", "create", "--code", DEMO_CODE, "--name", "Demo Customer",
            "--email", "demo@customer.example",
        )
        if code != 0:
            raise RuntimeError(f"creating the demo customer failed: {out}")
        self.demo = out

    def start_functions(self):
        env = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "AWS_LC_SYS_NO_JITTER_ENTROPY": "1",
        }
        self.spawn(
            [str(VENV_BIN / "cargo-lambda"), "lambda", "watch", "--disable-cors", "-A", "127.0.0.1", "-P", str(self.api_port),
             "--env-file", str(self.state_dir / "function.env")],
            "functions.log",
            env,
        )

    def token(self, code, key):
        body = f"grant_type=client_credentials&client_id={code}&client_secret={key}".encode()
        status, raw = http("POST", self.api_url + "/auth/token", body,
                           {"Content-Type": "application/x-www-form-urlencoded"}, timeout=900)
        return status, raw

    def wait_ready(self, timeout=1200):
        """Ready only after a real token request and a real lookup succeed."""

        def ready():
            status, raw = self.token(self.demo["customer_code"], self.demo["api_key"])
            if status != 200:
                return False
            token = json.loads(raw)["access_token"]
            status, _ = http("GET", self.api_url + "/customer", headers={"Authorization": f"Bearer {token}"}, timeout=900)
            return status == 200

        wait_for(ready, timeout, "both functions to answer")

    def start(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_moto()
            self.create_resources()
            self.build()
            self.seed()
            self.write_env_file()
            self.start_functions()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.processes.clear()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True


def run():
    """`make run`: start, print how to use it, stay up until Ctrl-C."""
    state_dir = ROOT / ".local"
    state_dir.mkdir(exist_ok=True)
    pid_file = state_dir / "stack.pid"
    if pid_file.exists():
        try:
            other = int(pid_file.read_text().strip() or "0")
        except ValueError:
            other = 0
        if other and pid_alive(other):
            sys.exit(f"make run is already running (pid {other}); stop it with Ctrl-C before starting another.")
    api_port = int(os.environ.get("API_PORT", "9000"))
    if port_in_use(api_port):
        sys.exit(f"port {api_port} is already in use; stop what uses it or set API_PORT.")
    pid_file.write_text(str(os.getpid()))
    stack = Stack(state_dir, api_port, int(os.environ["MOTO_PORT"]) if os.environ.get("MOTO_PORT") else None)

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        print(f"Starting the local stack (AWS emulator on {stack.endpoint}, API on {stack.api_url}).")
        print("First start compiles both functions; logs: .local/functions.log, .local/moto.log", flush=True)
        stack.start()
        code, key = stack.demo["customer_code"], stack.demo["api_key"]
        url = stack.api_url
        print(
            f"""
Customer API is ready on {url}

  Demo Customer Code: {code}
  Demo API Key:       {key}

Get a token (client_secret_post):
  curl -s -X POST {url}/auth/token -H 'Content-Type: application/x-www-form-urlencoded' \\
       -d 'grant_type=client_credentials&client_id={code}&client_secret={key}'

Get a token (client_secret_basic):
  curl -s -X POST {url}/auth/token -u '{code}:{key}' -d grant_type=client_credentials

Read your record:
  TOKEN=$(curl -s -X POST {url}/auth/token -u '{code}:{key}' -d grant_type=client_credentials | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s {url}/customer -H "Authorization: Bearer $TOKEN"

Operate it:  source .local/env && customer-admin customers list
Press Ctrl-C to stop.""",
            flush=True,
        )
        while True:
            for process in stack.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode}; see .local/*.log")
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
    finally:
        stack.stop()
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    run()
