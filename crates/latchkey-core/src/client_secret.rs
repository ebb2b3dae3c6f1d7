//! Client secrets: `lk_cs_` and 256 random bits, shown once, stored only as
//! a keyed hash under a key of [`RefreshKeys`] of their own.

use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Result;
use crate::id::random_bytes;
use crate::refresh::{RefreshKeys, TokenHash};

/// The prefix of every client secret.
pub const CLIENT_SECRET_PREFIX: &str = "lk_cs_";

impl RefreshKeys {
    /// A new client secret and its keyed hash.
    pub fn new_client_secret(&self, rng: &dyn SecureRandom) -> Result<(String, TokenHash)> {
        let bytes = random_bytes::<32>(rng)?;
        let secret = format!("{CLIENT_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = self.client_secret_hash(&secret);
        Ok((secret, hash))
    }

    /// The keyed hash of a presented client secret.
    pub fn client_secret_hash(&self, secret: &str) -> TokenHash {
        Self::mac(&self.client, secret.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    #[test]
    fn a_secret_is_prefixed_and_hashed_under_its_own_key() {
        let keys = RefreshKeys::from_secret(&[4; 32]);
        let (secret, hash) = keys.new_client_secret(&SystemRandom::new()).unwrap();
        assert!(secret.starts_with(CLIENT_SECRET_PREFIX));
        assert_eq!(secret.len(), CLIENT_SECRET_PREFIX.len() + 43);
        assert_eq!(keys.client_secret_hash(&secret), hash);
        let other = RefreshKeys::from_secret(&[5; 32]);
        assert_ne!(other.client_secret_hash(&secret), hash);
        // Not the refresh-token key: a secret's hash is not a token's.
        let as_token = crate::refresh::RefreshToken::parse(&secret.replacen("lk_cs_", "lk_rt_", 1));
        assert!(as_token.is_some_and(|t| keys.hash(&t) != hash));
    }
}
