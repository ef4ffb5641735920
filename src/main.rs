//! The server binary: logging, then the app. Everything else lives in the library.

#[cfg(feature = "ssr")]
fn main() -> std::process::ExitCode {
    // The async threads are named apart from the CPU workers
    // (`lofianime-cpu-N`), so `top -H` and profiles tell waiting from work.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name_fn(|| {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("lofianime-io-{n}")
        })
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lofianime could not start its runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        give_free_memory_back();
        lofianime::server::telemetry::init();
        match lofianime::server::startup::run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("lofianime could not start: {error}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

/// Images are megabytes each, and glibc's allocator kept what a burst of
/// generations freed: one arena per busy thread, each holding its share (an
/// instance stayed at 120-340 MiB after a 10 s burst). Two arenas, and free
/// memory handed back to the system once a second (`malloc_trim`, a few
/// microseconds when there is nothing to return), keep it near the working set
/// without costing throughput (`cargo bench --bench load` measures both).
#[cfg(feature = "ssr")]
fn give_free_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt and malloc_trim only tune the allocator and return
        // free pages; both take the allocator's own locks.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        tokio::spawn(async {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        });
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser side starts from `lofianime::hydrate` in the WASM bundle.
}
