//! The HTTP server around the router, with the limits a public endpoint needs:
//! a cap on open connections (more wait in the listen queue) and on those of
//! one client address, bounds on how long a client may take to send a
//! request's headers (which also closes keep-alive connections left idle that
//! long) and its body, and a graceful shutdown that lets requests in flight
//! finish. Written on hyper-util's connection builder
//! because `axum::serve` exposes neither limit.

use crate::server::per_address::{AddressCap, BodyDeadline};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a client may take to send a request's headers (and longest an
    /// idle keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request's body, from its headers on.
    pub body_read_timeout: Duration,
    /// Most connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Most connections one client address holds at once (trusted proxies
    /// exempt); further ones are closed at once.
    pub per_address: AddressCap,
}

/// What happens once the shutdown signal came: `on_signal` right away (after
/// the listener is closed), then the requests in flight get `grace` to finish;
/// past it `on_expiry` runs (it stops what is left) and they get
/// `after_expiry` more to answer.
pub struct Draining {
    pub grace: Duration,
    pub after_expiry: Duration,
    pub on_signal: Box<dyn FnOnce() + Send>,
    pub on_expiry: Box<dyn FnOnce() + Send>,
    /// Work in flight besides requests (generations whose page left),
    /// waited for like them.
    pub tasks: tokio_util::task::TaskTracker,
}

impl Draining {
    /// Waits for the requests in flight however long they take.
    pub fn unbounded() -> Self {
        Self {
            grace: Duration::MAX,
            after_expiry: Duration::ZERO,
            on_signal: Box::new(|| {}),
            on_expiry: Box::new(|| {}),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the
/// connections in flight to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve_until(listener, router, limits, shutdown, Draining::unbounded()).await;
}

/// [`serve`], with a bound on the wait for requests in flight ([`Draining`]).
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    draining: Draining,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // One address holds at most its share of the slots.
        let Some(admitted) = limits.per_address.admit(peer.ip()) else {
            tracing::debug!(client = %peer.ip(), "closed a connection past the cap for its address");
            continue;
        };
        // Responses leave as they are written: with Nagle's algorithm a
        // streamed body's second write waited for the client's delayed ACK
        // (40 ms on Linux; measured on an image's request right after its
        // generation by `cargo bench --bench generation`).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let request =
                request.map(|body| axum::body::Body::new(BodyDeadline::new(body, body_timeout)));
            router.clone().oneshot(request)
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            serve_connection(&builder, stream, service, timeout, watcher).await;
            drop((slot, admitted));
        });
    }
    drop(listener);
    drain(graceful, draining).await;
}

/// Serves one connection under `watcher`. A client that sends nothing at all
/// within `timeout` is closed too (hyper's timer starts only with the first
/// byte of a request).
async fn serve_connection<S>(
    builder: &Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    service: S,
    timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%error, "a connection ended with an error");
    }
}

/// After the signal: connections in flight get the grace period, then the
/// generations still running are stopped and get a little longer to answer.
async fn drain(graceful: GracefulShutdown, draining: Draining) {
    (draining.on_signal)();
    let tasks = draining.tasks.clone();
    tasks.close();
    let in_flight = async move {
        graceful.shutdown().await;
        tasks.wait().await;
    };
    tokio::pin!(in_flight);
    let grace = tokio::time::sleep(draining.grace.min(Duration::from_secs(365 * 86_400)));
    tokio::select! {
        () = &mut in_flight => return,
        () = grace => {}
    }
    (draining.on_expiry)();
    if tokio::time::timeout(draining.after_expiry, in_flight)
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open when the server stopped");
    }
}
