//! DPoP (RFC 9449) for the token endpoints and this server's protected
//! resources: the proof's stateless rules (`latchkey_core::dpop`), then the
//! server nonce and the replay cache, shared by every instance through the
//! database. `htu` is the endpoint's public URL: `LATCHKEY_ISSUER` and the
//! path, whatever address this instance listens on.

use latchkey_core::dpop::{self, Expected, IAT_WINDOW, Proof};

use std::sync::Arc;

use latchkey_core::clock::Clock;
use latchkey_core::refresh::RefreshKeys;
use latchkey_core::store::{Client, ProofStore};

use super::Refusal;
use crate::metrics::{Counter, Metrics};

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

impl DpopKey {
    /// The binding a proof makes (RFC 9449 §5): the access tokens are bound
    /// to its key always; the refresh tokens too when the client is public
    /// (no client is the first-party public client), since a confidential
    /// client's are bound by its authentication.
    pub fn of(proof: &Proof, client: Option<&Client>) -> Self {
        Self {
            jkt: proof.jkt.clone(),
            bind_refresh: client.is_none_or(|c| c.secret_hash.is_none()),
        }
    }
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

/// Checks DPoP proofs and issues server nonces.
pub struct DpopProofs {
    issuer: String,
    seen: Arc<dyn ProofStore>,
    keys: RefreshKeys,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl DpopProofs {
    /// Proofs for endpoints under `issuer`, replays remembered in `seen`,
    /// nonces keyed by `keys`.
    pub fn new(
        issuer: String,
        seen: Arc<dyn ProofStore>,
        keys: RefreshKeys,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            issuer,
            seen,
            keys,
            clock,
            metrics,
        }
    }

    /// A server nonce for the next proof.
    pub fn nonce(&self) -> String {
        self.keys.dpop_nonce(self.clock.now())
    }

    /// Checks `proof` for `target`: every rule of RFC 9449 §4.3, a nonce of
    /// this server's (when required, or whenever one is sent), and that no
    /// instance has seen it before.
    pub async fn check(&self, proof: &str, target: ProofTarget<'_>) -> Result<Proof, Refusal> {
        let now = self.clock.now();
        let url = format!("{}{}", self.issuer, target.path);
        let expected = Expected {
            method: target.method,
            url: &url,
            now,
            access_token: target.access_token,
        };
        let proof =
            dpop::verify(proof, &expected).map_err(|e| Refusal::InvalidDpopProof(e.to_string()))?;
        let nonce_ok = match &proof.nonce {
            Some(nonce) => self.keys.dpop_nonce_is_fresh(nonce, now),
            None => !target.nonce_required,
        };
        if !nonce_ok {
            return Err(Refusal::UseDpopNonce {
                nonce: self.nonce(),
            });
        }
        // Kept as long as the proof could be accepted, by key and jti.
        let id = format!("{}:{}", proof.jkt, proof.jti);
        let until = proof.iat.max(now) + IAT_WINDOW + 1;
        if !self.seen.record_proof(&id, until).await? {
            self.metrics.inc(Counter::DpopReplays, &[]);
            return Err(Refusal::InvalidDpopProof(
                "the DPoP proof was used before".into(),
            ));
        }
        Ok(proof)
    }
}
