//! No client keeps the others out: the connection limits of a real
//! `latchkey serve` under clients that hold connections open, from one
//! address and from many (every address of 127.0.0.0/8 reaches loopback).

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Env, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The request timeout the servers here run with.
const TIMEOUT: Duration = Duration::from_secs(2);

fn server(cap: &str, per_address: &str) -> (Env, Server) {
    let env = Env::new(&[
        ("LATCHKEY_REQUEST_TIMEOUT", "2s"),
        ("LATCHKEY_MAX_CONNECTIONS", cap),
        ("LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS", per_address),
    ]);
    let server = env.serve();
    (env, server)
}

fn address(server: &Server) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection from `127.0.0.{host}`, with a small receive buffer (so that
/// answers it does not read soon fill it).
async fn connect_from(host: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, host], 0)))?;
    socket.set_recv_buffer_size(4096)?;
    socket.connect(to).await
}

/// Reads one answer's head from `stream` (enough to see its status line).
async fn status_line(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).trim_end().to_owned())
}

/// A new client from `127.0.0.{host}`: connects, asks for `/healthz` and
/// returns how long the answer took, or `None` when it never came.
async fn fresh_client(host: u8, to: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let attempt = async {
        let mut stream = connect_from(host, to).await.ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        status_line(&mut stream).await
    };
    match tokio::time::timeout(Duration::from_secs(20), attempt).await {
        Ok(Some(line)) if line.starts_with("HTTP/1.1 200") => Some(started.elapsed()),
        other => {
            eprintln!(
                "a new client from 127.0.0.{host} got {other:?} after {:?}",
                started.elapsed()
            );
            None
        }
    }
}

/// Shape (a): keep-alive connections that ask for `/healthz` every half
/// second and read every answer, reconnecting whenever they are closed.
async fn keep_alive_holder(host: u8, to: SocketAddr, until: Instant) {
    while Instant::now() < until {
        let Ok(mut stream) = connect_from(host, to).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while Instant::now() < until {
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            let mut answer = [0u8; 4096];
            match stream.read(&mut answer).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Shape (b): pipelines requests for the account page until the server
/// stops taking them, and never reads an answer. Returns the stream.
async fn pipeliner(host: u8, to: SocketAddr) -> Option<TcpStream> {
    let mut stream = connect_from(host, to).await.ok()?;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    // Write as long as the server reads (it stops once its answers back up).
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_millis(500), stream.write_all(&request)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    Some(stream)
}

/// Whether the server has closed `stream` (reading what it sent, if need be).
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alive_clients_from_many_addresses_cannot_keep_a_new_client_out() {
    let (_env, server) = server("4", "2");
    let to = address(&server);
    let until = Instant::now() + Duration::from_secs(8);
    // 24 sockets from 12 addresses against 4 slots, each back every half second.
    let holders: Vec<_> = (0..24)
        .map(|i| tokio::spawn(keep_alive_holder(10 + (i / 2) as u8, to, until)))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // New clients while the holders run: each is served in well under the
    // request timeout, since some holder is always idle between requests.
    let mut waits = Vec::new();
    for i in 0..8 {
        let wait = fresh_client(100 + i, to).await;
        assert!(wait.is_some(), "a new client was never answered");
        waits.push(wait.unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("new clients answered after {waits:?}");
    for wait in &waits {
        assert!(
            *wait < TIMEOUT,
            "a new client waited {wait:?} (bound: the request timeout, {TIMEOUT:?})"
        );
    }
    for holder in holders {
        holder.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_never_read_their_answers_are_cut_off_within_the_request_timeout() {
    let (_env, server) = server("4", "2");
    let to = address(&server);
    // Eight pipeliners from four addresses against four slots.
    let mut pipeliners = Vec::new();
    for i in 0..8u8 {
        pipeliners.push(tokio::spawn(pipeliner(20 + i / 2, to)));
    }
    let mut streams = Vec::new();
    for pipeliner in pipeliners {
        if let Some(stream) = pipeliner.await.unwrap() {
            streams.push(stream);
        }
    }
    // New clients from many addresses at once: every one is answered
    // within the request timeout (plus time to be served on this machine).
    let fresh: Vec<_> = (0..6)
        .map(|i| tokio::spawn(fresh_client(120 + i, to)))
        .collect();
    for client in fresh {
        let wait = client.await.unwrap();
        eprintln!("a new client was answered after {wait:?}");
        let wait = wait.expect("a new client was never answered");
        assert!(
            wait < TIMEOUT * 2 + Duration::from_secs(2),
            "a new client waited {wait:?} with the request timeout at {TIMEOUT:?}"
        );
    }
    // And the clients that never read were closed, not left waiting.
    for stream in &mut streams {
        assert!(
            closed_by_server(stream, TIMEOUT * 2 + Duration::from_secs(3)).await,
            "a connection that took no answer is still open"
        );
    }
}

/// With slots to spare (nothing evicted), a client that never reads is
/// still closed within about the request timeout once its answers back up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_is_closed_even_with_slots_to_spare() {
    let (_env, server) = server("64", "64");
    let to = address(&server);
    let mut stream = pipeliner(50, to).await.unwrap();
    // Not reading for longer than the request timeout...
    tokio::time::sleep(TIMEOUT + Duration::from_secs(1)).await;
    // ...the server has closed: what it wrote before is there to read, then
    // the end (were it still waiting to write, reading would let it go on,
    // and it would close only after another idle timeout).
    assert!(
        closed_by_server(&mut stream, Duration::from_millis(500)).await,
        "a connection that took no answer was still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_take_more_than_its_share_of_connections() {
    let (_env, server) = server("8", "3");
    let to = address(&server);
    // Three connections from one address, each in the middle of sending a
    // request (busy, so never evicted).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(30, to).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fourth from the same address is closed at once, unanswered.
    let mut fourth = connect_from(30, to).await.unwrap();
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, fourth.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))) && answer.is_empty(),
        "a connection past the address's cap was served: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // Another address is served at once.
    assert!(fresh_client(31, to).await.is_some());
    // Once one of the first address's connections ends, it may connect again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fresh_client(30, to).await.is_some());
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_request_timeout() {
    let (_env, server) = server("16", "16");
    let to = address(&server);
    let mut stream = connect_from(40, to).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let line = status_line(&mut stream).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let started = Instant::now();
    assert!(
        closed_by_server(&mut stream, TIMEOUT * 3).await,
        "an idle connection was kept open"
    );
    assert!(
        started.elapsed() >= TIMEOUT - Duration::from_millis(200),
        "closed after only {:?}",
        started.elapsed()
    );
}

/// L1: a connection's read buffer is capped near the longest head we
/// accept (24 KiB): a 40 KiB header block is refused with `431` instead of
/// growing the buffer (hyper's default let each connection hold about
/// 400 KiB), and a head of an ordinary size still passes.
#[tokio::test]
async fn a_request_head_past_the_buffer_cap_is_refused() {
    let (_env, server) = server("16", "16");
    let to = address(&server);
    let head = |padding: usize| {
        let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
        for n in 0..padding / 100 {
            head.extend_from_slice(format!("X-Pad-{n:04}: {}\r\n", "a".repeat(88)).as_bytes());
        }
        head.extend_from_slice(b"Connection: close\r\n\r\n");
        head
    };
    for (padding, expected) in [(8 * 1024, "HTTP/1.1 200"), (40 * 1024, "HTTP/1.1 431")] {
        let mut stream = connect_from(60, to).await.unwrap();
        let _ = stream.write_all(&head(padding)).await;
        let line = status_line(&mut stream).await.unwrap_or_default();
        assert!(
            line.starts_with(expected),
            "{padding} bytes of headers: {line:?}"
        );
    }
}
