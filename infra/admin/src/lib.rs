//! `customer-admin` as a library: the operator's rules and writes over the Customer API's
//! table and key secrets. The functions never link this crate: it owns every write the
//! request path does not make, and `aws-config`'s full credential chain.
//!
//! Every write of a customer item or a key secret is conditional on what the command read
//! (the item's `admin_version`, the secret's `AWSCURRENT` version) and, on a conflict, the
//! command reads again and re-applies its rule, a few times, before it gives up with
//! [`AdminError::Concurrent`]. Two operators (or scripts) can therefore run commands at the
//! same time without undoing each other's work.
#![forbid(unsafe_code)]

pub mod aws;
pub mod error;
pub mod retry;
pub mod rules;
pub mod secret;
pub mod signing;
pub mod table;

pub use error::AdminError;
