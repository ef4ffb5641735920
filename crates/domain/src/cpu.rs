//! CPU-bound work (painting offline pictures, encoding image variants) runs on
//! at most `workers.cpu` blocking threads at once; the rest waits its turn in
//! the order it came. Unbounded, a burst of generations painted all at once:
//! every painting's buffers alive together, and the allocator's arenas kept
//! the memory after (340 MiB of RSS after 10 s of load).

use std::sync::{Arc, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The process's CPU workers (set once at start-up; the number of cores
/// otherwise).
static WORKERS: OnceLock<Arc<Semaphore>> = OnceLock::new();

/// The number of cores this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Sets how many CPU-bound tasks run at once; only the first call counts
/// (start-up makes it, before any work). False if it was already set.
pub fn configure(workers: usize) -> bool {
    WORKERS
        .set(Arc::new(Semaphore::new(workers.max(1))))
        .is_ok()
}

fn workers() -> &'static Arc<Semaphore> {
    WORKERS.get_or_init(|| Arc::new(Semaphore::new(default_workers())))
}

/// A CPU worker, held while its task runs.
pub struct Worker(#[allow(dead_code)] OwnedSemaphorePermit);

/// True when a task would have to wait for a worker now.
pub fn all_busy() -> bool {
    workers().available_permits() == 0
}

/// Waits for a free CPU worker (dropping the future leaves the queue).
pub async fn worker() -> Worker {
    Worker(
        workers()
            .clone()
            .acquire_owned()
            .await
            .expect("the CPU workers' semaphore is never closed"),
    )
}

/// Runs `task` on a blocking thread once a CPU worker is free.
pub async fn run<T: Send + 'static>(
    task: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let worker = worker().await;
    run_with(worker, task).await
}

/// Runs `task` on a blocking thread with the `worker` already held.
pub async fn run_with<T: Send + 'static>(
    worker: Worker,
    task: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let _held = worker;
        task()
    })
    .await
}
