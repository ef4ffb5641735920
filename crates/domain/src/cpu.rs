//! CPU-bound work (painting offline pictures, decoding, resizing and encoding
//! images) runs on the process's own pool of `workers.cpu` threads, named
//! `lofianime-cpu-N` so `top -H` and profiles show where the time goes, off
//! the async threads (`lofianime-io-N`). A task first waits for a free worker
//! (a semaphore with one permit per thread) in the order it came, so the pool
//! never queues work nobody waits for any more: dropping the wait leaves the
//! line. Unbounded, a burst of generations painted all at once: every
//! painting's buffers alive together, and the allocator's arenas kept the
//! memory after (340 MiB of RSS after 10 s of load).

use std::sync::{Arc, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The process's CPU workers: the permits, and the threads they run on.
struct Pool {
    permits: Arc<Semaphore>,
    threads: rayon::ThreadPool,
}

/// Set once at start-up; the number of cores otherwise.
static POOL: OnceLock<Pool> = OnceLock::new();

/// The number of cores this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn pool_of(workers: usize) -> Pool {
    let workers = workers.max(1);
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|n| format!("lofianime-cpu-{n}"))
        // A task that panics fails its own caller (its answer is never
        // sent); the pool and the process go on.
        .panic_handler(|_| tracing::error!("a CPU task panicked"))
        .build()
        .expect("the CPU worker threads start");
    Pool {
        permits: Arc::new(Semaphore::new(workers)),
        threads,
    }
}

/// Sets how many CPU-bound tasks run at once; only the first call counts
/// (start-up makes it, before any work). False if it was already set.
pub fn configure(workers: usize) -> bool {
    let mut made = false;
    POOL.get_or_init(|| {
        made = true;
        pool_of(workers)
    });
    made
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| pool_of(default_workers()))
}

/// A CPU worker, held while its task runs.
pub struct Worker(OwnedSemaphorePermit);

/// A CPU task that ended without an answer (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("a CPU task failed (it panicked)")]
pub struct TaskFailed;

/// True when a task would have to wait for a worker now.
pub fn all_busy() -> bool {
    pool().permits.available_permits() == 0
}

/// Waits for a free CPU worker (dropping the future leaves the queue).
pub async fn worker() -> Worker {
    Worker(
        pool()
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the CPU workers' semaphore is never closed"),
    )
}

/// Runs `task` on a CPU thread once a worker is free.
pub async fn run<T: Send + 'static>(
    task: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailed> {
    let worker = worker().await;
    run_with(worker, task).await
}

/// Runs `task` on a CPU thread with the `worker` already held (released when
/// the task ends).
pub async fn run_with<T: Send + 'static>(
    worker: Worker,
    task: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailed> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    pool().threads.spawn(move || {
        let Worker(_held) = worker;
        let _ = answer.send(task());
    });
    answered.await.map_err(|_| TaskFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_named_cpu_threads_and_a_panic_fails_only_its_own() {
        let name = run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("lofianime-cpu-")),
            "{name:?}"
        );
        let failed = run(|| -> u32 { panic!("a broken picture") }).await;
        assert!(failed.is_err());
        assert_eq!(run(|| 7).await.unwrap(), 7, "the pool goes on");
        assert!(!all_busy(), "the panicked task's worker was given back");
    }
}
