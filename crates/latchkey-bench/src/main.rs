//! `latchkey-load`: drives a Latchkey server over loopback with many
//! concurrent clients and reports requests per second, latency percentiles
//! and errors. It refuses any target that is not a loopback address.
//!
//! ```text
//! latchkey-load --target http://127.0.0.1:8080 --scenario refresh --concurrency 64 --seconds 10 \
//!     --username load --password 'load password'
//! ```
//!
//! Scenarios: `login` (password logins), `refresh` (each client rotates its
//! own chain: every request uses the refresh token the previous response
//! gave it), `me` (`GET /api/me` with a valid access token). Each client logs
//! in once first, so run the server with `LATCHKEY_MAX_SESSIONS_PER_USER` at
//! least the clients per user. `--users N` spreads the clients over the users
//! `NAME-0` … `NAME-(N-1)` (client `i` is `NAME-(i mod N)`), as a server's
//! logins come from many accounts, each within the session cap.
//!
//! `mixed` (Latchkey only) is the soak test's traffic: each client logs in,
//! alternates ten `GET /api/me` with ten refreshes, revokes its session
//! (RFC 7009 `/oauth/revoke` with the refresh token, or `DELETE /sessions`
//! with the access token, by turns) and checks that both its tokens are now
//! refused; a revoked token that still works counts as an error.
//! `--report-every SECS` prints the requests, errors and the server's
//! resident memory (`--server-pids`) every so often, for long runs.
//!
//! `--api simplejwt` speaks the same scenarios to a Django REST framework
//! server with djangorestframework-simplejwt (`POST /api/token/`,
//! `POST /api/token/refresh/`, `GET /api/me/`), for the side-by-side
//! comparison of `scripts/compare-django.sh`.
//!
//! Each client holds one HTTP/1.1 connection (hyper's client connection,
//! without a pool), reconnecting when the server closes it, so that the
//! generator's own CPU per request stays small beside the server it shares
//! the machine with; that CPU is reported too (`client_cpu_us_per_request`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    Login,
    Refresh,
    Me,
    Mixed,
    /// `GET /healthz`: the HTTP stack's own cost, beside which `me` is read.
    Healthz,
}

/// The HTTP interface spoken.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Api {
    /// Latchkey's: `/auth/login`, `/oauth/token`, `/api/me`.
    Latchkey,
    /// djangorestframework-simplejwt's: `/api/token/`, `/api/token/refresh/`,
    /// and a `/api/me/` view behind `IsAuthenticated`.
    Simplejwt,
}

impl Api {
    fn login_path(self) -> &'static str {
        match self {
            Api::Latchkey => "/auth/login",
            Api::Simplejwt => "/api/token/",
        }
    }

    fn refresh_path(self) -> &'static str {
        match self {
            Api::Latchkey => "/oauth/token",
            Api::Simplejwt => "/api/token/refresh/",
        }
    }

    fn me_path(self) -> &'static str {
        match self {
            Api::Latchkey => "/api/me",
            Api::Simplejwt => "/api/me/",
        }
    }

    fn refresh_form(self, token: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match self {
            Api::Latchkey => form
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", token),
            Api::Simplejwt => form.append_pair("refresh", token),
        };
        form.finish()
    }
}

/// The tokens of a login or refresh response, in either interface.
#[derive(Debug, Default, Deserialize)]
struct Tokens {
    #[serde(alias = "access")]
    access_token: Option<String>,
    #[serde(alias = "refresh")]
    refresh_token: Option<String>,
}

/// One client's HTTP/1.1 connection to the target.
struct Conn {
    /// `HOST:PORT`.
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(target: &str) -> Self {
        let authority = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        Self {
            authority,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connect to {}", self.authority))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(self.sender.insert(sender))
    }

    /// Sends one request; answers its status and body.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        form: Option<String>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match form {
            Some(form) => {
                request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body)?;
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => self.sender.insert(sender),
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let close = response
            .headers()
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response.into_body().collect().await?.to_bytes();
        if close {
            self.sender = None;
        }
        Ok((status, body))
    }
}

/// Load generator for a Latchkey server on this machine.
#[derive(Debug, Parser)]
#[command(name = "latchkey-load")]
struct Args {
    /// Base URL of the server; only loopback addresses are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// What to send.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Which server's interface to speak.
    #[arg(long, value_enum, default_value = "latchkey")]
    api: Api,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to send, after set-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Login name of an existing user.
    #[arg(long, default_value = "load")]
    username: String,
    /// That user's password.
    #[arg(long, default_value = "load test password")]
    password: String,
    /// Spread the clients over this many users, `USERNAME-0` … `USERNAME-(N-1)`,
    /// all with the same password; 1 uses `USERNAME` itself.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,
    /// Server processes (comma-separated pids) whose CPU time over the
    /// measured window is reported per request (Linux `/proc`).
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Print the totals so far and the servers' resident memory every this
    /// many seconds (0: only at the end).
    #[arg(long, default_value_t = 0)]
    report_every: u64,
}

/// Requests and errors so far, over every client, for the periodic reports.
#[derive(Default)]
struct Totals {
    requests: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
}

/// The processes' resident memory in KiB (Linux `/proc`).
fn resident_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

/// The pieces of a `mixed` cycle.
#[derive(Clone, Copy)]
enum Step {
    Me,
    Refresh,
    Revoke,
    RevokedRefresh,
    RevokedMe,
}

/// One `mixed` cycle after its login: ten reads and ten refreshes, then the
/// revocation and its two checks.
const CYCLE: [Step; 23] = {
    let mut steps = [Step::Me; 23];
    let mut i = 1;
    while i < 20 {
        steps[i] = Step::Refresh;
        i += 2;
    }
    steps[20] = Step::Revoke;
    steps[21] = Step::RevokedRefresh;
    steps[22] = Step::RevokedMe;
    steps
};

/// User + system CPU seconds the processes have used so far.
fn cpu_seconds(pids: &[u32], ticks_per_second: f64) -> Result<f64> {
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the command name, which may itself hold spaces:
        // state is the first, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for index in [11, 12] {
            ticks += fields
                .get(index)
                .and_then(|f| f.parse::<u64>().ok())
                .context("unexpected /proc stat format")?;
        }
    }
    Ok(ticks as f64 / ticks_per_second)
}

fn clock_ticks_per_second() -> Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("run getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("parse CLK_TCK")
}

/// Accepts `http://HOST[:PORT]` where HOST is loopback; anything else is refused.
fn check_loopback(target: &str) -> Result<()> {
    let rest = target
        .strip_prefix("http://")
        .context("the target must be http://HOST:PORT")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing {target}: latchkey-load only sends to loopback addresses");
    }
    Ok(())
}

struct Worker {
    latencies: Vec<u32>,
    errors: u64,
}

/// The login name of client `client`.
fn username(args: &Args, client: usize) -> String {
    if args.users == 1 {
        args.username.clone()
    } else {
        format!("{}-{}", args.username, client % args.users as usize)
    }
}

async fn login(conn: &mut Conn, args: &Args, username: &str) -> Result<Tokens> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", username)
        .append_pair("password", &args.password)
        .finish();
    let (status, body) = conn
        .send(Method::POST, args.api.login_path(), None, Some(form))
        .await?;
    if !status.is_success() {
        bail!(
            "login failed with {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body)?)
}

async fn run_worker(
    client: usize,
    args: std::sync::Arc<Args>,
    ready: std::sync::Arc<tokio::sync::Barrier>,
    window: std::sync::Arc<tokio::sync::OnceCell<Instant>>,
    totals: std::sync::Arc<Totals>,
) -> Result<Worker> {
    let mut conn = Conn::new(&args.target);
    let username = username(&args, client);
    let pair = match args.scenario {
        Scenario::Login | Scenario::Healthz => Tokens::default(),
        _ => match login(&mut conn, &args, &username).await {
            Ok(pair) => pair,
            Err(e) => {
                // Still arrive at the barrier, or the others wait forever.
                ready.wait().await;
                return Err(e);
            }
        },
    };
    let api = args.api;
    let mut refresh_token = pair.refresh_token.unwrap_or_default();
    let mut access_token = pair.access_token.unwrap_or_default();
    let mut cycle = CYCLE.iter().cycle();
    let mut revocations = 0u64;
    let mut worker = Worker {
        latencies: Vec::new(),
        errors: 0,
    };
    // The window opens when every client has logged in.
    ready.wait().await;
    let start = *window.get_or_init(|| async { Instant::now() }).await;
    let until = start + Duration::from_secs(args.seconds);
    while Instant::now() < until {
        let sent = Instant::now();
        let ok = match args.scenario {
            Scenario::Login => login(&mut conn, &args, &username).await.is_ok(),
            Scenario::Healthz => conn
                .send(Method::GET, "/healthz", None, None)
                .await
                .is_ok_and(|(status, _)| status.is_success()),
            Scenario::Me => conn
                .send(Method::GET, api.me_path(), Some(&access_token), None)
                .await
                .is_ok_and(|(status, _)| status.is_success()),
            Scenario::Refresh => {
                let form = api.refresh_form(&refresh_token);
                match conn
                    .send(Method::POST, api.refresh_path(), None, Some(form))
                    .await
                {
                    Ok((status, body)) if status.is_success() => {
                        match serde_json::from_slice::<Tokens>(&body)
                            .ok()
                            .and_then(|t| t.refresh_token)
                        {
                            Some(next) => {
                                refresh_token = next;
                                true
                            }
                            None => false,
                        }
                    }
                    _ => false,
                }
            }
            Scenario::Mixed => {
                let step = *cycle.next().unwrap_or(&Step::Me);
                let (ok, next) = mixed_step(
                    &mut conn,
                    &args,
                    &username,
                    step,
                    &access_token,
                    &refresh_token,
                    &mut revocations,
                )
                .await;
                if let Some(next) = next {
                    access_token = next.access_token.unwrap_or(access_token);
                    refresh_token = next.refresh_token.unwrap_or(refresh_token);
                }
                ok
            }
        };
        totals
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        worker
            .latencies
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        if !ok {
            worker.errors += 1;
            totals
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if matches!(args.scenario, Scenario::Refresh | Scenario::Mixed) {
                // A broken chain cannot continue; start a new one.
                let pair = login(&mut conn, &args, &username).await?;
                refresh_token = pair.refresh_token.unwrap_or_default();
                access_token = pair.access_token.unwrap_or(access_token);
                cycle = CYCLE.iter().cycle();
            }
        }
    }
    Ok(worker)
}

async fn mixed_refresh(
    conn: &mut Conn,
    args: &Args,
    refresh_token: &str,
) -> Result<(StatusCode, Bytes)> {
    let form = args.api.refresh_form(refresh_token);
    conn.send(Method::POST, args.api.refresh_path(), None, Some(form))
        .await
}

/// One request of a `mixed` cycle: whether it did what it should, and the
/// tokens a successful refresh (or the login after a revocation) gave.
async fn mixed_step(
    conn: &mut Conn,
    args: &Args,
    username: &str,
    step: Step,
    access_token: &str,
    refresh_token: &str,
    revocations: &mut u64,
) -> (bool, Option<Tokens>) {
    match step {
        Step::Me => {
            let ok = conn
                .send(Method::GET, args.api.me_path(), Some(access_token), None)
                .await
                .is_ok_and(|(status, _)| status.is_success());
            (ok, None)
        }
        Step::Refresh => match mixed_refresh(conn, args, refresh_token).await {
            Ok((status, body)) if status.is_success() => {
                let next = serde_json::from_slice::<Tokens>(&body).ok();
                (next.is_some(), next)
            }
            _ => (false, None),
        },
        Step::Revoke => {
            *revocations += 1;
            let answer = if revocations.is_multiple_of(2) {
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", refresh_token)
                    .finish();
                conn.send(Method::POST, "/oauth/revoke", None, Some(form))
                    .await
            } else {
                conn.send(Method::DELETE, "/sessions", Some(access_token), None)
                    .await
            };
            (answer.is_ok_and(|(status, _)| status.is_success()), None)
        }
        // The revoked refresh token must be refused.
        Step::RevokedRefresh => {
            let refused = mixed_refresh(conn, args, refresh_token)
                .await
                .is_ok_and(|(status, _)| status == StatusCode::BAD_REQUEST);
            (refused, None)
        }
        // And so must its access token; then a new session for the next cycle.
        Step::RevokedMe => {
            let refused = conn
                .send(Method::GET, args.api.me_path(), Some(access_token), None)
                .await
                .is_ok_and(|(status, _)| status == StatusCode::UNAUTHORIZED);
            match login(conn, args, username).await {
                Ok(next) => (refused, Some(next)),
                Err(_) => (false, None),
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    check_loopback(&args.target)?;
    let args = std::sync::Arc::new(args);
    // Clients log in first; the measured window opens when all have.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(args.concurrency + 1));
    let window = std::sync::Arc::new(tokio::sync::OnceCell::new());
    let totals = std::sync::Arc::new(Totals::default());
    let mut tasks = Vec::new();
    for client in 0..args.concurrency {
        tasks.push(tokio::spawn(run_worker(
            client,
            args.clone(),
            ready.clone(),
            window.clone(),
            totals.clone(),
        )));
    }
    let hz = clock_ticks_per_second()?;
    ready.wait().await;
    let start = *window.get_or_init(|| async { Instant::now() }).await;
    let cpu_before = cpu_seconds(&args.server_pids, hz)?;
    let own = [std::process::id()];
    let own_before = cpu_seconds(&own, hz)?;
    if args.report_every > 0 {
        let (args, totals) = (args.clone(), totals.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(args.report_every));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!(
                    "t_s={} requests={} errors={} server_rss_kib={}",
                    start.elapsed().as_secs(),
                    totals.requests.load(std::sync::atomic::Ordering::Relaxed),
                    totals.errors.load(std::sync::atomic::Ordering::Relaxed),
                    resident_kib(&args.server_pids)
                );
            }
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let worker = task.await??;
        latencies.extend(worker.latencies);
        errors += worker.errors;
    }
    let elapsed = Instant::now()
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(0.001);
    let server_cpu = cpu_seconds(&args.server_pids, hz)? - cpu_before;
    let client_cpu = cpu_seconds(&own, hz)? - own_before;
    latencies.sort_unstable();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or(0) as f64 / 1000.0
    };
    print!(
        "scenario={:?} concurrency={} requests={} errors={} rps={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.scenario,
        args.concurrency,
        latencies.len(),
        errors,
        latencies.len() as f64 / elapsed,
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    if !args.server_pids.is_empty() {
        print!(" server_rss_kib={}", resident_kib(&args.server_pids));
        print!(
            " server_cpu_us_per_request={:.0}",
            server_cpu * 1e6 / (latencies.len().max(1) as f64)
        );
    }
    print!(
        " client_cpu_us_per_request={:.0}",
        client_cpu * 1e6 / (latencies.len().max(1) as f64)
    );
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
        assert!(check_loopback("http://127.0.0.2:8080").is_ok());
        assert!(check_loopback("http://localhost:8080").is_ok());
        assert!(check_loopback("http://[::1]:8080").is_ok());
        assert!(check_loopback("http://10.0.0.1:8080").is_err());
        assert!(check_loopback("http://192.168.1.1").is_err());
        assert!(check_loopback("http://example.com").is_err());
        assert!(check_loopback("https://127.0.0.1").is_err());
    }

    #[test]
    fn clients_spread_over_users() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["latchkey-load", "--scenario", "login", "--username", "u"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv)
        };
        let one = parse(&[]).expect("args");
        assert_eq!(username(&one, 0), "u");
        assert_eq!(username(&one, 5), "u");
        let three = parse(&["--users", "3"]).expect("args");
        let names: Vec<String> = (0..5).map(|c| username(&three, c)).collect();
        assert_eq!(names, ["u-0", "u-1", "u-2", "u-0", "u-1"]);
        assert!(parse(&["--users", "0"]).is_err());
    }
}
