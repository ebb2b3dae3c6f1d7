//! What ships for teams that run Prometheus (SPEC §15): the alert rules pass
//! `promtool check rules` (Debian's prometheus package, installed by
//! scripts/services.sh; without it the check skips, unless `CI` is set), and
//! every metric a rule or a panel of the Grafana dashboard names is served
//! by a real server's `/metrics`.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::Backend;
use serde_json::Value;

const BACKEND: Backend = Backend::Sqlite;

fn contrib(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib")
        .join(path)
}

/// The `latchkey_…` metric names in `text`, a histogram's series by the
/// histogram's name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("latchkey_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|n| n.ends_with("_seconds")))
            .unwrap_or(name);
        names.insert(name.to_owned());
        i = end;
    }
    names
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let rules = contrib("prometheus/latchkey-alerts.yml");
    let Ok(output) = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (scripts/services.sh installs Debian's prometheus)"
        );
        eprintln!("skipping: promtool is not installed (scripts/services.sh)");
        return;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool refused the rules: {said}"
    );
    assert!(said.contains("SUCCESS: 5 rules found"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_served() {
    let app = start!(&[]);
    app.add_user("alice").await;
    // A request of each kind, so that every series has been touched.
    app.login("alice").await;
    app.http.get(app.url("/healthz")).send().await.unwrap();
    let served = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exposed: BTreeSet<String> = served
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split(' ').nth(2).map(str::to_owned))
        .collect();
    assert!(
        exposed.contains("latchkey_http_responses_total"),
        "{served}"
    );
    assert!(served.contains("latchkey_http_responses_total{class=\"2xx\"}"));
    assert!(served.contains("latchkey_deliveries_waiting 0"), "{served}");

    let rules = std::fs::read_to_string(contrib("prometheus/latchkey-alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(contrib("grafana/latchkey-dashboard.json")).unwrap();
    let board: Value = serde_json::from_str(&dashboard).unwrap();
    let panels = board["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let exprs: String = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let named = metric_names(&rules);
    assert!(named.len() >= 5, "{named:?}");
    for name in named.iter().chain(metric_names(&exprs).iter()) {
        assert!(
            exposed.contains(name),
            "{name} is named by a rule or a panel but not served"
        );
    }
    // What the rules are about is there: reuse, failed logins, 5xx, backlog.
    for wanted in [
        "latchkey_reuse_detected_total",
        "latchkey_login_failures_total",
        "latchkey_http_responses_total",
        "latchkey_deliveries_waiting",
    ] {
        assert!(named.contains(wanted), "no rule about {wanted}");
    }
}
