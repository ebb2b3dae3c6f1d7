//! With the kept signers installed as the process's provider (alone in this
//! test binary, so installed before anything signs or verifies), tokens of
//! several keys, signed interleaved, verify under their own key only.

#![allow(clippy::unwrap_used)]

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::jwt::{AccessClaims, Verifier, sign};
use latchkey_core::keys::{SigningAlg, SigningKey};

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "https://issuer.test".into(),
        sub: "usr_1".into(),
        aud: "latchkey".into(),
        exp: 4_000_000_000,
        iat: 1_700_000_000,
        nbf: None,
        jti: "jti".into(),
        client_id: "first-party".into(),
        scope: "profile".into(),
        sid: Some("ses_1".into()),
        auth_time: None,
        amr: None,
        acr: None,
        cnf: None,
        fingerprint: None,
    }
}

#[test]
fn tokens_verify_under_their_own_key_only() {
    assert!(latchkey_core::signers::install());
    assert!(!latchkey_core::signers::install(), "installed once");
    let rng = SystemRandom::new();
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
        let (a, _) = SigningKey::generate(alg, &rng).unwrap();
        let (b, _) = SigningKey::generate(alg, &rng).unwrap();
        let verifier_of = |key: &SigningKey| {
            let mut v = Verifier::new("https://issuer.test", "latchkey");
            v.insert(&key.jwk).unwrap();
            v
        };
        let (only_a, only_b) = (verifier_of(&a), verifier_of(&b));
        for _ in 0..3 {
            for (key, own, other) in [(&a, &only_a, &only_b), (&b, &only_b, &only_a)] {
                let token = sign(key, &claims()).unwrap();
                assert!(own.verify(&token, 1_700_000_000).is_ok(), "{alg:?}");
                assert!(other.verify(&token, 1_700_000_000).is_err(), "{alg:?}");
            }
        }
    }
}
