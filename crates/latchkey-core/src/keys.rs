//! Signing keys: generation, loading from PKCS#8, and their public JWKs.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The signature algorithms Latchkey signs access tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// Ed25519 (the default): small, fast, deterministic.
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
}

impl SigningAlg {
    /// The JOSE name (`EdDSA`, `ES256`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    /// The matching `jsonwebtoken` algorithm.
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of `EdDSA`, `ES256`, `RS256`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown signing algorithm {0:?} (expected EdDSA, ES256 or RS256)")]
pub struct UnknownAlg(pub String);

impl FromStr for SigningAlg {
    type Err = UnknownAlg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Self::EdDSA),
            "ES256" => Ok(Self::ES256),
            "RS256" => Ok(Self::RS256),
            other => Err(UnknownAlg(other.to_owned())),
        }
    }
}

/// A public key as published in the JWKS (RFC 7517).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    /// Key type: `OKP`, `EC` or `RSA`.
    pub kty: String,
    /// Curve, for `OKP` and `EC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public point (x coordinate), for `OKP` and `EC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Public point (y coordinate), for `EC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Modulus, for `RSA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Public exponent, for `RSA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// The key id: the RFC 7638 thumbprint of the key.
    pub kid: String,
    /// The one algorithm this key is used with.
    pub alg: SigningAlg,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

impl PublicJwk {
    fn bare(alg: SigningAlg, kty: &str) -> Self {
        Self {
            kty: kty.to_owned(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: String::new(),
            alg,
            use_: "sig".to_owned(),
        }
    }

    fn with_thumbprint_kid(mut self) -> Self {
        self.kid = self.thumbprint();
        self
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        let canonical = match self.kty.as_str() {
            "RSA" => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                s(&self.e),
                s(&self.n)
            ),
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                s(&self.crv),
                s(&self.x),
                s(&self.y)
            ),
            _ => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
                s(&self.crv),
                self.kty,
                s(&self.x)
            ),
        };
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }

    /// The verification key for this JWK, bound to its algorithm.
    pub fn decoding_key(&self) -> Result<DecodingKey> {
        let missing = || Error::KeyMaterial(format!("JWK {} lacks a member", self.kid));
        let key = match self.alg {
            SigningAlg::EdDSA => {
                DecodingKey::from_ed_components(self.x.as_deref().ok_or_else(missing)?)
            }
            SigningAlg::ES256 => DecodingKey::from_ec_components(
                self.x.as_deref().ok_or_else(missing)?,
                self.y.as_deref().ok_or_else(missing)?,
            ),
            SigningAlg::RS256 => DecodingKey::from_rsa_components(
                self.n.as_deref().ok_or_else(missing)?,
                self.e.as_deref().ok_or_else(missing)?,
            ),
        };
        key.map_err(|e| Error::KeyMaterial(e.to_string()))
    }
}

/// A private signing key with its public half.
#[derive(Clone)]
pub struct SigningKey {
    /// The public half as published.
    pub jwk: PublicJwk,
    encoding: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key; returns it and its PKCS#8 encoding for storage.
    pub fn generate(alg: SigningAlg, rng: &dyn SecureRandom) -> Result<(Self, Vec<u8>)> {
        let failed = |_| Error::Crypto("key generation failed");
        let pkcs8 = match alg {
            SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(rng)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SigningAlg::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
                    .map_err(failed)?
                    .as_ref()
                    .to_vec()
            }
            SigningAlg::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                    .map_err(failed)?
                    .as_ref()
                    .to_vec()
            }
        };
        let key = Self::from_pkcs8(alg, &pkcs8)?;
        Ok((key, pkcs8))
    }

    /// Loads a key stored as PKCS#8.
    pub fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<Self> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| Error::KeyMaterial(e.to_string());
        let b64 = |bytes: &[u8]| Some(URL_SAFE_NO_PAD.encode(bytes));
        let (jwk, encoding) = match alg {
            SigningAlg::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                let x = b64(pair.public_key().as_ref());
                let jwk = PublicJwk {
                    crv: Some("Ed25519".into()),
                    x,
                    ..PublicJwk::bare(alg, "OKP")
                };
                (jwk, EncodingKey::from_ed_der(pkcs8))
            }
            SigningAlg::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(rejected)?;
                // Uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
                let point = pair.public_key().as_ref();
                if point.len() != 65 {
                    return Err(Error::KeyMaterial("unexpected P-256 point".into()));
                }
                let jwk = PublicJwk {
                    crv: Some("P-256".into()),
                    x: b64(&point[1..33]),
                    y: b64(&point[33..]),
                    ..PublicJwk::bare(alg, "EC")
                };
                (jwk, EncodingKey::from_ec_der(pkcs8))
            }
            SigningAlg::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let jwk = PublicJwk {
                    n: b64(&components.n),
                    e: b64(&components.e),
                    ..PublicJwk::bare(alg, "RSA")
                };
                let pem = format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    STANDARD.encode(pkcs8)
                );
                let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())?;
                (jwk, encoding)
            }
        };
        Ok(Self {
            jwk: jwk.with_thumbprint_kid(),
            encoding,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> SigningAlg {
        self.jwk.alg
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}
