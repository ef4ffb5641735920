//! The server's own limits, on a real socket: clients that trickle their headers
//! are dropped after the header timeout while others are served, and the
//! connection cap makes extra clients wait rather than exhaust the process.

use crate::support::app::{app_router, local_components};
use lofianime::server::per_address::AddressCap;
use lofianime::server::serve::{serve, Limits};
use lofianime::server::settings::Settings;
use lofianime_domain::testing::FakeModel;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Limits with `header_read_timeout` and `max_connections`; bodies get 10 s
/// and one address may hold every slot.
fn limits(header_read_timeout: Duration, max_connections: usize) -> Limits {
    Limits {
        header_read_timeout,
        body_read_timeout: Duration::from_secs(10),
        max_connections,
        per_address: AddressCap::new(max_connections, Vec::new()),
    }
}

async fn start(limits: Limits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let app = app_router(
        &Settings::default(),
        local_components(Arc::new(FakeModel::default())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// A plain GET over a fresh connection; the status line it got.
async fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// True once the server closed the connection (a read returns 0 or fails).
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buffer = [0u8; 256];
    matches!(
        tokio::time::timeout(bound, stream.read(&mut buffer)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn trickling_clients_are_dropped_after_the_header_timeout_while_others_are_served() {
    let (addr, _stop) = start(limits(Duration::from_secs(1), 100)).await;
    let mut tricklers = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        tricklers.push(stream);
    }
    let started = Instant::now();
    // One header line every 200 ms, never the blank line that ends them.
    let trickle = tokio::spawn(async move {
        for n in 0..20 {
            for stream in &mut tricklers {
                let _ = stream
                    .write_all(format!("X-Slow-{n}: 1\r\n").as_bytes())
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tricklers
    });
    // Meanwhile an ordinary visitor is served.
    assert!(get(&addr, "/api/remaining").await.contains("200"));
    let mut tricklers = trickle.await.unwrap();
    for stream in &mut tricklers {
        assert!(
            closed_within(stream, Duration::from_secs(2)).await,
            "a trickler is still open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_connection_cap_makes_extra_clients_wait_their_turn() {
    let (addr, _stop) = start(limits(Duration::from_secs(1), 2)).await;
    // Two clients hold every slot without sending anything.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), get(&addr, "/api/remaining"))
        .await
        .expect("served once the idle connections timed out");
    assert!(status.contains("200"), "{status}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the third client waited for a slot ({:?})",
        started.elapsed()
    );
    for stream in &mut idle {
        assert!(closed_within(stream, Duration::from_secs(1)).await);
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (addr, _stop) = start(limits(Duration::from_secs(1), 10)).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let request = format!("GET /api/remaining HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then left idle: closed once the header timeout passes.
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
}

/// A connection to `addr` from the loopback address `from` (127.0.0.0/8 is
/// all loopback on Linux: each is another client address).
async fn connect_from(from: &str, addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_with_a_thousand_stalled_bodies_leaves_everyone_else_served() {
    let (addr, _stop) = start(Limits {
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        max_connections: 256,
        per_address: AddressCap::new(64, Vec::new()),
    })
    .await;
    // Headers promising 60,000 bytes of body, one byte of it, then nothing.
    let mut stalled = Vec::new();
    for _ in 0..1000 {
        let mut stream = connect_from("127.0.0.2", &addr).await;
        let head = "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\np";
        let _ = stream.write_all(head.as_bytes()).await;
        stalled.push(stream);
    }
    // The admitted ones are held open, waiting for their bodies.
    let mut first = [0u8; 600];
    let held = tokio::time::timeout(Duration::from_millis(200), stalled[0].read(&mut first)).await;
    assert!(
        held.is_err(),
        "answered: {:?}",
        String::from_utf8_lossy(&first)
    );
    // Another address is served at once.
    let started = Instant::now();
    let mut other = connect_from("127.0.0.3", &addr).await;
    let request =
        format!("GET /api/remaining HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    other.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), other.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let waited = started.elapsed();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        waited < Duration::from_secs(1),
        "another address waited {waited:?}"
    );
    // Every stalled connection is closed: past the cap at once, the others at
    // the body deadline.
    let mut still_open = 0;
    for stream in &mut stalled {
        let mut rest = Vec::new();
        if tokio::time::timeout(Duration::from_secs(12), stream.read_to_end(&mut rest))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "stalled connections left open");
}
