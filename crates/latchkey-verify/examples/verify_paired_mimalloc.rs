//! `verify_paired` on mimalloc, the allocator of the `latchkey` binary
//! (its `/api/me` verifies with the same `Verifier`).
//!
//! ```text
//! cargo run --release -p latchkey-verify --example verify_paired_mimalloc [ROUNDS] [PER_ROUND]
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/paired.rs"]
mod paired;

fn main() {
    paired::run();
}
