//! Opaque refresh tokens, and the keyed hashes that are all the database ever
//! holds of them. The same server-side keys hash client secrets
//! ([`crate::client_secret`]).

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::Result;
use crate::id::random_bytes;

/// The prefix of every refresh token, so that secret scanners can find leaks.
pub const REFRESH_PREFIX: &str = "lk_rt_";
/// 32 random bytes in unpadded base64url.
const ENCODED_LEN: usize = 43;

/// A refresh token: `lk_rt_` and 256 random bits. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// A new token from 256 bits of the random source.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self> {
        let bytes = random_bytes::<32>(rng)?;
        Ok(Self(format!(
            "{REFRESH_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// Accepts only the exact shape Latchkey issues; anything else is `None`
    /// before any lookup happens.
    pub fn parse(text: &str) -> Option<Self> {
        let body = text.strip_prefix(REFRESH_PREFIX)?;
        let well_formed = body.len() == ENCODED_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(text.to_owned()))
    }

    /// The token itself, to hand to its holder and to nobody else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// The keyed hash (HMAC-SHA-256) of a refresh token or client secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Builds a hash from stored bytes; `None` unless there are exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The server-side keys for refresh tokens and client secrets, all derived
/// from one 256-bit secret that is kept in the database (sealed under the
/// master key when one is configured).
#[derive(Clone)]
pub struct RefreshKeys {
    hash: hmac::Key,
    derive: hmac::Key,
    pub(crate) client: hmac::Key,
    pub(crate) code: hmac::Key,
    pub(crate) nonce: hmac::Key,
}

impl RefreshKeys {
    /// Derives the purpose-bound keys from the stored secret.
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let sub =
            |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Self {
            hash: sub(b"latchkey refresh-token hash v1"),
            derive: sub(b"latchkey refresh-token successor v1"),
            client: sub(b"latchkey client-secret hash v1"),
            code: sub(b"latchkey authorization-code hash v1"),
            nonce: sub(b"latchkey dpop nonce v1"),
        }
    }

    /// The keyed hash stored in place of the token.
    pub fn hash(&self, token: &RefreshToken) -> TokenHash {
        Self::mac(&self.hash, token.0.as_bytes())
    }

    /// The successor of `parent`. Deriving it (rather than drawing it at
    /// random) makes rotation idempotent: a retry inside the grace window gets
    /// the very same successor, and the server never stores it in plaintext.
    pub fn successor(&self, parent: &RefreshToken) -> RefreshToken {
        let tag = hmac::sign(&self.derive, parent.0.as_bytes());
        RefreshToken(format!(
            "{REFRESH_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    pub(crate) fn mac(key: &hmac::Key, data: &[u8]) -> TokenHash {
        let tag = hmac::sign(key, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        TokenHash(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    #[test]
    fn parse_accepts_only_issued_shape() {
        let token = RefreshToken::generate(&SystemRandom::new()).unwrap();
        assert!(RefreshToken::parse(token.expose()).is_some());
        assert!(RefreshToken::parse("lk_rt_short").is_none());
        assert!(RefreshToken::parse(&token.expose()[1..]).is_none());
        let bad_char = format!("{}!", &token.expose()[..token.expose().len() - 1]);
        assert!(RefreshToken::parse(&bad_char).is_none());
    }

    #[test]
    fn hashes_depend_on_the_key() {
        let token = RefreshToken::generate(&SystemRandom::new()).unwrap();
        let a = RefreshKeys::from_secret(&[1; 32]);
        let b = RefreshKeys::from_secret(&[2; 32]);
        assert_ne!(a.hash(&token), b.hash(&token));
        assert_ne!(a.hash(&token), a.hash(&a.successor(&token)));
        assert!(RefreshToken::parse(a.successor(&token).expose()).is_some());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = RefreshToken::generate(&SystemRandom::new()).unwrap();
        assert!(!format!("{token:?}").contains(&token.expose()[6..]));
    }
}
