//! Optimistic concurrency: how often a command re-reads and re-applies its rule after another
//! command won the race, and how long it waits in between.

use std::hash::BuildHasher;
use std::time::Duration;

/// Attempts of one read-modify-write before the command gives up.
pub const MAX_ATTEMPTS: usize = 8;

/// Waits before attempt `attempt + 1`: a random share of 10 ms × 2^attempt (at most 640 ms),
/// so commands that collided do not collide again in lockstep.
pub async fn backoff(attempt: usize) {
    let ceiling_ms = 10u64 << attempt.min(6);
    // A fresh `RandomState` is randomly keyed: good enough for jitter, no extra dependency.
    let jitter = std::collections::hash_map::RandomState::new().hash_one(attempt) % ceiling_ms;
    tokio::time::sleep(Duration::from_millis(jitter + 1)).await;
}
