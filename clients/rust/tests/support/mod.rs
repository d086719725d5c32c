//! A scripted HTTP/1.1 server on 127.0.0.1: replays the replies scripted per path and
//! records every request, so tests can count token requests and inspect headers.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod dpop;
pub mod oauth;

use kiss_customer_api::ClientConfig;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const CODE: &str = "ACME-1";
pub const TOKEN: &str = "/auth/token";
pub const CUSTOMER: &str = "/customer";

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Millisecond delays so every test runs fast.
pub fn fast() -> ClientConfig {
    ClientConfig::default()
        .max_attempts(4)
        .base_delay(ms(2))
        .max_delay(ms(10))
        .retry_after_cap(ms(50))
        .total_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(2))
}

/// A server that issues `t1` and answers `/customer` with the record of [`CODE`].
pub async fn happy_server() -> Server {
    let server = Server::start().await;
    server.script(TOKEN, vec![Reply::token("t1", 3600)]);
    server.script(CUSTOMER, vec![Reply::customer(CODE)]);
    server
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    hang_up: bool,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            hang_up: false,
        }
    }

    /// A JSON reply with the API's JSON headers.
    pub fn json(status: u16, body: &str) -> Self {
        Self::new(status, body)
            .header("Content-Type", "application/json")
            .header("Cache-Control", "no-store")
    }

    /// A 200 token response.
    pub fn token(access_token: &str, expires_in: u64) -> Self {
        Self::token_of_type(access_token, "Bearer", expires_in)
    }

    /// A 200 token response for a DPoP-bound token.
    pub fn dpop_token(access_token: &str, expires_in: u64) -> Self {
        Self::token_of_type(access_token, "DPoP", expires_in)
    }

    pub fn token_of_type(access_token: &str, token_type: &str, expires_in: u64) -> Self {
        Self::json(
            200,
            &format!(
                r#"{{"access_token":"{access_token}","token_type":"{token_type}","expires_in":{expires_in},"scope":"customer:read"}}"#
            ),
        )
    }

    /// A 200 customer record.
    pub fn customer(code: &str) -> Self {
        Self::json(200, &customer_json(code))
    }

    /// The bearer 401: empty body and the exact challenge.
    pub fn bearer_401() -> Self {
        Self::new(401, "").header("WWW-Authenticate", "Bearer error=\"invalid_token\"")
    }

    /// A 429 with `Retry-After` in seconds.
    pub fn too_many(retry_after: &str) -> Self {
        Self::json(
            429,
            r#"{"error":"Too many requests. Retry after the time given in Retry-After."}"#,
        )
        .header("Retry-After", retry_after)
    }

    /// The standard 500.
    pub fn server_error() -> Self {
        Self::json(500, r#"{"error":"An unexpected error occurred."}"#)
    }

    /// Close the connection without answering.
    pub fn hang_up() -> Self {
        Self {
            hang_up: true,
            ..Self::new(0, "")
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

pub fn customer_json(code: &str) -> String {
    format!(
        r#"{{"customer_code":"{code}","name":"Acme","email":"ops@acme.example","status":"active","plan":"gold","created_at":"2025-01-02T03:04:05Z"}}"#
    )
}

/// A request as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Box<dyn FnMut(&Recorded) -> Reply + Send>;

enum Route {
    /// Replies in order; the last one repeats forever.
    Script(VecDeque<Reply>),
    Handler(Handler),
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    log: Vec<Recorded>,
}

/// The running server; stops when dropped.
pub struct Server {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Self { url, state, task }
    }

    /// Scripts `path`: replies in order, the last one repeating.
    pub fn script(&self, path: &str, replies: Vec<Reply>) -> &Self {
        assert!(!replies.is_empty());
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), Route::Script(replies.into()));
        self
    }

    /// Answers `path` with a function of the request.
    pub fn handle(
        &self,
        path: &str,
        handler: impl FnMut(&Recorded) -> Reply + Send + 'static,
    ) -> &Self {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), Route::Handler(Box::new(handler)));
        self
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        let state = self.state.lock().unwrap();
        state
            .log
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests(path).len()
    }
}

/// A port nothing listens on (bound, then released).
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream);
    // Keep-alive: answer requests on this connection until the client closes it.
    while let Some(request) = read_request(&mut reader).await {
        let reply = {
            let mut state = state.lock().unwrap();
            state.log.push(request.clone());
            match state.routes.get_mut(&request.path) {
                Some(Route::Script(queue)) if queue.len() > 1 => queue.pop_front().unwrap(),
                Some(Route::Script(queue)) => queue.front().cloned().unwrap(),
                Some(Route::Handler(handler)) => handler(&request),
                None => Reply::json(404, r#"{"error":"Not found."}"#),
            }
        };
        tokio::time::sleep(reply.delay).await;
        if reply.hang_up {
            return;
        }
        let mut head = format!("HTTP/1.1 {} Scripted\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
        let stream = reader.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&reply.body).await.is_err()
        {
            return;
        }
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}
