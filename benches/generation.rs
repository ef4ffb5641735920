//! What the generation path itself costs the app, on the real binary with a
//! Replicate stand-in (tests/it/support) whose model answers at once:
//!
//! 1. **1024 px, one at a time**: the stand-in's output is a 1024 px PNG with
//!    film grain (about 2.5 MB, heavier than SDXL's usual 1.5–2 MB), served as
//!    a file as replicate.delivery serves outputs. 30 generations from the
//!    page (its server function, whose answer carries the `srcset`), then 30
//!    through `/api/ai` (the image's page gives the `srcset`), each followed
//!    by its first view as the page shows it (three parts of each, in turn,
//!    after a first part through `/api/ai`, printed too: the first part of a
//!    run paid the most for writing its files): the candidate a 1×-density
//!    browser picks for the 704 px column, and the thumbnail the list of
//!    recent images shows. App CPU per generation (utime + stime of the
//!    process, from /proc) with its first view; the image pages' own CPU is
//!    measured apart (the same pages again) and taken off. Also the answer's
//!    latency, the time to the page's variant downloaded, and the bytes a 1×
//!    and a 2× visitor download to see the result.
//! 2. **256 px under load**: 32 clients post to `/api/ai` for 10 s, with
//!    grainy and with smooth pictures; generations per second and app CPU
//!    per generation.
//!
//! After each part: which of the app's threads did the CPU work. Prints
//! figures; asserts nothing. `BENCH_ONE_AT_A_TIME=1` stops after part 1.
//!
//!     cargo bench --features ssr --bench generation

#[path = "support/burst.rs"]
mod burst;
#[path = "support/grain.rs"]
mod grain;
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::process::AppProcess;
use support::replicate_stand_in::{Model, ReplicateStandIn};

/// Clock ticks per second of /proc's CPU times (Linux's USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;
/// The page's result column, in CSS pixels (44rem).
const COLUMN_PX: u32 = 704;

/// A `size` px PNG of soft gradients under film grain.
fn grainy_png(size: u32, grain: i32) -> Vec<u8> {
    grain::png_of(&grain::grainy(size, grain))
}

/// utime + stime of a /proc `stat` line, in seconds.
fn cpu_of_stat(stat: &str) -> f64 {
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |n: usize| {
        fields
            .get(n)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of stat; the first after the name is field 3.
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
}

/// stime alone (the kernel's part: copying files into the page cache,
/// sockets), in seconds.
fn kernel_of_stat(stat: &str) -> f64 {
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let stime = after_name
        .split_whitespace()
        .nth(12)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    stime as f64 / TICKS_PER_SEC
}

/// Minor page faults so far (fresh memory touched: each costs the kernel).
fn process_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .nth(7)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Bytes the process has written through `write` and its kind so far
/// (`wchar` of /proc's `io`: files and sockets).
fn process_written(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn process_kernel_cpu(pid: u32) -> f64 {
    kernel_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

fn process_cpu(pid: u32) -> f64 {
    cpu_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds by thread name (trailing digits dropped: `tokio-rt-worker`,
/// `lofianime-cpu-`), busiest first.
fn threads_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("?", |(name, _)| name)
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_owned();
        *by_name.entry(name).or_default() += cpu_of_stat(&stat);
    }
    let mut sorted: Vec<(String, f64)> = by_name.into_iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    sorted
}

fn print_threads(pid: u32) {
    let threads = threads_cpu(pid);
    let shown: Vec<String> = threads
        .iter()
        .filter(|(_, secs)| *secs >= 0.01)
        .map(|(name, secs)| format!("{name}* {:.2} s", secs))
        .collect();
    println!("  CPU by thread: {}", shown.join(", "));
}

/// `(url, width)` candidates of the result's `srcset` on an image page.
fn srcset_of(html: &str) -> Vec<(String, u32)> {
    let Some(figure) = html.find("class=\"result\"") else {
        return Vec::new();
    };
    let Some(start) = html[figure..].find("srcset=\"") else {
        return Vec::new();
    };
    let rest = &html[figure + start + 8..];
    candidates_of(&rest[..rest.find('"').unwrap_or(0)].replace("&amp;", "&"))
}

/// What a browser at `density` picks for the column: the narrowest candidate
/// at least as wide as the column's device pixels, else the widest.
fn pick(candidates: &[(String, u32)], density: u32) -> Option<&(String, u32)> {
    let need = COLUMN_PX * density;
    candidates
        .iter()
        .filter(|(_, width)| *width >= need)
        .min_by_key(|(_, width)| *width)
        .or_else(|| candidates.iter().max_by_key(|(_, width)| *width))
}

fn app_env(stand_in: &ReplicateStandIn) -> Vec<(&'static str, String)> {
    vec![
        ("REPLICATE_API_TOKEN", "r8_bench_token".to_owned()),
        ("REPLICATE_BASE_URL", stand_in.base_url.clone()),
        ("LOFIANIME_RATELIMIT__LIMIT", "1000000".to_owned()),
        ("LOFIANIME_RATELIMIT__GLOBAL_LIMIT", "0".to_owned()),
        // The app's own cost is measured, not Replicate's account limits
        // (600 creates a minute would cap the burst at ~60 generations/s).
        ("LOFIANIME_MODEL__BUDGET_CREATES", "1000000".to_owned()),
        ("LOFIANIME_MODEL__BUDGET_CALLS", "1000000".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        (
            "GLIBC_TUNABLES",
            std::env::var("BENCH_TUNABLES").unwrap_or_default(),
        ),
    ]
}

/// `srcset` candidates of a `srcset` attribute's value.
fn candidates_of(list: &str) -> Vec<(String, u32)> {
    list.split(',')
        .filter_map(|candidate| {
            let (url, width) = candidate.trim().rsplit_once(' ')?;
            Some((url.to_owned(), width.trim_end_matches('w').parse().ok()?))
        })
        .collect()
}

/// How the generations are asked for: the JSON API (`/api/ai`, then the
/// image's page), or the page's own server function (its answer carries the
/// `srcset`).
#[derive(Clone, Copy, PartialEq)]
enum Asked {
    Api,
    Page,
}

/// One part: `RUNS` generations in a fresh app process; prints its figures
/// and returns its app CPU per generation, in ms.
async fn one_at_a_time(asked: Asked, first: bool) -> f64 {
    let png = grainy_png(1024, 13);
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::ZERO,
        run: Duration::ZERO,
    })
    .await;
    stand_in.serve_output(png.clone());
    let app = AppProcess::start(&app_env(&stand_in)).await;
    let client = reqwest::Client::new();
    const RUNS: usize = 30;
    let mut ids = Vec::new();
    let mut latencies = Vec::new();
    let mut shown = Vec::new();
    let mut fetched = Vec::new();
    let mut bytes_1x = 0;
    let mut bytes_2x = 0;
    let cpu_before = process_cpu(app.pid());
    let kernel_before = process_kernel_cpu(app.pid());
    let faults_before = process_faults(app.pid());
    let written_before = process_written(app.pid());
    for i in 0..RUNS {
        let started = Instant::now();
        let prompt = format!("a grainy harbour {i}");
        let (id, candidates) = if asked == Asked::Api {
            let answer: Vec<String> =
                burst::answer_of(burst::generation(&client, &app.url("/api/ai"), &prompt)).await;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            let id: String = answer[0]
                .rsplit('/')
                .next()
                .unwrap()
                .chars()
                .take(32)
                .collect();
            let html = app.get_text(&format!("/i/{id}")).await;
            (id, srcset_of(&html))
        } else {
            let answer: serde_json::Value = burst::answer_of(burst::generation(
                &client,
                &app.url("/api/generate"),
                &prompt,
            ))
            .await;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            let image = &answer["image"];
            let id = image["id"].as_str().expect("the image's id").to_owned();
            (
                id,
                candidates_of(image["srcset"].as_str().unwrap_or_default()),
            )
        };
        let (url, _) = pick(&candidates, 1).expect("a srcset on the image page");
        let asked_at = Instant::now();
        let first_view = client.get(app.url(url)).send().await.unwrap();
        assert!(first_view.status().is_success(), "{url}");
        bytes_1x = first_view.bytes().await.unwrap().len();
        shown.push(started.elapsed().as_secs_f64() * 1000.0);
        fetched.push(asked_at.elapsed().as_secs_f64() * 1000.0);
        // The page's list of recent images shows its thumbnail too.
        let thumb = client
            .get(app.url(&format!("/images/{id}-thumb.webp")))
            .send()
            .await
            .unwrap();
        assert!(thumb.status().is_success(), "{id}'s thumbnail");
        thumb.bytes().await.unwrap();
        ids.push((id, candidates));
    }
    let with_pages = process_cpu(app.pid()) - cpu_before;
    let kernel = process_kernel_cpu(app.pid()) - kernel_before;
    let faults = process_faults(app.pid()) - faults_before;
    let written = process_written(app.pid()) - written_before;
    // The image pages alone, again (they are not image work).
    let before_pages = process_cpu(app.pid());
    if asked == Asked::Api {
        for (id, _) in &ids {
            app.get_text(&format!("/i/{id}")).await;
        }
    }
    let pages = process_cpu(app.pid()) - before_pages;
    // A 2× visitor's view of the last one (after the measurement).
    if let Some((_, candidates)) = ids.last() {
        if let Some((url, _)) = pick(candidates, 2) {
            bytes_2x = client
                .get(app.url(url))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len();
        }
    }
    latencies.sort_by(f64::total_cmp);
    shown.sort_by(f64::total_cmp);
    fetched.sort_by(f64::total_cmp);
    println!(
        "{}1024 px, one at a time, {} ({} B grainy PNG, {RUNS} generations): app CPU per generation with its first view (page's variant and thumbnail) {:.1} ms, {:.1} ms of it in the kernel ({} page faults, {} B written to files and sockets) (image pages {:.1} ms each, taken off); answer p50 {:.0} ms, to the page's variant downloaded p50 {:.0} ms (its request alone {:.0} ms); a 1x visitor downloads {} B, a 2x visitor {} B; srcset {:?}",
        if first {
            "(first part, fresh page cache) "
        } else {
            ""
        },
        if asked == Asked::Api {
            "through /api/ai"
        } else {
            "from the page"
        },
        png.len(),
        (with_pages - pages) * 1000.0 / RUNS as f64,
        kernel * 1000.0 / RUNS as f64,
        faults / RUNS as u64,
        written / RUNS as u64,
        pages * 1000.0 / RUNS as f64,
        latencies[RUNS / 2],
        shown[RUNS / 2],
        fetched[RUNS / 2],
        bytes_1x,
        bytes_2x,
        ids.last()
            .map(|(_, c)| c.iter().map(|(_, w)| *w).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    print_threads(app.pid());
    (with_pages - pages) * 1000.0 / RUNS as f64
}

/// The median and range of `figures`.
fn spread(mut figures: Vec<f64>) -> String {
    figures.sort_by(f64::total_cmp);
    match (figures.first(), figures.last()) {
        (Some(low), Some(high)) => format!(
            "median {:.1} ms ({low:.1}–{high:.1})",
            figures[figures.len() / 2]
        ),
        _ => "none".to_owned(),
    }
}

async fn under_load(grain: i32) {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::ZERO,
        run: Duration::ZERO,
    })
    .await;
    stand_in.serve_output(grainy_png(256, grain));
    let app = AppProcess::start(&app_env(&stand_in)).await;
    let length = Duration::from_secs(10);
    let cpu_before = process_cpu(app.pid());
    let made = burst::burst(app.url("/api/ai"), 32, length).await;
    let cpu = process_cpu(app.pid()) - cpu_before;
    let done = made.done;
    println!(
        "256 px (grain {grain}), 32 clients for 10 s: {:.1} generations/s ({} failed), app CPU per generation {:.2} ms",
        done as f64 / length.as_secs_f64(),
        made.failed,
        cpu * 1000.0 / done.max(1) as f64,
    );
    print_threads(app.pid());
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // The kernel's share (copying the ~2.8 MB each generation writes
        // into the page cache) varies 2–20 ms per generation on this VM:
        // guest memory not touched lately costs ~5x. The first part of a run
        // always paid the most: it is printed, not counted.
        one_at_a_time(Asked::Api, true).await;
        // This machine's CPU time for the same work varies by a fifth from
        // minute to minute (other tenants): three parts of each path, taken
        // in turn, and their median.
        let (mut page, mut api) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            page.push(one_at_a_time(Asked::Page, false).await);
            api.push(one_at_a_time(Asked::Api, false).await);
        }
        println!(
            "1024 px, app CPU per generation with its first view, three parts each: from the page {}, through /api/ai {}",
            spread(page),
            spread(api)
        );
        if std::env::var_os("BENCH_ONE_AT_A_TIME").is_some() {
            return;
        }
        under_load(13).await;
        // Smooth pictures encode several times faster than grainy ones.
        under_load(0).await;
    });
}
