//! The password hashing service: Argon2id off the async runtime, one hash
//! per core at most, in one bounded queue that logins, sign-ups and new
//! passwords share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use latchkey_core::password::PasswordHasher;

use super::{PasswordHashing, Refusal, ServiceError};
use crate::hashing::{HashGate, HashPool};

/// Logins waiting for a hash or hashing, at most: beyond that a login is
/// answered `503` at once instead of queueing (about a second of work on two
/// cores).
pub const MAX_WAITING_HASHES: usize = 64;

/// The hasher, made on first use (making it hashes a dummy password, the one
/// unknown users are checked against): a command that never hashes never
/// pays for it, and a server makes it at start-up ([`PasswordService::warm`]).
#[derive(Clone, Default)]
struct LazyHasher(Arc<OnceLock<Option<PasswordHasher>>>);

impl LazyHasher {
    fn get(&self) -> Option<&PasswordHasher> {
        self.0
            .get_or_init(|| {
                PasswordHasher::new(&SystemRandom::new())
                    .map_err(|e| tracing::error!(error = %e, "the password hasher cannot start"))
                    .ok()
            })
            .as_ref()
    }
}

/// Hashes and checks passwords on a pool of one thread per core.
pub struct PasswordService {
    hasher: LazyHasher,
    /// At most one hash per core at once, and one core fewer while other
    /// requests are in flight.
    gate: HashGate,
    pool: HashPool,
    /// Hashes waiting or running, at most [`MAX_WAITING_HASHES`].
    waiting: AtomicUsize,
    rng: SystemRandom,
}

/// A place in a bounded queue, given back when dropped.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordService {
    /// A service hashing on `cores` threads.
    pub fn new(cores: usize) -> Self {
        Self {
            hasher: LazyHasher::default(),
            gate: HashGate::new(cores),
            pool: HashPool::new(cores),
            waiting: AtomicUsize::new(0),
            rng: SystemRandom::new(),
        }
    }

    /// Makes the hasher now, off the calling thread, so that the first
    /// login does not wait for it.
    pub fn warm(&self) {
        let hasher = self.hasher.clone();
        let spawned = std::thread::Builder::new()
            .name("latchkey-hash-warm".into())
            .spawn(move || {
                hasher.get();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot make the password hasher ahead of time");
        }
    }

    /// Counts the requests in flight, which decide how many cores may hash.
    pub fn gate(&self) -> &HashGate {
        &self.gate
    }

    /// Whether `password` is the one `stored` hashes (`None`: no such user,
    /// checked against a dummy hash all the same, after the same work). For
    /// at most [`MAX_WAITING_HASHES`] waiting or hashing at once; past that,
    /// `503` with `Retry-After`.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Refusal> {
        let _queued = Queued::enter(&self.waiting, MAX_WAITING_HASHES)
            .ok_or(Refusal::Busy { retry_after: 1 })?;
        let _turn = self.gate.admit().await.map_err(Refusal::internal)?;
        let hasher = self.hasher.clone();
        self.pool
            .run(move || hasher.get().map(|h| h.verify(&password, stored.as_deref())))
            .await
            .flatten()
            .ok_or_else(|| Refusal::internal("the password hasher is unavailable"))
    }

    /// Hashes a new password in the same bounded queue (`503` past it).
    pub async fn hash(&self, password: String) -> Result<String, Refusal> {
        let _queued = Queued::enter(&self.waiting, MAX_WAITING_HASHES)
            .ok_or(Refusal::Busy { retry_after: 1 })?;
        let _turn = self.gate.admit().await.map_err(Refusal::internal)?;
        let (hasher, rng) = (self.hasher.clone(), self.rng.clone());
        self.pool
            .run(move || hasher.get().map(|h| h.hash(&password, &rng)))
            .await
            .flatten()
            .ok_or_else(|| Refusal::internal("the password hasher is unavailable"))?
            .map_err(Refusal::internal)
    }
}

/// New passwords (the account services') hashed in the queue logins wait in.
#[async_trait]
impl PasswordHashing for PasswordService {
    async fn hash(&self, password: String) -> Result<String, ServiceError> {
        PasswordService::hash(self, password)
            .await
            .map_err(|e| match e {
                Refusal::Busy { retry_after } => ServiceError::Busy { retry_after },
                other => ServiceError::Internal(Box::new(other)),
            })
    }
}
