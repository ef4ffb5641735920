//! Work that must still happen when a request's future is dropped half-way (the
//! visitor closed the page): it is spawned on the runtime, unless disarmed first.

use std::future::Future;
use std::pin::Pin;

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
        if let (Some(task), Ok(runtime)) = (self.task.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(task);
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
