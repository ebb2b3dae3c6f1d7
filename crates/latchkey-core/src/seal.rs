//! Sealing secrets at rest (signing keys, the refresh-token key) under the
//! operator's master key: AES-256-GCM with a random nonce.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::SecureRandom;

use crate::id::random_bytes;
use crate::{Error, Result};

const SEALED_TAG: &[u8] = b"lk-sealed-v1:";
const PLAIN_TAG: &[u8] = b"lk-plain-v1:";

/// The operator's 256-bit master key (`LATCHKEY_MASTER_KEY`, 64 hex characters).
pub struct MasterKey(LessSafeKey);

impl MasterKey {
    /// Parses 64 hexadecimal characters.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        let unbound = UnboundKey::new(&AES_256_GCM, &key).ok()?;
        Some(Self(LessSafeKey::new(unbound)))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// What opening a stored secret found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The secret, which was sealed under the given master key.
    Sealed(Vec<u8>),
    /// The secret, stored without a master key.
    Plain(Vec<u8>),
}

/// Why a stored secret cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// It is sealed and no master key was given.
    #[error("the stored secret is sealed and no master key is configured")]
    NeedsMasterKey,
    /// It is sealed under another master key, or was tampered with.
    #[error("the master key does not open the stored secret")]
    WrongMasterKey,
    /// It is not in a known format.
    #[error("the stored secret is in an unknown format")]
    Malformed,
}

/// Seals `secret` under `master` if given; otherwise marks it as plain.
/// `label` binds the blob to its purpose (a key id, a secret name).
pub fn seal(
    master: Option<&MasterKey>,
    label: &str,
    secret: &[u8],
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>> {
    let Some(MasterKey(key)) = master else {
        return Ok([PLAIN_TAG, secret].concat());
    };
    let nonce_bytes = random_bytes::<NONCE_LEN>(rng)?;
    let mut in_out = secret.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(label.as_bytes()),
        &mut in_out,
    )
    .map_err(|_| Error::Crypto("sealing failed"))?;
    Ok([SEALED_TAG, &nonce_bytes, &in_out].concat())
}

/// Whether a blob made by [`seal`] is sealed under a master key.
pub fn is_sealed(blob: &[u8]) -> bool {
    blob.starts_with(SEALED_TAG)
}

/// Opens a blob made by [`seal`].
pub fn open(master: Option<&MasterKey>, label: &str, blob: &[u8]) -> Result<Opened, OpenError> {
    if let Some(plain) = blob.strip_prefix(PLAIN_TAG) {
        return Ok(Opened::Plain(plain.to_vec()));
    }
    let sealed = blob.strip_prefix(SEALED_TAG).ok_or(OpenError::Malformed)?;
    let MasterKey(key) = master.ok_or(OpenError::NeedsMasterKey)?;
    if sealed.len() < NONCE_LEN {
        return Err(OpenError::Malformed);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Malformed)?;
    let mut in_out = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(label.as_bytes()), &mut in_out)
        .map_err(|_| OpenError::WrongMasterKey)?;
    Ok(Opened::Sealed(plain.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trip_and_wrong_key() {
        let rng = SystemRandom::new();
        let a = MasterKey::from_hex(KEY_A).unwrap();
        let b = MasterKey::from_hex(KEY_B).unwrap();
        let blob = seal(Some(&a), "kid1", b"secret", &rng).unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            open(Some(&a), "kid1", &blob),
            Ok(Opened::Sealed(b"secret".to_vec()))
        );
        assert_eq!(
            open(Some(&b), "kid1", &blob),
            Err(OpenError::WrongMasterKey)
        );
        assert_eq!(
            open(Some(&a), "kid2", &blob),
            Err(OpenError::WrongMasterKey)
        );
        assert_eq!(open(None, "kid1", &blob), Err(OpenError::NeedsMasterKey));
    }

    #[test]
    fn plain_without_master_key() {
        let rng = SystemRandom::new();
        let blob = seal(None, "x", b"secret", &rng).unwrap();
        assert_eq!(
            open(None, "x", &blob),
            Ok(Opened::Plain(b"secret".to_vec()))
        );
        assert!(MasterKey::from_hex("abc").is_none());
        assert!(MasterKey::from_hex(&"g".repeat(64)).is_none());
    }
}
