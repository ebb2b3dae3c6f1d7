//! A fixed amount of verification work, to be counted in instructions under
//! callgrind, which, unlike wall time on a shared machine, repeats exactly:
//!
//! ```text
//! cargo build --release -p latchkey-verify --example verify_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/verify_instructions raw 2000
//! ```
//!
//! Modes: `raw` (aws-lc-rs Ed25519 verify of the signing input), `first`
//! (`Verifier::verify` of a token it has not seen), `again` (the same token
//! each time), `none` (the set-up only). Instructions per verification are
//! (count(mode, N) − count(none, N)) / N.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::jwt::{Verifier, sign};
use latchkey_core::keys::{SigningAlg, SigningKey};

#[path = "common/fixture.rs"]
mod fixture;

use fixture::{NOW, claims};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "none".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let (key, _) = SigningKey::generate(SigningAlg::EdDSA, &SystemRandom::new()).expect("key");
    let mut verifier = Verifier::new("http://127.0.0.1:8080", "latchkey");
    verifier.insert(&key.jwk).expect("jwk");
    // The same set-up in every mode: n tokens signed up front.
    let tokens: Vec<String> = (0..n)
        .map(|i| sign(&key, &claims(i)).expect("sign"))
        .collect();
    let public = URL_SAFE_NO_PAD
        .decode(key.jwk.x.as_deref().expect("x"))
        .expect("b64");
    let raw_key = UnparsedPublicKey::new(&ED25519, public);
    let mut ok = 0usize;
    for token in &tokens {
        ok += match mode.as_str() {
            "raw" => {
                let (message, signature) = token.rsplit_once('.').expect("jws");
                let signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
                usize::from(raw_key.verify(message.as_bytes(), &signature).is_ok())
            }
            "first" => usize::from(verifier.verify(token, NOW).is_ok()),
            "again" => usize::from(verifier.verify(&tokens[0], NOW).is_ok()),
            _ => 1,
        };
    }
    assert_eq!(ok, n, "every verification succeeds");
    println!("{mode} {n}");
}
