//! Prints the caller's customer record.
//!
//! ```sh
//! CUSTOMER_API_URL=http://127.0.0.1:9000 CUSTOMER_CODE=DEMO CUSTOMER_API_KEY=kiss_sk_... \
//!     cargo run -p kiss-customer-api --example whoami
//! ```
#![forbid(unsafe_code)]

use kiss_customer_api::{Client, Error};
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(code), Some(key)) = (
        var("CUSTOMER_API_URL"),
        var("CUSTOMER_CODE"),
        var("CUSTOMER_API_KEY"),
    ) else {
        eprintln!("whoami: set CUSTOMER_API_URL, CUSTOMER_CODE and CUSTOMER_API_KEY");
        return ExitCode::from(2);
    };
    let result = async { Client::new(&url, &code, &key)?.customer().await }.await;
    match result {
        Ok(customer) => match serde_json::to_string_pretty(&customer) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("whoami: {e}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            let hint = match &error {
                Error::InvalidCredentials { .. } => {
                    " (check the Customer Code and API Key; a rotated or revoked key, or a suspended account, also ends here)"
                }
                Error::RateLimited { .. } => " (try again after a minute)",
                _ => "",
            };
            eprintln!("whoami: {error}{hint}");
            let mut cause = std::error::Error::source(&error);
            while let Some(inner) = cause {
                eprintln!("  caused by: {inner}");
                cause = inner.source();
            }
            ExitCode::FAILURE
        }
    }
}
