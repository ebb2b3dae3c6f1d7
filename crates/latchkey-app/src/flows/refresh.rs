//! The refresh grant: rotation of the presented token (SPEC §3.3–§3.5).

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::id::random_id;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::rotation::{Rejection, RevocationReason, RotationRequest};
use latchkey_core::scope::Scope;
use latchkey_core::store::{Outcome, Session, SessionStore};

use super::{Grant, TokenRequest};
use crate::metrics::Counter;
use crate::service::{Issued, Refusal, RequestContext, Subject, TokenIssuer};

/// What every refused refresh says, whatever the reason: a thief learns
/// nothing of the token's state (the audit trail and the log tell operators).
const INVALID_REFRESH: &str = "the refresh token is invalid, expired or revoked";

/// The refresh flow.
pub struct Refresh {
    issuer: Arc<TokenIssuer>,
    store: Arc<dyn SessionStore>,
}

impl Refresh {
    /// Rotations in `store`, tokens minted by `issuer`.
    pub fn new(issuer: Arc<TokenIssuer>, store: Arc<dyn SessionStore>) -> Self {
        Self { issuer, store }
    }

    /// A refresh grant: rotate the presented token (§3.3–§3.5).
    pub async fn refresh(
        &self,
        presented: &str,
        client_id: Option<&str>,
        expected_session: Option<String>,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        let Some(token) = RefreshToken::parse(presented) else {
            return Err(Refusal::invalid_grant(INVALID_REFRESH));
        };
        let scope = match scope {
            Some(text) => {
                Some(Scope::parse(text).map_err(|_| Refusal::invalid_scope("malformed scope"))?)
            }
            None => None,
        };
        let issuer = &self.issuer;
        let keys = issuer.refresh_keys();
        // Derived from its parent only where a retry must get the same one
        // (the grace window); else drawn at random, so that not even the
        // hashing key can tell a token's successors from the token.
        let successor = if issuer.config().policy.reuse_grace > 0 {
            keys.successor(&token)
        } else {
            RefreshToken::generate(issuer.rng())?
        };
        let now = issuer.now();
        let jti = random_id("", issuer.rng())?;
        let request = RotationRequest {
            presented: keys.hash(&token),
            successor: keys.hash(&successor),
            client_id: client_id.map(str::to_owned),
            expected_session,
            scope,
            access_jti: jti.clone(),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            now,
            dpop_jkt: ctx.dpop.as_ref().map(|d| d.jkt.clone()),
        };
        let outcome = self.store.rotate(&issuer.config().policy, &request).await?;
        let (session, scope) = self.settle(outcome, &request, client_id, ctx).await?;
        issuer
            .metrics()
            .inc(Counter::TokensIssued, &[("grant", "refresh_token")]);
        let subject = Subject {
            sub: &session.user_id,
            client_id: session.client_id.as_deref(),
            scope: &scope,
            sid: Some(&session.id),
            auth_time: Some(session.auth_time),
            auth_method: Some(session.auth_method),
            fingerprint: ctx.fingerprint.as_deref(),
            dpop_jkt: ctx.dpop.as_ref().map(|d| d.jkt.as_str()),
        };
        let access_token = issuer.mint(subject, jti, now)?;
        Ok(Issued {
            access_token,
            expires_in: issuer.config().access_ttl,
            refresh_token: Some(successor),
            scope,
            session_id: Some(session.id),
            id_token: None,
            dpop: ctx.dpop.is_some(),
        })
    }

    /// What a rotation's outcome means: the session and scope to mint for,
    /// or the refusal (with its audit event, metric and announcement).
    async fn settle(
        &self,
        outcome: Outcome,
        request: &RotationRequest,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<(Session, String), Refusal> {
        let issuer = &self.issuer;
        Ok(match outcome {
            Outcome::Rotated {
                session,
                scope,
                binding_mismatch,
            } => {
                if binding_mismatch {
                    let detail = format!("login from {}, refresh from {}", session.ip, ctx.ip);
                    issuer
                        .audit(
                            "binding_mismatch",
                            Some(&session.user_id),
                            Some(&session.id),
                            client_id,
                            ctx,
                            &detail,
                        )
                        .await;
                }
                issuer
                    .metrics()
                    .inc(Counter::Refreshes, &[("outcome", "rotated")]);
                // The store wrote the audit row inside the rotation; log it too.
                tracing::info!(target: "latchkey::audit", kind = "refresh", user_id = %session.user_id,
                    session_id = %session.id, client_id, ip = %ctx.ip, "audit");
                (session, scope)
            }
            Outcome::Replayed { session, scope } => {
                issuer
                    .metrics()
                    .inc(Counter::Refreshes, &[("outcome", "replayed")]);
                issuer
                    .audit(
                        "refresh_replayed",
                        Some(&session.user_id),
                        Some(&session.id),
                        client_id,
                        ctx,
                        "within grace window",
                    )
                    .await;
                (session, scope)
            }
            Outcome::Revoked { session, reason } => {
                issuer
                    .sessions()
                    .announce(std::slice::from_ref(&session.id))
                    .await;
                let kind = match reason {
                    RevocationReason::Reuse => "reuse_detected",
                    _ => "session_revoked",
                };
                tracing::warn!(session_id = %session.id, user_id = %session.user_id, reason = reason.as_str(), "session revoked on refresh");
                issuer
                    .metrics()
                    .inc(Counter::Refreshes, &[("outcome", "revoked")]);
                if reason == RevocationReason::Reuse {
                    issuer.metrics().inc(Counter::ReuseDetected, &[]);
                }
                issuer.events().count_revocation(reason);
                issuer
                    .audit(
                        kind,
                        Some(&session.user_id),
                        Some(&session.id),
                        client_id,
                        ctx,
                        reason.as_str(),
                    )
                    .await;
                return Err(Refusal::SessionEnded(reason));
            }
            Outcome::Rejected(why) => {
                issuer
                    .metrics()
                    .inc(Counter::Refreshes, &[("outcome", "rejected")]);
                if matches!(
                    why,
                    Rejection::SessionRevoked | Rejection::SessionExpired | Rejection::TokenExpired
                ) && let Some(reason) = self.ended(why, request, client_id, ctx).await?
                {
                    return Err(Refusal::SessionEnded(reason));
                }
                if why == Rejection::ScopeWidened {
                    return Err(Refusal::invalid_scope(
                        "a refresh may narrow the scope, never widen it",
                    ));
                }
                // Presenting a token with the wrong client, or with an
                // access token of another session, is what a thief does.
                let refused = match why {
                    Rejection::ClientMismatch => Some("refresh token of another client"),
                    Rejection::SessionMismatch => {
                        Some("access token sent along belongs to another session")
                    }
                    Rejection::UserDisabled => Some("user disabled"),
                    _ => None,
                };
                if let Some(detail) = refused
                    && let Ok(Some((_, session))) =
                        self.store.refresh_token(&request.presented).await
                {
                    issuer
                        .audit(
                            "refresh_refused",
                            Some(&session.user_id),
                            Some(&session.id),
                            client_id,
                            ctx,
                            detail,
                        )
                        .await;
                }
                tracing::debug!(reason = ?why, "refresh refused");
                return Err(Refusal::invalid_grant(INVALID_REFRESH));
            }
        })
    }
}

impl Refresh {
    /// Why the presented token's session has ended (SPEC §14). An expiry
    /// noticed here is recorded now, at the moment it happened: the
    /// session's absolute end, or its newest token's idle end.
    async fn ended(
        &self,
        why: Rejection,
        request: &RotationRequest,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Option<RevocationReason>, Refusal> {
        let Some((token, session)) = self.store.refresh_token(&request.presented).await? else {
            return Ok(None);
        };
        if let Some(reason) = session
            .revoked_reason
            .as_deref()
            .and_then(RevocationReason::parse)
        {
            return Ok(Some(reason));
        }
        // Whichever came first: the newest token's idle end, or the
        // session's absolute end (a token never outlives it).
        let (reason, at) = match why {
            Rejection::SessionExpired | Rejection::TokenExpired
                if token.expires_at < session.expires_at =>
            {
                (RevocationReason::IdleExpired, token.expires_at)
            }
            Rejection::SessionExpired | Rejection::TokenExpired => {
                (RevocationReason::AbsoluteExpired, session.expires_at)
            }
            _ => return Ok(None),
        };
        if self.store.revoke_session(&session.id, reason, at).await? {
            self.issuer.events().count_end(reason);
            self.issuer
                .audit(
                    "session_ended",
                    Some(&session.user_id),
                    Some(&session.id),
                    client_id,
                    ctx,
                    reason.as_str(),
                )
                .await;
        }
        Ok(Some(reason))
    }
}

/// `grant_type=refresh_token`: a bearer access token sent along must belong
/// to the same session (§3.3), expired or not.
#[async_trait]
impl Grant for Refresh {
    fn grant_type(&self) -> &'static str {
        "refresh_token"
    }

    async fn grant(&self, request: &TokenRequest<'_>) -> Result<Issued, Refusal> {
        let presented = request.params.require("refresh_token")?;
        let expected_session = match request.access_token {
            Some(token) => {
                let claims = self
                    .issuer
                    .verify_jwt_ignoring_expiry(token)
                    .await
                    .map_err(|_| {
                        Refusal::invalid_grant("the access token sent along is invalid")
                    })?;
                Some(claims.sid.ok_or_else(|| {
                    Refusal::invalid_grant("access token belongs to another session")
                })?)
            }
            None => None,
        };
        self.refresh(
            presented,
            request.client.map(|c| c.id.as_str()),
            expected_session,
            request.params.get("scope"),
            request.ctx,
        )
        .await
    }
}
