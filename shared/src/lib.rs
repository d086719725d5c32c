//! The Customer API's rules as plain Rust: both Lambda functions and the admin CLI are thin
//! layers over this crate. Operator writes live in the admin crate (`infra/admin`), test
//! doubles behind the `test-util` feature.
#![forbid(unsafe_code)]

pub mod api_key;
pub mod assertion;
pub mod aws;
pub mod config;
pub mod customer_api;
pub mod dpop;
pub mod error;
pub mod handler;
pub mod http;
pub mod jwk;
pub mod jwt;
pub mod keys;
pub mod log;
pub mod model;
pub mod rate_limit;
pub mod store;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod token_api;
pub mod token_request;
