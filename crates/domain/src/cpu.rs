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

impl Pool {
    fn all_busy(&self) -> bool {
        self.permits.available_permits() == 0
    }

    async fn worker(&self) -> Worker {
        Worker(
            self.permits
                .clone()
                .acquire_owned()
                .await
                .expect("the CPU workers' semaphore is never closed"),
        )
    }

    async fn run_with<T: Send + 'static>(
        &self,
        worker: Worker,
        task: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, TaskFailed> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let Worker(permit) = worker;
        self.threads.spawn(move || {
            let done = task();
            // Free before the answer: whoever gets it finds the worker
            // free again. A panic frees it while unwinding.
            drop(permit);
            let _ = answer.send(done);
        });
        answered.await.map_err(|_| TaskFailed)
    }
}

/// True when a task would have to wait for a worker now.
pub fn all_busy() -> bool {
    pool().all_busy()
}

/// Waits for a free CPU worker (dropping the future leaves the queue).
pub async fn worker() -> Worker {
    pool().worker().await
}

/// Runs `task` on a CPU thread once a worker is free.
pub async fn run<T: Send + 'static>(
    task: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailed> {
    let worker = worker().await;
    run_with(worker, task).await
}

/// Runs `task` on a CPU thread with the `worker` already held (released when
/// the task ends, before its answer).
pub async fn run_with<T: Send + 'static>(
    worker: Worker,
    task: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailed> {
    pool().run_with(worker, task).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_named_cpu_threads_and_a_panic_fails_only_its_own() {
        // A pool of its own with one worker: other tests use the process's.
        let pool = pool_of(1);
        let name = pool
            .run_with(pool.worker().await, || {
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("lofianime-cpu-0"));
        let failed = pool
            .run_with(pool.worker().await, || -> u32 {
                panic!("a broken picture")
            })
            .await;
        assert!(failed.is_err());
        // The one worker was given back: the next task gets it.
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            pool.run_with(pool.worker().await, || 7).await
        })
        .await
        .expect("the panicked task's worker was given back");
        assert_eq!(next.unwrap(), 7, "the pool goes on");
        assert!(!pool.all_busy(), "a task's worker is free once it answered");
    }
}
