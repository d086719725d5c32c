//! Prints the caller's customer record, authenticating with an API key or a private key.
//!
//! ```sh
//! # client_secret_basic
//! CUSTOMER_API_URL=http://127.0.0.1:9000 CUSTOMER_CODE=DEMO CUSTOMER_API_KEY=kiss_sk_... \
//!     cargo run -p kiss-customer-api --example whoami
//! # private_key_jwt: make a key pair once, have the public JWK registered, then use the key
//! cargo run -p kiss-customer-api --example whoami -- --generate-key key.pem > jwk.json
//! customer-admin keys add-jwk --code DEMO --jwk-file jwk.json --json   # prints key_id
//! CUSTOMER_API_URL=http://127.0.0.1:9000 CUSTOMER_CODE=DEMO \
//!     cargo run -p kiss-customer-api --example whoami -- --private-key key.pem --key-id key_...
//! # either, with a DPoP-bound token (a new Ed25519 proof key each run)
//! CUSTOMER_API_URL=http://127.0.0.1:9000 CUSTOMER_CODE=DEMO CUSTOMER_API_KEY=kiss_sk_... \
//!     cargo run -p kiss-customer-api --example whoami -- --dpop
//! ```
#![forbid(unsafe_code)]

use kiss_customer_api::{Client, ClientConfig, DpopKey, Error, PrivateKeyJwt};
use std::io::Write as _;
use std::process::ExitCode;

const USAGE: &str =
    "usage: whoami [--private-key FILE [--key-id ID]] [--dpop] | --generate-key FILE [--es256]
  environment: CUSTOMER_API_URL, CUSTOMER_CODE, and CUSTOMER_API_KEY unless --private-key";

/// What the command line asks for.
enum Command {
    ApiKey {
        dpop: bool,
    },
    PrivateKey {
        file: String,
        key_id: Option<String>,
        dpop: bool,
    },
    Generate {
        file: String,
        es256: bool,
    },
}

fn parse(mut args: impl Iterator<Item = String>) -> Option<Command> {
    let (mut private_key, mut key_id, mut generate) = (None, None, None);
    let (mut es256, mut dpop) = (false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--private-key" => private_key = Some(args.next()?),
            "--key-id" => key_id = Some(args.next()?),
            "--generate-key" => generate = Some(args.next()?),
            "--es256" => es256 = true,
            "--dpop" => dpop = true,
            _ => return None,
        }
    }
    match (private_key, generate) {
        (None, None) if key_id.is_none() && !es256 => Some(Command::ApiKey { dpop }),
        (Some(file), None) if !es256 => Some(Command::PrivateKey { file, key_id, dpop }),
        (None, Some(file)) if key_id.is_none() && !dpop => Some(Command::Generate { file, es256 }),
        _ => None,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(command) = parse(std::env::args().skip(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if let Command::Generate { file, es256 } = &command {
        return generate(file, *es256);
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(code)) = (var("CUSTOMER_API_URL"), var("CUSTOMER_CODE")) else {
        eprintln!("whoami: set CUSTOMER_API_URL and CUSTOMER_CODE");
        return ExitCode::from(2);
    };
    let dpop = matches!(
        command,
        Command::ApiKey { dpop: true } | Command::PrivateKey { dpop: true, .. }
    );
    let (config, thumbprint) = match dpop_config(dpop) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("whoami: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = match command {
        Command::PrivateKey { file, key_id, .. } => {
            let key = match read_key(&file) {
                Ok(key) => key,
                Err(message) => {
                    eprintln!("whoami: {file}: {message}");
                    return ExitCode::from(2);
                }
            };
            let key = match key_id {
                Some(id) => key.with_key_id(id),
                None => key,
            };
            Client::with_private_key_jwt(&url, &code, key, config)
        }
        _ => {
            let Some(api_key) = var("CUSTOMER_API_KEY") else {
                eprintln!("whoami: set CUSTOMER_API_KEY, or use --private-key FILE");
                return ExitCode::from(2);
            };
            Client::with_config(&url, &code, &api_key, config)
        }
    };
    let result = async { client?.customer().await }.await;
    match result {
        Ok(customer) => match serde_json::to_string_pretty(&customer) {
            Ok(json) => {
                println!("{json}");
                if let Some(thumbprint) = thumbprint {
                    eprintln!(
                        "whoami: DPoP-bound token, proof key thumbprint (cnf.jkt) {thumbprint}"
                    );
                }
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
                    " (check the Customer Code and API Key or private key; a rotated, revoked or expired key, or a suspended account, also ends here)"
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

/// The default configuration, with a new Ed25519 DPoP proof key when `dpop` (and the
/// key's thumbprint, which the token's `cnf.jkt` will name).
fn dpop_config(dpop: bool) -> Result<(ClientConfig, Option<String>), Error> {
    if !dpop {
        return Ok((ClientConfig::default(), None));
    }
    let key = DpopKey::generate_ed25519()?;
    let thumbprint = key.thumbprint().to_owned();
    Ok((ClientConfig::default().dpop(key), Some(thumbprint)))
}

/// A PEM file (PKCS#8 or SEC 1), a DER file, or a raw 32-byte Ed25519 seed.
fn read_key(file: &str) -> Result<PrivateKeyJwt, String> {
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    let key = if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        PrivateKeyJwt::from_pem(&String::from_utf8_lossy(&bytes))
    } else if bytes.len() == 32 {
        PrivateKeyJwt::from_ed25519_seed(&bytes)
    } else {
        PrivateKeyJwt::from_der(&bytes)
    };
    key.map_err(|e| e.to_string())
}

/// Writes a new private key to `file` (never over an existing file; owner-only on Unix)
/// and prints its public JWK for `customer-admin keys add-jwk --jwk-file`.
fn generate(file: &str, es256: bool) -> ExitCode {
    let key = if es256 {
        PrivateKeyJwt::generate_es256()
    } else {
        PrivateKeyJwt::generate_ed25519()
    };
    let written = key.and_then(|key| Ok((key.to_pkcs8_pem()?, key.public_jwk())));
    let (pem, jwk) = match written {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("whoami: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let saved = options
        .open(file)
        .and_then(|mut out| out.write_all(pem.as_bytes()));
    if let Err(e) = saved {
        eprintln!("whoami: {file}: {e}");
        return ExitCode::FAILURE;
    }
    println!("{jwk}");
    eprintln!(
        "whoami: private key written to {file}; register the public JWK above with \
         customer-admin keys add-jwk --code CODE --jwk-file FILE"
    );
    ExitCode::SUCCESS
}
