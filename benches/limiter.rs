//! Limiter benchmark: decisions per second and latency percentiles for each store
//! (memory, a real redis-server over RESP, the same Redis through the Upstash
//! REST bridge) at 1, 16 and 64 concurrent callers on loopback, and the Redis
//! commands one decision costs. Prints a table; asserts nothing.
//!
//!     cargo bench --features ssr --bench limiter

#[path = "../tests/it/support/mod.rs"]
mod support;

use lofianime_domain::SystemClock;
use lofianime_domain::{Algorithm, LimiterStore, RateLimiter, DEFAULT_PREFIX};
use lofianime_domain::{MemoryStore, RedisStore, UpstashRestStore, UpstashSettings};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;
use support::upstash_bridge::Bridge;

const TOKEN: &str = "bench";
const DAY_MS: u64 = 86_400_000;
const CONCURRENCY: [usize; 3] = [1, 16, 64];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn open(kind: &str, redis: &RedisServer, bridge: &Bridge) -> Arc<dyn LimiterStore> {
    match kind {
        "memory" => Arc::new(MemoryStore::new(Arc::new(SystemClock))),
        "redis" => Arc::new(
            RedisStore::connect(&redis.url(), Duration::from_secs(2))
                .await
                .unwrap(),
        ),
        _ => Arc::new(
            UpstashRestStore::connect(UpstashSettings {
                url: bridge.url.clone(),
                token: SecretString::from(TOKEN),
                timeout: Duration::from_secs(2),
                key_locking: false,
            })
            .await
            .unwrap(),
        ),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn run() {
    let redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), TOKEN).await;
    println!(
        "Limiter benchmark: fixed window, every decision allowed, loopback, {} cores",
        num_cpus()
    );
    println!();
    println!("| store | callers | decisions | decisions/s | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, decisions) in [
        ("memory", 200_000usize),
        ("redis", 20_000),
        ("upstash-rest", 6_000),
    ] {
        for callers in CONCURRENCY {
            let store = open(kind, &redis, &bridge).await;
            // Limit high enough that nothing is refused: this measures the store path.
            let limiter = Arc::new(RateLimiter::new(
                store,
                Algorithm::FixedWindow {
                    limit: u64::MAX / 4,
                    window_ms: DAY_MS,
                },
                DEFAULT_PREFIX,
                Arc::new(SystemClock),
            ));
            // Warm-up: the connection and the script cache.
            for i in 0..callers {
                limiter
                    .limit(&format!("bench-{kind}-{callers}-{i}"), 1)
                    .await
                    .unwrap();
            }
            let per_caller = decisions / callers;
            let started = Instant::now();
            let tasks: Vec<_> = (0..callers)
                .map(|i| {
                    let limiter = limiter.clone();
                    let id = format!("bench-{kind}-{callers}-{i}");
                    tokio::spawn(async move {
                        let mut latencies = Vec::with_capacity(per_caller);
                        for _ in 0..per_caller {
                            let t = Instant::now();
                            limiter.limit(&id, 1).await.unwrap();
                            latencies.push(t.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let mut latencies = Vec::with_capacity(per_caller * callers);
            for task in tasks {
                latencies.extend(task.await.unwrap());
            }
            let wall = started.elapsed();
            latencies.sort();
            println!(
                "| {kind} | {callers} | {} | {:.0} | {:.1} µs | {:.1} µs |",
                latencies.len(),
                latencies.len() as f64 / wall.as_secs_f64(),
                percentile(&latencies, 0.50).as_secs_f64() * 1e6,
                percentile(&latencies, 0.99).as_secs_f64() * 1e6,
            );
        }
    }

    println!();
    println!("Redis commands per decision (INFO commandstats; commands run inside the script not counted):");
    println!();
    println!("| store | allowed: EVALSHA/EVAL per decision | HTTP requests per decision | cache-blocked: commands per decision |");
    println!("|---|---:|---:|---:|");
    for kind in ["redis", "upstash-rest"] {
        let store = open(kind, &redis, &bridge).await;
        let limiter = RateLimiter::new(
            store,
            Algorithm::FixedWindow {
                limit: 1000,
                window_ms: DAY_MS,
            },
            DEFAULT_PREFIX,
            Arc::new(SystemClock),
        );
        let id = format!("count-{kind}");
        limiter.limit(&id, 1).await.unwrap();
        let (evalsha, eval, requests) = (
            redis.command_calls("evalsha"),
            redis.command_calls("eval"),
            bridge.requests(),
        );
        let allowed = 999;
        for _ in 0..allowed {
            assert!(limiter.limit(&id, 1).await.unwrap().success);
        }
        let scripts = redis.command_calls("evalsha") - evalsha + redis.command_calls("eval") - eval;
        let http = if kind == "redis" {
            "–".to_owned()
        } else {
            format!(
                "{:.2}",
                (bridge.requests() - requests) as f64 / allowed as f64
            )
        };
        // Refused once by Redis; from then on the block cache answers.
        assert!(!limiter.limit(&id, 1).await.unwrap().success);
        let before = redis.total_calls();
        let blocked = 1000;
        for _ in 0..blocked {
            limiter.limit(&id, 1).await.unwrap();
        }
        println!(
            "| {kind} | {:.2} | {http} | {:.2} |",
            scripts as f64 / allowed as f64,
            (redis.total_calls() - before) as f64 / blocked as f64,
        );
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
