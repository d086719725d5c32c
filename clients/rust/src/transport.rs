//! One HTTP exchange: hyper over rustls (aws-lc-rs), a time limit, a bounded body.

use crate::config::ClientConfig;
use crate::error::Error;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Largest response body read; the API's bodies are well under 2 KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Idle pooled connections are dropped after this long (load balancers close them anyway).
const POOL_IDLE: Duration = Duration::from_secs(20);

/// A complete response: status, headers and the whole body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why an exchange produced no [`Reply`].
#[derive(Debug)]
pub(crate) enum Failure {
    /// Connect or I/O failure: worth retrying.
    Transient(Arc<dyn std::error::Error + Send + Sync>),
    /// No complete response within the time limit: worth retrying.
    TimedOut(TimedOut),
    /// The response cannot be read (too large): not worth retrying.
    Protocol(String),
}

/// The exchange took longer than its time limit.
#[derive(Debug)]
pub(crate) struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no complete response within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for TimedOut {}

type Connector = HttpsConnector<HttpConnector>;

/// A pooled HTTP/1.1 client; cheap to clone.
#[derive(Clone)]
pub(crate) struct Transport {
    client: HyperClient<Connector, Full<Bytes>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    /// A client for `https` (system roots, TLS only) or plain `http` base URLs.
    pub(crate) fn new(https: bool, config: &ClientConfig) -> Result<Self, Error> {
        // An explicit provider, so an application that also links `ring` cannot make
        // rustls' process-wide default ambiguous.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS setup failed: {e}")))?;
        let tls = if https {
            builder
                .with_native_roots()
                .map_err(|e| Error::config(format!("no usable system root certificates: {e}")))?
                .with_no_client_auth()
        } else {
            // Plain http never reaches TLS; no roots need loading.
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector = if https {
            builder.https_only()
        } else {
            builder.https_or_http()
        }
        .enable_http1()
        .wrap_connector(http);
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `request` and reads the whole response within `limit`.
    pub(crate) async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        limit: Duration,
    ) -> Result<Reply, Failure> {
        match tokio::time::timeout(limit, self.exchange_unbounded(request)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::TimedOut(TimedOut(limit))),
        }
    }

    async fn exchange_unbounded(&self, request: Request<Full<Bytes>>) -> Result<Reply, Failure> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Failure::Transient(Arc::new(e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    Failure::Protocol(format!("response body larger than {MAX_BODY_BYTES} bytes"))
                } else {
                    Failure::Transient(Arc::from(e))
                }
            })?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
