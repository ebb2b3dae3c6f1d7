//! DPoP proofs (RFC 9449 §4.3): everything a proof must satisfy that needs
//! no storage. Replay (`jti`) and server nonces are the caller's, since they
//! need state shared by every instance.
//!
//! The proof's own key is taken from its header (that is DPoP), but only a
//! public key of an allowed asymmetric algorithm, never a symmetric or
//! private one; the algorithm must agree with the key's type. Signatures
//! are checked by `jsonwebtoken` on the crypto backend every other JWT uses.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The `typ` of a DPoP proof.
pub const PROOF_TYP: &str = "dpop+jwt";

/// The algorithms a proof may use.
pub const ALGORITHMS: [&str; 2] = ["ES256", "EdDSA"];

/// How far a proof's `iat` may be from now, in seconds, either way.
pub const IAT_WINDOW: i64 = 60;

/// The longest proof read.
pub const MAX_PROOF_LEN: usize = 4096;

/// What the request a proof came with says.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The endpoint's public URL, without query or fragment.
    pub url: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// The access token presented with it, whose hash `ath` must be.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 SHA-256 thumbprint of its key (what `cnf.jkt` holds).
    pub jkt: String,
    /// Its unique id, for the replay cache.
    pub jti: String,
    /// When it was made.
    pub iat: i64,
    /// The server nonce it carries, if any.
    pub nonce: Option<String>,
}

/// Why a proof was refused. Every variant is `invalid_dpop_proof` to the
/// client; the distinction is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Not a compact JWS, or too long.
    #[error("the DPoP proof is malformed")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("the DPoP proof's typ is not dpop+jwt")]
    WrongType,
    /// An algorithm not allowed, or not matching the key.
    #[error("the DPoP proof's algorithm is not allowed")]
    Algorithm,
    /// No public key in the header, or a private or symmetric one.
    #[error("the DPoP proof's key is missing or not a public key")]
    Key,
    /// The signature does not verify.
    #[error("the DPoP proof's signature is invalid")]
    Signature,
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for another method")]
    Method,
    /// `htu` is not the endpoint's URL.
    #[error("the DPoP proof is for another URL")]
    Url,
    /// `iat` is outside the window.
    #[error("the DPoP proof is too old or from the future")]
    Time,
    /// `ath` missing or not the access token's hash.
    #[error("the DPoP proof is for another access token")]
    AccessTokenHash,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// How long a server nonce is good for: the window it was made in and the
/// next, so between 5 and 10 minutes.
pub const NONCE_WINDOW: i64 = 300;

impl crate::refresh::RefreshKeys {
    /// The server nonce (RFC 9449 §8) for now: the window's number and a
    /// MAC of it under a key every instance shares, so any instance accepts
    /// any instance's nonce without storing one.
    pub fn dpop_nonce(&self, now: i64) -> String {
        Self::nonce_for(&self.nonce, now.div_euclid(NONCE_WINDOW))
    }

    fn nonce_for(key: &aws_lc_rs::hmac::Key, window: i64) -> String {
        let tag = aws_lc_rs::hmac::sign(key, &window.to_be_bytes());
        let mut bytes = window.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tag.as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `nonce` is one this server made in this window or the last.
    pub fn dpop_nonce_is_fresh(&self, nonce: &str, now: i64) -> bool {
        let window = now.div_euclid(NONCE_WINDOW);
        [window, window - 1].iter().any(|w| {
            let expected = Self::nonce_for(&self.nonce, *w);
            expected.len() == nonce.len()
                && expected
                    .bytes()
                    .zip(nonce.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }
}

/// `ath`: the base64url SHA-256 of an access token.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, access_token.as_bytes()))
}

/// `htu` compared as RFC 9449 §4.3 says: scheme and host without case,
/// without query and fragment.
fn same_url(htu: &str, expected: &str) -> bool {
    match (url::Url::parse(htu), url::Url::parse(expected)) {
        (Ok(mut a), Ok(mut b)) => {
            a.set_query(None);
            a.set_fragment(None);
            b.set_query(None);
            b.set_fragment(None);
            a == b
        }
        _ => false,
    }
}

/// Verifies `proof` against what its request says.
pub fn verify(proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_LEN || proof.split('.').count() != 3 {
        return Err(ProofError::Malformed);
    }
    // The header as JSON first: a private or symmetric key is refused before
    // the library reads it (its JWK type would drop the private parts).
    let raw_header = proof.split('.').next().unwrap_or_default();
    let header_json: serde_json::Value = URL_SAFE_NO_PAD
        .decode(raw_header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(ProofError::Malformed)?;
    if header_json.get("typ").and_then(|t| t.as_str()) != Some(PROOF_TYP) {
        return Err(ProofError::WrongType);
    }
    let jwk_json = header_json.get("jwk").ok_or(ProofError::Key)?;
    let private = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];
    if !jwk_json.is_object() || private.iter().any(|p| jwk_json.get(p).is_some()) {
        return Err(ProofError::Key);
    }
    if header_json.get("crit").is_some() {
        return Err(ProofError::Malformed);
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|_| ProofError::Malformed)?;
    let jwk: Jwk = header.jwk.clone().ok_or(ProofError::Key)?;
    let fits = match (&header.alg, &jwk.algorithm) {
        (Algorithm::ES256, AlgorithmParameters::EllipticCurve(p)) => p.curve == EllipticCurve::P256,
        (Algorithm::EdDSA, AlgorithmParameters::OctetKeyPair(p)) => {
            p.curve == EllipticCurve::Ed25519
        }
        (Algorithm::ES256 | Algorithm::EdDSA, _) => return Err(ProofError::Key),
        _ => return Err(ProofError::Algorithm),
    };
    if !fits {
        return Err(ProofError::Algorithm);
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| ProofError::Key)?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => ProofError::Signature,
            _ => ProofError::Malformed,
        })?
        .claims;
    if claims.htm != expected.method {
        return Err(ProofError::Method);
    }
    if !same_url(&claims.htu, expected.url) {
        return Err(ProofError::Url);
    }
    // `abs_diff`: any `iat` a client writes, however far from now, is
    // compared without overflow.
    if claims.iat.abs_diff(expected.now) > IAT_WINDOW.unsigned_abs() {
        return Err(ProofError::Time);
    }
    if let Some(token) = expected.access_token
        && claims.ath.as_deref() != Some(ath(token).as_str())
    {
        return Err(ProofError::AccessTokenHash);
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(ProofError::Malformed);
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| ProofError::Key)?;
    Ok(Proof {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
        nonce: claims.nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9449 §4.1, Figure 4's proof (its key is the example's P-256 key).
    const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

    fn expected(now: i64) -> Expected<'static> {
        Expected {
            method: "POST",
            url: "https://server.example.com/token",
            now,
            access_token: None,
        }
    }

    #[test]
    fn the_rfc_example_proof_verifies_with_its_thumbprint() {
        let proof = verify(RFC_PROOF, &expected(1_562_262_616)).unwrap();
        assert_eq!(proof.jti, "-BwC3ESc6acc2lTc");
        // RFC 9449 §6.1 gives this key's thumbprint.
        assert_eq!(proof.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    }

    #[test]
    fn the_rfc_example_proof_fails_every_other_expectation() {
        let at = 1_562_262_616;
        assert_eq!(verify(RFC_PROOF, &expected(at + 61)), Err(ProofError::Time));
        // Times so far apart that their difference overflows an i64.
        assert_eq!(
            verify(RFC_PROOF, &expected(i64::MIN)),
            Err(ProofError::Time)
        );
        assert_eq!(
            verify(RFC_PROOF, &expected(i64::MIN + 1)),
            Err(ProofError::Time)
        );
        let get = Expected {
            method: "GET",
            ..expected(at)
        };
        assert_eq!(verify(RFC_PROOF, &get), Err(ProofError::Method));
        let other = Expected {
            url: "https://server.example.com/other",
            ..expected(at)
        };
        assert_eq!(verify(RFC_PROOF, &other), Err(ProofError::Url));
        let with_token = Expected {
            access_token: Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            ..expected(at)
        };
        assert_eq!(
            verify(RFC_PROOF, &with_token),
            Err(ProofError::AccessTokenHash)
        );
        // A byte of the signature changed.
        let mut forged = RFC_PROOF.to_owned();
        forged.pop();
        forged.push('A');
        assert_eq!(verify(&forged, &expected(at)), Err(ProofError::Signature));
    }

    #[test]
    fn a_nonce_is_good_for_its_window_and_the_next() {
        let keys = crate::refresh::RefreshKeys::from_secret(&[5; 32]);
        let now = 1_800_000_000;
        let nonce = keys.dpop_nonce(now);
        assert!(keys.dpop_nonce_is_fresh(&nonce, now));
        assert!(keys.dpop_nonce_is_fresh(&nonce, now + NONCE_WINDOW));
        assert!(!keys.dpop_nonce_is_fresh(&nonce, now + 2 * NONCE_WINDOW));
        assert!(!keys.dpop_nonce_is_fresh("made-up", now));
        let other = crate::refresh::RefreshKeys::from_secret(&[6; 32]);
        assert!(!other.dpop_nonce_is_fresh(&nonce, now));
    }

    #[test]
    fn the_rfc_ath_example_hashes_its_access_token() {
        // RFC 9449 §7.1.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn headers_without_a_public_key_of_an_allowed_algorithm_are_refused() {
        let header = |h: &str| format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(h));
        let ec = r#""jwk":{"kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA""#;
        let at = expected(0);
        assert_eq!(
            verify(
                &header(&format!(r#"{{"typ":"JWT","alg":"ES256",{ec}}}}}"#)),
                &at
            ),
            Err(ProofError::WrongType)
        );
        assert_eq!(
            verify(&header(r#"{"typ":"dpop+jwt","alg":"ES256"}"#), &at),
            Err(ProofError::Key)
        );
        assert_eq!(
            verify(
                &header(&format!(
                    r#"{{"typ":"dpop+jwt","alg":"ES256",{ec},"d":"x"}}}}"#
                )),
                &at
            ),
            Err(ProofError::Key)
        );
        assert_eq!(
            verify(
                &header(r#"{"typ":"dpop+jwt","alg":"HS256","jwk":{"kty":"oct","k":"c2VjcmV0"}}"#),
                &at
            ),
            Err(ProofError::Key)
        );
        assert_eq!(
            verify(
                &header(&format!(r#"{{"typ":"dpop+jwt","alg":"none",{ec}}}}}"#)),
                &at
            ),
            Err(ProofError::Malformed)
        );
        assert_eq!(
            verify(
                &header(&format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA",{ec}}}}}"#)),
                &at
            ),
            Err(ProofError::Key)
        );
        assert_eq!(verify("not a proof", &at), Err(ProofError::Malformed));
    }
}
