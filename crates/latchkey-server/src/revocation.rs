//! What an instance with Redis keeps in memory so that it need not ask the
//! database about every access token: the sessions announced as revoked,
//! and the sessions it has already looked up (dropped when announced).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use latchkey_core::store::{Session, User};

/// Entries kept at most in each map; past this, the map is pruned.
const MAX_ENTRIES: usize = 100_000;

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
    sessions: Mutex<HashMap<String, (Session, User)>>,
    /// True while subscribed: only then is the local view complete.
    subscribed: AtomicBool,
}

impl RevocationCache {
    /// Whether the subscription is live, so the cache may be trusted.
    pub fn is_trusted(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Subscribed, with the deny-list as it stands: trust the cache from now.
    pub fn connected(&self, revoked: Vec<String>, until: i64) {
        {
            let mut map = locked(&self.revoked);
            for sid in revoked {
                map.insert(sid, until);
            }
        }
        locked(&self.sessions).clear();
        self.subscribed.store(true, Ordering::Release);
    }

    /// The subscription broke: ask the database until it is back.
    pub fn disconnected(&self) {
        self.subscribed.store(false, Ordering::Release);
    }

    /// A session was revoked (announced by any instance, or this one).
    pub fn revoke(&self, sid: String, until: i64, now: i64) {
        locked(&self.sessions).remove(&sid);
        let mut map = locked(&self.revoked);
        if map.len() >= MAX_ENTRIES {
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
        locked(&self.sessions).get(sid).cloned()
    }

    /// Remembers a live session.
    pub fn remember(&self, session: Session, user: User) {
        let mut map = locked(&self.sessions);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(session.id.clone(), (session, user));
    }
}
