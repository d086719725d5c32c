//! Client of the Kiss Customer API, built on the error-handling pattern of the Errors page.
//!
//! ```no_run
//! # async fn run() -> Result<(), kiss_customer_api::Error> {
//! let client = kiss_customer_api::Client::new("https://api.example.com", "ACME-1", "kiss_sk_...")?;
//! let me = client.customer().await?;
//! println!("{} <{}> is {}", me.name, me.email, me.status);
//! # Ok(())
//! # }
//! ```
//!
//! What the client does for you:
//! - obtains an access token with `client_secret_basic` (API key) or `private_key_jwt`
//!   ([`PrivateKeyJwt`], Ed25519 or P-256), caches it and refreshes it shortly before
//!   `expires_in`; concurrent callers share one refresh;
//! - on a 401 from a protected call, refreshes the token and retries once;
//! - on a 429, waits `Retry-After` (capped) and retries with back-off;
//! - on a 5xx or a connection failure, retries with exponential back-off and full jitter,
//!   within a bounded number of attempts and a total time budget;
//! - any other 4xx is permanent and surfaces as a typed [`Error`];
//! - revokes tokens ([`Client::revoke`], RFC 7009) and asks whether one is live
//!   ([`Client::introspect`], RFC 7662) with the same authentication and retries;
//! - optionally binds its tokens to a key with DPoP (RFC 9449, [`DpopKey`],
//!   [`ClientConfig::dpop`]): a proof on every token request and API call, retries
//!   included, and the nonce a server may ask for.
//!
//! Decisions are made on the HTTP status alone, never on the human error text.
#![forbid(unsafe_code)]

mod auth;
mod client;
mod config;
mod customer;
mod dpop;
mod error;
mod introspection;
mod jws;
mod pem;
mod private_key_jwt;
mod retry;
mod secret;
mod token;
mod transport;

pub use client::Client;
pub use config::ClientConfig;
pub use customer::Customer;
pub use dpop::DpopKey;
pub use error::{Error, ErrorBody};
pub use introspection::{Confirmation, Introspection};
pub use jws::JwsAlgorithm;
pub use private_key_jwt::PrivateKeyJwt;
pub use token::AccessToken;
