//! Lambda function: GET /customer and GET /customers/{customer_code}. Parse, call `shared`, render.
#![forbid(unsafe_code)]

use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::log::init();
    let api = shared::customer_api::CustomerApi::from_env().await?;
    shared::handler::run(Arc::new(api)).await
}
