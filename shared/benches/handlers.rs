//! Handler work per request, excluding I/O (in-memory store and keys): criterion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use lambda_http::Body;

fn fixture() -> Fixture {
    Fixture::with_config(shared::config::Config {
        token_rate_limit: u64::MAX / 2,
        api_rate_limit: u64::MAX / 2,
        ..config()
    })
}

fn handlers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = fixture();
    let token = rt.block_on(f.access_token(NOW));
    let wrong =
        format!("grant_type=client_credentials&client_id={CODE}&client_secret=kiss_sk_wrong");
    let form = f.form();
    c.bench_function("token issue", |b| {
        b.to_async(&rt)
            .iter(|| call(&f.token, post_form(&form), NOW + 1))
    });
    c.bench_function("token reject (wrong key)", |b| {
        b.to_async(&rt)
            .iter(|| call(&f.token, post_form(&wrong), NOW + 1))
    });
    c.bench_function("lookup", |b| {
        b.to_async(&rt)
            .iter(|| call(&f.customer, get_with_token("/customer", &token), NOW + 1))
    });
    c.bench_function("bearer reject (bad signature)", |b| {
        let forged = format!("{}x", &token[..token.len() - 1]);
        b.to_async(&rt)
            .iter(|| call(&f.customer, get_with_token("/customer", &forged), NOW + 1))
    });
    c.bench_function("bearer reject (no header)", |b| {
        b.to_async(&rt).iter(|| {
            call(
                &f.customer,
                request("GET", "/customer", &[], Body::Empty),
                NOW + 1,
            )
        })
    });
}

criterion_group!(benches, handlers);
criterion_main!(benches);
