//! DPoP (RFC 9449) for the token endpoints and this server's protected
//! resources: the proof's stateless rules (`latchkey_core::dpop`), then the
//! server nonce and the replay cache, shared by every instance through the
//! database. `htu` is the endpoint's public URL: `LATCHKEY_ISSUER` and the
//! path, whatever address this instance listens on.

use latchkey_core::dpop::{self, Expected, IAT_WINDOW, Proof};

use super::Refusal;
use super::tokens::TokenService;
use crate::metrics::Counter;

/// The key a request proved it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopKey {
    /// Its RFC 7638 thumbprint (`cnf.jkt`).
    pub jkt: String,
    /// Whether the session's refresh tokens are bound to it too: for public
    /// clients (RFC 9449 §5); a confidential client's are bound by its
    /// authentication.
    pub bind_refresh: bool,
}

/// Where a proof was sent.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path of the endpoint.
    pub path: &'a str,
    /// The access token presented with it (protected resources).
    pub access_token: Option<&'a str>,
    /// Whether a server nonce is required (token endpoints, unless
    /// `LATCHKEY_DPOP_NONCE=optional`).
    pub nonce_required: bool,
}

impl TokenService {
    /// A server nonce for the next proof.
    pub fn dpop_nonce(&self) -> String {
        self.refresh_keys().dpop_nonce(self.now())
    }

    /// Checks `proof` for `target`: every rule of RFC 9449 §4.3, a nonce of
    /// this server's (when required, or whenever one is sent), and that no
    /// instance has seen it before.
    pub async fn check_proof(
        &self,
        proof: &str,
        target: ProofTarget<'_>,
    ) -> Result<Proof, Refusal> {
        let now = self.now();
        let url = format!("{}{}", self.config().issuer, target.path);
        let expected = Expected {
            method: target.method,
            url: &url,
            now,
            access_token: target.access_token,
        };
        let proof =
            dpop::verify(proof, &expected).map_err(|e| Refusal::InvalidDpopProof(e.to_string()))?;
        let nonce_ok = match &proof.nonce {
            Some(nonce) => self.refresh_keys().dpop_nonce_is_fresh(nonce, now),
            None => !target.nonce_required,
        };
        if !nonce_ok {
            return Err(Refusal::UseDpopNonce {
                nonce: self.dpop_nonce(),
            });
        }
        // Kept as long as the proof could be accepted, by key and jti.
        let id = format!("{}:{}", proof.jkt, proof.jti);
        let until = proof.iat.max(now) + IAT_WINDOW + 1;
        if !self.store().record_proof(&id, until).await? {
            self.metrics().inc(Counter::DpopReplays, &[]);
            return Err(Refusal::InvalidDpopProof(
                "the DPoP proof was used before".into(),
            ));
        }
        Ok(proof)
    }
}
