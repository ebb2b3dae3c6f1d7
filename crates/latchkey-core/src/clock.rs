//! Where "now" comes from. The domain takes `now` as an argument; the edges
//! that serve requests ask a [`Clock`], which is the system's in production
//! and a [`ManualClock`] in tests, so that lifetimes, grace windows and
//! expiry are tested exactly, by moving time, never by sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in Unix seconds.
pub trait Clock: Send + Sync + 'static {
    /// Now, in whole Unix seconds (rounded down).
    fn now(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
///
/// ```
/// use latchkey_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::new(1_800_000_000);
/// clock.advance(30);
/// assert_eq!(clock.now(), 1_800_000_030);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    /// A clock standing at the system's time now.
    pub fn at_system_time() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock `seconds` forward.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
