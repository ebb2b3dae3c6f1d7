//! The refresh-token rules: when a presented token rotates, when a retry gets
//! the same successor, and when reuse means theft. The storage backends run
//! [`decide`] inside one transaction and apply what it says.

pub use crate::records::RevocationReason;
use crate::records::{AuditEvent, RefreshRecord, Session};
use crate::refresh::TokenHash;
use crate::scope::Scope;

/// What a refresh from another IP address than the login's does (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingPolicy {
    /// Nothing.
    Off,
    /// The refresh succeeds and an audit event is written (the default).
    Log,
    /// The session is revoked.
    Revoke,
}

/// Lifetimes and policies of refresh tokens, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A refresh token unused this long expires.
    pub idle_ttl: i64,
    /// A session ends this long after login, however often it refreshes.
    pub absolute_ttl: i64,
    /// A rotated token presented again within this window gets the same
    /// successor; 0 turns the window off.
    pub reuse_grace: i64,
    /// The IP-binding policy.
    pub binding_ip: BindingPolicy,
    /// Whether a routine rotation writes a `refresh` audit event. Reuse,
    /// revocations and binding mismatches are audited whatever this says.
    pub audit_refreshes: bool,
}

/// A refresh request, as the server understood and authenticated it.
#[derive(Debug, Clone)]
pub struct RotationRequest {
    /// Hash of the presented token.
    pub presented: TokenHash,
    /// Hash of its successor (derived from the presented token).
    pub successor: TokenHash,
    /// The requesting client, authenticated if it is confidential.
    pub client_id: Option<String>,
    /// The session of an access token sent along, which must match.
    pub expected_session: Option<String>,
    /// A narrower scope, if requested.
    pub scope: Option<Scope>,
    /// The `jti` of the access token issued beside the successor.
    pub access_jti: String,
    /// Requesting IP address.
    pub ip: String,
    /// Requesting user agent.
    pub user_agent: String,
    /// The thumbprint of the DPoP proof's key sent along, if any.
    pub dpop_jkt: Option<String>,
    /// Now, Unix seconds.
    pub now: i64,
}

/// Why a refresh was refused without changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No such token.
    Unknown,
    /// The session was revoked.
    SessionRevoked,
    /// The session passed its absolute lifetime.
    SessionExpired,
    /// The token passed its idle lifetime.
    TokenExpired,
    /// The token belongs to another client, or its client did not authenticate.
    ClientMismatch,
    /// An access token of another session was sent along.
    SessionMismatch,
    /// The requested scope is wider than the token's.
    ScopeWidened,
    /// The session's user is disabled.
    UserDisabled,
    /// The session is bound to a DPoP key and no proof of it came along.
    DpopKeyMismatch,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The token was consumed and its successor stored.
    Rotated {
        /// The session, as before this refresh.
        session: Session,
        /// Scope of the successor.
        scope: String,
        /// The IP differed from the login's (policy `log`).
        binding_mismatch: bool,
    },
    /// The token had just been rotated (grace window): its successor stands.
    Replayed {
        /// The session.
        session: Session,
        /// Scope of the successor.
        scope: String,
    },
    /// The session was revoked.
    Revoked {
        /// The session, before revocation.
        session: Session,
        /// Why.
        reason: RevocationReason,
    },
    /// Refused; nothing changed.
    Rejected(Rejection),
}

/// Everything a rotation writes, in one transaction, and nothing a backend
/// has to work out: the presented token marked used, its successor, the
/// session's last use (`at`; written only when its second changes), and
/// the `refresh` audit event. The write must also re-check, under its lock,
/// that the presented token is still unused and its session unrevoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationWrites {
    /// The presented token, to be marked used.
    pub consumed: TokenHash,
    /// When: the token's `used_at` and the session's `last_used_at`.
    pub at: i64,
    /// The successor: the session's scope (RFC 6749 §6), an idle expiry
    /// never past the session's end.
    pub successor: RefreshRecord,
    /// The `refresh` event of the audit trail, when the policy keeps them.
    pub audit: Option<AuditEvent>,
}

/// What to do with a presented refresh token.
// One per refresh, matched at once: boxing the large variant would add an
// allocation to every rotation for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Consume it and store its successor, which keeps the presented
    /// token's scope (RFC 6749 §6).
    Rotate {
        /// Scope of the new access token: the token's, or the narrower one
        /// requested.
        scope: String,
        /// The IP differs from the login's (policy `log`).
        binding_mismatch: bool,
        /// What the backend writes, atomically.
        writes: RotationWrites,
    },
    /// Already rotated, within the grace window: hand out the same successor.
    Replay {
        /// Scope of the new access token.
        scope: String,
    },
    /// Revoke the whole session.
    Revoke(RevocationReason),
    /// Refuse; change nothing.
    Reject(Rejection),
}

pub use crate::records::has_expired;

/// The rules of §3.3–§3.5, in order. `user_disabled` is the session's user's
/// state, read with the token.
pub fn decide(
    policy: &Policy,
    token: &RefreshRecord,
    session: &Session,
    user_disabled: bool,
    req: &RotationRequest,
) -> Decision {
    if session.revoked_at.is_some() {
        return Decision::Reject(Rejection::SessionRevoked);
    }
    // A token issued to a client needs that client; one issued without a
    // client (first-party) takes none, and no other client may present it.
    if session.client_id != req.client_id {
        return Decision::Reject(Rejection::ClientMismatch);
    }
    if let Some(expected) = &req.expected_session
        && expected != &session.id
    {
        return Decision::Reject(Rejection::SessionMismatch);
    }
    // A token bound to a key is nothing without it: refused before anything
    // else, even its reuse (a thief without the key cannot end the session).
    if session.dpop_jkt.is_some() && session.dpop_jkt != req.dpop_jkt {
        return Decision::Reject(Rejection::DpopKeyMismatch);
    }
    if user_disabled {
        return Decision::Reject(Rejection::UserDisabled);
    }
    // A rotated token again: theft, unless within the grace window, where it
    // is a retry that still meets every other rule below.
    let replay = match token.used_at {
        Some(used_at) if policy.reuse_grace > 0 && req.now - used_at <= policy.reuse_grace => true,
        Some(_) => return Decision::Revoke(RevocationReason::Reuse),
        None => false,
    };
    if has_expired(session.expires_at, req.now) {
        return Decision::Reject(Rejection::SessionExpired);
    }
    // A replayed token's own idle expiry does not matter: its successor's does.
    if !replay && has_expired(token.expires_at, req.now) {
        return Decision::Reject(Rejection::TokenExpired);
    }
    let held = Scope::parse(&token.scope).unwrap_or_default();
    let scope = match &req.scope {
        Some(asked) if !asked.is_subset(&held) => return Decision::Reject(Rejection::ScopeWidened),
        Some(asked) => asked.to_string(),
        None => held.to_string(),
    };
    let binding_mismatch = session.ip != req.ip;
    if binding_mismatch && policy.binding_ip == BindingPolicy::Revoke {
        return Decision::Revoke(RevocationReason::IpBinding);
    }
    if replay {
        return Decision::Replay { scope };
    }
    let successor = RefreshRecord {
        hash: req.successor,
        session_id: session.id.clone(),
        parent: Some(req.presented),
        // The session's scope; a narrower one is the access token's alone.
        scope: token.scope.clone(),
        issued_at: req.now,
        expires_at: (req.now + policy.idle_ttl).min(session.expires_at),
        used_at: None,
        access_jti: req.access_jti.clone(),
        ip: req.ip.clone(),
        user_agent: req.user_agent.clone(),
    };
    let audit = policy.audit_refreshes.then(|| AuditEvent {
        at: req.now,
        kind: "refresh".into(),
        user_id: Some(session.user_id.clone()),
        session_id: Some(session.id.clone()),
        client_id: req.client_id.clone(),
        ip: Some(req.ip.clone()),
        user_agent: Some(req.user_agent.clone()),
        detail: String::new(),
        actor_id: None,
    });
    Decision::Rotate {
        scope,
        binding_mismatch: binding_mismatch && policy.binding_ip == BindingPolicy::Log,
        writes: RotationWrites {
            consumed: req.presented,
            at: req.now,
            successor,
            audit,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            idle_ttl: 3600,
            absolute_ttl: 86400,
            reuse_grace: 0,
            binding_ip: BindingPolicy::Log,
            audit_refreshes: true,
        }
    }

    fn session() -> Session {
        Session {
            id: "ses_1".into(),
            user_id: "usr_1".into(),
            client_id: None,
            scope: "email profile".into(),
            created_at: NOW - 100,
            auth_time: NOW - 100,
            auth_method: crate::strength::AuthMethod::Password,
            expires_at: NOW + 86300,
            last_used_at: NOW - 100,
            revoked_at: None,
            revoked_reason: None,
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            dpop_jkt: None,
        }
    }

    fn token() -> RefreshRecord {
        RefreshRecord {
            hash: TokenHash([1; 32]),
            session_id: "ses_1".into(),
            parent: None,
            scope: "email profile".into(),
            issued_at: NOW - 100,
            expires_at: NOW + 3500,
            used_at: None,
            access_jti: "jti".into(),
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
        }
    }

    fn request() -> RotationRequest {
        RotationRequest {
            presented: TokenHash([1; 32]),
            successor: TokenHash([2; 32]),
            client_id: None,
            expected_session: None,
            scope: None,
            access_jti: "jti2".into(),
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            dpop_jkt: None,
            now: NOW,
        }
    }

    #[test]
    fn fresh_token_rotates_and_never_outlives_the_session() {
        let mut s = session();
        s.expires_at = NOW + 10;
        let d = decide(&policy(), &token(), &s, false, &request());
        let Decision::Rotate {
            scope,
            binding_mismatch,
            writes,
        } = d
        else {
            panic!("{d:?}");
        };
        assert_eq!(scope, "email profile");
        assert!(!binding_mismatch);
        assert_eq!(writes.consumed, TokenHash([1; 32]));
        assert_eq!(writes.at, NOW);
        let successor = &writes.successor;
        assert_eq!(successor.hash, TokenHash([2; 32]));
        assert_eq!(successor.parent, Some(TokenHash([1; 32])));
        assert_eq!(successor.session_id, "ses_1");
        assert_eq!(successor.expires_at, NOW + 10);
        assert_eq!(successor.used_at, None);
        assert_eq!(successor.access_jti, "jti2");
        let audit = writes.audit.as_ref().expect("an audit event");
        assert_eq!(audit.kind, "refresh");
        assert_eq!(audit.session_id.as_deref(), Some("ses_1"));
        assert_eq!(audit.user_id.as_deref(), Some("usr_1"));

        let quiet = Policy {
            audit_refreshes: false,
            ..policy()
        };
        let Decision::Rotate { writes, .. } =
            decide(&quiet, &token(), &session(), false, &request())
        else {
            panic!("not rotated");
        };
        assert_eq!(writes.audit, None, "routine refreshes are not audited");
    }

    #[test]
    fn used_token_is_reuse_unless_within_grace() {
        let mut t = token();
        t.used_at = Some(NOW - 5);
        assert_eq!(
            decide(&policy(), &t, &session(), false, &request()),
            Decision::Revoke(RevocationReason::Reuse)
        );
        let grace = Policy {
            reuse_grace: 10,
            ..policy()
        };
        assert_eq!(
            decide(&grace, &t, &session(), false, &request()),
            Decision::Replay {
                scope: "email profile".into()
            }
        );
        t.used_at = Some(NOW - 11);
        assert_eq!(
            decide(&grace, &t, &session(), false, &request()),
            Decision::Revoke(RevocationReason::Reuse)
        );
    }

    #[test]
    fn refusals_change_nothing() {
        let p = policy();
        let mut s = session();
        s.revoked_at = Some(NOW - 1);
        assert_eq!(
            decide(&p, &token(), &s, false, &request()),
            Decision::Reject(Rejection::SessionRevoked)
        );

        let mut s = session();
        s.client_id = Some("lkc_a".into());
        assert_eq!(
            decide(&p, &token(), &s, false, &request()),
            Decision::Reject(Rejection::ClientMismatch)
        );
        let r = RotationRequest {
            client_id: Some("lkc_b".into()),
            ..request()
        };
        assert_eq!(
            decide(&p, &token(), &s, false, &r),
            Decision::Reject(Rejection::ClientMismatch)
        );
        // A first-party token presented by a client.
        assert_eq!(
            decide(&p, &token(), &session(), false, &r),
            Decision::Reject(Rejection::ClientMismatch)
        );

        let r = RotationRequest {
            expected_session: Some("ses_other".into()),
            ..request()
        };
        assert_eq!(
            decide(&p, &token(), &session(), false, &r),
            Decision::Reject(Rejection::SessionMismatch)
        );

        let r = RotationRequest {
            scope: Some(Scope::parse("profile admin").unwrap()),
            ..request()
        };
        assert_eq!(
            decide(&p, &token(), &session(), false, &r),
            Decision::Reject(Rejection::ScopeWidened)
        );

        let r = RotationRequest {
            now: NOW + 3501,
            ..request()
        };
        assert_eq!(
            decide(&p, &token(), &session(), false, &r),
            Decision::Reject(Rejection::TokenExpired)
        );

        assert_eq!(
            decide(&p, &token(), &session(), true, &request()),
            Decision::Reject(Rejection::UserDisabled)
        );
    }

    #[test]
    fn nothing_expires_before_its_lifetime_has_passed() {
        // Issued during second NOW - 100 with an idle lifetime of 3600 s:
        // usable through second NOW + 3500, refused from NOW + 3501 on.
        let at = |now| RotationRequest { now, ..request() };
        assert!(matches!(
            decide(&policy(), &token(), &session(), false, &at(NOW + 3500)),
            Decision::Rotate { .. }
        ));
        assert_eq!(
            decide(&policy(), &token(), &session(), false, &at(NOW + 3501)),
            Decision::Reject(Rejection::TokenExpired)
        );
        let mut s = session();
        s.expires_at = NOW + 10;
        assert!(matches!(
            decide(&policy(), &token(), &s, false, &at(NOW + 10)),
            Decision::Rotate { .. }
        ));
        assert_eq!(
            decide(&policy(), &token(), &s, false, &at(NOW + 11)),
            Decision::Reject(Rejection::SessionExpired)
        );
    }

    #[test]
    fn a_grace_replay_meets_every_other_rule_first() {
        let grace = Policy {
            reuse_grace: 10,
            ..policy()
        };
        let mut t = token();
        t.used_at = Some(NOW - 5);
        // Past the session's absolute end.
        let mut ended = session();
        ended.expires_at = NOW - 1;
        assert_eq!(
            decide(&grace, &t, &ended, false, &request()),
            Decision::Reject(Rejection::SessionExpired)
        );
        // From another IP under the `revoke` policy.
        let elsewhere = RotationRequest {
            ip: "10.0.0.9".into(),
            ..request()
        };
        let revoke = Policy {
            binding_ip: BindingPolicy::Revoke,
            ..grace
        };
        assert_eq!(
            decide(&revoke, &t, &session(), false, &elsewhere),
            Decision::Revoke(RevocationReason::IpBinding)
        );
        // A wider scope.
        let wider = RotationRequest {
            scope: Some(Scope::parse("profile admin").unwrap()),
            ..request()
        };
        assert_eq!(
            decide(&grace, &t, &session(), false, &wider),
            Decision::Reject(Rejection::ScopeWidened)
        );
        // A narrower one narrows the access token only.
        let narrower = RotationRequest {
            scope: Some(Scope::parse("profile").unwrap()),
            ..request()
        };
        assert_eq!(
            decide(&grace, &t, &session(), false, &narrower),
            Decision::Replay {
                scope: "profile".into()
            }
        );
        // A disabled user.
        assert_eq!(
            decide(&grace, &t, &session(), true, &request()),
            Decision::Reject(Rejection::UserDisabled)
        );
    }

    #[test]
    fn narrower_scope_and_ip_binding() {
        let r = RotationRequest {
            scope: Some(Scope::parse("profile").unwrap()),
            ip: "10.0.0.9".into(),
            ..request()
        };
        match decide(&policy(), &token(), &session(), false, &r) {
            Decision::Rotate {
                scope,
                binding_mismatch,
                writes,
            } => {
                assert_eq!(scope, "profile");
                assert!(binding_mismatch);
                // The successor keeps the whole scope (RFC 6749 §6).
                assert_eq!(writes.successor.scope, "email profile");
            }
            other => panic!("{other:?}"),
        }
        let revoke = Policy {
            binding_ip: BindingPolicy::Revoke,
            ..policy()
        };
        assert_eq!(
            decide(&revoke, &token(), &session(), false, &r),
            Decision::Revoke(RevocationReason::IpBinding)
        );
        let off = Policy {
            binding_ip: BindingPolicy::Off,
            ..policy()
        };
        assert!(matches!(
            decide(&off, &token(), &session(), false, &r),
            Decision::Rotate {
                binding_mismatch: false,
                ..
            }
        ));
    }
}
