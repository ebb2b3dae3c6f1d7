//! Authorization codes (SPEC §10): `lk_ac_` and 256 random bits, stored only
//! as a keyed hash under a key of their own; and the PKCE `S256` check.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Result;
use crate::id::random_bytes;
use crate::refresh::{RefreshKeys, TokenHash};

const CODE_PREFIX: &str = "lk_ac_";

impl RefreshKeys {
    /// A new authorization code and the hash to store.
    pub fn new_code(&self, rng: &dyn SecureRandom) -> Result<(String, TokenHash)> {
        let bytes = random_bytes::<32>(rng)?;
        let code = format!("{CODE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = self.code_hash(&code);
        Ok((code, hash))
    }

    /// The keyed hash of a presented code.
    pub fn code_hash(&self, code: &str) -> TokenHash {
        Self::mac(&self.code, code.as_bytes())
    }
}

/// Whether `challenge` is a well-formed `S256` code challenge: 43
/// base64url characters (a SHA-256).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` (RFC 7636 §4.1: 43 to 128 unreserved characters)
/// hashes to `challenge` under `S256`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let hash = digest::digest(&digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(hash.as_ref());
    // Both sides are public-ish (the challenge travelled in a URL); the
    // comparison still takes the same time for any mismatch.
    computed.len() == challenge.len()
        && computed
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifies() {
        // RFC 7636, Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_s256_challenge(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            challenge
        ));
        assert!(!pkce_matches(challenge, challenge));
        assert!(!pkce_matches("short", challenge));
        assert!(!is_s256_challenge("plain-challenge"));
    }

    #[test]
    fn codes_are_prefixed_and_hashed_under_their_own_key() {
        let keys = RefreshKeys::from_secret(&[4; 32]);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let (code, hash) = keys.new_code(&rng).unwrap();
        assert!(code.starts_with("lk_ac_"));
        assert_eq!(keys.code_hash(&code), hash);
        assert_ne!(keys.client_secret_hash(&code), hash);
    }
}
