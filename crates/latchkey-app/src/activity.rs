//! The overview of the operator's console (SPEC §15): what happened, per
//! minute, counted by every instance into the database.
//!
//! Nothing on a hot path writes for it. Each instance already counts logins,
//! refreshes, reuse, throttling and session ends in its [`Metrics`]; every
//! few seconds (and before an overview is read) [`ActivityLog::flush`] adds
//! what those counters gained since the last flush to the current minute's
//! rows in the `activity` table. The charts then read at most a day of
//! minutes, whatever the size of the sessions and audit tables, and every
//! instance shows the same. A crash loses what was counted since the last
//! flush (seconds); the audit trail keeps the events themselves.

use std::collections::BTreeMap;
use std::sync::Arc;

use latchkey_core::clock::Clock;
use latchkey_core::store::{ConsoleStore, StoreResult};
use serde::Serialize;

use crate::metrics::{Counter, Metrics};

/// The series of the charts, in the order they are shown.
pub const SERIES: [&str; 6] = [
    "logins_succeeded",
    "logins_failed",
    "refreshes",
    "reuse_detected",
    "throttled",
    "sessions_started",
];

/// The prefix of the series of sessions ended, one per reason.
pub const ENDED: &str = "ended:";

/// How long counts are kept: the day the overview shows, and a margin.
pub const KEPT_MINUTES: i64 = 2 * 24 * 60;

/// The series a counter's value adds to (none for most counters).
fn series_of(name: &str, labels: &str) -> Vec<String> {
    let label = |key: &str| {
        let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
        let end = labels[start..].find('"')? + start;
        Some(labels[start..end].to_owned())
    };
    match name {
        n if n == Counter::TokensIssued.name() => match label("grant").as_deref() {
            Some("login" | "passkey") => vec!["logins_succeeded".into(), "sessions_started".into()],
            Some("refresh_token" | "client_credentials") | None => Vec::new(),
            Some(_) => vec!["sessions_started".into()],
        },
        n if n == Counter::Refreshes.name() && label("outcome").as_deref() == Some("rotated") => {
            vec!["refreshes".into()]
        }
        n if n == Counter::ReuseDetected.name() => vec!["reuse_detected".into()],
        n if n == Counter::LoginFailures.name() => vec!["logins_failed".into()],
        n if n == Counter::Throttled.name() => vec!["throttled".into()],
        n if n == Counter::SessionsEnded.name() => label("reason")
            .map(|reason| vec![format!("{ENDED}{reason}")])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// This instance's counts on their way to the database.
pub struct ActivityLog {
    store: Arc<dyn ConsoleStore>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    /// Each series' total at the last flush that reached the database; held
    /// across the write, so that flushes at once add each count once.
    flushed: tokio::sync::Mutex<BTreeMap<String, u64>>,
    /// The numbers of users and live sessions, and when they were counted:
    /// counting reads an index of every live row (about 80 ms a million on
    /// PostgreSQL), so an instance counts at most every [`COUNTS_FRESH`]
    /// seconds however many consoles are open.
    counted: tokio::sync::Mutex<Option<(i64, u64, u64)>>,
}

/// How long the numbers of users and live sessions are reused, in seconds.
pub const COUNTS_FRESH: i64 = 15;

/// One chart: the counts of each series per step, oldest first.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Chart {
    /// The start of the first step, Unix seconds.
    pub start: i64,
    /// Seconds per step.
    pub step: i64,
    /// Each series' counts, one per step.
    pub series: BTreeMap<String, Vec<u64>>,
}

/// The overview: the last hour per minute, the last day per hour, and the
/// numbers of users and live sessions.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// When it was read, Unix seconds.
    pub now: i64,
    /// Users not deleted.
    pub users: u64,
    /// Sessions neither ended nor past their absolute end.
    pub live_sessions: u64,
    /// The last 60 minutes.
    pub hour: Chart,
    /// The last 24 hours.
    pub day: Chart,
}

impl ActivityLog {
    /// Counts of `metrics` into `store`, at minutes of `clock`.
    pub fn new(store: Arc<dyn ConsoleStore>, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            metrics,
            clock,
            flushed: tokio::sync::Mutex::new(BTreeMap::new()),
            counted: tokio::sync::Mutex::new(None),
        }
    }

    /// Adds what this instance counted since the last flush to the current
    /// minute. On failure nothing is forgotten: the next flush adds it.
    pub async fn flush(&self) -> StoreResult<()> {
        let mut flushed = self.flushed.lock().await;
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for (name, labels, n) in self.metrics.counters() {
            for series in series_of(name, &labels) {
                *totals.entry(series).or_default() += n;
            }
        }
        let gains: Vec<(&str, u64)> = totals
            .iter()
            .map(|(series, n)| {
                let before = flushed.get(series).copied().unwrap_or_default();
                (series.as_str(), n.saturating_sub(before))
            })
            .filter(|(_, gain)| *gain > 0)
            .collect();
        if gains.is_empty() {
            return Ok(());
        }
        self.store
            .add_activity(self.clock.now().div_euclid(60), &gains)
            .await?;
        *flushed = totals;
        Ok(())
    }

    /// Deletes counts older than [`KEPT_MINUTES`].
    pub async fn prune(&self) -> StoreResult<u64> {
        let minute = self.clock.now().div_euclid(60);
        self.store.prune_activity(minute - KEPT_MINUTES).await
    }

    /// The overview, after adding this instance's latest counts.
    pub async fn overview(&self) -> StoreResult<Overview> {
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "activity counts could not be stored");
        }
        let now = self.clock.now();
        let minute = now.div_euclid(60);
        let hour = minute.div_euclid(60);
        let first_hour = hour - 23;
        let rows = self.store.activity(first_hour * 60).await?;
        let mut by_minute = chart(minute - 59, 60, 60);
        let mut by_hour = chart(first_hour * 60, 3600, 24);
        for row in rows {
            add(
                &mut by_hour,
                &row.series,
                (row.minute - first_hour * 60) / 60,
                row.n,
            );
            add(
                &mut by_minute,
                &row.series,
                row.minute - (minute - 59),
                row.n,
            );
        }
        let (users, live_sessions) = self.counts(now).await?;
        Ok(Overview {
            now,
            users,
            live_sessions,
            hour: by_minute,
            day: by_hour,
        })
    }

    /// The numbers of users and live sessions, counted again when the last
    /// count is older than [`COUNTS_FRESH`] (one count at a time).
    async fn counts(&self, now: i64) -> StoreResult<(u64, u64)> {
        let mut counted = self.counted.lock().await;
        if let Some((at, users, sessions)) = *counted
            && (at..at + COUNTS_FRESH).contains(&now)
        {
            return Ok((users, sessions));
        }
        let (users, sessions) = tokio::try_join!(
            self.store.count_users(),
            self.store.count_live_sessions(now)
        )?;
        *counted = Some((now, users, sessions));
        Ok((users, sessions))
    }
}

/// An empty chart of `steps` steps from `start_minute`.
fn chart(start_minute: i64, step: i64, steps: usize) -> Chart {
    Chart {
        start: start_minute * 60,
        step,
        series: SERIES
            .iter()
            .map(|s| ((*s).to_owned(), vec![0; steps]))
            .collect(),
    }
}

/// Adds `n` to `series` at step `index`, when the step is in the chart.
fn add(chart: &mut Chart, series: &str, index: i64, n: u64) {
    let steps = chart.series.get(SERIES[0]).map_or(0, Vec::len);
    let Ok(index) = usize::try_from(index) else {
        return;
    };
    if index >= steps {
        return;
    }
    // Only known series reach the page: the base ones and one per reason.
    let known = SERIES.contains(&series)
        || series
            .strip_prefix(ENDED)
            .is_some_and(|r| latchkey_core::store::RevocationReason::parse(r).is_some());
    if !known {
        return;
    }
    let counts = chart
        .series
        .entry(series.to_owned())
        .or_insert_with(|| vec![0; steps]);
    counts[index] += n;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_feed_their_series() {
        assert_eq!(
            series_of(Counter::TokensIssued.name(), r#"{grant="passkey"}"#),
            ["logins_succeeded", "sessions_started"]
        );
        assert_eq!(
            series_of(Counter::TokensIssued.name(), r#"{grant="device_code"}"#),
            ["sessions_started"]
        );
        assert!(series_of(Counter::TokensIssued.name(), r#"{grant="refresh_token"}"#).is_empty());
        assert_eq!(
            series_of(
                Counter::SessionsEnded.name(),
                r#"{reason="reuse_detected"}"#
            ),
            ["ended:reuse_detected"]
        );
        assert!(series_of(Counter::Refreshes.name(), r#"{outcome="replayed"}"#).is_empty());
        assert!(series_of(Counter::SessionLookups.name(), "").is_empty());
    }

    #[test]
    fn counts_land_in_their_step_and_nowhere_else() {
        let mut c = chart(100, 60, 60);
        add(&mut c, "refreshes", 0, 2);
        add(&mut c, "refreshes", 59, 3);
        add(&mut c, "refreshes", 60, 100);
        add(&mut c, "refreshes", -1, 100);
        add(&mut c, "ended:logout", 5, 1);
        add(&mut c, "ended:<script>", 5, 1);
        add(&mut c, "something_else", 5, 1);
        assert_eq!(c.series["refreshes"].iter().sum::<u64>(), 5);
        assert_eq!(c.series["ended:logout"][5], 1);
        assert_eq!(c.series.len(), SERIES.len() + 1);
    }
}
