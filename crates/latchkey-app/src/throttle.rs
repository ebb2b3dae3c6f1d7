//! Login attempts counted in this process's memory: a fixed window of
//! attempts per key (an account or a client's address), taken before the
//! password is checked, so that however many attempts arrive at once, at most
//! the limit are checked.
//!
//! Keys are kept as a keyed 64-bit hash (the hasher's key is random per
//! process), never as the text a client sent, and the table has a hard
//! bound: when it is full, finished windows go first, then windows below the
//! limit; windows at the limit (accounts and addresses being blocked) are
//! kept, and while the table holds nothing else a new key is refused.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use latchkey_core::clock::Clock;
use latchkey_core::coordination::{AttemptCounter, Blocked};
use latchkey_core::store::StoreResult;

/// Keys kept at most (about 32 bytes each).
pub const MAX_KEYS: usize = 200_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    attempts: u32,
    /// The limit it was taken under: a window at it is a blocked key.
    max: u32,
    /// An attempt was refused in this window already.
    refused: bool,
    length: i64,
}

impl Window {
    fn over(&self, now: i64) -> bool {
        self.start + self.length <= now
    }
}

/// Attempts per key within a window, in memory.
pub struct Throttle {
    hasher: RandomState,
    capacity: usize,
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<u64, Window>>,
}

impl Throttle {
    /// An empty table of at most [`MAX_KEYS`] keys, on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with(MAX_KEYS, clock)
    }

    fn with(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            hasher: RandomState::new(),
            capacity,
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Window>> {
        match self.windows.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes an attempt at `now`: `None` if admitted, else the refusal.
    pub fn take(&self, key: &str, max: u32, length: i64, now: i64) -> Option<Blocked> {
        let id = self.hasher.hash_one(key);
        let mut windows = self.windows();
        if !windows.contains_key(&id) && windows.len() >= self.capacity {
            windows.retain(|_, w| !w.over(now));
            if windows.len() >= self.capacity {
                windows.retain(|_, w| w.attempts >= w.max);
            }
            if windows.len() >= self.capacity {
                tracing::warn!(
                    keys = windows.len(),
                    "login throttle table full of blocked keys; refusing a new one"
                );
                return Some(Blocked {
                    retry_after: length.max(1),
                    first: false,
                });
            }
        }
        let window = windows.entry(id).or_insert(Window {
            start: now,
            attempts: 0,
            max,
            length,
            refused: false,
        });
        if window.over(now) {
            *window = Window {
                start: now,
                attempts: 0,
                max,
                length,
                refused: false,
            };
        }
        if window.attempts >= max {
            let first = !window.refused;
            window.refused = true;
            return Some(Blocked {
                retry_after: (window.start + window.length - now).max(1),
                first,
            });
        }
        window.attempts += 1;
        None
    }

    /// Gives back one attempt of `key`.
    pub fn give_back(&self, key: &str) {
        let id = self.hasher.hash_one(key);
        if let Some(window) = self.windows().get_mut(&id) {
            window.attempts = window.attempts.saturating_sub(1);
        }
    }

    /// Forgets `key`.
    pub fn clear(&self, key: &str) {
        let id = self.hasher.hash_one(key);
        self.windows().remove(&id);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.windows().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl AttemptCounter for Throttle {
    async fn take_attempt(&self, key: &str, max: u32, window: i64) -> StoreResult<Option<Blocked>> {
        Ok(self.take(key, max, window, self.clock.now()))
    }

    async fn give_back_attempt(&self, key: &str) -> StoreResult<()> {
        self.give_back(key);
        Ok(())
    }

    async fn clear_attempts(&self, key: &str) -> StoreResult<()> {
        self.clear(key);
        Ok(())
    }
}

/// The throttling key of a client address: an IPv4 address, or the /64 an
/// IPv6 address belongs to (one subscriber's usual allocation, which a client
/// can walk through at will). An IPv4 address mapped into IPv6 counts as IPv4.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let throttle = Throttle::with(10, Arc::new(latchkey_core::clock::ManualClock::new(0)));
        for i in 0..3 {
            assert_eq!(throttle.take("alice", 3, 60, 100 + i), None);
        }
        let blocked = |retry_after, first| Some(Blocked { retry_after, first });
        assert_eq!(throttle.take("alice", 3, 60, 110), blocked(50, true));
        assert_eq!(
            throttle.take("alice", 3, 60, 120),
            blocked(40, false),
            "the first refusal of a window is the only one reported first"
        );
        assert_eq!(throttle.take("bob", 3, 60, 110), None);
        assert_eq!(throttle.take("alice", 3, 60, 160), None);
        throttle.give_back("alice");
        throttle.clear("alice");
        for _ in 0..3 {
            assert_eq!(throttle.take("alice", 3, 60, 161), None);
        }
        throttle.give_back("alice");
        assert_eq!(throttle.take("alice", 3, 60, 161), None);
        assert_eq!(
            throttle.take("alice", 3, 60, 161),
            blocked(60, true),
            "a new window reports its first refusal again"
        );
    }

    #[test]
    fn concurrent_attempts_admit_exactly_the_limit() {
        let throttle = std::sync::Arc::new(Throttle::with(
            10,
            Arc::new(latchkey_core::clock::ManualClock::new(0)),
        ));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| throttle.take("carol", 10, 900, 5))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let outcomes: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 10);
        assert_eq!(
            outcomes.iter().flatten().filter(|b| b.first).count(),
            1,
            "exactly one refusal reports the key blocked"
        );
    }

    #[test]
    fn the_table_is_bounded_and_keeps_blocked_keys() {
        let throttle = Throttle::with(4, Arc::new(latchkey_core::clock::ManualClock::new(0)));
        // A blocked key, then keys that are not.
        assert_eq!(throttle.take("victim", 1, 900, 0), None);
        for i in 0..3 {
            assert_eq!(throttle.take(&format!("spray{i}"), 5, 900, 0), None);
        }
        assert_eq!(throttle.len(), 4);
        // Full: unblocked windows make room, the blocked one stays.
        assert_eq!(throttle.take("another", 5, 900, 1), None);
        assert!(throttle.len() <= 4);
        assert!(throttle.take("victim", 1, 900, 1).is_some());
        // Full of blocked keys: a new key is refused, nothing grows.
        let full = Throttle::with(2, Arc::new(latchkey_core::clock::ManualClock::new(0)));
        assert_eq!(full.take("a", 1, 900, 0), None);
        assert_eq!(full.take("b", 1, 900, 0), None);
        assert_eq!(
            full.take("c", 1, 900, 0),
            Some(Blocked {
                retry_after: 900,
                first: false
            })
        );
        assert_eq!(full.len(), 2);
        // Finished windows go first.
        assert_eq!(full.take("c", 1, 900, 900), None);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7");
        assert_eq!(address_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
