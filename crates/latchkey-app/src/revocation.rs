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

use latchkey_core::store::{Session, SessionChanges, User};

/// Revoked sessions kept at most (an id and a time each); past this,
/// those whose access tokens have all expired are dropped, and if that
/// leaves more than half, the set is given up (see [`Revoked`]).
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
    revoked: Mutex<Revoked>,
    sessions: Mutex<Sessions>,
}

/// The sessions announced as revoked, each until its access tokens have
/// all expired.
///
/// More revocations within an access token's lifetime than are kept (the
/// garbage collection ending a million idle sessions, a client's sessions
/// all revoked at once) cannot all be remembered: the set is then dropped
/// and nothing is trusted until the last dropped one's tokens have expired,
/// so every access token is checked in the database meanwhile, as without a
/// feed. Each pass that drops expired entries leaves at most half the
/// bound, or gives the set up, so an announcement costs O(1) on average,
/// however many arrive.
#[derive(Default)]
struct Revoked {
    by_id: HashMap<String, i64>,
    /// While set, the set above is incomplete until this time.
    given_up_until: Option<i64>,
}

impl Revoked {
    /// Adds `sid`; true when that gave the set up.
    fn add(&mut self, sid: String, until: i64, now: i64) -> bool {
        if let Some(end) = self.given_up_until {
            if now < end {
                self.given_up_until = Some(end.max(until));
                return false;
            }
            self.given_up_until = None;
        }
        if self.by_id.len() >= MAX_REVOKED {
            self.by_id.retain(|_, u| *u > now);
            if self.by_id.len() > MAX_REVOKED / 2 {
                let end = self.by_id.values().copied().fold(until, i64::max);
                self.by_id = HashMap::new();
                self.given_up_until = Some(end);
                return true;
            }
        }
        self.by_id.insert(sid, until);
        false
    }

    /// True while the set is incomplete.
    fn given_up(&self, now: i64) -> bool {
        self.given_up_until.is_some_and(|end| now < end)
    }
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
    /// The current generation when the feed is live and every revocation
    /// announced is remembered, so that the cache may be trusted at `now`;
    /// `None` while it may not.
    pub fn trusted(&self, now: i64) -> Option<u64> {
        if locked(&self.revoked).given_up(now) {
            return None;
        }
        let sessions = locked(&self.sessions);
        sessions.subscribed.then_some(sessions.generation)
    }

    /// Subscribed at `now`, with the sessions known to be revoked beyond
    /// what the database says: trust the cache from now, starting empty.
    pub fn connected(&self, revoked: Vec<String>, until: i64, now: i64) {
        {
            let mut map = locked(&self.revoked);
            for sid in revoked {
                map.add(sid, until, now);
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
        let given_up = locked(&self.revoked).add(sid, until, now);
        if given_up {
            // A lookup that read a session before this and stores it after
            // must not be kept: a new generation.
            let mut sessions = locked(&self.sessions);
            sessions.by_id.clear();
            sessions.generation += 1;
        }
    }

    /// True when `sid` was announced as revoked.
    pub fn is_revoked(&self, sid: &str) -> bool {
        locked(&self.revoked).by_id.contains_key(sid)
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

/// What an instance without a revocation feed (SQLite) keeps in memory:
/// sessions it has looked up, each trusted only while the backend's change
/// log ([`latchkey_core::store::SessionStore::session_changes`]) names no
/// change to it or its user. Every check reads the log past the last change
/// seen (one indexed read that finds nothing, almost always), so a
/// revocation by any process is seen by the next request.
#[derive(Default)]
pub struct ChangeLogCache {
    inner: Mutex<Logged>,
}

#[derive(Default)]
struct Logged {
    /// The newest change applied; `None` until the first read.
    seen: Option<u64>,
    by_id: HashMap<String, (Session, User)>,
}

impl ChangeLogCache {
    /// The newest change applied, to read the log after.
    pub fn seen(&self) -> u64 {
        locked(&self.inner).seen.unwrap_or(0)
    }

    /// Applies changes read after `seen()`; returns the change number the
    /// cache now stands at, to pass to [`Self::remember`].
    pub fn apply(&self, changes: SessionChanges) -> u64 {
        let mut logged = locked(&self.inner);
        if !changes.complete || logged.seen.is_none() {
            logged.by_id.clear();
        } else {
            for sid in &changes.sessions {
                logged.by_id.remove(sid);
            }
            if !changes.users.is_empty() {
                logged
                    .by_id
                    .retain(|_, (_, user)| !changes.users.contains(&user.id));
            }
        }
        // Applied out of order by concurrent requests, changes only ever
        // drop entries; the number never goes back.
        let seen = logged.seen.map_or(changes.upto, |s| s.max(changes.upto));
        logged.seen = Some(seen);
        seen
    }

    /// A session looked up before and not changed since.
    pub fn session(&self, sid: &str) -> Option<(Session, User)> {
        locked(&self.inner).by_id.get(sid).cloned()
    }

    /// Remembers a session read from the database after the log was read
    /// up to `seen`; nothing if newer changes have been applied since (one
    /// of them may be this session's, read before it was made).
    pub fn remember(&self, session: Session, user: User, seen: u64) {
        let mut logged = locked(&self.inner);
        if logged.seen != Some(seen) {
            return;
        }
        if logged.by_id.len() >= MAX_SESSIONS {
            logged.by_id.clear();
        }
        logged.by_id.insert(session.id.clone(), (session, user));
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
        assert_eq!(cache.trusted(0), None);
        let (s, u) = session("ses_1");
        cache.remember(s, u, 0);
        assert!(cache.session("ses_1").is_none());
    }

    #[test]
    fn a_lookup_from_before_a_break_is_not_remembered() {
        let cache = RevocationCache::default();
        cache.connected(Vec::new(), 10, 0);
        let before = cache.trusted(0).unwrap();
        cache.disconnected();
        cache.connected(Vec::new(), 10, 0);
        let (s, u) = session("ses_1");
        cache.remember(s, u, before);
        assert!(cache.session("ses_1").is_none());
        let now = cache.trusted(0).unwrap();
        let (s, u) = session("ses_1");
        cache.remember(s, u, now);
        assert!(cache.session("ses_1").is_some());
    }

    #[test]
    fn a_revocation_drops_the_session_and_outlives_a_late_lookup() {
        let cache = RevocationCache::default();
        cache.connected(vec!["ses_0".into()], 10, 0);
        assert!(cache.is_revoked("ses_0"));
        let generation = cache.trusted(0).unwrap();
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
        cache.connected(Vec::new(), 10, 0);
        let generation = cache.trusted(0).unwrap();
        let (s, u) = session("ses_1");
        cache.remember(s, u, generation);
        cache.disconnected();
        assert_eq!(cache.trusted(0), None);
        assert!(cache.session("ses_1").is_none());
    }

    fn changes(upto: u64, sessions: &[&str], users: &[&str], complete: bool) -> SessionChanges {
        SessionChanges {
            upto,
            sessions: sessions.iter().map(|s| (*s).to_owned()).collect(),
            users: users.iter().map(|s| (*s).to_owned()).collect(),
            complete,
        }
    }

    #[test]
    fn the_change_log_drops_what_it_names_and_refuses_stale_lookups() {
        let cache = ChangeLogCache::default();
        let seen = cache.apply(changes(4, &[], &[], true));
        assert_eq!(seen, 4);
        let (s, u) = session("ses_1");
        cache.remember(s, u, seen);
        assert!(cache.session("ses_1").is_some());
        // A change to another session leaves this one.
        assert_eq!(cache.apply(changes(5, &["ses_2"], &[], true)), 5);
        assert!(cache.session("ses_1").is_some());
        // A lookup made before change 5 was applied is not kept.
        let (s, u) = session("ses_3");
        cache.remember(s, u, 4);
        assert!(cache.session("ses_3").is_none());
        // Its user changed: gone.
        cache.apply(changes(6, &[], &["usr_a"], true));
        assert!(cache.session("ses_1").is_none());
        let (s, u) = session("ses_1");
        cache.remember(s, u, 6);
        // Changes applied late, out of order, still drop; the number stays.
        assert_eq!(cache.apply(changes(5, &["ses_1"], &[], true)), 6);
        assert!(cache.session("ses_1").is_none());
        let (s, u) = session("ses_1");
        cache.remember(s, u, 6);
        // Too many changes to tell: everything goes.
        assert_eq!(cache.apply(changes(9000, &[], &[], false)), 9000);
        assert!(cache.session("ses_1").is_none());
    }

    #[test]
    fn the_change_log_cache_is_bounded() {
        let cache = ChangeLogCache::default();
        let seen = cache.apply(changes(1, &[], &[], true));
        for n in 0..MAX_SESSIONS * 2 + 1 {
            let (s, u) = session(&format!("ses_{n}"));
            cache.remember(s, u, seen);
        }
        assert!(locked(&cache.inner).by_id.len() <= MAX_SESSIONS);
    }

    #[test]
    fn a_flood_of_revocations_stops_trust_until_their_tokens_expire() {
        let cache = RevocationCache::default();
        cache.connected(Vec::new(), 0, 0);
        let generation = cache.trusted(0).unwrap();
        let (s, u) = session("ses_kept");
        cache.remember(s, u, generation);
        // Announced at times 0..: each session's tokens live 600 s more.
        // Four threads at once, as a feed and this instance's own
        // revocations would.
        let total = MAX_REVOKED * 3;
        std::thread::scope(|scope| {
            for t in 0..4 {
                let cache = &cache;
                scope.spawn(move || {
                    for n in (t..total).step_by(4) {
                        let now = (n / 1000) as i64;
                        cache.revoke(format!("ses_{n}"), now + 600, now);
                        assert!(locked(&cache.revoked).by_id.len() <= MAX_REVOKED);
                    }
                });
            }
        });
        let last = ((total - 1) / 1000) as i64;
        // Too many within a token's lifetime to remember: nothing is
        // trusted, no session is served from memory, and a lookup from
        // before is not kept.
        assert_eq!(cache.trusted(last), None);
        assert!(cache.session("ses_kept").is_none());
        let (s, u) = session("ses_kept");
        cache.remember(s, u, generation);
        assert!(cache.session("ses_kept").is_none());
        // Still given up just before the last announced tokens expire;
        // trusted again, empty, once they have.
        assert_eq!(cache.trusted(last + 599), None);
        let again = cache.trusted(last + 600).unwrap();
        assert!(again > generation);
        cache.revoke("ses_after".into(), last + 1200, last + 600);
        assert!(cache.is_revoked("ses_after"));
        assert!(locked(&cache.revoked).by_id.len() <= MAX_REVOKED);
    }

    #[test]
    fn revocations_spread_over_time_are_all_remembered() {
        let cache = RevocationCache::default();
        cache.connected(Vec::new(), 0, 0);
        // One a second, each remembered for 60 s: the set never fills.
        for n in 0..MAX_REVOKED * 2 {
            let now = n as i64;
            cache.revoke(format!("ses_{n}"), now + 60, now);
        }
        let now = (MAX_REVOKED * 2) as i64;
        assert!(cache.trusted(now).is_some());
        assert!(cache.is_revoked(&format!("ses_{}", MAX_REVOKED * 2 - 1)));
    }
}
