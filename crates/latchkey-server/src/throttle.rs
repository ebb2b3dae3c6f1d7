//! Failed-login throttling: a fixed window of failures per key (an account
//! or a client IP), kept in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Limit;

/// Keys kept at most; past this, finished windows are dropped.
const MAX_KEYS: usize = 100_000;

struct Window {
    start: i64,
    failures: u32,
}

/// Counts failures per key within a window.
pub struct Throttle {
    limit: Limit,
    windows: Mutex<HashMap<String, Window>>,
}

impl Throttle {
    /// A throttle allowing `limit.max` failures per `limit.window` seconds.
    pub fn new(limit: Limit) -> Self {
        Self {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        match self.windows.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Seconds to wait when `key` has used up its failures, else `None`.
    pub fn retry_after(&self, key: &str, now: i64) -> Option<i64> {
        let windows = self.windows();
        let window = windows.get(key)?;
        let ends = window.start + self.limit.window;
        (window.failures >= self.limit.max && now < ends).then(|| (ends - now).max(1))
    }

    /// Counts one failure of `key`.
    pub fn record_failure(&self, key: &str, now: i64) {
        let mut windows = self.windows();
        if windows.len() >= MAX_KEYS {
            let window = self.limit.window;
            windows.retain(|_, w| w.start + window > now);
        }
        let window = windows.entry(key.to_owned()).or_insert(Window {
            start: now,
            failures: 0,
        });
        if window.start + self.limit.window <= now {
            *window = Window {
                start: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    /// Forgets `key` (after a successful login).
    pub fn clear(&self, key: &str) {
        self.windows().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let throttle = Throttle::new(Limit { max: 3, window: 60 });
        for i in 0..3 {
            assert_eq!(throttle.retry_after("alice", 100 + i), None);
            throttle.record_failure("alice", 100 + i);
        }
        assert_eq!(throttle.retry_after("alice", 110), Some(50));
        assert_eq!(throttle.retry_after("bob", 110), None);
        assert_eq!(throttle.retry_after("alice", 160), None);
        throttle.record_failure("alice", 160);
        assert_eq!(throttle.retry_after("alice", 161), None);
        throttle.clear("alice");
        assert_eq!(throttle.retry_after("alice", 161), None);
    }
}
