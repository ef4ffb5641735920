//! Memory and throughput under a burst, on the real server binary: 32 clients
//! generate for 10 s from the page (its server function: the page's variant
//! made before each answer) and through `/api/ai` (variants made when first
//! asked for) (768 px offline pictures, no limits in the way),
//! then the process's resident memory (VmRSS and its peak, VmHWM) is read from
//! /proc, after the burst and again after 5 s idle. Run with the CPU workers
//! bounded (`workers.cpu` = cores, the default) and with 64 (as good as
//! unbounded, as the app was before). Prints figures; asserts nothing.
//!
//! Then the cost of S3 storage to one generation: 30 generations from the
//! page one after another (768 px), median latency with images on the local disk and in a
//! bucket on a local S3 API (`moto_server`, so the network is loopback: a
//! real bucket adds its round trips).
//!
//!     cargo bench --features ssr --bench load

#[path = "support/burst.rs"]
mod burst;
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::process::AppProcess;
use support::s3_server::S3Server;

const CLIENTS: usize = 32;
const BURST: Duration = Duration::from_secs(10);

fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn run(workers: &str, path: &str) {
    let app = AppProcess::start(&[
        ("LOFIANIME_WORKERS__CPU", workers.into()),
        ("LOFIANIME_IMAGE__WIDTH", "768".into()),
        ("LOFIANIME_IMAGE__HEIGHT", "768".into()),
        ("LOFIANIME_RATELIMIT__LIMIT", "1000000".into()),
        ("LOFIANIME_RATELIMIT__GLOBAL_LIMIT", "0".into()),
        ("RUST_LOG", "warn".into()),
    ])
    .await;
    let idle_kib = memory_kib(app.pid(), "VmRSS:");
    let made = burst::burst(app.url(path), CLIENTS, BURST).await;
    let after_kib = memory_kib(app.pid(), "VmRSS:");
    let peak_kib = memory_kib(app.pid(), "VmHWM:");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled_kib = memory_kib(app.pid(), "VmRSS:");
    println!(
        "{path:<13} workers.cpu={workers:>3}: {:>6.1} images/s ({} failed); RSS idle {:>5.1} MiB, after the burst {:>5.1} MiB, 5 s later {:>5.1} MiB, peak {:>5.1} MiB",
        made.done as f64 / BURST.as_secs_f64(),
        made.failed,
        idle_kib as f64 / 1024.0,
        after_kib as f64 / 1024.0,
        settled_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
    );
}

/// Median latency of one generation from the page (its variant made before
/// the answer), one after another.
async fn median_generation_ms(env: &[(&'static str, String)]) -> f64 {
    let mut env = env.to_vec();
    env.extend([
        ("LOFIANIME_IMAGE__WIDTH", "768".to_owned()),
        ("LOFIANIME_IMAGE__HEIGHT", "768".to_owned()),
        ("LOFIANIME_RATELIMIT__LIMIT", "1000".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    let app = AppProcess::start(&env).await;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        let response = burst::generation(
            &client,
            &app.url("/api/generate"),
            &format!("a stored picture {i}"),
        )
        .send()
        .await
        .unwrap();
        assert!(response.status().is_success());
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

async fn storage_cost() {
    let local = median_generation_ms(&[]).await;
    let s3 = S3Server::start();
    s3.create_bucket("bench").await;
    let mut env = s3.env();
    env.push(("LOFIANIME_STORAGE__URL", "s3://bench/images".into()));
    let bucket = median_generation_ms(&env).await;
    println!(
        "one generation (768 px, median of 30): local disk {local:.1} ms, S3 API on loopback {bucket:.1} ms (+{:.1} ms)",
        bucket - local
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        run(&cores.to_string(), "/api/generate").await;
        run(&cores.to_string(), "/api/ai").await;
        run("64", "/api/generate").await;
        storage_cost().await;
    });
}
