//! A fixed pool of threads for Argon2id. Each hash takes 19 MiB; on tokio's
//! blocking pool (up to hundreds of threads) every thread's allocator keeps
//! its own high-water mark, so the resident memory grows with the number of
//! threads that ever hashed. One thread per core bounds it.
//!
//! Hashing threads run at a lower scheduling priority (nice 19 on Linux) than
//! the request threads: on an idle machine they use every core, but under a
//! login flood the refreshes and API requests waiting for a core go first,
//! and logins, which are throttled and can wait, queue instead.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

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

#[cfg(test)]
mod tests {
    use super::*;

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
