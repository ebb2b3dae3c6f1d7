//! The outbox across processes (SPEC §14): `kill -9` right after changes
//! loses no event of a committed change; two instances on one PostgreSQL
//! database deliver each event once; the command line manages webhooks and
//! back-channel logout URIs.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

mod common;
#[path = "../../latchkey-server/tests/common/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Env, Server};
use receiver::Receiver;
use serde_json::{Value, json};

/// An admin client's token on `server`.
async fn admin_token(env: &Env, server: &Server) -> String {
    let added: Value = serde_json::from_str(&env.ok(
        &[
            "client",
            "add",
            "ops",
            "--scope",
            "latchkey:admin",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .basic_auth(
            added["client_id"].as_str().unwrap(),
            added["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "latchkey:admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates `n` users at once through `servers` in turn; the ids of those
/// created (answered 201: committed).
async fn create_users(
    servers: &[&Server],
    token: &str,
    prefix: &str,
    n: usize,
) -> BTreeSet<String> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let request = http
            .post(servers[i % servers.len()].url("/admin/users"))
            .bearer_auth(token)
            .json(&json!({"username": format!("{prefix}{i}")}));
        tasks.push(tokio::spawn(async move { request.send().await }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        if let Ok(response) = task.await.unwrap()
            && response.status() == 201
        {
            let body: Value = response.json().await.unwrap();
            ids.insert(body["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// The user ids of the `user.created` events received.
fn created_ids(got: &[receiver::Received]) -> BTreeSet<String> {
    got.iter()
        .map(|r| r.json())
        .filter(|b| b["type"] == "user.created")
        .map(|b| b["data"]["user_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn kill9_loses_no_event(env: Env) {
    let receiver = Receiver::start().await;
    // Down for the first server's whole life: nothing it commits is
    // delivered before it dies.
    receiver.fail(true);
    let added: Value = serde_json::from_str(&env.ok(
        &[
            "webhook",
            "add",
            &receiver.url("/hook"),
            "--event",
            "user.created",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert!(added["secret"].as_str().unwrap().starts_with("whsec_"));
    let first = env.serve();
    let token = admin_token(&env, &first).await;
    let committed = create_users(&[&first], &token, "k", 30).await;
    assert_eq!(committed.len(), 30);
    first.kill9();
    receiver.fail(false);
    let _second = env.serve();
    let got = receiver
        .until(Duration::from_secs(90), |got| {
            created_ids(got).is_superset(&committed)
        })
        .await;
    let delivered = created_ids(&got);
    assert!(delivered.is_superset(&committed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_right_after_changes_loses_no_event_on_sqlite() {
    kill9_loses_no_event(Env::new(&[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_right_after_changes_loses_no_event_on_postgres() {
    let Some(env) = Env::postgres(&[]).await else {
        return;
    };
    kill9_loses_no_event(env).await;
}

/// Two servers on one database, one receiver: every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_deliver_each_event_once() {
    let Some(env) = Env::postgres(&[]).await else {
        return;
    };
    let receiver = Receiver::start().await;
    env.ok(
        &[
            "webhook",
            "add",
            &receiver.url("/hook"),
            "--event",
            "user.created",
        ],
        None,
    );
    let a = env.serve();
    let b = env.serve();
    let token = admin_token(&env, &a).await;
    let committed = create_users(&[&a, &b], &token, "t", 40).await;
    assert_eq!(committed.len(), 40);
    receiver
        .until(Duration::from_secs(30), |got| {
            created_ids(got).is_superset(&committed)
        })
        .await;
    // Time for a second copy to arrive, were one sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
    for r in receiver.received() {
        *per_message
            .entry(r.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_message.len(), 40);
    assert!(
        per_message.values().all(|n| *n == 1),
        "each event once: {per_message:?}"
    );
}

/// `webhook add/list/remove` and `client add --backchannel-logout-uri`,
/// each refusing what is not an http(s) URL or an event type.
#[tokio::test]
async fn the_command_line_manages_webhooks() {
    let env = Env::new(&[]);
    let bad = env.cli(
        &[
            "webhook",
            "add",
            "file:///etc/passwd",
            "--event",
            "user.created",
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("http or https"));
    let unknown = env.cli(
        &[
            "webhook",
            "add",
            "https://example.com/h",
            "--event",
            "user.exploded",
        ],
        None,
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("user.exploded"));
    let added: Value = serde_json::from_str(&env.ok(
        &[
            "webhook",
            "add",
            "https://example.com/h",
            "--event",
            "session.ended",
            "--event",
            "user.created",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["events"], json!(["session.ended", "user.created"]));
    let listed: Value =
        serde_json::from_str(&env.ok(&["webhook", "list", "--json"], None)).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(listed[0].get("secret").is_none());
    env.ok(&["webhook", "remove", &id], None);
    let listed: Value =
        serde_json::from_str(&env.ok(&["webhook", "list", "--json"], None)).unwrap();
    assert_eq!(listed, json!([]));

    let client: Value = serde_json::from_str(&env.ok(
        &[
            "client",
            "add",
            "rp",
            "--public",
            "--redirect-uri",
            "https://rp.example/cb",
            "--backchannel-logout-uri",
            "https://rp.example/logout",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(
        client["backchannel_logout_uri"],
        "https://rp.example/logout"
    );
    let refused = env.cli(
        &[
            "client",
            "add",
            "rp2",
            "--public",
            "--backchannel-logout-uri",
            "rp.example/logout",
        ],
        None,
    );
    assert!(!refused.status.success());
}
