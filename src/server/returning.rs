//! Coming back to a generation in progress. A page's generation (one with a
//! job id: the page's script chose it, or the server did for a browser without
//! JavaScript) runs in a task of its own rather than in its request: when the
//! request goes away (a reload, a closed tab, a lost connection) the
//! generation goes on for `progress.return_grace_secs`, and for as long as
//! someone follows it: the reloaded page (which finds it in the visitor's
//! list, `GET /api/running`, and sends the same job id again), the visitor's
//! other device when signed in, or the waiting page a browser without
//! JavaScript refreshes (`/making/{job}`). Nobody back in time: it is stopped
//! as a cancel is, and the provider's record of the run decides the refund.
//!
//! The instance that ran it keeps the answer in the job's record (`image:{id}`
//! or `error:{json}`), so a follower on any instance gets the same answer the
//! first request would have.

use crate::progress::JobId;
use crate::server::errors;
use crate::server::generations::{created_image_from_record, run_watched};
use crate::server::state::AppState;
use crate::shape::Choices;
use crate::wire::{ApiError, CreatedImage, ImageId};
use axum::http::{HeaderName, HeaderValue};
use lofianime_domain::{JobSnapshot, Presence, Visitor};
use std::time::{Duration, Instant};

/// How often a follower looks at the record (each look also says someone is
/// watching).
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// How long a follower waits for the answer of a generation whose record says
/// it ended (the answer is written right after; an instance that died in
/// between never writes it).
const ANSWER_LATE: Duration = Duration::from_secs(5);

/// How long a browser without JavaScript waits on its form post before it is
/// sent to the waiting page: a refusal or an image made at once lands where it
/// did before.
pub const NO_SCRIPT_HOLD: Duration = Duration::from_millis(1_500);

/// A generation's answer with its headers.
pub type Answer = (
    Result<CreatedImage, ApiError>,
    Vec<(HeaderName, HeaderValue)>,
);

/// A page's generation, started in its own task.
pub struct Started {
    task: tokio::task::JoinHandle<Answer>,
    presence: Presence,
    state: AppState,
}

impl Started {
    /// Starts `visitor`'s generation `job`; it goes on if the caller goes away
    /// (for the grace period, or while followed).
    pub fn spawn(
        state: &AppState,
        visitor: Visitor,
        prompt: String,
        job: JobId,
        choices: Choices,
    ) -> Self {
        let presence = Presence::new();
        let task = {
            let (state, presence) = (state.clone(), presence.clone());
            state.generations.clone().spawn(async move {
                let answer = run_watched(
                    &state,
                    &visitor,
                    &prompt,
                    Some(&job),
                    choices,
                    Some(&presence),
                )
                .await;
                // Kept only in a record this generation opened (not for a
                // refusal, nor in another visitor's record).
                if presence.has_record() {
                    state.studio.keep_answer(&job, &encode(&answer.0)).await;
                }
                answer
            })
        };
        Self {
            task,
            presence,
            state: state.clone(),
        }
    }

    /// The answer, as the request that started it waits for it.
    pub async fn answer(mut self) -> Answer {
        match (&mut self.task).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::error!(%error, "a generation's task ended without an answer");
                (Err(ApiError::Internal), Vec::new())
            }
        }
    }

    /// The answer if it comes within `wait`; else the generation goes on
    /// without this request.
    pub async fn answer_within(mut self, wait: Duration) -> Option<Answer> {
        match tokio::time::timeout(wait, &mut self.task).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(error)) => {
                tracing::error!(%error, "a generation's task ended without an answer");
                Some((Err(ApiError::Internal), Vec::new()))
            }
            Err(_) => None,
        }
    }
}

impl Drop for Started {
    /// The request stops waiting (answered, or gone): the grace period starts.
    fn drop(&mut self) {
        self.state.studio.left(&self.presence);
    }
}

/// How a generation's answer is kept in its record.
fn encode(answer: &Result<CreatedImage, ApiError>) -> String {
    match answer {
        Ok(created) => format!("image:{}", created.image.id),
        Err(error) => format!(
            "error:{}",
            serde_json::to_string(error).unwrap_or_else(|_| "{\"kind\":\"Internal\"}".into())
        ),
    }
}

/// What a kept answer says, as the first request would have had it.
pub async fn decode(
    state: &AppState,
    visitor: &Visitor,
    kept: &str,
) -> Result<CreatedImage, ApiError> {
    if let Some(json) = kept.strip_prefix("error:") {
        return Err(serde_json::from_str(json).unwrap_or(ApiError::Internal));
    }
    let id = kept
        .strip_prefix("image:")
        .and_then(ImageId::parse)
        .ok_or(ApiError::Internal)?;
    created_image_from_record(state, visitor, &id).await
}

/// What became of `visitor`'s generation `job` once it ended, else `None`
/// while it runs (the look counts as watching it, by someone who looks again
/// within `next_look`). `Err` for a generation that is not theirs (or no
/// longer known).
pub async fn look(
    state: &AppState,
    visitor: &Visitor,
    job: &JobId,
    next_look: Duration,
) -> Result<Option<JobSnapshot>, ApiError> {
    state
        .studio
        .follow(visitor, job, next_look)
        .await
        .map_err(|failure| errors::answer(&failure))
}

/// Follows `visitor`'s generation `job` (started by an earlier request, here
/// or on another instance) to its answer, watching it all along.
pub async fn follow(
    state: &AppState,
    visitor: &Visitor,
    job: &JobId,
) -> Result<CreatedImage, ApiError> {
    tracing::info!(%job, "a page came back to a generation in progress");
    let mut ended_at: Option<Instant> = None;
    loop {
        let Some(seen) = look(state, visitor, job, FOLLOW_EVERY).await? else {
            // Its record expired: far past any generation's deadline.
            return Err(ApiError::Internal);
        };
        if let Some(kept) = &seen.answer {
            return decode(state, visitor, kept).await;
        }
        if !seen.progress.state.is_running() {
            let since = *ended_at.get_or_insert_with(Instant::now);
            if since.elapsed() > ANSWER_LATE {
                tracing::warn!(%job, state = ?seen.progress.state, "a generation ended without a kept answer");
                return Err(ApiError::Internal);
            }
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
