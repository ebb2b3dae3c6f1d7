//! The paired measurement shared by `verify_paired` (the system allocator)
//! and `verify_paired_mimalloc` (the allocator the server runs with); see
//! `verify_paired.rs`.

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::jwt::{Verifier, sign};
use latchkey_core::keys::{SigningAlg, SigningKey};

use crate::fixture::{NOW, claims};

/// Runs the paired measurement and prints its summary.
pub(crate) fn run() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let per_round: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    latchkey_core::signers::install();
    let (key, _) = SigningKey::generate(SigningAlg::EdDSA, &SystemRandom::new()).expect("key");
    let mut verifier = Verifier::new("http://127.0.0.1:8080", "latchkey");
    verifier.insert(&key.jwk).expect("jwk");
    let tokens: Vec<String> = (0..rounds * per_round)
        .map(|i| sign(&key, &claims(i)).expect("sign"))
        .collect();
    let raw: Vec<(&str, Vec<u8>)> = tokens
        .iter()
        .map(|t| {
            let (message, signature) = t.rsplit_once('.').expect("jws");
            (message, URL_SAFE_NO_PAD.decode(signature).expect("b64"))
        })
        .collect();
    let public = URL_SAFE_NO_PAD
        .decode(key.jwk.x.as_deref().expect("x"))
        .expect("b64");
    let raw_key = UnparsedPublicKey::new(&ED25519, public);

    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let first = round * per_round;
        let start = Instant::now();
        for (message, signature) in &raw[first..first + per_round] {
            raw_key
                .verify(black_box(message.as_bytes()), black_box(signature))
                .expect("valid");
        }
        let raw_time = start.elapsed();
        let start = Instant::now();
        for token in &tokens[first..first + per_round] {
            verifier.verify(black_box(token), NOW).expect("valid");
        }
        let verifier_time = start.elapsed();
        ratios.push(raw_time.as_secs_f64() / verifier_time.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    println!(
        "rounds={rounds} per_round={per_round} verifier_rate_vs_raw: median={:.3} p10={:.3} p90={:.3}",
        at(0.5),
        at(0.1),
        at(0.9)
    );
}
