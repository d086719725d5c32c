//! `customer-admin`: operator CLI for customers, API keys and signing keys (README "Operating",
//! docs/operations.md). Commands, flags, texts and `--json` objects are a public interface.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use customer_admin::aws::Backends;
use customer_admin::rules as admin;
use customer_admin::signing::{self, Outcome};
use customer_admin::table::CustomerTable;
use customer_admin::{AdminError, rules::InputError};
use serde_json::{Value, json};
use shared::config::Config;
use shared::keys::KeyDocument;
use shared::model::{CustomerStatus, rfc3339, unix_now};
use std::io::{self, Write};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "customer-admin",
    version,
    about = "Operate the Customer API: customers, API keys, signing keys."
)]
struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, inspect and change customers.
    #[command(subcommand)]
    Customers(Customers),
    /// Rotate and revoke a customer's API keys.
    #[command(subcommand)]
    Keys(Keys),
    /// Manage the Ed25519 keys that sign access tokens.
    #[command(subcommand, name = "signing-keys")]
    SigningKeys(SigningKeys),
}

#[derive(Args)]
struct Code {
    /// Customer Code (3-64 characters of A-Z a-z 0-9 - _).
    #[arg(long)]
    code: String,
}

#[derive(Subcommand)]
enum Customers {
    /// Create a customer and print its first API key (shown once).
    Create {
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "standard")]
        plan: String,
        /// Granted scopes (default: customer:read).
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
    },
    /// Show a customer (never key hashes).
    Show(Code),
    /// List all customers.
    List,
    /// Suspend a customer: token requests and lookups are refused at once.
    Suspend(Code),
    /// Reactivate a suspended customer.
    Reactivate(Code),
    /// Delete a customer.
    Delete(Code),
    /// Set per-customer rate limits (requests per minute).
    SetLimits {
        #[arg(long)]
        code: String,
        #[arg(long)]
        token_per_minute: Option<u64>,
        #[arg(long)]
        api_per_minute: Option<u64>,
    },
}

#[derive(Subcommand)]
enum Keys {
    /// Create a new API key (shown once); the old one stays valid for the grace period.
    Rotate {
        #[arg(long)]
        code: String,
        /// How long the previous key keeps working (e.g. 30m, 24h, 0).
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Revoke one API key or registered JWK at once (its tokens stop working too).
    Revoke {
        #[arg(long)]
        code: String,
        #[arg(long)]
        key_id: String,
    },
    /// Register a public JWK for private_key_jwt (Ed25519, P-256 or RSA >= 2048 bits).
    #[command(name = "add-jwk")]
    AddJwk {
        #[arg(long)]
        code: String,
        /// File holding one public JWK (JSON).
        #[arg(long)]
        jwk_file: std::path::PathBuf,
        /// When the key stops authenticating (e.g. 90d); default never.
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Subcommand)]
enum SigningKeys {
    /// Create the first signing key (does nothing if one exists).
    Init,
    /// Create a new signing key; the previous public key stays published for 24 h.
    Rotate,
    /// List the published public keys.
    List,
}

/// A failure: bad input (exit 2) or the backend (exit 1). Messages never carry secrets.
enum Failure {
    Input(String),
    Backend(String),
}

impl From<AdminError> for Failure {
    fn from(err: AdminError) -> Self {
        match err.exit_code() {
            2 => Self::Input(err.to_string()),
            _ => Self::Backend(err.to_string()),
        }
    }
}

impl From<InputError> for Failure {
    fn from(err: InputError) -> Self {
        Self::Input(err.to_string())
    }
}

/// What a command prints: the JSON object and its text rendering.
struct Output {
    json: Value,
    text: String,
}

fn output(json: Value, text: impl Into<String>) -> Output {
    Output {
        json,
        text: text.into(),
    }
}

fn customer_text(view: &Value) -> String {
    let field = |name: &str| {
        view.get(name)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    let mut text = format!(
        "{}  {}  <{}>  status={}  plan={}  created={}",
        field("customer_code"),
        field("name"),
        field("email"),
        field("status"),
        field("plan"),
        field("created_at")
    );
    if let Some(keys) = view.get("keys").and_then(Value::as_array) {
        for key in keys {
            let expires = key
                .get("expires_at")
                .and_then(Value::as_str)
                .unwrap_or("never");
            text.push_str(&format!(
                "\n  key {}  expires {}",
                key["key_id"].as_str().unwrap_or(""),
                expires
            ));
        }
    }
    if let Some(limits) = view.get("limits") {
        text.push_str(&format!(
            "\n  limits token/min={} api/min={}",
            limit_text(limits["token_per_minute"].as_u64()),
            limit_text(limits["api_per_minute"].as_u64())
        ));
    }
    text
}

async fn customers(cmd: Customers, backends: &Backends) -> Result<Output, Failure> {
    let store = &backends.table;
    let now = unix_now();
    match cmd {
        Customers::Create {
            code,
            name,
            email,
            plan,
            scopes,
        } => {
            let created = admin::new_customer(&code, &name, &email, &plan, &scopes, now)?
                .map_err(AdminError::from)?;
            store.create(&created.customer).await?;
            let code = created.customer.code.as_str();
            let key = created.api_key.expose();
            Ok(output(
                json!({"customer_code": code, "api_key": key, "key_id": created.key_id}),
                format!(
                    "Created customer {code}.\nAPI key (shown once, store it now): {key}\nKey id: {}",
                    created.key_id
                ),
            ))
        }
        Customers::Show(Code { code }) => {
            let code = admin::code(&code)?;
            let customer = store.get(&code).await?.ok_or(AdminError::NotFound)?;
            let view = admin::customer_view(&customer.customer);
            let text = customer_text(&view);
            Ok(output(view, text))
        }
        Customers::List => {
            let all = store.list().await?;
            let views: Vec<Value> = all.iter().map(|c| c.public_json()).collect();
            let text = if views.is_empty() {
                "No customers.".to_owned()
            } else {
                views
                    .iter()
                    .map(customer_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(output(json!({ "customers": views }), text))
        }
        Customers::Suspend(Code { code }) => {
            set_status(store, &code, CustomerStatus::Suspended).await
        }
        Customers::Reactivate(Code { code }) => {
            set_status(store, &code, CustomerStatus::Active).await
        }
        Customers::Delete(Code { code }) => {
            let code = admin::code(&code)?;
            store.delete(&code).await?;
            Ok(output(
                json!({"customer_code": code.as_str(), "deleted": true}),
                format!("Deleted customer {code}."),
            ))
        }
        Customers::SetLimits {
            code,
            token_per_minute,
            api_per_minute,
        } => {
            let code = admin::code(&code)?;
            let (token, api) = store
                .set_limits(&code, token_per_minute, api_per_minute)
                .await?;
            Ok(output(
                json!({"customer_code": code.as_str(), "token_per_minute": token, "api_per_minute": api}),
                format!(
                    "Limits of {code}: token/min={} api/min={}",
                    limit_text(token),
                    limit_text(api)
                ),
            ))
        }
    }
}

fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "default".to_owned(), |l| l.to_string())
}

async fn set_status(
    store: &CustomerTable,
    code: &str,
    status: CustomerStatus,
) -> Result<Output, Failure> {
    let code = admin::code(code)?;
    store.set_status(&code, status).await?;
    Ok(output(
        json!({"customer_code": code.as_str(), "status": status.as_str()}),
        format!("Customer {code} is now {}.", status.as_str()),
    ))
}

async fn keys(cmd: Keys, backends: &Backends) -> Result<Output, Failure> {
    let store = &backends.table;
    let now = unix_now();
    match cmd {
        Keys::Rotate { code, grace } => {
            let code = admin::code(&code)?;
            let grace = admin::parse_duration(&grace)?;
            let (api_key, key_id) = store.rotate_key(&code, now, grace).await?;
            let key = api_key.expose();
            Ok(output(
                json!({"api_key": key, "key_id": key_id}),
                format!(
                    "New API key for {code} (shown once, store it now): {key}\nKey id: {key_id}\nThe previous key stays valid until {}.",
                    rfc3339(now + grace)
                ),
            ))
        }
        Keys::AddJwk {
            code,
            jwk_file,
            expires,
        } => {
            let code = admin::code(&code)?;
            let expires_at = expires
                .as_deref()
                .map(admin::parse_duration)
                .transpose()?
                .map(|seconds| now + seconds);
            let raw = std::fs::read_to_string(&jwk_file)
                .map_err(|_| InputError::File(jwk_file.display().to_string()))?;
            let jwk = shared::jwk::PublicJwk::parse(&raw).map_err(InputError::Jwk)?;
            let key_id = store.add_jwk(&code, &jwk, now, expires_at).await?;
            let (kty, alg) = (jwk.kty(), jwk.alg().as_str());
            let until = expires_at.map_or_else(
                || "never expires".to_owned(),
                |t| format!("expires {}", rfc3339(t)),
            );
            Ok(output(
                json!({"key_id": key_id, "kty": kty, "alg": alg}),
                format!("Registered JWK {key_id} ({kty}, {alg}) for {code}; it {until}."),
            ))
        }
        Keys::Revoke { code, key_id } => {
            let code = admin::code(&code)?;
            store.revoke_key(&code, &key_id).await?;
            // A revoked JWK's material goes too (best effort: without its entry it
            // authenticates nothing).
            let _ = store.set_jwk_material(&code, &key_id, None).await;
            Ok(output(
                json!({"customer_code": code.as_str(), "key_id": key_id, "revoked": true}),
                format!("Revoked key {key_id} of {code}."),
            ))
        }
    }
}

async fn signing_keys(cmd: SigningKeys, backends: &Backends) -> Result<Output, Failure> {
    let missing = |name: &str| {
        Failure::Input(format!(
            "{name} is not set (source .local/env or export it)"
        ))
    };
    let signing = backends
        .signing
        .as_ref()
        .ok_or_else(|| missing("SIGNING_SECRET_ID"))?;
    let verification = backends
        .verification
        .as_ref()
        .ok_or_else(|| missing("VERIFICATION_SECRET_ID"))?;
    let list = |doc: &KeyDocument| -> Vec<Value> {
        let active = doc.active.as_ref().map(|a| a.kid.as_str());
        doc.keys
            .iter()
            .map(|k| json!({"kid": k.kid, "created_at": rfc3339(k.created_at), "retired_at": k.retired_at.map(rfc3339), "active": Some(k.kid.as_str()) == active}))
            .collect()
    };
    match cmd {
        SigningKeys::List => {
            let keys = list(&signing.read().await?.doc);
            let text = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}  created {}{}",
                        k["kid"].as_str().unwrap_or(""),
                        k["created_at"].as_str().unwrap_or(""),
                        if k["active"] == json!(true) {
                            "  (active)"
                        } else {
                            ""
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(output(
                json!({ "keys": keys }),
                if text.is_empty() {
                    "No signing keys; run `customer-admin signing-keys init`.".to_owned()
                } else {
                    text
                },
            ))
        }
        SigningKeys::Init | SigningKeys::Rotate => {
            let init_only = matches!(cmd, SigningKeys::Init);
            match signing::rotate(signing, verification, init_only, unix_now).await? {
                Outcome::Exists { kid } => Ok(output(
                    json!({"kid": kid, "created": false}),
                    format!("Signing key {kid} already exists; nothing changed."),
                )),
                Outcome::Created { kid, previous } => Ok(output(
                    json!({"kid": kid, "previous_kid": previous, "created": true}),
                    format!("Signing key {kid} is active."),
                )),
            }
        }
    }
}

async fn run(cli: Cli) -> Result<Output, Failure> {
    let config = Config::from_env().map_err(|e| Failure::Input(e.to_string()))?;
    let backends = Backends::connect(&config).await;
    match cli.command {
        Command::Customers(cmd) => customers(cmd, &backends).await,
        Command::Keys(cmd) => keys(cmd, &backends).await,
        Command::SigningKeys(cmd) => signing_keys(cmd, &backends).await,
    }
}

/// The exit status when the reader of our output went away (`customer-admin … | head`): what
/// a shell reports for a process killed by SIGPIPE, so `set -o pipefail` scripts still see
/// that the output was cut, while nothing is printed (no panic, no message).
const BROKEN_PIPE: u8 = 128 + 13;

/// Writes one line to stdout, reporting a closed pipe instead of panicking as `println!`
/// does (Rust ignores SIGPIPE, so the write fails with `EPIPE`).
fn print_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

fn print_failed(err: &io::Error) -> ExitCode {
    if err.kind() == io::ErrorKind::BrokenPipe {
        return ExitCode::from(BROKEN_PIPE);
    }
    let _ = writeln!(
        io::stderr(),
        "customer-admin: cannot write the output: {err}"
    );
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(out) => {
            let line = if json { out.json.to_string() } else { out.text };
            match print_line(&line) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => print_failed(&err),
            }
        }
        Err(failure) => {
            let (message, code) = match failure {
                Failure::Input(m) => (m, 2),
                Failure::Backend(m) => (m, 1),
            };
            // The command's own failure is what the exit status reports, printed or not.
            if json {
                let _ = print_line(&json!({ "error": message }).to_string());
            }
            let _ = writeln!(io::stderr(), "customer-admin: {message}");
            ExitCode::from(code)
        }
    }
}
