//! Signers kept parsed between signatures.
//!
//! `jsonwebtoken` asks its crypto provider for a signer at every `encode`,
//! and the aws-lc-rs provider builds that signer from the key's PKCS#8
//! bytes, which for Ed25519 derives the public half again: a second
//! scalar multiplication beside the signature's own, on every access token
//! (ECDSA and RSA keys are checked again the same way). [`install`] makes
//! the process use the aws-lc-rs provider with one change: each thread keeps
//! the signers it has built, per key, and reuses them. Verification, and the
//! signers themselves, are the aws-lc-rs provider's, unchanged.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;

use aws_lc_rs::digest::{SHA256, digest};
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner};
use jsonwebtoken::errors::Result;
use jsonwebtoken::signature::{Error, Signer};
use jsonwebtoken::{Algorithm, EncodingKey};

/// Signers a thread keeps; past this it starts over (keys change rarely).
const KEPT_PER_THREAD: usize = 8;

/// A key's identity in the cache: SHA-256 over its encoding, so that the
/// cache holds no copy of the key itself.
type Fingerprint = [u8; 32];

/// A kept signer with what it was built for.
type Entry = (Algorithm, Fingerprint, Rc<dyn JwtSigner>);

thread_local! {
    static KEPT: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Makes this process sign with kept signers. Call it before the first
/// token is signed or verified: `jsonwebtoken` fixes its provider at first
/// use. Returns false when a provider was already fixed (this one or
/// another), in which case signing works as before, only slower.
pub fn install() -> bool {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: kept_signer,
        ..DEFAULT_PROVIDER.clone()
    });
    provider.install_default().is_ok()
}

fn fingerprint(key: &EncodingKey) -> Fingerprint {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, key.as_bytes()).as_ref());
    out
}

/// The provider's signer factory: the aws-lc-rs signer for `key`, built
/// once per thread.
fn kept_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let id = fingerprint(key);
    KEPT.with(|kept| {
        if let Some((_, _, signer)) = kept.borrow().iter().find(|(a, f, _)| a == alg && *f == id) {
            return Ok(Box::new(Kept(signer.clone())) as Box<dyn JwtSigner>);
        }
        let signer: Rc<dyn JwtSigner> = Rc::from((DEFAULT_PROVIDER.signer_factory)(alg, key)?);
        let mut kept = kept.borrow_mut();
        if kept.len() >= KEPT_PER_THREAD {
            kept.clear();
        }
        kept.push((*alg, id, signer.clone()));
        Ok(Box::new(Kept(signer)) as Box<dyn JwtSigner>)
    })
}

/// A kept signer, lent to one `encode`.
struct Kept(Rc<dyn JwtSigner>);

impl Signer<Vec<u8>> for Kept {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, Error> {
        self.0.try_sign(message)
    }
}

impl JwtSigner for Kept {
    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aws_lc_rs::rand::SystemRandom;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::keys::{SigningAlg, SigningKey};

    /// Whether `signature` over `message` verifies under `key`'s public half.
    fn verifies(key: &SigningKey, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let public = key.jwk.decoding_key().unwrap();
        let signature = URL_SAFE_NO_PAD.encode(signature);
        jsonwebtoken::crypto::verify(&signature, message, &public, alg).unwrap()
    }

    #[test]
    fn each_key_signs_with_its_own_kept_signer() {
        let rng = SystemRandom::new();
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let jwt_alg = alg.jwt_algorithm();
            let (a, _) = SigningKey::generate(alg, &rng).unwrap();
            let (b, _) = SigningKey::generate(alg, &rng).unwrap();
            // Interleaved, twice each: the second signature of a key comes
            // from the signer the first one kept.
            for round in 0..2 {
                for (key, other) in [(&a, &b), (&b, &a)] {
                    let message = format!("header.claims-{round}");
                    let signer = kept_signer(&jwt_alg, key.encoding_key()).unwrap();
                    assert_eq!(signer.algorithm(), jwt_alg);
                    let signature = signer.try_sign(message.as_bytes()).unwrap();
                    assert!(
                        verifies(key, jwt_alg, message.as_bytes(), &signature),
                        "{alg:?}"
                    );
                    assert!(
                        !verifies(other, jwt_alg, message.as_bytes(), &signature),
                        "{alg:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_key_of_another_family_is_refused() {
        let rng = SystemRandom::new();
        let (ed, _) = SigningKey::generate(SigningAlg::EdDSA, &rng).unwrap();
        assert!(kept_signer(&Algorithm::ES256, ed.encoding_key()).is_err());
    }
}
