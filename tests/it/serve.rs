//! The server's own limits, on a real socket: clients that trickle their headers
//! are dropped after the header timeout while others are served, and the
//! connection cap makes extra clients wait rather than exhaust the process.

use crate::support::app::{app_router, local_components};
use lofianime::server::serve::{serve, Limits};
use lofianime::server::settings::Settings;
use lofianime_domain::testing::FakeModel;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let (addr, _stop) = start(Limits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 100,
    })
    .await;
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
    let (addr, _stop) = start(Limits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 2,
    })
    .await;
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
    let (addr, _stop) = start(Limits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 10,
    })
    .await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let request = format!("GET /api/remaining HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then left idle: closed once the header timeout passes.
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
}
