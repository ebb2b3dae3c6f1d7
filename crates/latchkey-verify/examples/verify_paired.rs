//! Verification against the raw backend rate in wall time, paired: short
//! rounds of raw Ed25519 verifies and of first-sight `Verifier::verify`
//! alternate, and the ratio is taken per round, so that the machine's
//! drifting speed (which moves criterion's separate runs by several percent)
//! falls on both sides of each ratio alike.
//!
//! ```text
//! cargo run --release -p latchkey-verify --example verify_paired [ROUNDS] [PER_ROUND]
//! cargo run --release -p latchkey-verify --example verify_paired_mimalloc [ROUNDS] [PER_ROUND]
//! ```
//!
//! Prints the median, 10th and 90th percentile of the per-round ratio
//! (raw time ÷ verifier time, i.e. the verifier's rate as a share of the
//! raw rate). Every verification is of a token not seen before (ROUNDS ×
//! PER_ROUND tokens are signed up front): the raw side checks its signing
//! input and decoded signature, the verifier the token itself.
//!
//! This one runs on the system allocator, as a resource server that picks
//! none does; `verify_paired_mimalloc` runs the same on mimalloc, the
//! allocator of the `latchkey` binary.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/paired.rs"]
mod paired;

fn main() {
    paired::run();
}
