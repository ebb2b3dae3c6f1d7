//! Password hashing: Argon2id with the OWASP-recommended parameters
//! (19 MiB of memory, 2 iterations, 1 lane).

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::rand::SecureRandom;
use subtle::ConstantTimeEq;

use crate::id::random_bytes;
use crate::{Error, Result};

thread_local! {
    /// Argon2id's 19 MiB of working memory, allocated once per thread and
    /// reused: allocating it per hash left every allocator arena holding its
    /// high-water mark (hundreds of MB after a burst of logins).
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Shortest password accepted (NIST SP 800-63B).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in bytes: bounds the work an attacker can ask for.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why a new password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeakPassword {
    /// Fewer than [`MIN_PASSWORD_LEN`] characters.
    #[error("the password must have at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    /// More than [`MAX_PASSWORD_LEN`] bytes.
    #[error("the password must have at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

/// Checks a new password against the length policy.
pub fn check_new_password(password: &str) -> Result<(), WeakPassword> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        Err(WeakPassword::TooShort)
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(WeakPassword::TooLong)
    } else {
        Ok(())
    }
}

/// Hashes and verifies passwords. Each call costs one full Argon2id
/// computation: callers run it off the async runtime.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    dummy: String,
}

impl PasswordHasher {
    /// The OWASP parameters; `rng` salts the dummy hash used for unknown users.
    pub fn new(rng: &dyn SecureRandom) -> Result<Self> {
        let params =
            Params::new(19 * 1024, 2, 1, None).map_err(|e| Error::Password(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = Self {
            argon2,
            dummy: String::new(),
        };
        hasher.dummy = hasher.hash("latchkey dummy password", rng)?;
        Ok(hasher)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub fn hash(&self, password: &str, rng: &dyn SecureRandom) -> Result<String> {
        let salt_bytes = random_bytes::<16>(rng)?;
        let salt =
            SaltString::encode_b64(&salt_bytes).map_err(|e| Error::Password(e.to_string()))?;
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Password(e.to_string()))
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// there is no user, so that both cost the same time. An over-long
    /// password is still hashed (then refused) for the same reason.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let phc = stored.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let bounded = &password.as_bytes()[..password.len().min(MAX_PASSWORD_LEN)];
        let matches = match self.verify_with_own_memory(bounded, &parsed) {
            Some(matches) => matches,
            // Hashes with other parameters (older ones) take the allocating path.
            None => self.argon2.verify_password(bounded, &parsed).is_ok(),
        };
        matches && stored.is_some() && password.len() <= MAX_PASSWORD_LEN
    }
}

impl PasswordHasher {
    /// Verifies a hash made with this hasher's parameters on the thread's
    /// reused working memory; `None` for a hash of other parameters.
    fn verify_with_own_memory(&self, password: &[u8], parsed: &PasswordHash<'_>) -> Option<bool> {
        let ours = self.argon2.params();
        let theirs = Params::try_from(parsed).ok()?;
        let same = parsed.algorithm == Algorithm::Argon2id.ident()
            && parsed.version == Some(Version::V0x13.into())
            && (theirs.m_cost(), theirs.t_cost(), theirs.p_cost())
                == (ours.m_cost(), ours.t_cost(), ours.p_cost());
        if !same {
            return None;
        }
        let expected = parsed.hash?;
        let mut salt_buf = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
        let mut out = vec![0u8; expected.len()];
        let computed = BLOCKS.with(|cell| {
            let mut blocks = cell.borrow_mut();
            if blocks.len() != ours.block_count() {
                *blocks = vec![Block::default(); ours.block_count()];
            }
            self.argon2
                .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..])
                .is_ok()
        });
        Some(computed && bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    #[test]
    fn hash_and_verify() {
        let rng = SystemRandom::new();
        let hasher = PasswordHasher::new(&rng).unwrap();
        let phc = hasher.hash("correct horse", &rng).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify("correct horse", Some(&phc)));
        assert!(!hasher.verify("wrong horse", Some(&phc)));
        assert!(!hasher.verify("latchkey dummy password", None));
    }

    #[test]
    fn other_parameters_still_verify() {
        let rng = SystemRandom::new();
        let hasher = PasswordHasher::new(&rng).unwrap();
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
        let phc = light
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(hasher.verify("correct horse", Some(&phc)));
        assert!(!hasher.verify("wrong horse", Some(&phc)));
        let own = hasher.hash("correct horse", &rng).unwrap();
        let parsed = PasswordHash::new(&own).unwrap();
        assert_eq!(
            hasher.verify_with_own_memory(b"correct horse", &parsed),
            Some(true)
        );
        assert_eq!(
            hasher.verify_with_own_memory(b"wrong horse", &parsed),
            Some(false)
        );
    }

    #[test]
    fn length_policy() {
        assert_eq!(check_new_password("short"), Err(WeakPassword::TooShort));
        assert!(check_new_password("long enough").is_ok());
        assert_eq!(
            check_new_password(&"x".repeat(1025)),
            Err(WeakPassword::TooLong)
        );
    }
}
