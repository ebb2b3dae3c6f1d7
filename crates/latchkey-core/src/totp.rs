//! Authenticator apps (RFC 6238, SPEC §12): HMAC-SHA-1, 6 digits, 30-second
//! steps, one step of drift either side; and the recovery codes that stand
//! in for the app. Pure: the secret, the code and the time are passed in.
//! A code is accepted once: [`matching_step`] says which step it belongs
//! to, and the store accepts a step only past the last one used.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SecureRandom;

use crate::Result;
use crate::id::random_bytes;
use crate::refresh::{RefreshKeys, TokenHash};

/// Seconds per step.
pub const STEP_SECS: i64 = 30;

/// Digits of a code.
pub const DIGITS: usize = 6;

/// Steps of drift accepted either side of now.
pub const DRIFT_STEPS: i64 = 1;

/// Bytes of a new secret (160 bits, RFC 4226 §4's recommendation).
pub const SECRET_BYTES: usize = 20;

/// Recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

/// The step `now` falls in.
pub fn step_of(now: i64) -> i64 {
    now.div_euclid(STEP_SECS)
}

/// The code of `secret` at `step` (RFC 4226 §5.3, dynamic truncation), as
/// six digits.
pub fn code_at(secret: &[u8], step: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let counter = u64::try_from(step).unwrap_or(0).to_be_bytes();
    let tag = hmac::sign(&key, &counter);
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

/// The step within the drift window whose code `typed` is (spaces
/// ignored), compared in constant time; `None` for anything else. The
/// caller accepts it only if no code of this step or a later one was used.
pub fn matching_step(secret: &[u8], typed: &str, now: i64) -> Option<i64> {
    let typed: String = typed.chars().filter(|c| *c != ' ').collect();
    if typed.len() != DIGITS || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(now);
    let mut found = None;
    for step in now - DRIFT_STEPS..=now + DRIFT_STEPS {
        if verify_slices_are_equal(code_at(secret, step).as_bytes(), typed.as_bytes()).is_ok()
            && found.is_none()
        {
            found = Some(step);
        }
    }
    found
}

/// A new secret.
pub fn new_secret(rng: &dyn SecureRandom) -> Result<Vec<u8>> {
    Ok(random_bytes::<SECRET_BYTES>(rng)?.to_vec())
}

/// The letters of recovery codes (RFC 4648's base32 alphabet, lower case).
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// New recovery codes, `xxxx-xxxx-xxxx-xxxx` (80 random bits each).
pub fn new_recovery_codes(rng: &dyn SecureRandom) -> Result<Vec<String>> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes = random_bytes::<16>(rng)?;
            let letters: Vec<u8> = bytes
                .iter()
                .map(|b| RECOVERY_ALPHABET[usize::from(b & 31)])
                .collect();
            Ok(letters
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-"))
        })
        .collect()
}

/// A typed recovery code in its canonical form: lower case, no dashes or
/// spaces; `None` unless it is 16 letters of the alphabet.
pub fn normalise_recovery_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (code.len() == 16 && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(code)
}

impl RefreshKeys {
    /// A new `mfa_token` (`lk_mfa_` and 256 random bits) and the hash to
    /// store.
    pub fn new_mfa_token(&self, rng: &dyn SecureRandom) -> Result<(String, TokenHash)> {
        let bytes = random_bytes::<32>(rng)?;
        let token = format!(
            "lk_mfa_{}",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
        );
        let hash = self.code_hash(&token);
        Ok((token, hash))
    }

    /// The keyed hash a recovery code is stored as (canonical form).
    pub fn recovery_code_hash(&self, canonical: &str) -> TokenHash {
        self.code_hash(&format!("lk_rc_{canonical}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1, the last six of its eight digits.
    #[test]
    fn the_rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(secret, step_of(time)), code, "at {time}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_one_either_side_only() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let step = step_of(now);
        for drift in [-1, 0, 1] {
            let code = code_at(secret, step + drift);
            assert_eq!(matching_step(secret, &code, now), Some(step + drift));
        }
        for far in [-2, 2, 10] {
            let code = code_at(secret, step + far);
            assert_eq!(matching_step(secret, &code, now), None, "{far}");
        }
        let code = code_at(secret, step);
        assert_eq!(
            matching_step(secret, &format!("{} {}", &code[..3], &code[3..]), now),
            Some(step)
        );
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(matching_step(secret, bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn recovery_codes_are_distinct_and_read_loosely() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let codes = new_recovery_codes(&rng).expect("random");
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut canonical: Vec<String> = codes
            .iter()
            .map(|c| normalise_recovery_code(&c.to_uppercase()).expect("valid"))
            .collect();
        canonical.sort();
        canonical.dedup();
        assert_eq!(canonical.len(), RECOVERY_CODES);
        assert_eq!(codes[0].len(), 19);
        assert_eq!(normalise_recovery_code("abcd-efgh-ijkl-mnop1"), None);
        assert_eq!(normalise_recovery_code("abcd-efgh-ijkl-mno1"), None);
    }
}
