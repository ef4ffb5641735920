//! Work that must still happen when a request's future is dropped half-way (the
//! visitor closed the page, or the server is stopping): it is spawned on the
//! runtime, unless disarmed first, and counted, so a stopping server can wait
//! for it ([`cleanups_done`]) before it exits: a model run cancelled at its
//! provider, credits given back.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Clean-up tasks spawned and not finished yet.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Spawns clean-up work on the current runtime, counted until it ends (also
/// when it panics). Without a runtime, there is nothing to run it on.
pub fn spawn_cleanup(task: impl Future<Output = ()> + Send + 'static) -> bool {
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            PENDING.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    PENDING.fetch_add(1, Ordering::SeqCst);
    let counted = Counted;
    runtime.spawn(async move {
        let _counted = counted;
        task.await;
    });
    true
}

/// Waits until every clean-up task has finished, at most `bound`; true if they did.
pub async fn cleanups_done(bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    while PENDING.load(Ordering::SeqCst) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Spawns `task` when dropped, unless [`SpawnOnDrop::disarm`] was called.
pub struct SpawnOnDrop {
    task: Option<Task>,
}

impl SpawnOnDrop {
    pub fn new(task: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            task: Some(Box::pin(task)),
        }
    }

    /// The work is no longer needed (the flow finished or cleaned up itself).
    pub fn disarm(&mut self) {
        self.task = None;
    }
}

impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            spawn_cleanup(task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    async fn dropped(disarm: bool) -> bool {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let mut guard = SpawnOnDrop::new(async move { flag.store(true, Ordering::SeqCst) });
        if disarm {
            guard.disarm();
        }
        drop(guard);
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        ran.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn an_armed_guard_runs_its_task_when_dropped() {
        assert!(dropped(false).await);
    }

    #[tokio::test]
    async fn a_disarmed_guard_does_nothing() {
        assert!(!dropped(true).await);
    }
}
