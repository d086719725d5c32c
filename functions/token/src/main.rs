//! Lambda function: POST /auth/token and the public /.well-known documents. Parse, call `shared`, render.
#![forbid(unsafe_code)]

use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::log::init();
    let api = shared::token_api::TokenApi::from_env().await?;
    shared::handler::run(Arc::new(api)).await
}
