//! Random identifiers (users, sessions, token ids, key ids).

use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{Error, Result};

/// Fills `N` bytes from the random source.
pub fn random_bytes<const N: usize>(rng: &dyn SecureRandom) -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes)
        .map_err(|_| Error::Crypto("random source failed"))?;
    Ok(bytes)
}

/// A 128-bit random identifier, URL-safe base64, with a readable prefix
/// such as `usr_` or `ses_`.
pub fn random_id(prefix: &str, rng: &dyn SecureRandom) -> Result<String> {
    let bytes = random_bytes::<16>(rng)?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}
