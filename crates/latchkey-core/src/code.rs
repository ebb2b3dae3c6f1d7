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

/// Why a found authorization code may not be redeemed by this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefused {
    /// It was issued to another client.
    OtherClient,
    /// The token request names another redirect URI than the authorization
    /// request did.
    RedirectUri,
    /// It is past its lifetime.
    Expired,
    /// The PKCE verifier does not match the challenge.
    Verifier,
}

impl CodeRefused {
    /// The audit trail's words for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OtherClient => "code of another client",
            Self::RedirectUri => "redirect_uri differs",
            Self::Expired => "code expired",
            Self::Verifier => "code_verifier does not match",
        }
    }
}

/// The token request redeeming a code: who asks, and what it repeats.
#[derive(Debug, Clone, Copy)]
pub struct CodeRequest<'a> {
    /// The (authenticated) client redeeming it.
    pub client_id: &'a str,
    /// The `redirect_uri` of the token request.
    pub redirect_uri: &'a str,
    /// The PKCE `code_verifier`.
    pub verifier: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The rules of redeeming a code the store found unused (SPEC §10), in
/// order: its client, its redirect URI, its lifetime, its PKCE challenge.
/// Single use and reuse are the store's (it marks the code used atomically);
/// this decides whether the fresh code may start a session.
pub fn check_redemption(
    code: &crate::records::AuthorizationCode,
    request: &CodeRequest<'_>,
) -> std::result::Result<(), CodeRefused> {
    if code.client_id != request.client_id {
        Err(CodeRefused::OtherClient)
    } else if code.redirect_uri != request.redirect_uri {
        Err(CodeRefused::RedirectUri)
    } else if crate::records::has_expired(code.expires_at, request.now) {
        Err(CodeRefused::Expired)
    } else if !pkce_matches(request.verifier, &code.code_challenge) {
        Err(CodeRefused::Verifier)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod redemption_tests {
    use super::*;
    use crate::records::AuthorizationCode;

    fn code(challenge: &str) -> AuthorizationCode {
        AuthorizationCode {
            hash: TokenHash::from_slice(&[7; 32]).expect("32 bytes"),
            client_id: "cli_a".into(),
            user_id: "usr_a".into(),
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: challenge.into(),
            scope: "openid".into(),
            nonce: None,
            auth_time: 100,
            auth_method: crate::strength::AuthMethod::Password,
            expires_at: 160,
        }
    }

    #[test]
    fn a_code_is_redeemed_only_by_its_client_uri_verifier_and_in_time() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        let found = code(&challenge);
        let good = CodeRequest {
            client_id: "cli_a",
            redirect_uri: "https://app.example/cb",
            verifier,
            now: 160,
        };
        assert_eq!(check_redemption(&found, &good), Ok(()));
        let cases = [
            (
                CodeRequest {
                    client_id: "cli_b",
                    ..good
                },
                CodeRefused::OtherClient,
            ),
            (
                CodeRequest {
                    redirect_uri: "https://app.example/cb/",
                    ..good
                },
                CodeRefused::RedirectUri,
            ),
            (CodeRequest { now: 161, ..good }, CodeRefused::Expired),
            (
                CodeRequest {
                    verifier: "x".repeat(43).leak(),
                    ..good
                },
                CodeRefused::Verifier,
            ),
        ];
        for (request, why) in cases {
            assert_eq!(check_redemption(&found, &request), Err(why));
        }
    }
}
