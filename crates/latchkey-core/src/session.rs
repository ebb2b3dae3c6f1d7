//! Starting a session: what a login (or any other way of signing a user in)
//! writes, decided here and persisted as-is by a backend in one
//! transaction, like a rotation's [`RotationWrites`](crate::rotation::RotationWrites).

use crate::records::{AuditEvent, RefreshRecord, RevocationReason, Session};
use crate::refresh::TokenHash;
use crate::rotation::Policy;
use crate::strength::AuthMethod;

/// Who starts a session, and with what.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// The new session's id (`ses_…`).
    pub id: String,
    /// Its user.
    pub user_id: &'a str,
    /// The client it is issued to, if any.
    pub client_id: Option<&'a str>,
    /// The scope granted (already checked against what is allowed).
    pub scope: String,
    /// The keyed hash of its first refresh token.
    pub first_token: TokenHash,
    /// The `jti` of the access token issued beside it.
    pub access_jti: String,
    /// Requesting IP address.
    pub ip: &'a str,
    /// Requesting user agent.
    pub user_agent: &'a str,
    /// The DPoP key its refresh tokens are bound to, if any.
    pub dpop_jkt: Option<String>,
    /// When its user authenticated, Unix seconds.
    pub auth_time: i64,
    /// How.
    pub auth_method: AuthMethod,
    /// Now, Unix seconds.
    pub now: i64,
}

/// Everything a new session writes: the session, its first refresh token
/// and its `login` audit event. The backend also revokes the user's oldest
/// live sessions beyond the cap, in the same transaction, each with
/// [`AuditEvent::session_revoked`] derived from `audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStart {
    /// The session.
    pub session: Session,
    /// Its first refresh token.
    pub first_token: RefreshRecord,
    /// Its `login` event.
    pub audit: AuditEvent,
    /// The device it came from, and the notice to send if it is new to the
    /// user (SPEC §13); `None` when nobody is to be told.
    pub device: Option<crate::account::Sighting>,
}

/// The session `new` starts under `policy`: it ends `absolute_ttl` after
/// now; its first token idles out after `idle_ttl`, never past that end.
pub fn start(policy: &Policy, new: NewSession<'_>) -> SessionStart {
    let expires_at = new.now + policy.absolute_ttl;
    let session = Session {
        id: new.id,
        user_id: new.user_id.to_owned(),
        client_id: new.client_id.map(str::to_owned),
        scope: new.scope,
        created_at: new.now,
        auth_time: new.auth_time,
        auth_method: new.auth_method,
        expires_at,
        last_used_at: new.now,
        revoked_at: None,
        revoked_reason: None,
        ip: new.ip.to_owned(),
        user_agent: new.user_agent.to_owned(),
        dpop_jkt: new.dpop_jkt,
    };
    let first_token = RefreshRecord {
        hash: new.first_token,
        session_id: session.id.clone(),
        parent: None,
        scope: session.scope.clone(),
        issued_at: new.now,
        expires_at: (new.now + policy.idle_ttl).min(expires_at),
        used_at: None,
        access_jti: new.access_jti,
        ip: session.ip.clone(),
        user_agent: session.user_agent.clone(),
    };
    let audit = AuditEvent::login(&session);
    SessionStart {
        session,
        first_token,
        audit,
        device: None,
    }
}

/// A session the cap revokes, with its audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// The revoked session.
    pub session_id: String,
    /// Its `session_revoked` event (reason `session_cap`), by the login.
    pub audit: AuditEvent,
}

/// The sessions `start` pushes past `max_sessions`: given the user's other
/// live sessions newest first (in the order they were created), all but
/// the `max_sessions - 1` newest, so that the new one counts first and is
/// never among them.
pub fn evictions(
    start: &SessionStart,
    others_newest_first: Vec<String>,
    max_sessions: u32,
) -> Vec<Eviction> {
    let keep = usize::try_from(max_sessions.saturating_sub(1)).unwrap_or(usize::MAX);
    others_newest_first
        .into_iter()
        .skip(keep)
        .map(|session_id| Eviction {
            audit: start
                .audit
                .session_revoked(&session_id, RevocationReason::SessionCap),
            session_id,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::BindingPolicy;

    #[test]
    fn a_session_and_its_first_token_never_outlive_the_absolute_lifetime() {
        let policy = Policy {
            idle_ttl: 100,
            absolute_ttl: 50,
            reuse_grace: 0,
            binding_ip: BindingPolicy::Log,
            audit_refreshes: true,
        };
        let start = start(
            &policy,
            NewSession {
                id: "ses_1".into(),
                user_id: "usr_1",
                client_id: Some("lkc_1"),
                scope: "profile".into(),
                first_token: TokenHash([3; 32]),
                access_jti: "jti".into(),
                ip: "192.0.2.1",
                user_agent: "ua",
                now: 1000,
                auth_time: 990,
                auth_method: AuthMethod::Passkey,
                dpop_jkt: None,
            },
        );
        assert_eq!(start.session.expires_at, 1050);
        assert_eq!(start.first_token.expires_at, 1050);
        assert_eq!(start.first_token.session_id, "ses_1");
        assert_eq!(start.first_token.parent, None);
        assert_eq!(start.session.client_id.as_deref(), Some("lkc_1"));
        assert_eq!(start.audit.kind, "login");
        assert_eq!(start.audit.session_id.as_deref(), Some("ses_1"));
        assert_eq!(start.audit.at, 1000);

        let others = vec!["ses_c".to_owned(), "ses_b".to_owned(), "ses_a".to_owned()];
        let evicted = evictions(&start, others.clone(), 2);
        let ids: Vec<&str> = evicted.iter().map(|e| e.session_id.as_str()).collect();
        assert_eq!(ids, ["ses_b", "ses_a"], "the newest other session stays");
        assert_eq!(evicted[0].audit.kind, "session_revoked");
        assert_eq!(evicted[0].audit.detail, "session_cap");
        assert_eq!(evicted[0].audit.session_id.as_deref(), Some("ses_b"));
        assert!(evictions(&start, others.clone(), 4).is_empty());
        assert_eq!(evictions(&start, others, 1).len(), 3);
    }
}
