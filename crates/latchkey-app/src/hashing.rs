//! A fixed pool of threads for Argon2id. Each hash takes 19 MiB; on tokio's
//! blocking pool (up to hundreds of threads) every thread's allocator keeps
//! its own high-water mark, so the resident memory grows with the number of
//! threads that ever hashed. One thread per core bounds it.
//!
//! Hashing threads run at a lower scheduling priority (nice 19 on Linux) than
//! the request threads: on an idle machine they use every core, but under a
//! login flood the refreshes and API requests waiting for a core go first,
//! and logins, which are throttled and can wait, queue instead.
//!
//! A priority counts only among the threads the kernel schedules together,
//! though: a database on the same machine (PostgreSQL) is often in another
//! scheduling group (the kernel's autogroups, a systemd service's cgroup),
//! which competes with the whole server, hashing included. So [`HashGate`]
//! also keeps one core free of hashing while the server has other requests
//! in flight: logins alone use every core, logins beside other work one core
//! fewer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

type Job = Box<dyn FnOnce() + Send>;

/// Lowers the calling thread's priority; a failure only costs latency under
/// load, so it is logged, not fatal.
fn lower_priority() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    // The lowest of the normal (time-sharing) policy: niceness 19.
    if let Err(e) = set_current_thread_priority(ThreadPriority::Min) {
        tracing::warn!(error = %e, "cannot lower the priority of a hashing thread");
    }
}

/// Runs CPU-heavy jobs on a fixed set of threads.
pub(crate) struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl HashPool {
    /// Starts `threads` worker threads.
    pub(crate) fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("latchkey-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        Self {
            jobs: Mutex::new(tx),
        }
    }

    /// Runs `work` on the pool and waits for its result without blocking the runtime.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.send(job).is_ok(),
            Err(poisoned) => poisoned.into_inner().send(job).is_ok(),
        };
        if !sent {
            return None;
        }
        rx.await.ok()
    }
}

/// How often a hash waiting for the last core looks again whether the
/// server has become otherwise idle.
const IDLE_RECHECK: Duration = Duration::from_millis(1);

/// Admits hashes: on all cores but one at any time, on the last core only
/// while every request in flight is a credential request (a login), so that
/// a login flood beside other work leaves that work a core.
pub struct HashGate {
    /// Cores that may always hash: all but one (at least one).
    reserved: Semaphore,
    /// The last core (none on a one-core machine).
    spare: Semaphore,
    /// Requests in flight.
    requests: AtomicUsize,
    /// Of those, credential requests (logins).
    credentials: AtomicUsize,
}

/// Counts one request (or credential request) in flight until dropped.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A hash's turn on a core, until dropped.
pub(crate) struct Admitted<'a> {
    _permit: SemaphorePermit<'a>,
}

impl HashGate {
    pub(crate) fn new(cores: usize) -> Self {
        let reserved = cores.saturating_sub(1).max(1);
        Self {
            reserved: Semaphore::new(reserved),
            spare: Semaphore::new(cores.saturating_sub(reserved)),
            requests: AtomicUsize::new(0),
            credentials: AtomicUsize::new(0),
        }
    }

    /// Counts a request in flight (every request the router serves).
    pub fn request(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.requests)
    }

    /// Marks a request in flight as a credential request, which does not
    /// keep the last core from hashing.
    pub fn credential(&self) -> InFlight<'_> {
        self.credentials.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.credentials)
    }

    /// Whether the server is serving anything besides credential requests.
    fn serving_others(&self) -> bool {
        let requests = self.requests.load(Ordering::Relaxed);
        requests > self.credentials.load(Ordering::Relaxed)
    }

    /// Waits for a core to hash on.
    pub(crate) async fn admit(&self) -> Result<Admitted<'_>, AcquireError> {
        tokio::select! {
            biased;
            permit = self.reserved.acquire() => Ok(Admitted { _permit: permit? }),
            spare = self.spare.acquire() => {
                // Next in line for the last core: take it once the server is
                // otherwise idle, or a reserved core if one frees first (kept
                // waiting across the checks, so it keeps its place in line).
                let spare = spare?;
                let reserved = self.reserved.acquire();
                tokio::pin!(reserved);
                loop {
                    if !self.serving_others() {
                        return Ok(Admitted { _permit: spare });
                    }
                    tokio::select! {
                        biased;
                        permit = &mut reserved => return Ok(Admitted { _permit: permit? }),
                        () = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `admit` completes without waiting.
    async fn admitted_now(gate: &HashGate) -> Option<Admitted<'_>> {
        tokio::time::timeout(Duration::from_millis(5), gate.admit())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Starts a hash while no core is free for it, runs `free`, and tells
    /// whether the hash waited before and got its turn after.
    async fn waits_until_freed(gate: &HashGate, free: impl FnOnce()) -> (bool, bool) {
        let waiting = gate.admit();
        tokio::pin!(waiting);
        let waited = tokio::time::timeout(Duration::from_millis(5), &mut waiting)
            .await
            .is_err();
        free();
        let turn = tokio::time::timeout(Duration::from_millis(5), &mut waiting).await;
        (waited, matches!(turn, Ok(Ok(_))))
    }

    #[tokio::test(start_paused = true)]
    async fn logins_alone_hash_on_every_core() {
        let gate = HashGate::new(2);
        let _login_a = (gate.request(), gate.credential());
        let _login_b = (gate.request(), gate.credential());
        let first = admitted_now(&gate).await;
        let second = admitted_now(&gate).await;
        assert!(first.is_some() && second.is_some());
        assert!(admitted_now(&gate).await.is_none(), "two cores, two hashes");
    }

    #[tokio::test(start_paused = true)]
    async fn other_work_keeps_the_last_core_free() {
        let gate = HashGate::new(2);
        let _login = (gate.request(), gate.credential());
        let first = admitted_now(&gate).await;
        assert!(first.is_some());
        let refresh = gate.request();
        assert!(
            admitted_now(&gate).await.is_none(),
            "one core left for the refresh"
        );
        // The refresh is answered: the last core may hash again.
        let (waited, turn) = waits_until_freed(&gate, move || drop(refresh)).await;
        assert!(waited);
        assert!(turn);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_hash_takes_a_reserved_core_when_one_frees() {
        let gate = HashGate::new(2);
        let _refresh = gate.request();
        let first = admitted_now(&gate).await;
        assert!(first.is_some());
        let (waited, turn) = waits_until_freed(&gate, move || drop(first)).await;
        assert!(waited);
        assert!(turn);
    }

    #[tokio::test(start_paused = true)]
    async fn one_core_hashes_one_at_a_time_whatever_the_load() {
        let gate = HashGate::new(1);
        let first = admitted_now(&gate).await;
        assert!(first.is_some());
        assert!(admitted_now(&gate).await.is_none());
        drop(first);
        assert!(admitted_now(&gate).await.is_some());
    }

    #[tokio::test]
    async fn runs_jobs_and_returns_results() {
        let pool = HashPool::new(2);
        let results = futures_join(&pool).await;
        assert_eq!(results, vec![Some(0), Some(2), Some(4), Some(6)]);
    }

    async fn futures_join(pool: &HashPool) -> Vec<Option<i32>> {
        let mut out = Vec::new();
        for i in 0..4 {
            out.push(pool.run(move || i * 2).await);
        }
        out
    }
}
