//! Generations in flight, on the [`SharedState`]: each has a record (whose it is,
//! its phase, when it started, whether someone asked to cancel it) that any
//! instance can read or mark, while the instance running it reports its phases
//! and checks for a cancel request.

use crate::clock::Clock;
use crate::shared::SharedState;
use crate::store::StoreError;
use crate::visitor::tag as owner_tag;
use lofianime_wire::progress::{JobId, JobProgress, JobState, Phase};
use std::sync::Arc;

/// Keys of job records: `lofianime:job:{id}`.
const KEY_PREFIX: &str = "lofianime:job:";

/// What a cancel request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The generation was running; the instance running it will stop it.
    Requested,
    /// It had already finished, failed or been cancelled.
    AlreadyOver,
    /// No such generation for this visitor (never started, expired, or another
    /// visitor's).
    Unknown,
}

/// The job records.
pub struct JobBoard {
    state: Arc<dyn SharedState>,
    clock: Arc<dyn Clock>,
    /// How long a record lives: longer than any generation may run.
    ttl_ms: u64,
}

fn key(id: &JobId) -> String {
    format!("{KEY_PREFIX}{id}")
}

fn encode(state: JobState) -> [(&'static str, String); 2] {
    let (name, percent) = match state {
        JobState::Running(Phase::Waiting) => ("waiting", None),
        JobState::Running(Phase::Queued) => ("queued", None),
        JobState::Running(Phase::Starting) => ("starting", None),
        JobState::Running(Phase::Generating { percent }) => ("generating", percent),
        JobState::Running(Phase::Saving) => ("saving", None),
        JobState::Finished => ("finished", None),
        JobState::Failed => ("failed", None),
        JobState::Canceled => ("canceled", None),
    };
    [
        ("state", name.to_owned()),
        (
            "percent",
            percent.map(|p| p.to_string()).unwrap_or_default(),
        ),
    ]
}

fn decode(name: &str, percent: &str) -> Option<JobState> {
    Some(match name {
        "waiting" => JobState::Running(Phase::Waiting),
        "queued" => JobState::Running(Phase::Queued),
        "starting" => JobState::Running(Phase::Starting),
        "generating" => JobState::Running(Phase::Generating {
            percent: percent.parse().ok().filter(|p| *p <= 100),
        }),
        "saving" => JobState::Running(Phase::Saving),
        "finished" => JobState::Finished,
        "failed" => JobState::Failed,
        "canceled" => JobState::Canceled,
        _ => return None,
    })
}

impl JobBoard {
    pub fn new(state: Arc<dyn SharedState>, clock: Arc<dyn Clock>, ttl_ms: u64) -> Self {
        Self {
            state,
            clock,
            ttl_ms,
        }
    }

    pub fn describe(&self) -> String {
        self.state.describe()
    }

    /// Opens the record of a new generation for `visitor`. `None` when the id is
    /// taken (ids are random: a repeat is a replayed or forged request).
    pub async fn open(
        self: &Arc<Self>,
        id: &JobId,
        visitor: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.create(id, visitor).await?.then(|| JobRecord {
            board: self.clone(),
            id: id.clone(),
            ended: false,
        }))
    }

    async fn create(&self, id: &JobId, visitor: &str) -> Result<bool, StoreError> {
        let mut fields = vec![
            ("owner", owner_tag(visitor)),
            ("started_ms", self.clock.now_ms().to_string()),
            ("cancel", "0".to_owned()),
        ];
        fields.extend(encode(JobState::Running(Phase::Waiting)));
        self.state.create_hash(&key(id), &fields, self.ttl_ms).await
    }

    /// Records where the generation is (or how it ended).
    pub async fn report(&self, id: &JobId, state: JobState) -> Result<(), StoreError> {
        self.state.update_hash(&key(id), &encode(state)).await?;
        Ok(())
    }

    /// The generation's progress, if it is `visitor`'s.
    pub async fn read(&self, id: &JobId, visitor: &str) -> Result<Option<JobProgress>, StoreError> {
        let record = self.state.read_hash(&key(id)).await?;
        if record.get("owner") != Some(&owner_tag(visitor)) {
            return Ok(None);
        }
        let field = |name: &str| record.get(name).map(String::as_str).unwrap_or_default();
        let Some(state) = decode(field("state"), field("percent")) else {
            return Err(StoreError::Protocol(format!(
                "a job record with an unknown state {:?}",
                field("state")
            )));
        };
        let started_ms: u64 = field("started_ms").parse().unwrap_or(0);
        Ok(Some(JobProgress {
            state,
            elapsed_ms: self.clock.now_ms().saturating_sub(started_ms),
            cancel_requested: field("cancel") == "1",
        }))
    }

    /// Asks the instance running `visitor`'s generation to stop it.
    pub async fn request_cancel(
        &self,
        id: &JobId,
        visitor: &str,
    ) -> Result<CancelOutcome, StoreError> {
        match self.read(id, visitor).await? {
            None => Ok(CancelOutcome::Unknown),
            Some(progress) if !progress.state.is_running() => Ok(CancelOutcome::AlreadyOver),
            Some(_) => {
                self.state
                    .update_hash(&key(id), &[("cancel", "1".to_owned())])
                    .await?;
                Ok(CancelOutcome::Requested)
            }
        }
    }

    /// True once someone asked to cancel the generation.
    pub async fn cancel_requested(&self, id: &JobId) -> Result<bool, StoreError> {
        Ok(self
            .state
            .read_hash(&key(id))
            .await?
            .get("cancel")
            .is_some_and(|flag| flag == "1"))
    }
}

/// The record of one running generation, held by the flow that runs it. Ended
/// with [`JobRecord::end`]; dropped without that (the visitor left, a panic), it
/// marks the generation cancelled.
pub struct JobRecord {
    board: Arc<JobBoard>,
    id: JobId,
    ended: bool,
}

impl JobRecord {
    /// Records where the generation is; a store failure is logged, not fatal
    /// (the generation goes on, only its progress is not seen).
    pub async fn report(&self, state: JobState) {
        if let Err(error) = self.board.report(&self.id, state).await {
            tracing::warn!(%error, job = %self.id, "could not record a generation's progress");
        }
    }

    /// True once someone asked to cancel the generation.
    pub async fn cancel_requested(&self) -> bool {
        match self.board.cancel_requested(&self.id).await {
            Ok(requested) => requested,
            Err(error) => {
                tracing::warn!(%error, job = %self.id, "could not check for a cancel request");
                false
            }
        }
    }

    /// Records how the generation ended.
    pub async fn end(mut self, state: JobState) {
        self.ended = true;
        self.report(state).await;
    }
}

impl Drop for JobRecord {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (board, id) = (self.board.clone(), self.id.clone());
            runtime.spawn(async move {
                if let Err(error) = board.report(&id, JobState::Canceled).await {
                    tracing::warn!(%error, job = %id, "could not record an abandoned generation");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    fn board() -> (Arc<JobBoard>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::at(10_000));
        let state = Arc::new(MemoryStore::new(clock.clone()));
        (Arc::new(JobBoard::new(state, clock.clone(), 60_000)), clock)
    }

    #[tokio::test]
    async fn a_job_is_seen_only_by_its_visitor() {
        let (board, clock) = board();
        let id = JobId::from_bytes([1; 16]);
        let record = board.open(&id, "203.0.113.7").await.unwrap();
        assert!(record.is_some());
        assert!(
            board.open(&id, "203.0.113.8").await.unwrap().is_none(),
            "ids are single-use"
        );
        clock.advance(1_500);
        board
            .report(
                &id,
                JobState::Running(Phase::Generating { percent: Some(40) }),
            )
            .await
            .unwrap();
        let progress = board.read(&id, "203.0.113.7").await.unwrap().unwrap();
        assert_eq!(
            progress.state,
            JobState::Running(Phase::Generating { percent: Some(40) })
        );
        assert_eq!(progress.elapsed_ms, 1_500);
        assert!(!progress.cancel_requested);
        assert_eq!(board.read(&id, "203.0.113.8").await.unwrap(), None);
        assert_eq!(
            board.request_cancel(&id, "203.0.113.8").await.unwrap(),
            CancelOutcome::Unknown
        );
        assert!(!board.cancel_requested(&id).await.unwrap());
    }

    #[tokio::test]
    async fn cancel_marks_a_running_job_only() {
        let (board, _) = board();
        let id = JobId::from_bytes([2; 16]);
        let _record = board.open(&id, "v").await.unwrap();
        assert_eq!(
            board.request_cancel(&id, "v").await.unwrap(),
            CancelOutcome::Requested
        );
        assert!(board.cancel_requested(&id).await.unwrap());
        board.report(&id, JobState::Canceled).await.unwrap();
        assert_eq!(
            board.request_cancel(&id, "v").await.unwrap(),
            CancelOutcome::AlreadyOver
        );
        let unknown = JobId::from_bytes([3; 16]);
        assert_eq!(
            board.request_cancel(&unknown, "v").await.unwrap(),
            CancelOutcome::Unknown
        );
    }

    #[tokio::test]
    async fn a_record_dropped_before_it_ended_says_cancelled() {
        let (board, _) = board();
        let id = JobId::from_bytes([4; 16]);
        let record = board.open(&id, "v").await.unwrap().unwrap();
        drop(record);
        for _ in 0..100 {
            let state = board.read(&id, "v").await.unwrap().unwrap().state;
            if state == JobState::Canceled {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the dropped record never said cancelled");
    }

    #[tokio::test]
    async fn an_ended_record_keeps_its_ending() {
        let (board, _) = board();
        let id = JobId::from_bytes([5; 16]);
        let record = board.open(&id, "v").await.unwrap().unwrap();
        record.end(JobState::Finished).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            board.read(&id, "v").await.unwrap().unwrap().state,
            JobState::Finished
        );
    }
}
