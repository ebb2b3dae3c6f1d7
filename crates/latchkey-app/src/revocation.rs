//! What an instance with a revocation feed (Redis, or PostgreSQL's
//! `LISTEN`/`NOTIFY`) keeps in memory so that it need not ask the database
//! about every access token: the sessions announced as revoked, and the
//! sessions it has already looked up (dropped when announced).
//!
//! A lookup that raced a revocation cannot bring a revoked session back:
//! the revoked set is consulted before the looked-up sessions. A lookup
//! that raced a break in the feed is not kept: each connection and each
//! break starts a new generation, and a session read under an older one is
//! not remembered.

use std::collections::HashMap;
use std::sync::Mutex;

use latchkey_core::store::{Session, User};

/// Revoked sessions kept at most (an id and a time each); past this,
/// those whose access tokens have all expired are dropped.
const MAX_REVOKED: usize = 100_000;

/// Sessions kept at most, with their users (about 1 KiB each, so about
/// 10 MiB); past this, the cache starts over, and lookups refill it.
const MAX_SESSIONS: usize = 10_000;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The local view of the shared revocation state.
#[derive(Default)]
pub struct RevocationCache {
    revoked: Mutex<HashMap<String, i64>>,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, (Session, User)>,
    /// Bumped by every connection and break of the feed.
    generation: u64,
    /// True while subscribed: only then is the local view complete.
    subscribed: bool,
}

impl RevocationCache {
    /// The current generation when the feed is live, so that the cache may
    /// be trusted; `None` while it is not.
    pub fn trusted(&self) -> Option<u64> {
        let sessions = locked(&self.sessions);
        sessions.subscribed.then_some(sessions.generation)
    }

    /// Subscribed, with the sessions known to be revoked beyond what the
    /// database says: trust the cache from now, starting empty.
    pub fn connected(&self, revoked: Vec<String>, until: i64) {
        {
            let mut map = locked(&self.revoked);
            for sid in revoked {
                map.insert(sid, until);
            }
        }
        let mut sessions = locked(&self.sessions);
        sessions.by_id.clear();
        sessions.generation += 1;
        sessions.subscribed = true;
    }

    /// The subscription broke: ask the database until it is back.
    pub fn disconnected(&self) {
        let mut sessions = locked(&self.sessions);
        sessions.by_id.clear();
        sessions.generation += 1;
        sessions.subscribed = false;
    }

    /// A session was revoked (announced by any instance, or this one).
    pub fn revoke(&self, sid: String, until: i64, now: i64) {
        locked(&self.sessions).by_id.remove(&sid);
        let mut map = locked(&self.revoked);
        if map.len() >= MAX_REVOKED {
            map.retain(|_, u| *u > now);
        }
        map.insert(sid, until);
    }

    /// True when `sid` was announced as revoked.
    pub fn is_revoked(&self, sid: &str) -> bool {
        locked(&self.revoked).contains_key(sid)
    }

    /// A session looked up before.
    pub fn session(&self, sid: &str) -> Option<(Session, User)> {
        locked(&self.sessions).by_id.get(sid).cloned()
    }

    /// Remembers a live session read from the database while the cache was
    /// trusted at `generation`; nothing if the feed has broken or
    /// reconnected since.
    pub fn remember(&self, session: Session, user: User, generation: u64) {
        let mut sessions = locked(&self.sessions);
        if !sessions.subscribed || sessions.generation != generation {
            return;
        }
        if sessions.by_id.len() >= MAX_SESSIONS {
            sessions.by_id.clear();
        }
        sessions.by_id.insert(session.id.clone(), (session, user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> (Session, User) {
        let session = Session {
            id: id.into(),
            user_id: "usr_a".into(),
            client_id: None,
            scope: String::new(),
            created_at: 0,
            auth_time: 0,
            auth_method: latchkey_core::strength::AuthMethod::Password,
            expires_at: 100,
            last_used_at: 0,
            revoked_at: None,
            revoked_reason: None,
            ip: String::new(),
            user_agent: String::new(),
            dpop_jkt: None,
        };
        let user = User {
            id: "usr_a".into(),
            username: "a".into(),
            password_hash: String::new(),
            disabled: false,
            created_at: 0,
            email: None,
            email_verified: false,
            admin: false,
        };
        (session, user)
    }

    #[test]
    fn nothing_is_trusted_or_remembered_before_the_feed_connects() {
        let cache = RevocationCache::default();
        assert_eq!(cache.trusted(), None);
        let (s, u) = session("ses_1");
        cache.remember(s, u, 0);
        assert!(cache.session("ses_1").is_none());
    }

    #[test]
    fn a_lookup_from_before_a_break_is_not_remembered() {
        let cache = RevocationCache::default();
        cache.connected(Vec::new(), 10);
        let before = cache.trusted().unwrap();
        cache.disconnected();
        cache.connected(Vec::new(), 10);
        let (s, u) = session("ses_1");
        cache.remember(s, u, before);
        assert!(cache.session("ses_1").is_none());
        let now = cache.trusted().unwrap();
        let (s, u) = session("ses_1");
        cache.remember(s, u, now);
        assert!(cache.session("ses_1").is_some());
    }

    #[test]
    fn a_revocation_drops_the_session_and_outlives_a_late_lookup() {
        let cache = RevocationCache::default();
        cache.connected(vec!["ses_0".into()], 10);
        assert!(cache.is_revoked("ses_0"));
        let generation = cache.trusted().unwrap();
        let (s, u) = session("ses_1");
        cache.remember(s, u, generation);
        cache.revoke("ses_1".into(), 10, 0);
        assert!(cache.session("ses_1").is_none());
        // A lookup that read the session before the revocation and stores
        // it after: the revoked set still answers first.
        let (s, u) = session("ses_1");
        cache.remember(s, u, generation);
        assert!(cache.is_revoked("ses_1"));
    }

    #[test]
    fn a_break_forgets_every_session() {
        let cache = RevocationCache::default();
        cache.connected(Vec::new(), 10);
        let generation = cache.trusted().unwrap();
        let (s, u) = session("ses_1");
        cache.remember(s, u, generation);
        cache.disconnected();
        assert_eq!(cache.trusted(), None);
        assert!(cache.session("ses_1").is_none());
    }
}
