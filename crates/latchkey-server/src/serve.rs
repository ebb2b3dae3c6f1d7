//! The connection loop: HTTP/1.1 over TCP with the limits a public server
//! needs, which `axum::serve` does not set, so that no client can keep the
//! others out:
//!
//! * a request's headers must arrive within the request timeout, and its
//!   body within the timeout again (see the router's body deadline);
//! * an answer must be taken by the client within the request timeout: a
//!   connection whose output stays blocked that long (a client that sends
//!   requests and never reads the answers) is closed;
//! * a kept-alive connection idle for the request timeout is closed (the
//!   header timeout runs whenever a connection waits for a request);
//! * at most `max_connections` connections are served at once, and at most
//!   `max_connections_per_address` of them come from one client address (an
//!   IPv4 address, or an IPv6 /64; trusted proxies are exempt); a further
//!   connection from a full address is closed at once;
//! * when every slot is taken, a new connection makes room: the connection
//!   whose client has left its answers untaken the longest is closed at
//!   once, else the connection idle the longest is asked to close
//!   (kept-alive connections waiting for their next request are cheap to
//!   give up, as a browser simply reconnects); the new connection waits for
//!   a slot for at most the request timeout, and connections serving a
//!   request are never cut short.
//!
//! So a new client from an address under its cap is served at once when
//! some connection is idle, and within about the request timeout when none
//! is, whatever the other clients do.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Sleep;
use tower::ServiceExt;

use latchkey_app::config::IpRange;

/// How the connection loop bounds its clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for a request's headers (and, in the router, its body),
    /// for the client to take an answer, and for an idle kept-alive
    /// connection to send its next request.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client address.
    pub max_connections_per_address: usize,
    /// Peers exempt from the per-address cap (reverse proxies).
    pub exempt: Vec<IpRange>,
}

impl Limits {
    /// The limits of a configuration.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            request_timeout: Duration::from_secs(config.request_timeout.unsigned_abs()),
            max_connections: config.max_connections,
            max_connections_per_address: config.max_connections_per_address,
            exempt: config.trusted_proxies.clone(),
        }
    }
}

/// How long connections still open at shutdown may take to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// A read buffer of this size holds any request head we accept (a request
/// target of up to [`crate::MAX_TARGET_BYTES`] plus headers); a longer head
/// is answered `431`. hyper's default would let each connection grow a
/// buffer of about 400 KiB.
const MAX_HEAD_BYTES: usize = 24 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// connections in flight finish (for at most ten seconds).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let pool = Arc::new(Pool::new(limits.max_connections_per_address.max(1)));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a little, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let exempt = limits
            .exempt
            .iter()
            .any(|range| range.contains(remote.ip()));
        let address = (!exempt).then(|| AddressKey::of(remote.ip()));
        let Some(ticket) = pool.admit(address) else {
            tracing::debug!(%remote, "connection refused: its address has too many open");
            continue;
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let waited = tokio::select! {
                    slot = make_room(&pool, &slots, limits.request_timeout) => slot,
                    () = &mut shutdown => break,
                };
                match waited {
                    Some(slot) => slot,
                    None => {
                        tracing::debug!(%remote, "connection refused: no slot freed in time");
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            http.clone(),
            app.clone(),
            stream,
            remote,
            limits.request_timeout,
            (ticket, slot),
        ));
    }
    drop(listener);
    pool.close_all();
    let drained = async {
        // Every connection holds a slot until it ends.
        let _all = slots
            .acquire_many(u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX))
            .await;
    };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}

/// Serves one connection until it ends, is asked to close (between
/// requests), or is cut off; then gives back its place in the pool and its
/// slot.
async fn serve_connection(
    http: Arc<hyper::server::conn::http1::Builder>,
    app: Router,
    stream: TcpStream,
    remote: SocketAddr,
    timeout: Duration,
    places: (Ticket, tokio::sync::OwnedSemaphorePermit),
) {
    let activity = places.0.activity.clone();
    let on_request = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(remote));
        let app = app.clone();
        let busy = Busy::start(on_request.clone());
        async move {
            let response = app.oneshot(request.map(Body::new)).await;
            drop(busy);
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let io = TokioIo::new(Deadlined::new(stream, timeout, activity.clone()));
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    let ended = loop {
        tokio::select! {
            ended = connection.as_mut() => break ended,
            () = activity.abort.notified() => break Ok(()),
            () = activity.close.notified(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, %remote, "connection ended");
    }
    drop(places);
}

/// Frees a slot for a waiting connection: asks the connection cheapest to
/// give up to close (see [`Pool::evict_one`]), again every 50 ms while none
/// frees, for at most `timeout`.
async fn make_room(
    pool: &Pool,
    slots: &Arc<Semaphore>,
    timeout: Duration,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        pool.evict_one();
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_millis(50));
        if let Ok(Ok(slot)) = tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
            return Some(slot);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// What the per-address cap counts: an IPv4 address, or the /64 of an IPv6
/// address (one subscriber's network, in the usual assignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddressKey {
    V4(u32),
    V6(u64),
}

impl AddressKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// What one connection tells the pool: whether a request is being served,
/// when it last was, and how to ask it to close.
struct Activity {
    opened: Instant,
    /// Requests being served now.
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when a request last started or ended.
    last: AtomicU64,
    closing: AtomicBool,
    close: Notify,
    /// Its output has been blocked since this many milliseconds after
    /// `opened` (0: not blocked): a client not reading its answers.
    stalled_since: AtomicU64,
    /// Closes the connection at once, whatever it is doing.
    abort: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            stalled_since: AtomicU64::new(0),
            abort: Notify::new(),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn touch(&self) {
        self.last.store(self.millis(), Ordering::Relaxed);
    }

    fn set_stalled(&self, stalled: bool) {
        let since = if stalled { self.millis() } else { 0 };
        self.stalled_since.store(since, Ordering::Relaxed);
    }

    /// Since when its output has been blocked, if it is.
    fn stalled(&self) -> Option<Instant> {
        match self.stalled_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.opened + Duration::from_millis(since)),
        }
    }

    fn last_active(&self) -> Instant {
        self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Kept alive between requests: it served one, and serves none now. (A
    /// new connection waiting for its first request is not idle: hyper's
    /// header timeout bounds it.)
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.last.load(Ordering::Relaxed) > 0
    }

    /// Asks the connection to close once its current answer is written.
    fn ask_to_close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.close.notify_one();
        }
    }

    /// Closes the connection at once.
    fn abort(&self) {
        self.closing.store(true, Ordering::Release);
        self.abort.notify_one();
    }
}

/// Marks a request of a connection as being served while it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections: how many per address, and each one's activity.
/// Its size is bounded by the connection cap (plus the one connection the
/// accept loop may hold while it waits for a slot).
struct Pool {
    per_address_cap: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    next_id: u64,
    per_address: HashMap<AddressKey, usize>,
    open: HashMap<u64, Arc<Activity>>,
}

/// A connection's place in the pool, given back when it is dropped.
struct Ticket {
    pool: Arc<Pool>,
    id: u64,
    address: Option<AddressKey>,
    activity: Arc<Activity>,
}

impl Pool {
    fn new(per_address_cap: usize) -> Self {
        Self {
            per_address_cap,
            state: Mutex::new(PoolState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A place for a new connection, unless its address is at its cap
    /// (`None` for an exempt peer, which has no cap).
    fn admit(self: &Arc<Self>, address: Option<AddressKey>) -> Option<Ticket> {
        let mut state = self.state();
        if let Some(address) = address {
            let count = state.per_address.entry(address).or_default();
            if *count >= self.per_address_cap {
                return None;
            }
            *count += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        let activity = Arc::new(Activity::new());
        state.open.insert(id, activity.clone());
        Some(Ticket {
            pool: self.clone(),
            id,
            address,
            activity,
        })
    }

    /// Makes room: closes at once the connection whose client has not
    /// taken its answers for the longest (its output blocked), or else asks
    /// the connection idle the longest (serving no request) to close. Busy
    /// connections are left alone: the request timeout bounds them.
    fn evict_one(&self) {
        let state = self.state();
        let open = || {
            state
                .open
                .values()
                .filter(|a| !a.closing.load(Ordering::Acquire))
        };
        if let Some((_, activity)) = open()
            .filter_map(|a| a.stalled().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since)
        {
            activity.abort();
        } else if let Some(activity) = open().filter(|a| a.idle()).min_by_key(|a| a.last_active()) {
            activity.ask_to_close();
        }
    }

    fn close_all(&self) {
        for activity in self.state().open.values() {
            activity.ask_to_close();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.pool.state();
        state.open.remove(&self.id);
        if let Some(address) = self.address
            && let Some(count) = state.per_address.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                state.per_address.remove(&address);
            }
        }
    }
}

/// A TCP stream whose output must drain within a deadline: from the moment
/// a write or flush cannot proceed, the client has `timeout` to take
/// everything written so far (the deadline is lifted only when a flush
/// completes), so neither a client that never reads nor one that reads a
/// byte at a time holds a connection longer than that.
struct Deadlined {
    stream: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    activity: Arc<Activity>,
}

impl Deadlined {
    fn new(stream: TcpStream, timeout: Duration, activity: Arc<Activity>) -> Self {
        Self {
            stream,
            timeout,
            stalled: None,
            activity,
        }
    }

    /// Called when output cannot proceed: starts the deadline, or fails
    /// once it has passed (the deadline's timer wakes the task as well).
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        if self.stalled.is_none() {
            self.activity.set_stalled(true);
        }
        let deadline = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no answer within the request timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Deadlined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.blocked(cx),
            done => done,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.blocked(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending => self.blocked(cx),
            Poll::Ready(Ok(())) => {
                if self.stalled.take().is_some() {
                    self.activity.set_stalled(false);
                }
                Poll::Ready(Ok(()))
            }
            failed => failed,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_shutdown(cx) {
            Poll::Pending => self.blocked(cx),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_address_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(IpAddr::from([0; 16]));
        let b: IpAddr = "2001:db8:1:2:ffff::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 16]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0; 16]));
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0; 16]));
        assert_eq!(
            AddressKey::of(mapped),
            AddressKey::of(IpAddr::from([192, 0, 2, 7]))
        );
    }

    #[test]
    fn an_address_at_its_cap_is_refused_until_one_of_its_connections_ends() {
        let pool = Arc::new(Pool::new(2));
        let here = Some(AddressKey::of(IpAddr::from([192, 0, 2, 1])));
        let there = Some(AddressKey::of(IpAddr::from([192, 0, 2, 2])));
        let first = pool.admit(here);
        let second = pool.admit(here);
        assert!(first.is_some() && second.is_some());
        assert!(pool.admit(here).is_none());
        assert!(pool.admit(there).is_some());
        assert!(pool.admit(None).is_some(), "an exempt peer has no cap");
        drop(first);
        assert!(pool.admit(here).is_some());
    }

    #[test]
    fn eviction_picks_the_connection_idle_the_longest_and_never_a_busy_one() {
        let pool = Arc::new(Pool::new(8));
        let key = Some(AddressKey::of(IpAddr::from([192, 0, 2, 1])));
        let (Some(old), Some(busy), Some(recent)) =
            (pool.admit(key), pool.admit(key), pool.admit(key))
        else {
            panic!("admitted");
        };
        old.activity.last.store(1, Ordering::Relaxed);
        recent.activity.last.store(500, Ordering::Relaxed);
        let _serving = Busy::start(busy.activity.clone());
        busy.activity.last.store(0, Ordering::Relaxed);
        pool.evict_one();
        assert!(old.activity.closing.load(Ordering::Acquire));
        assert!(!busy.activity.closing.load(Ordering::Acquire));
        assert!(!recent.activity.closing.load(Ordering::Acquire));
        pool.evict_one();
        assert!(recent.activity.closing.load(Ordering::Acquire));
        assert!(!busy.activity.closing.load(Ordering::Acquire));
        pool.evict_one();
        assert!(
            !busy.activity.closing.load(Ordering::Acquire),
            "a connection serving a request is never evicted"
        );
    }

    #[test]
    fn a_client_not_taking_its_answers_goes_first() {
        let pool = Arc::new(Pool::new(8));
        let key = Some(AddressKey::of(IpAddr::from([192, 0, 2, 1])));
        let (Some(idle), Some(stalled)) = (pool.admit(key), pool.admit(key)) else {
            panic!("admitted");
        };
        let _serving = Busy::start(stalled.activity.clone());
        stalled.activity.set_stalled(true);
        pool.evict_one();
        assert!(stalled.activity.closing.load(Ordering::Acquire));
        assert!(!idle.activity.closing.load(Ordering::Acquire));
    }
}
