//! Generations in flight, on the [`SharedState`]: each has a record (whose it is,
//! its prompt and phase, when it started, when someone last looked at it,
//! whether someone asked to cancel it, and at the end its answer) that any
//! instance can read or mark, while the instance running it reports its phases
//! and checks for a cancel request, or for a visitor who left and did not come
//! back. Each visitor's recent generations are listed, so that a reloaded page
//! (or another device of the same account) finds the ones still running.

use crate::clock::Clock;
use crate::shared::SharedState;
use crate::store::StoreError;
use crate::visitor::tag as owner_tag;
use lofianime_wire::progress::{JobId, JobProgress, JobState, Phase};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keys of job records: `lofianime:job:{id}`.
const KEY_PREFIX: &str = "lofianime:job:";

/// Keys of each visitor's list of generations: `lofianime:jobs:of:{owner tag}`.
const LIST_PREFIX: &str = "lofianime:jobs:of:";

/// How many of a visitor's latest generations their list keeps.
const LISTED: usize = 8;

/// Whether someone on this instance is waiting for a generation's answer (the
/// request that started it): `0` while they are, else when they left (epoch
/// milliseconds). Others watch through the record's `seen_ms`. Also says
/// whether the generation's record was opened (it was admitted, and the id
/// was not someone else's).
#[derive(Clone, Default)]
pub struct Presence(Arc<(AtomicU64, AtomicBool)>);

impl Presence {
    /// Someone is waiting (the request that started the generation).
    pub fn new() -> Self {
        Self::default()
    }

    /// They left at `now_ms` (their connection closed).
    pub fn left(&self, now_ms: u64) {
        self.0 .0.store(now_ms.max(1), Ordering::Relaxed);
    }

    fn left_at(&self) -> Option<u64> {
        match self.0 .0.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }

    /// True once the generation's record is open: its answer may be kept there.
    pub fn has_record(&self) -> bool {
        self.0 .1.load(Ordering::Relaxed)
    }
}

/// Why a running generation stops before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The visitor asked to cancel it.
    Canceled,
    /// Nobody has watched it for longer than the board's grace period.
    Abandoned,
}

/// A generation as someone coming back to it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSnapshot {
    pub progress: JobProgress,
    pub prompt: String,
    /// When it started (epoch milliseconds, the board's clock).
    pub started_ms: u64,
    /// The answer the instance that ran it wrote at the end (opaque here).
    pub answer: Option<String>,
}

/// One of a visitor's generations still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJob {
    pub job: JobId,
    pub prompt: String,
    pub state: JobState,
    pub started_ms: u64,
}

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
    /// How long a generation nobody watches goes on before it is stopped: the
    /// time a reloaded page (or the visitor's other device) has to come back.
    grace_ms: u64,
}

fn key(id: &JobId) -> String {
    format!("{KEY_PREFIX}{id}")
}

fn list_key(visitor: &str) -> String {
    format!("{LIST_PREFIX}{}", owner_tag(visitor))
}

fn encode(state: JobState) -> [(&'static str, String); 2] {
    let (name, percent) = match state {
        JobState::Running(Phase::Waiting) => ("waiting", None),
        JobState::Running(Phase::Queued) => ("queued", None),
        JobState::Running(Phase::InLine(ahead)) => ("in_line", Some(ahead)),
        JobState::Running(Phase::Starting) => ("starting", None),
        JobState::Running(Phase::Generating { percent }) => ("generating", percent.map(u32::from)),
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
        "in_line" => JobState::Running(Phase::InLine(percent.parse().unwrap_or(0))),
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
            grace_ms: 0,
        }
    }

    /// A board on which a generation nobody watches goes on for `grace_ms`.
    pub fn with_grace(mut self, grace_ms: u64) -> Self {
        self.grace_ms = grace_ms;
        self
    }

    pub fn describe(&self) -> String {
        self.state.describe()
    }

    /// Opens the record of a new generation for `visitor`. `None` when the id is
    /// taken (ids are random: a repeat is a replayed or forged request).
    /// `presence`: who waits for it on this instance (`None`: it stops only
    /// when cancelled, or when its flow is dropped).
    pub async fn open(
        self: &Arc<Self>,
        id: &JobId,
        visitor: &str,
        prompt: &str,
        presence: Option<Presence>,
    ) -> Result<Option<JobRecord>, StoreError> {
        if !self.create(id, visitor, prompt).await? {
            return Ok(None);
        }
        if let Some(presence) = &presence {
            presence.0 .1.store(true, Ordering::Relaxed);
        }
        // Listed for the visitor's other pages; a list that cannot be written
        // costs only that.
        let listed = self
            .state
            .push_capped(&list_key(visitor), id.as_str(), LISTED, self.ttl_ms)
            .await;
        if let Err(error) = listed {
            tracing::warn!(%error, job = %id, "could not list the generation for the visitor's other pages");
        }
        Ok(Some(JobRecord {
            board: self.clone(),
            id: id.clone(),
            presence,
            ended: false,
        }))
    }

    async fn create(&self, id: &JobId, visitor: &str, prompt: &str) -> Result<bool, StoreError> {
        let now = self.clock.now_ms().to_string();
        let mut fields = vec![
            ("owner", owner_tag(visitor)),
            ("prompt", prompt.to_owned()),
            ("started_ms", now.clone()),
            ("seen_ms", now),
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
        Ok(self.snapshot(id, visitor).await?.map(|seen| seen.progress))
    }

    /// The generation as a page coming back to it sees it, if it is
    /// `visitor`'s.
    pub async fn snapshot(
        &self,
        id: &JobId,
        visitor: &str,
    ) -> Result<Option<JobSnapshot>, StoreError> {
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
        Ok(Some(JobSnapshot {
            progress: JobProgress {
                state,
                elapsed_ms: self.clock.now_ms().saturating_sub(started_ms),
                cancel_requested: field("cancel") == "1",
            },
            prompt: field("prompt").to_owned(),
            started_ms,
            answer: record.get("answer").cloned(),
        }))
    }

    /// Someone is looking at the generation (a page following it, a reloaded
    /// page, the page of a browser without JavaScript) and will look again
    /// within `next_look`: it goes on for at least that long and the grace
    /// period after it. (A waiting page that refreshes every two seconds
    /// under a grace of two seconds was otherwise given up between two of
    /// its refreshes.)
    pub async fn touch(&self, id: &JobId, next_look: Duration) -> Result<(), StoreError> {
        let until = self
            .clock
            .now_ms()
            .saturating_add(u64::try_from(next_look.as_millis()).unwrap_or(u64::MAX));
        self.state
            .update_hash(&key(id), &[("seen_ms", until.to_string())])
            .await?;
        Ok(())
    }

    /// Keeps the answer to the generation (written once it ended, for a page
    /// that comes back to it).
    pub async fn keep_answer(&self, id: &JobId, answer: &str) -> Result<(), StoreError> {
        self.state
            .update_hash(&key(id), &[("answer", answer.to_owned())])
            .await?;
        Ok(())
    }

    /// `visitor`'s generations still running, newest first; each is touched
    /// (someone is looking at them).
    pub async fn running(&self, visitor: &str) -> Result<Vec<RunningJob>, StoreError> {
        let mut running = Vec::new();
        for text in self.state.read_list(&list_key(visitor)).await? {
            let Ok(job) = JobId::parse(&text) else {
                continue;
            };
            let Some(seen) = self.snapshot(&job, visitor).await? else {
                continue;
            };
            if seen.progress.state.is_running() && !seen.progress.cancel_requested {
                self.touch(&job, Duration::ZERO).await?;
                running.push(RunningJob {
                    job,
                    prompt: seen.prompt,
                    state: seen.progress.state,
                    started_ms: seen.started_ms,
                });
            }
        }
        Ok(running)
    }

    /// Whether the generation should stop now: cancelled, or watched by
    /// nobody (on this instance per `presence`, elsewhere per the record's
    /// `seen_ms`) for longer than the grace period.
    pub async fn should_stop(
        &self,
        id: &JobId,
        presence: Option<&Presence>,
    ) -> Result<Option<Stop>, StoreError> {
        let record = self.state.read_hash(&key(id)).await?;
        if record.get("cancel").is_some_and(|flag| flag == "1") {
            return Ok(Some(Stop::Canceled));
        }
        let Some(left_ms) = presence.and_then(Presence::left_at) else {
            return Ok(None);
        };
        let seen_ms: u64 = record
            .get("seen_ms")
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        let last_watched = left_ms.max(seen_ms);
        let unwatched = self.clock.now_ms().saturating_sub(last_watched) > self.grace_ms;
        Ok(unwatched.then_some(Stop::Abandoned))
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
}

/// The record of one running generation, held by the flow that runs it. Ended
/// with [`JobRecord::end`]; dropped without that (the visitor left, a panic), it
/// marks the generation cancelled.
pub struct JobRecord {
    board: Arc<JobBoard>,
    id: JobId,
    presence: Option<Presence>,
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

    /// Whether the generation should stop: cancelled, or left unwatched past
    /// the grace period. A store that cannot answer stops nothing.
    pub async fn should_stop(&self) -> Option<Stop> {
        match self
            .board
            .should_stop(&self.id, self.presence.as_ref())
            .await
        {
            Ok(stop) => stop,
            Err(error) => {
                tracing::warn!(%error, job = %self.id, "could not check for a cancel request");
                None
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
        let record = board
            .open(&id, "203.0.113.7", "a harbour", None)
            .await
            .unwrap();
        assert!(record.is_some());
        assert!(
            board
                .open(&id, "203.0.113.8", "a harbour", None)
                .await
                .unwrap()
                .is_none(),
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
        assert_eq!(board.should_stop(&id, None).await.unwrap(), None);
    }

    #[tokio::test]
    async fn cancel_marks_a_running_job_only() {
        let (board, _) = board();
        let id = JobId::from_bytes([2; 16]);
        let _record = board.open(&id, "v", "p", None).await.unwrap();
        assert_eq!(
            board.request_cancel(&id, "v").await.unwrap(),
            CancelOutcome::Requested
        );
        assert_eq!(
            board.should_stop(&id, None).await.unwrap(),
            Some(Stop::Canceled)
        );
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
        let record = board.open(&id, "v", "p", None).await.unwrap().unwrap();
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
        let record = board.open(&id, "v", "p", None).await.unwrap().unwrap();
        record.end(JobState::Finished).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            board.read(&id, "v").await.unwrap().unwrap().state,
            JobState::Finished
        );
    }

    /// A job opened by a request still waiting for it (`presence`), on a
    /// board whose grace period is `grace_ms`.
    async fn watched(
        grace_ms: u64,
        byte: u8,
    ) -> (Arc<ManualClock>, Arc<JobBoard>, JobId, Presence, JobRecord) {
        let clock = Arc::new(ManualClock::at(10_000));
        let state = Arc::new(MemoryStore::new(clock.clone()));
        let board = Arc::new(JobBoard::new(state, clock.clone(), 60_000).with_grace(grace_ms));
        let id = JobId::from_bytes([byte; 16]);
        let presence = Presence::new();
        let record = board
            .open(&id, "v", "p", Some(presence.clone()))
            .await
            .unwrap()
            .unwrap();
        (clock, board, id, presence, record)
    }

    #[tokio::test]
    async fn a_generation_nobody_watches_stops_after_the_grace_period() {
        let (clock, board, id, presence, record) = watched(5_000, 6).await;
        clock.advance(30_000);
        assert_eq!(record.should_stop().await, None, "its request still waits");
        presence.left(clock.now_ms());
        clock.advance(4_000);
        assert_eq!(record.should_stop().await, None, "within the grace period");
        // A reloaded page (on any instance) looks at it: the grace starts again.
        board.touch(&id, Duration::ZERO).await.unwrap();
        clock.advance(4_000);
        assert_eq!(record.should_stop().await, None);
        clock.advance(1_001);
        assert_eq!(record.should_stop().await, Some(Stop::Abandoned));
        // A cancel says so, whoever watches.
        board.request_cancel(&id, "v").await.unwrap();
        assert_eq!(record.should_stop().await, Some(Stop::Canceled));
    }

    #[tokio::test]
    async fn a_page_that_promises_its_next_look_is_watched_until_then_and_the_grace_after() {
        // A waiting page refreshing every 2 s under a grace of 2 s: each of
        // its looks covers the gap to the next, however late it lands.
        let (clock, board, id, presence, record) = watched(2_000, 5).await;
        presence.left(clock.now_ms());
        board.touch(&id, Duration::from_secs(2)).await.unwrap();
        clock.advance(4_000);
        assert_eq!(
            record.should_stop().await,
            None,
            "the refresh is due, with its grace"
        );
        clock.advance(1);
        assert_eq!(record.should_stop().await, Some(Stop::Abandoned));
        // The same look without the promise: only the grace.
        board.touch(&id, Duration::ZERO).await.unwrap();
        clock.advance(2_001);
        assert_eq!(record.should_stop().await, Some(Stop::Abandoned));
    }

    #[tokio::test]
    async fn a_visitor_finds_their_running_generations_and_only_theirs() {
        let (board, clock) = board();
        let (first, second, other) = (
            JobId::from_bytes([7; 16]),
            JobId::from_bytes([8; 16]),
            JobId::from_bytes([9; 16]),
        );
        let done = board
            .open(&first, "v", "a harbour", None)
            .await
            .unwrap()
            .unwrap();
        let _running = board.open(&second, "v", "a station", None).await.unwrap();
        let _theirs = board.open(&other, "w", "a forest", None).await.unwrap();
        done.end(JobState::Finished).await;
        clock.advance(2_000);
        let running = board.running("v").await.unwrap();
        assert_eq!(
            running,
            vec![RunningJob {
                job: second.clone(),
                prompt: "a station".into(),
                state: JobState::Running(Phase::Waiting),
                started_ms: 10_000,
            }]
        );
        board.keep_answer(&first, "image:x").await.unwrap();
        let seen = board.snapshot(&first, "v").await.unwrap().unwrap();
        assert_eq!(seen.answer.as_deref(), Some("image:x"));
        assert_eq!(seen.prompt, "a harbour");
        assert_eq!(board.snapshot(&first, "w").await.unwrap(), None);
        assert_eq!(board.running("w").await.unwrap().len(), 1);
        assert!(board.running("u").await.unwrap().is_empty());
    }
}
