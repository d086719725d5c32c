//! A real moto server (DynamoDB + Secrets Manager) on a free 127.0.0.1 port, one per test
//! binary, started through the project's locking launcher and gone when the binary exits.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

struct Server {
    endpoint: String,
    _child: Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static TABLES: AtomicUsize = AtomicUsize::new(0);

/// The workspace root (this file is also compiled into the admin crate's tests).
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(&manifest)
        .to_path_buf()
}

/// The endpoint of this binary's moto server, starting it on first use.
pub fn endpoint() -> String {
    SERVER
        .get_or_init(|| {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let python = root().join(".venv/bin/python");
            assert!(
                python.exists(),
                "{} is missing: run `make venv` (or `make test`) first",
                python.display()
            );
            let child = Command::new(python)
                .arg(root().join("infra/local/moto_server.py"))
                .arg(port.to_string())
                .arg(std::process::id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "moto did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            Server {
                endpoint: format!("http://127.0.0.1:{port}"),
                _child: child,
            }
        })
        .endpoint
        .clone()
}

/// Counts the SDK calls a client makes, and names each DynamoDB call it sends
/// (`UpdateItem`, `TransactWriteItems×2`: the operation and, for batches and transactions,
/// the number of items).
#[derive(Debug, Default, Clone)]
pub struct CallCounter(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>);

impl CallCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// The operations sent so far.
    pub fn operations(&self) -> Vec<String> {
        self.1.lock().unwrap().clone()
    }
}

/// `Operation` or `Operation×items` of a DynamoDB request (`X-Amz-Target` and JSON body).
fn operation(request: &aws_sdk_dynamodb::config::http::HttpRequest) -> Option<String> {
    let target = request.headers().get("x-amz-target")?;
    let name = target.rsplit('.').next()?.to_owned();
    let body: serde_json::Value = serde_json::from_slice(request.body().bytes()?).ok()?;
    let items = match name.as_str() {
        "TransactWriteItems" => body["TransactItems"].as_array().map(Vec::len),
        "BatchGetItem" => body["RequestItems"].as_object().map(|tables| {
            tables
                .values()
                .map(|t| t["Keys"].as_array().map_or(0, Vec::len))
                .sum()
        }),
        _ => None,
    };
    Some(match items {
        Some(n) => format!("{name}×{n}"),
        None => name,
    })
}

impl aws_sdk_dynamodb::config::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_execution(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if let Some(name) = operation(context.request()) {
            self.1.lock().unwrap().push(name);
        }
        Ok(())
    }
}

fn credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "tests")
}

/// A DynamoDB client on moto that counts its calls.
pub fn dynamodb() -> (aws_sdk_dynamodb::Client, CallCounter) {
    let counter = CallCounter::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials())
        .interceptor(counter.clone())
        .build();
    (aws_sdk_dynamodb::Client::from_conf(config), counter)
}

/// A Secrets Manager client on moto that counts its calls.
pub fn secrets() -> (aws_sdk_secretsmanager::Client, CallCounter) {
    let counter = CallCounter::default();
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .interceptor(counter.clone())
        .build();
    (aws_sdk_secretsmanager::Client::from_conf(config), counter)
}

/// A fresh table shaped like the template's, unique to the caller.
pub async fn table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = format!(
        "customers-{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::SeqCst)
    );
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("customer_code")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("customer_code")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    name
}

/// A fresh secret with `value`, unique to the caller.
pub async fn secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    let name = format!(
        "keys-{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::SeqCst)
    );
    client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    name
}
