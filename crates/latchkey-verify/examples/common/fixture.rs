//! The access-token claims the verification examples sign: one fixed set,
//! with a distinct `jti` (of one length) per token.

use latchkey_core::jwt::AccessClaims;

/// The examples' clock: tokens are valid at this time.
pub(crate) const NOW: i64 = 1_800_000_000;

/// Claims of token `n` (below 1,000,000).
pub(crate) fn claims(n: usize) -> AccessClaims {
    AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "usr_P7dqnVeNE4Qr4LxSKihBDQ".into(),
        aud: "latchkey".into(),
        exp: NOW + 600,
        iat: NOW,
        nbf: None,
        jti: format!("W9DozUfibln222lJIu{n:06}"),
        client_id: "first-party".into(),
        scope: "profile".into(),
        sid: Some("ses_BHyLMR3aj5P_vQXBOtb6ug".into()),
        auth_time: Some(NOW),
        amr: None,
        acr: None,
        cnf: None,
        fingerprint: None,
    }
}
