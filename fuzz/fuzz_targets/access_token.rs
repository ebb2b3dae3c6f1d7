//! Access-token parsing and verification: any bytes, never a panic, never
//! accepted (the key is the fuzzer's, and it never signs).
#![no_main]

use std::sync::LazyLock;

use latchkey_core::jwt::Verifier;
use latchkey_core::keys::{SigningAlg, SigningKey};
use libfuzzer_sys::fuzz_target;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let (key, _) = SigningKey::generate(SigningAlg::EdDSA, &rng).expect("key");
    let mut verifier = Verifier::new("http://127.0.0.1:8080", "latchkey");
    verifier.insert(&key.jwk).expect("jwk");
    verifier
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(VERIFIER.verify(text, 1_800_000_000).is_err());
        let _ =
            latchkey_core::jwt::dangerous::verify_ignoring_expiry(&VERIFIER, text, 1_800_000_000);
        let _ = VERIFIER.verify_id_token_hint(text);
        let _ = latchkey_core::refresh::RefreshToken::parse(text);
    }
});
