//! Prometheus metrics, kept in memory and rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every counter the server exports, declared once: its name and its help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Access tokens issued, by grant.
    TokensIssued,
    /// Refresh grants, by outcome.
    Refreshes,
    /// Rotated refresh tokens presented again.
    ReuseDetected,
    /// Sessions revoked, by reason.
    SessionsRevoked,
    /// Sessions ended, by reason (SPEC §14): every revocation, and every
    /// expiry when it is noticed.
    SessionsEnded,
    /// Failed logins.
    LoginFailures,
    /// Requests refused with 429.
    Throttled,
    /// Sessions read from the database to check an access token.
    SessionLookups,
    /// DPoP proofs presented again.
    DpopReplays,
    /// Delivery attempts of the outbox (webhooks, back-channel logouts,
    /// mail), by outcome.
    Deliveries,
    /// Answers, by class of status (`2xx` … `5xx`).
    Responses,
}

impl Counter {
    /// Every counter, in the order they are rendered.
    pub const ALL: [Self; 11] = [
        Self::TokensIssued,
        Self::Refreshes,
        Self::ReuseDetected,
        Self::SessionsRevoked,
        Self::SessionsEnded,
        Self::LoginFailures,
        Self::Throttled,
        Self::SessionLookups,
        Self::DpopReplays,
        Self::Deliveries,
        Self::Responses,
    ];

    /// The series name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TokensIssued => "latchkey_tokens_issued_total",
            Self::Refreshes => "latchkey_refreshes_total",
            Self::ReuseDetected => "latchkey_reuse_detected_total",
            Self::SessionsRevoked => "latchkey_sessions_revoked_total",
            Self::SessionsEnded => "latchkey_sessions_ended_total",
            Self::LoginFailures => "latchkey_login_failures_total",
            Self::Throttled => "latchkey_throttled_total",
            Self::SessionLookups => "latchkey_session_lookups_total",
            Self::DpopReplays => "latchkey_dpop_replays_total",
            Self::Deliveries => "latchkey_deliveries_total",
            Self::Responses => "latchkey_http_responses_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::TokensIssued => "Access tokens issued, by grant.",
            Self::Refreshes => "Refresh grants, by outcome.",
            Self::ReuseDetected => "Rotated refresh tokens presented again.",
            Self::SessionsRevoked => "Sessions revoked, by reason.",
            Self::SessionsEnded => "Sessions ended, by reason: revocations and expiries.",
            Self::LoginFailures => "Failed logins.",
            Self::Throttled => "Requests refused with 429.",
            Self::SessionLookups => "Sessions read from the database to check an access token.",
            Self::DpopReplays => "DPoP proofs presented again (refused).",
            Self::Deliveries => {
                "Outbox delivery attempts (webhooks, back-channel logouts, mail), by outcome."
            }
            Self::Responses => "Answers of the routes, by class of status.",
        }
    }
}

/// The request latency histogram.
pub const REQUEST_DURATION: &str = "latchkey_http_request_duration_seconds";

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, String), u64>,
    /// Answers by class of status, `1xx` to `5xx`.
    responses: [u64; 5],
    latency: BTreeMap<(String, String), Histogram>,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Renders `name{k="v",…}`; label values here are fixed strings of ours or
/// route patterns, never request data.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace(['"', '\\', '\n'], "_")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds one to a counter.
    pub fn inc(&self, counter: Counter, label_pairs: &[(&str, &str)]) {
        self.add(counter, label_pairs, 1);
    }

    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, label_pairs: &[(&str, &str)], n: u64) {
        *self
            .inner()
            .counters
            .entry((counter.name(), labels(label_pairs)))
            .or_default() += n;
    }

    /// Every counter's value now, with its labels as rendered (`{k="v"}`).
    pub fn counters(&self) -> Vec<(&'static str, String, u64)> {
        self.inner()
            .counters
            .iter()
            .map(|((name, labels), n)| (*name, labels.clone(), *n))
            .collect()
    }

    /// Records one request's latency, and its answer's class of status.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        let mut inner = self.inner();
        inner.responses[class] += 1;
        let histogram = inner
            .latency
            .entry((method_label(method).to_owned(), route.to_owned()))
            .or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The series of request latency held now.
    pub fn latency_series(&self) -> usize {
        self.inner().latency.len()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.inner();
        let mut out = String::new();
        for counter in Counter::ALL {
            let (name, help) = (counter.name(), counter.help());
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if counter == Counter::Responses {
                for (i, n) in inner.responses.iter().enumerate() {
                    let _ = writeln!(out, "{name}{{class=\"{}xx\"}} {n}", i + 1);
                }
                continue;
            }
            let mut any = false;
            for ((n, l), value) in &inner.counters {
                if *n == name {
                    let _ = writeln!(out, "{name}{l} {value}");
                    any = true;
                }
            }
            if !any {
                let _ = writeln!(out, "{name} 0");
            }
        }
        let name = REQUEST_DURATION;
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency, by route.\n# TYPE {name} histogram"
        );
        for ((method, route), h) in &inner.latency {
            let base = [("method", method.as_str()), ("route", route.as_str())];
            for (count, bound) in h.buckets.iter().zip(BUCKETS) {
                let le = bound.to_string();
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {count}",
                    labels(&[base[0], base[1], ("le", &le)])
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                labels(&[base[0], base[1], ("le", "+Inf")]),
                h.count
            );
            let _ = writeln!(out, "{name}_sum{} {}", labels(&base), h.sum);
            let _ = writeln!(out, "{name}_count{} {}", labels(&base), h.count);
        }
        out
    }
}

/// The method as a label: one of the standard methods, or `other`, so that
/// no label value comes from what a client sent.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.inc(Counter::Refreshes, &[("outcome", "rotated")]);
        m.inc(Counter::Refreshes, &[("outcome", "rotated")]);
        m.observe_request("POST", "/oauth/token", 200, Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("latchkey_refreshes_total{outcome=\"rotated\"} 2"));
        assert!(text.contains("latchkey_http_responses_total{class=\"2xx\"} 1"));
        assert!(text.contains("latchkey_http_responses_total{class=\"5xx\"} 0"));
        assert!(text.contains("latchkey_reuse_detected_total 0"));
        // Every declared counter is exported, used yet or not.
        for counter in Counter::ALL {
            assert!(text.contains(&format!("# TYPE {} counter", counter.name())));
        }
        assert!(text.contains("latchkey_http_request_duration_seconds_bucket{method=\"POST\",route=\"/oauth/token\",le=\"0.005\"} 1"));
        assert!(text.contains("latchkey_http_request_duration_seconds_bucket{method=\"POST\",route=\"/oauth/token\",le=\"0.0025\"} 0"));
        assert!(text.contains(
            "latchkey_http_request_duration_seconds_count{method=\"POST\",route=\"/oauth/token\"} 1"
        ));
    }
}
