//! Prometheus metrics, kept in memory and rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

const HELP: &[(&str, &str, &str)] = &[
    (
        "latchkey_tokens_issued_total",
        "counter",
        "Access tokens issued, by grant.",
    ),
    (
        "latchkey_refreshes_total",
        "counter",
        "Refresh grants, by outcome.",
    ),
    (
        "latchkey_reuse_detected_total",
        "counter",
        "Rotated refresh tokens presented again.",
    ),
    (
        "latchkey_sessions_revoked_total",
        "counter",
        "Sessions revoked, by reason.",
    ),
    ("latchkey_login_failures_total", "counter", "Failed logins."),
    (
        "latchkey_throttled_total",
        "counter",
        "Requests refused with 429.",
    ),
    (
        "latchkey_session_lookups_total",
        "counter",
        "Sessions read from the database to check an access token.",
    ),
    (
        "latchkey_http_request_duration_seconds",
        "histogram",
        "HTTP request latency, by route.",
    ),
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, String), u64>,
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
    pub fn inc(&self, name: &'static str, label_pairs: &[(&str, &str)]) {
        *self
            .inner()
            .counters
            .entry((name, labels(label_pairs)))
            .or_default() += 1;
    }

    /// Records one request's latency.
    pub fn observe_request(&self, method: &Method, route: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut inner = self.inner();
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
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if *kind == "counter" {
                let mut any = false;
                for ((n, l), value) in &inner.counters {
                    if n == name {
                        let _ = writeln!(out, "{name}{l} {value}");
                        any = true;
                    }
                }
                if !any {
                    let _ = writeln!(out, "{name} 0");
                }
            } else {
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
            }
        }
        out
    }
}

/// The method as a label: one of the standard methods, or `other`, so that
/// no label value comes from what a client sent.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.inc("latchkey_refreshes_total", &[("outcome", "rotated")]);
        m.inc("latchkey_refreshes_total", &[("outcome", "rotated")]);
        m.observe_request(&Method::POST, "/oauth/token", Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("latchkey_refreshes_total{outcome=\"rotated\"} 2"));
        assert!(text.contains("latchkey_reuse_detected_total 0"));
        assert!(text.contains("latchkey_http_request_duration_seconds_bucket{method=\"POST\",route=\"/oauth/token\",le=\"0.005\"} 1"));
        assert!(text.contains("latchkey_http_request_duration_seconds_bucket{method=\"POST\",route=\"/oauth/token\",le=\"0.0025\"} 0"));
        assert!(text.contains(
            "latchkey_http_request_duration_seconds_count{method=\"POST\",route=\"/oauth/token\"} 1"
        ));
    }
}
