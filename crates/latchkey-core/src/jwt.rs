//! Access tokens: JWTs in the RFC 9068 profile, signed by [`SigningKey`] and
//! checked strictly by [`Verifier`].

use std::collections::HashMap;
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::Engine;
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::keys::{PublicJwk, SigningAlg, SigningKey};

/// The `typ` header of every access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Clock-skew leeway for `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;
/// The `client_id` of tokens from the first-party login when no client is named.
pub const FIRST_PARTY_CLIENT_ID: &str = "first-party";

/// The claims of a Latchkey access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the server's `LATCHKEY_ISSUER`.
    pub iss: String,
    /// Subject: the stable user id (or the client id for `client_credentials`).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scope, space-delimited.
    pub scope: String,
    /// The session (absent for `client_credentials` tokens, which have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// When the user authenticated, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// How the user authenticated (RFC 8176), for user tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The level the sign-in reached: `pwd`, `mfa` or `phr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Confirmation (proof-of-possession binding), when bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
    /// The SHA-256 (base64url) of the browser fingerprint cookie the token
    /// is bound to, when the issuing server set one (OWASP "token
    /// sidejacking"); only that server can check it.
    #[serde(rename = "lk_fgp", default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Signs `claims` with `key` as an `at+jwt`.
pub fn sign(key: &SigningKey, claims: &AccessClaims) -> Result<String> {
    let mut header = Header::new(key.alg().jwt_algorithm());
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid().to_owned());
    Ok(jsonwebtoken::encode(&header, claims, key.encoding_key())?)
}

/// The `typ` of an OpenID Connect ID token: anything but an access token's,
/// so that no verifier of access tokens accepts one.
pub const ID_TOKEN_TYP: &str = "JWT";

/// The claims of an OpenID Connect ID token (Core §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client it is for.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// When the user signed in, Unix seconds.
    pub auth_time: i64,
    /// How the user authenticated (RFC 8176).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The level the sign-in reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The client's `nonce`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The session.
    pub sid: String,
    /// The left half of the access token's hash (the signing algorithm's:
    /// SHA-512 for Ed25519, SHA-256 for ES256 and RS256), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The user's address, with the `email` scope (SPEC §13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether they verified it, with the `email` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// `at_hash` for `access_token` under `alg` (OpenID Connect Core §3.1.3.6).
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    use aws_lc_rs::digest;
    let algorithm = match alg {
        SigningAlg::EdDSA => &digest::SHA512,
        SigningAlg::ES256 | SigningAlg::RS256 => &digest::SHA256,
    };
    let hash = digest::digest(algorithm, access_token.as_bytes());
    let half = &hash.as_ref()[..hash.as_ref().len() / 2];
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(half)
}

/// Signs an ID token with `key`.
pub fn sign_id_token(key: &SigningKey, claims: &IdClaims) -> Result<String> {
    let mut header = Header::new(key.alg().jwt_algorithm());
    header.typ = Some(ID_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid().to_owned());
    Ok(jsonwebtoken::encode(&header, claims, key.encoding_key())?)
}

/// The `typ` of a back-channel logout token (OpenID Connect Back-Channel
/// Logout 1.0 §2.4).
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";

/// The event a logout token carries.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The claims of a back-channel logout token (§2.4): never a `nonce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutClaims {
    /// Issuer.
    pub iss: String,
    /// The client told.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// A new id for every token.
    pub jti: String,
    /// The user.
    pub sub: String,
    /// The session that ended: the `sid` of its ID tokens.
    pub sid: String,
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
    pub events: HashMap<String, serde_json::Value>,
}

impl LogoutClaims {
    /// The events claim of every logout token.
    pub fn logout_event() -> HashMap<String, serde_json::Value> {
        HashMap::from([(
            BACKCHANNEL_LOGOUT_EVENT.to_owned(),
            serde_json::Value::Object(serde_json::Map::new()),
        )])
    }
}

/// Signs a back-channel logout token with `key`.
pub fn sign_logout_token(key: &SigningKey, claims: &LogoutClaims) -> Result<String> {
    let mut header = Header::new(key.alg().jwt_algorithm());
    header.typ = Some(LOGOUT_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid().to_owned());
    Ok(jsonwebtoken::encode(&header, claims, key.encoding_key())?)
}

/// Why an access token was refused. Every variant means "not a valid token
/// here"; the distinction is for logs, not for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token too large")]
    TooLarge,
    /// Not a JWS compact serialisation, or undecodable header or claims.
    #[error("malformed token")]
    Malformed,
    /// `typ` is not `at+jwt`.
    #[error("not an access token")]
    WrongType,
    /// The header carries a key or a key URL (`jwk`, `jku`, `x5u`, `x5c`) or `crit`.
    #[error("token header names its own key")]
    EmbeddedKey,
    /// No `kid`, or a `kid` this verifier does not know.
    #[error("unknown signing key")]
    UnknownKey,
    /// `alg` differs from the algorithm bound to the key.
    #[error("algorithm not allowed for this key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A required claim is missing or `iss`/`aud` does not match.
    #[error("wrong issuer or audience")]
    WrongIssuerOrAudience,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` lies in the future.
    #[error("token not yet valid")]
    NotYetValid,
}

/// Whether a verification enforces `exp`: always, but through
/// [`dangerous::verify_ignoring_expiry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Expired tokens are refused (every protected resource).
    Enforce,
    /// Expired tokens still verify; used only to match an access token to
    /// its session on refresh, never to grant access.
    Ignore,
}

/// Verifies access tokens against a fixed set of keys, issuer and audience.
///
/// A verifier remembers the tokens whose signature, type, key, issuer and
/// audience it has checked (keyed by the whole token, so a hit means these
/// exact bytes passed before) and re-checks only their times: a resource
/// server sees the same token on every request of its lifetime. The memory
/// is bounded ([`Verifier::CACHED_TOKENS`]), holds only tokens that verified,
/// and starts empty with every new verifier, so replacing the verifier when
/// keys change forgets tokens of a key that is gone.
pub struct Verifier {
    issuer: String,
    audience: String,
    keys: HashMap<String, TrustedKey>,
    verified: Mutex<HashMap<Box<str>, AccessClaims, TailHashing>>,
}

/// How the remembered tokens are hashed: a keyed SipHash (the standard
/// library's) over each token's last [`TailHashing::BYTES`] bytes only,
/// which are its signature's. Hashing whole tokens (at lookup, then at
/// insertion) cost a first verification about 6,000 of the 44,000
/// instructions it spends beside the signature check (callgrind). Equality
/// still compares every byte, so a token that shares another's tail only
/// shares its bucket, and only tokens that verified are ever inserted.
#[derive(Clone, Default)]
struct TailHashing(RandomState);

impl TailHashing {
    const BYTES: usize = 32;
}

impl BuildHasher for TailHashing {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct TailHasher(DefaultHasher);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let from = bytes.len().saturating_sub(TailHashing::BYTES);
        self.0.write(&bytes[from..]);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// A key, its algorithm, and the library validation for it, built once.
struct TrustedKey {
    alg: SigningAlg,
    key: DecodingKey,
    validation: Validation,
}

impl Clone for Verifier {
    /// A clone trusts the same keys and starts with no remembered tokens.
    fn clone(&self) -> Self {
        let mut clone = Self::new(self.issuer.clone(), self.audience.clone());
        for (kid, trusted) in &self.keys {
            clone.keys.insert(
                kid.clone(),
                TrustedKey {
                    alg: trusted.alg,
                    key: trusted.key.clone(),
                    validation: trusted.validation.clone(),
                },
            );
        }
        clone
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// How many verified tokens a verifier remembers at most. When full, it
    /// forgets expired ones, then all.
    pub const CACHED_TOKENS: usize = 8192;

    /// A verifier with no keys yet.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: HashMap::new(),
            verified: Mutex::default(),
        }
    }

    /// Trusts `jwk` for its own algorithm only.
    pub fn insert(&mut self, jwk: &PublicJwk) -> Result<()> {
        // The library checks the signature, the algorithm again, iss and
        // aud; time is checked by `verify` against the caller's clock.
        let mut validation = Validation::new(jwk.alg.jwt_algorithm());
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        self.keys.insert(
            jwk.kid.clone(),
            TrustedKey {
                alg: jwk.alg,
                key: jwk.decoding_key()?,
                validation,
            },
        );
        Ok(())
    }

    /// True when `kid` is known.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies signature, `typ`, `iss`, `aud`, `exp`, `nbf` and `iat` at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, VerifyError> {
        self.verify_with(token, now, Expiry::Enforce)
    }

    fn verify_with(
        &self,
        token: &str,
        now: i64,
        expiry: Expiry,
    ) -> Result<AccessClaims, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLarge);
        }
        let remembered = self.remembered().get(token).cloned();
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = self.verify_untimed(token)?;
                self.remember(token, &claims, now);
                claims
            }
        };
        // Saturating: no signed time, however far out, overflows here.
        if expiry == Expiry::Enforce && claims.exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(VerifyError::Expired);
        }
        if claims.nbf.unwrap_or(claims.iat).saturating_sub(LEEWAY_SECS) > now {
            return Err(VerifyError::NotYetValid);
        }
        Ok(claims)
    }

    /// An ID token this server issued, as an `id_token_hint` (RP-initiated
    /// logout): its header, key, signature and issuer are checked; its
    /// expiry is not (a hint may be old), and its audience is returned for
    /// the caller to match.
    pub fn verify_id_token_hint(&self, token: &str) -> Result<IdClaims, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.typ.as_deref() != Some(ID_TOKEN_TYP) {
            return Err(VerifyError::WrongType);
        }
        if header.jwk.is_some()
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(VerifyError::EmbeddedKey);
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let trusted = self.keys.get(kid).ok_or(VerifyError::UnknownKey)?;
        if header.alg != trusted.alg.jwt_algorithm() {
            return Err(VerifyError::AlgorithmMismatch);
        }
        let mut validation = trusted.validation.clone();
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        jsonwebtoken::decode::<IdClaims>(token, &trusted.key, &validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// Everything but the times: header, key, signature, issuer, audience.
    fn verify_untimed(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        // With one trusted key (the usual case) the header need not be read
        // before the signature to pick the key: verify with it, then apply
        // the same header checks to the header the library decoded. Any
        // failure goes the long way, which names the precise error.
        if self.keys.len() == 1
            && let Some((kid, trusted)) = self.keys.iter().next()
            && let Ok(data) =
                jsonwebtoken::decode::<AccessClaims>(token, &trusted.key, &trusted.validation)
            && check_header(&data.header)? == kid.as_str()
        {
            return Ok(data.claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let kid = check_header(&header)?;
        let trusted = self.keys.get(kid).ok_or(VerifyError::UnknownKey)?;
        if header.alg != trusted.alg.jwt_algorithm() {
            return Err(VerifyError::AlgorithmMismatch);
        }
        match jsonwebtoken::decode::<AccessClaims>(token, &trusted.key, &trusted.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                Err(match e.kind() {
                    ErrorKind::InvalidSignature => VerifyError::BadSignature,
                    ErrorKind::InvalidAlgorithm => VerifyError::AlgorithmMismatch,
                    ErrorKind::InvalidIssuer
                    | ErrorKind::InvalidAudience
                    | ErrorKind::MissingRequiredClaim(_) => VerifyError::WrongIssuerOrAudience,
                    _ => VerifyError::Malformed,
                })
            }
        }
    }

    fn remembered(&self) -> MutexGuard<'_, HashMap<Box<str>, AccessClaims, TailHashing>> {
        // The map is never left half-updated: a poisoned one is still sound.
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, token: &str, claims: &AccessClaims, now: i64) {
        let mut verified = self.remembered();
        if verified.len() >= Self::CACHED_TOKENS {
            verified.retain(|_, c| c.exp + LEEWAY_SECS > now);
            if verified.len() >= Self::CACHED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(token.into(), claims.clone());
    }
}

/// The header rules of an access token: `typ` is `at+jwt`, no key or
/// critical extension of its own, and a `kid`, which it returns.
fn check_header(header: &Header) -> Result<&str, VerifyError> {
    if !header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return Err(VerifyError::WrongType);
    }
    if header.jwk.is_some()
        || header.jku.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
        || header.crit.is_some()
    {
        return Err(VerifyError::EmbeddedKey);
    }
    header.kid.as_deref().ok_or(VerifyError::UnknownKey)
}

/// Verification that skips a check, for the few places that need it. Never
/// use it to grant access.
pub mod dangerous {
    use super::{AccessClaims, Expiry, Verifier, VerifyError};

    /// Verifies everything [`Verifier::verify`] does but `exp`: an expired
    /// access token still names its session. Used only to match an access
    /// token sent with a refresh grant to the refresh token's session, and
    /// to find the session a revocation request names.
    pub fn verify_ignoring_expiry(
        verifier: &Verifier,
        token: &str,
        now: i64,
    ) -> Result<AccessClaims, VerifyError> {
        verifier.verify_with(token, now, Expiry::Ignore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const NOW: i64 = 1_800_000_000;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://issuer.test".into(),
            sub: "usr_1".into(),
            aud: "api".into(),
            exp: NOW + 600,
            iat: NOW,
            nbf: None,
            jti: "jti1".into(),
            client_id: FIRST_PARTY_CLIENT_ID.into(),
            scope: "profile".into(),
            sid: Some("ses_1".into()),
            auth_time: Some(NOW),
            amr: None,
            acr: None,
            cnf: None,
            fingerprint: None,
        }
    }

    fn setup(alg: SigningAlg) -> (SigningKey, Verifier) {
        let (key, _) = SigningKey::generate(alg, &SystemRandom::new()).unwrap();
        let mut verifier = Verifier::new("https://issuer.test", "api");
        verifier.insert(&key.jwk).unwrap();
        (key, verifier)
    }

    fn forge(header: serde_json::Value, claims: &AccessClaims, sig: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap());
        format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn round_trip_every_algorithm() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let (key, verifier) = setup(alg);
            let token = sign(&key, &claims()).unwrap();
            assert_eq!(verifier.verify(&token, NOW), Ok(claims()), "{alg}");
        }
    }

    #[test]
    fn reloaded_key_has_same_kid_and_verifies() {
        let (key, pkcs8) = SigningKey::generate(SigningAlg::EdDSA, &SystemRandom::new()).unwrap();
        let again = SigningKey::from_pkcs8(SigningAlg::EdDSA, &pkcs8).unwrap();
        assert_eq!(key.kid(), again.kid());
        let mut verifier = Verifier::new("https://issuer.test", "api");
        verifier.insert(&key.jwk).unwrap();
        let token = sign(&again, &claims()).unwrap();
        assert!(verifier.verify(&token, NOW).is_ok());
    }

    #[test]
    fn time_claims() {
        let (key, verifier) = setup(SigningAlg::EdDSA);
        let token = sign(&key, &claims()).unwrap();
        assert_eq!(
            verifier.verify(&token, NOW + 700),
            Err(VerifyError::Expired)
        );
        assert!(dangerous::verify_ignoring_expiry(&verifier, &token, NOW + 700).is_ok());
        assert_eq!(
            verifier.verify(&token, NOW - 100),
            Err(VerifyError::NotYetValid)
        );
        // Within the leeway both ways.
        assert!(verifier.verify(&token, NOW + 610).is_ok());
        assert!(verifier.verify(&token, NOW - 10).is_ok());
    }

    #[test]
    fn refuses_none_hmac_and_embedded_keys() {
        let (key, verifier) = setup(SigningAlg::EdDSA);
        let kid = key.kid().to_owned();
        let none = forge(
            serde_json::json!({"alg":"none","typ":"at+jwt","kid":kid}),
            &claims(),
            b"",
        );
        assert!(verifier.verify(&none, NOW).is_err());

        // HS256 keyed with the public key's bytes.
        let x = key.jwk.x.clone().unwrap();
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.clone());
        let hs = jsonwebtoken::encode(
            &header,
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&hs, NOW),
            Err(VerifyError::AlgorithmMismatch)
        );

        let token = sign(&key, &claims()).unwrap();
        let sig = token.rsplit('.').next().unwrap();
        let embedded = forge(
            serde_json::json!({"alg":"EdDSA","typ":"at+jwt","kid":kid,"jwk":key.jwk}),
            &claims(),
            &URL_SAFE_NO_PAD.decode(sig).unwrap(),
        );
        assert_eq!(
            verifier.verify(&embedded, NOW),
            Err(VerifyError::EmbeddedKey)
        );
    }

    #[test]
    fn refuses_tampering_type_audience_and_unknown_kid() {
        let (key, verifier) = setup(SigningAlg::EdDSA);
        let token = sign(&key, &claims()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut evil = claims();
        evil.sub = "usr_admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_string(&evil).unwrap());
        assert_eq!(
            verifier.verify(&parts.join("."), NOW),
            Err(VerifyError::BadSignature)
        );

        let mut wrong_aud = claims();
        wrong_aud.aud = "other".into();
        let t = sign(&key, &wrong_aud).unwrap();
        assert_eq!(
            verifier.verify(&t, NOW),
            Err(VerifyError::WrongIssuerOrAudience)
        );

        let (other, _) = setup(SigningAlg::EdDSA);
        let t = sign(&other, &claims()).unwrap();
        assert_eq!(verifier.verify(&t, NOW), Err(VerifyError::UnknownKey));

        let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid().into());
        header.typ = Some("JWT".into());
        let t = jsonwebtoken::encode(&header, &claims(), key.encoding_key()).unwrap();
        assert_eq!(verifier.verify(&t, NOW), Err(VerifyError::WrongType));

        assert_eq!(
            verifier.verify(&"a".repeat(5000), NOW),
            Err(VerifyError::TooLarge)
        );
        assert_eq!(
            verifier.verify("lk_rt_abc", NOW),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn a_remembered_token_still_expires_and_its_forgeries_still_fail() {
        let (key, verifier) = setup(SigningAlg::EdDSA);
        let t = sign(&key, &claims()).unwrap();
        assert_eq!(verifier.verify(&t, NOW), Ok(claims()));
        // Remembered, yet its times are checked at every use.
        let late = NOW + 600 + LEEWAY_SECS;
        assert_eq!(verifier.verify(&t, late), Err(VerifyError::Expired));
        assert_eq!(
            dangerous::verify_ignoring_expiry(&verifier, &t, late),
            Ok(claims())
        );
        // Other claims under the remembered signature are other bytes.
        let (_, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut changed = claims();
        changed.sub = "usr_2".into();
        let header = t.split('.').next().unwrap();
        let forged = format!(
            "{header}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_string(&changed).unwrap())
        );
        assert_eq!(
            verifier.verify(&forged, NOW),
            Err(VerifyError::BadSignature)
        );
        // A new verifier (what a key change builds) remembers nothing.
        let (_, stranger) = setup(SigningAlg::EdDSA);
        assert_eq!(stranger.verify(&t, NOW), Err(VerifyError::UnknownKey));
        assert_eq!(
            verifier.clone().verified.lock().unwrap().len(),
            0,
            "a clone starts with no remembered tokens"
        );
    }

    #[test]
    fn tokens_that_share_a_tail_are_still_different_tokens() {
        let verifier = Verifier::new("https://issuer.test", "api");
        let tail = "s".repeat(TailHashing::BYTES);
        verifier.remember(&format!("a.b.{tail}"), &claims(), NOW);
        assert!(
            verifier
                .remembered()
                .get(format!("a.b.{tail}").as_str())
                .is_some()
        );
        assert!(
            verifier
                .remembered()
                .get(format!("x.y.{tail}").as_str())
                .is_none()
        );
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let verifier = Verifier::new("https://issuer.test", "api");
        let mut expired = claims();
        expired.exp = NOW - 3600;
        for n in 0..Verifier::CACHED_TOKENS {
            verifier.remember(&format!("old{n}"), &expired, NOW);
        }
        verifier.remember("fresh", &claims(), NOW);
        // Full: the expired ones went first.
        assert_eq!(verifier.verified.lock().unwrap().len(), 1);
        for n in 0..Verifier::CACHED_TOKENS * 2 {
            verifier.remember(&format!("live{n}"), &claims(), NOW);
        }
        assert!(verifier.verified.lock().unwrap().len() <= Verifier::CACHED_TOKENS);
    }
}
