//! The Redis coordinator against a real Redis.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_coordinator_redis::RedisCoordinator;
use latchkey_core::coordination::{AttemptCounter, Coordinator, RevocationFanout, RevocationFeed};

/// A coordinator under a fresh prefix, or `None` (skip) without Redis outside CI.
async fn fresh() -> Option<RedisCoordinator> {
    let url = std::env::var("LATCHKEY_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    match RedisCoordinator::connect(&url, &format!("test:{nanos}:")).await {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: Redis not reachable at {url} ({e}); run scripts/services.sh");
            None
        }
        Err(e) => panic!("Redis is required under CI but {url} is not reachable: {e}"),
    }
}

#[tokio::test]
async fn attempts_count_within_one_window() {
    let Some(redis) = fresh().await else { return };
    for _ in 0..3 {
        assert_eq!(redis.take_attempt("alice", 3, 60).await.unwrap(), None);
    }
    let blocked = redis.take_attempt("alice", 3, 60).await.unwrap().unwrap();
    assert!((1..=60).contains(&blocked.retry_after));
    assert!(blocked.first, "the window's first refusal says so");
    let again = redis.take_attempt("alice", 3, 60).await.unwrap().unwrap();
    assert!(!again.first, "a window's later refusals are not first");
    redis.give_back_attempt("alice").await.unwrap();
    assert_eq!(redis.take_attempt("alice", 3, 60).await.unwrap(), None);
    assert!(redis.take_attempt("alice", 3, 60).await.unwrap().is_some());
    redis.clear_attempts("alice").await.unwrap();
    assert_eq!(redis.take_attempt("alice", 3, 60).await.unwrap(), None);
}

/// Checking and counting are one step: of many attempts at once, exactly
/// the limit get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_admit_exactly_the_limit() {
    let Some(redis) = fresh().await else { return };
    let attempts: Vec<_> = (0..200)
        .map(|_| {
            let redis = redis.clone();
            tokio::spawn(async move { redis.take_attempt("bob", 10, 60).await.unwrap() })
        })
        .collect();
    let (mut admitted, mut first) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            None => admitted += 1,
            Some(blocked) if blocked.first => first += 1,
            Some(_) => {}
        }
    }
    assert_eq!(admitted, 10);
    assert_eq!(first, 1, "exactly one refusal reports the key blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_listeners_and_the_deny_list() {
    let Some(redis) = fresh().await else { return };
    redis.announce_revoked("ses_0", 60).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let listener = redis.clone();
    let sink = seen.clone();
    tokio::spawn(async move {
        let connected = move |revoked: Vec<String>| {
            let _ = tx.send(revoked);
        };
        let on_revoked: latchkey_core::coordination::OnRevoked =
            Box::new(move |sid| sink.lock().unwrap().push(sid));
        let _ = listener.listen(&connected, &on_revoked).await;
    });
    // Subscribing hands over the deny-list as it stands.
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), ["ses_0"]);
    redis.announce_revoked("ses_1", 60).await.unwrap();
    redis.announce_revoked("ses_2", 60).await.unwrap();
    for _ in 0..50 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*seen.lock().unwrap(), ["ses_1", "ses_2"]);
    let mut listed = redis.revoked_sessions().await.unwrap();
    listed.sort();
    assert_eq!(listed, ["ses_0", "ses_1", "ses_2"]);
}
