//! Compatibility with the real `@upstash/ratelimit@2.0.8` (npm): the Node library
//! and the Rust limiter take turns on the same Redis (through the Upstash REST
//! bridge) and must agree on every count, remaining and reset.

use crate::support::redis_server::RedisServer;
use crate::support::upstash_bridge::Bridge;
use lofianime_domain::SystemClock;
use lofianime_domain::{Algorithm, RateLimiter, DEFAULT_PREFIX};
use lofianime_domain::{UpstashRestStore, UpstashSettings};
use secrecy::SecretString;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "compat-token";
const DAY_MS: u64 = 86_400_000;

struct Node<'a> {
    bridge: &'a Bridge,
    algorithm: &'static str,
    identifier: String,
}

impl Node<'_> {
    /// Runs `tests/compat/ratelimit.mjs` and parses what it printed. The process
    /// is awaited off the async workers, which keep serving the bridge meanwhile.
    async fn call(&self, operation: &str, rate: Option<i64>) -> Value {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
        assert!(
            dir.join("node_modules/@upstash/ratelimit").exists(),
            "the npm packages are missing: run ./scripts/setup"
        );
        let mut command = Command::new("node");
        command
            .current_dir(&dir)
            .arg("ratelimit.mjs")
            .arg(operation)
            .arg(self.algorithm)
            .arg(&self.identifier)
            .env("UPSTASH_REDIS_REST_URL", &self.bridge.url)
            .env("UPSTASH_REDIS_REST_TOKEN", TOKEN)
            .env("UPSTASH_DISABLE_TELEMETRY", "1");
        if let Some(rate) = rate {
            command.arg(rate.to_string());
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the node process is awaited")
            .expect("node must be installed");
        assert!(
            output.status.success(),
            "node failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON from the node script")
    }

    async fn limit(&self, rate: i64) -> Value {
        self.call("limit", Some(rate)).await
    }

    async fn remaining(&self) -> Value {
        self.call("remaining", None).await
    }
}

async fn rust_limiter(bridge: &Bridge, algorithm: Algorithm) -> RateLimiter {
    let store = UpstashRestStore::connect(UpstashSettings {
        url: bridge.url.clone(),
        token: SecretString::from(TOKEN),
        timeout: Duration::from_secs(2),
        key_locking: false,
    })
    .await
    .expect("the bridge answers");
    RateLimiter::new(
        Arc::new(store),
        algorithm,
        DEFAULT_PREFIX,
        Arc::new(SystemClock),
    )
}

/// The shared script: Node spends 2 of 5, Rust sees 3 and spends 1, Node sees 2
/// and spends 1, Rust spends the last, both are refused, a refund from Node is
/// seen by Rust, and a reset from Rust is seen by Node.
async fn take_turns(algorithm_name: &'static str, algorithm: Algorithm) {
    let redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), TOKEN).await;
    let rust = rust_limiter(&bridge, algorithm).await;
    let node = Node {
        bridge: &bridge,
        algorithm: algorithm_name,
        identifier: format!("compat-{algorithm_name}"),
    };
    let id = node.identifier.clone();

    let first = node.limit(1).await;
    assert_eq!(first["success"], true);
    assert_eq!(first["remaining"], 4);
    let second = node.limit(1).await;
    assert_eq!(second["remaining"], 3);
    let reset = second["reset"].as_u64().unwrap();

    let seen = rust.remaining(&id).await.unwrap();
    assert_eq!(
        (seen.remaining, seen.limit, seen.reset_ms),
        (3, 5, reset),
        "{algorithm_name}"
    );
    let spent = rust.limit(&id, 1).await.unwrap();
    assert!(spent.success);
    assert_eq!(
        (spent.remaining, spent.reset_ms),
        (2, reset),
        "{algorithm_name}"
    );

    let node_sees = node.remaining().await;
    assert_eq!(node_sees["remaining"], 2, "{algorithm_name}: {node_sees}");
    assert_eq!(
        node_sees["reset"].as_u64(),
        Some(reset),
        "{algorithm_name}: {node_sees}"
    );
    assert_eq!(node.limit(1).await["remaining"], 1);

    let last = rust.limit(&id, 1).await.unwrap();
    assert_eq!(
        (last.success, last.remaining),
        (true, 0),
        "{algorithm_name}"
    );
    let refused_by_rust = rust.limit(&id, 1).await.unwrap();
    assert!(!refused_by_rust.success, "{algorithm_name}");
    let refused_by_node = node.limit(1).await;
    assert_eq!(
        refused_by_node["success"], false,
        "{algorithm_name}: {refused_by_node}"
    );
    assert_eq!(refused_by_node["remaining"], 0);
    assert_eq!(
        refused_by_node["reset"].as_u64(),
        Some(refused_by_rust.reset_ms),
        "{algorithm_name}"
    );

    // Both refused calls counted on the windows (the JS scripts count rejections
    // for the fixed window only); the readings still agree.
    let rust_view = rust.remaining(&id).await.unwrap();
    let node_view = node.remaining().await;
    assert_eq!(
        node_view["remaining"].as_u64(),
        Some(rust_view.remaining),
        "{algorithm_name}"
    );
    assert_eq!(
        node_view["reset"].as_u64(),
        Some(rust_view.reset_ms),
        "{algorithm_name}"
    );

    rust.reset(&id).await.unwrap();
    assert_eq!(
        node.remaining().await["remaining"],
        5,
        "{algorithm_name}: a Rust reset is seen by Node"
    );
    node.limit(1).await;
    node.limit(1).await;
    node.limit(-1).await;
    assert_eq!(
        rust.remaining(&id).await.unwrap().remaining,
        4,
        "{algorithm_name}: a Node refund is seen by Rust"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_counts_are_shared_with_the_js_library() {
    take_turns(
        "fixed",
        Algorithm::FixedWindow {
            limit: 5,
            window_ms: DAY_MS,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_counts_are_shared_with_the_js_library() {
    take_turns(
        "sliding",
        Algorithm::SlidingWindow {
            limit: 5,
            window_ms: DAY_MS,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_bucket_counts_are_shared_with_the_js_library() {
    take_turns(
        "bucket",
        Algorithm::TokenBucket {
            refill_rate: 1,
            interval_ms: DAY_MS,
            max_tokens: 5,
        },
    )
    .await;
}
