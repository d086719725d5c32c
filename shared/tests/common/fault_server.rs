//! A scripted fault server on 127.0.0.1 that stands between an SDK client and moto.
//!
//! Healthy, it forwards each request to the upstream (moto) and relays the answer, so an API
//! instance built over it works normally. On demand it stops listening (unreachable: the
//! connection is refused), holds requests without ever answering (slower than any SDK
//! timeout), or answers with a canned response (throttling, 500, malformed body). The fault
//! can change at any time; every connection carries one request (`Connection: close`), so
//! no pooled connection outlives a change. Plain threads and blocking sockets: it keeps
//! working whatever the test's async runtime is doing.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a held (`Hang`) request is kept before the server gives up on it: far beyond
/// any SDK timeout under test, short enough that a client without timeouts fails its test
/// in seconds instead of hanging the suite.
const HOLD: Duration = Duration::from_secs(10);

/// What the server does with the next connection or request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward every request to the upstream and relay its answer.
    Healthy,
    /// Nothing listens on the port: connections are refused.
    Unreachable,
    /// Read the request and never answer.
    Hang,
    /// Forward the request (it takes effect) but lose the answer, as a dropped connection
    /// would; then heal, so the client's retry gets through.
    LoseAnswer,
    /// Answer every request with this response.
    Respond(Canned),
}

impl Fault {
    /// A short name for assertion messages.
    pub fn label(&self) -> String {
        match self {
            Self::Healthy => "healthy".into(),
            Self::Unreachable => "unreachable".into(),
            Self::Hang => "no answer (slower than the SDK timeout)".into(),
            Self::LoseAnswer => "request applied, answer lost".into(),
            Self::Respond(canned) => {
                let kind = canned
                    .headers
                    .iter()
                    .find(|(name, _)| *name == "x-amzn-errortype")
                    .map_or("malformed data", |(_, value)| value.trim_end_matches(':'));
                format!("HTTP {} {kind}", canned.status)
            }
        }
    }
}

/// A canned HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

const DYNAMODB_JSON: &str = "application/x-amz-json-1.0";
const SECRETS_JSON: &str = "application/x-amz-json-1.1";

impl Canned {
    fn json(status: u16, content_type: &str, error_type: Option<&str>, body: &str) -> Self {
        let mut headers = vec![
            ("content-type", content_type.to_owned()),
            (
                "x-amzn-requestid",
                "FAULT0000000000000000000000000000".to_owned(),
            ),
        ];
        if let Some(error_type) = error_type {
            headers.push(("x-amzn-errortype", error_type.to_owned()));
        }
        Self {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// DynamoDB throttling a request (400 `ProvisionedThroughputExceededException`).
    pub fn dynamodb_throttling() -> Self {
        Self::json(
            400,
            DYNAMODB_JSON,
            Some("ProvisionedThroughputExceededException:"),
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}"#,
        )
    }

    /// Secrets Manager throttling a request (400 `ThrottlingException`).
    pub fn secrets_manager_throttling() -> Self {
        Self::json(
            400,
            SECRETS_JSON,
            Some("ThrottlingException"),
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        )
    }

    /// A service-side failure (500 `InternalFailure`) in the service's JSON dialect.
    pub fn internal_failure(dynamodb: bool) -> Self {
        let content_type = if dynamodb {
            DYNAMODB_JSON
        } else {
            SECRETS_JSON
        };
        Self::json(
            500,
            content_type,
            Some("InternalFailure"),
            r#"{"__type":"InternalFailure","message":"We encountered an internal error. Please try again."}"#,
        )
    }

    /// 200 with a body that is not valid JSON (cut off mid-document).
    pub fn malformed_json(dynamodb: bool) -> Self {
        let content_type = if dynamodb {
            DYNAMODB_JSON
        } else {
            SECRETS_JSON
        };
        Self::json(
            200,
            content_type,
            None,
            r#"{"Attributes":{"customer_code":{"S":"ACME-1"},"name":{"#,
        )
    }

    /// A well-formed `GetSecretValue` answer whose secret string is `secret`.
    pub fn secret_value(secret: &str) -> Self {
        let body = serde_json::json!({
            "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:keys-AbCdEf",
            "Name": "keys",
            "VersionId": "00000000-0000-0000-0000-000000000000",
            "SecretString": secret,
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": 1_800_000_000.0,
        });
        Self::json(200, SECRETS_JSON, None, &body.to_string())
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Fault",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

struct State {
    fault: Fault,
    listening: bool,
    bind_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Requests fully received (one per SDK attempt that reached the server).
    requests: AtomicUsize,
    upstream: SocketAddr,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

/// One fault server in front of one upstream.
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultServer {
    /// Starts a healthy server forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                fault: Fault::Healthy,
                listening: true,
                bind_error: None,
            }),
            changed: Condvar::new(),
            requests: AtomicUsize::new(0),
            upstream,
        });
        let accepting = shared.clone();
        std::thread::spawn(move || accept_loop(listener, addr, &accepting));
        Self { addr, shared }
    }

    /// The endpoint URL for an SDK client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far (each SDK attempt that got through is one).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Switches the fault; returns once it is in force (for `Unreachable`: the port refuses
    /// connections; leaving it: the port accepts them again).
    pub fn set(&self, fault: Fault) {
        let mut state = self.shared.lock();
        let closing = fault == Fault::Unreachable && state.fault != Fault::Unreachable;
        let reopening = fault != Fault::Unreachable && state.fault == Fault::Unreachable;
        state.fault = fault;
        self.shared.changed.notify_all();
        if closing {
            drop(state);
            // Wakes the accept loop, which sees the fault and closes the listener.
            let _ = TcpStream::connect(self.addr);
            state = self.shared.lock();
            while state.listening {
                state = self.shared.changed.wait(state).unwrap();
            }
            drop(state);
            let refused = TcpStream::connect(self.addr).map_err(|e| e.kind());
            assert_eq!(
                refused.err(),
                Some(ErrorKind::ConnectionRefused),
                "the fault server's port must refuse connections while unreachable"
            );
        } else if reopening {
            while !state.listening && state.bind_error.is_none() {
                state = self.shared.changed.wait(state).unwrap();
            }
            assert_eq!(
                state.bind_error, None,
                "could not listen on {} again",
                self.addr
            );
        }
    }
}

fn accept_loop(mut listener: TcpListener, addr: SocketAddr, shared: &Arc<Shared>) {
    loop {
        for conn in listener.incoming() {
            if shared.lock().fault == Fault::Unreachable {
                break;
            }
            if let Ok(conn) = conn {
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, &shared));
            }
        }
        drop(listener);
        let mut state = shared.lock();
        state.listening = false;
        shared.changed.notify_all();
        while state.fault == Fault::Unreachable {
            state = shared.changed.wait(state).unwrap();
        }
        match TcpListener::bind(addr) {
            Ok(reopened) => {
                listener = reopened;
                state.listening = true;
                shared.changed.notify_all();
            }
            Err(err) => {
                state.bind_error = Some(err.to_string());
                shared.changed.notify_all();
                return;
            }
        }
    }
}

fn serve(mut conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(HOLD));
    let Some(request) = read_message(&mut conn, false) else {
        return;
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let fault = shared.lock().fault.clone();
    match fault {
        Fault::Healthy => {
            if let Some(response) = forward(&request, shared.upstream) {
                let _ = conn.write_all(&response);
            }
        }
        Fault::Hang => {
            // Never answer: wait until the client gives up (or HOLD passes).
            let mut sink = [0u8; 1024];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
        }
        Fault::LoseAnswer => {
            let _ = forward(&request, shared.upstream);
            shared.lock().fault = Fault::Healthy;
            let mut sink = [0u8; 1024];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
        }
        Fault::Respond(canned) => {
            let _ = conn.write_all(&canned.to_bytes());
        }
        Fault::Unreachable => {}
    }
    let _ = conn.shutdown(Shutdown::Both);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 message: the head, then a `Content-Length` body, or (for a response,
/// `to_eof`) everything until the peer closes.
fn read_message(conn: &mut TcpStream, to_eof: bool) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        match length {
            Some(length) if buf.len() >= head_end + length => break,
            None if !to_eof => break,
            _ => {}
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// The message with its `Connection` header replaced by `Connection: close`.
fn closing(message: &[u8]) -> Vec<u8> {
    let Some(head_end) = find(message, b"\r\n\r\n") else {
        return message.to_vec();
    };
    let head = String::from_utf8_lossy(&message[..head_end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&message[head_end + 4..]);
    bytes
}

/// Sends the request to the upstream and returns its complete response.
fn forward(request: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    let _ = up.set_read_timeout(Some(HOLD));
    up.write_all(&closing(request)).ok()?;
    let response = read_message(&mut up, true)?;
    Some(closing(&response))
}
