//! A generation in flight, as both sides see it: its id (chosen by the page, so it
//! can ask about the generation while the request that runs it is still open), the
//! phase it is in, and how it ended. Shared by the server and the browser bundle.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The id of one generation: 32 lowercase hex digits (128 random bits), chosen by
/// the page for each submission. It only names the generation; the server also
/// checks that whoever asks about it is the visitor who started it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

/// Why a job id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The generation id must be 32 lowercase hexadecimal digits.")]
pub struct BadJobId;

impl JobId {
    pub fn parse(text: &str) -> Result<Self, BadJobId> {
        crate::is_hex_id(text)
            .then(|| Self(text.to_owned()))
            .ok_or(BadJobId)
    }

    /// A fresh id from 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = BadJobId;
    fn try_from(text: String) -> Result<Self, BadJobId> {
        Self::parse(&text)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a running generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The request is with the model service, which has not taken it up yet
    /// (queued, or the service asked us to wait).
    Waiting,
    /// The offline painter's CPU workers are all busy; it waits for one
    /// (leaving or cancelling now costs nothing).
    Queued,
    /// Every one of the owner's model servers is busy: it waits in line
    /// behind this many others (leaving or cancelling now costs nothing). A
    /// newtype variant: lighter in the browser bundle than a named field.
    InLine(u32),
    /// The model is booting or loading its weights.
    Starting,
    /// The model is drawing; `percent` when it says how far it is.
    Generating { percent: Option<u8> },
    /// The picture is done; the app is copying and keeping it.
    Saving,
}

impl Phase {
    /// The phase's name in `GET /api/running`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Queued => "queued",
            Self::InLine(_) => "in_line",
            Self::Starting => "starting",
            Self::Generating { .. } => "generating",
            Self::Saving => "saving",
        }
    }

    /// The sentence the page shows.
    pub fn label(&self) -> String {
        match self {
            Self::Waiting => "Waiting for the model…".into(),
            Self::Queued => "Waiting for a free painter…".into(),
            Self::InLine(0) => "Waiting for a free GPU…".into(),
            Self::InLine(ahead) => format!("Waiting for a free GPU… {ahead} ahead of you"),
            Self::Starting => "The model is starting…".into(),
            Self::Generating { percent: Some(p) } => format!("Generating… {p}%"),
            Self::Generating { percent: None } => "Generating…".into(),
            Self::Saving => "Saving your image…".into(),
        }
    }
}

/// One of the calling visitor's generations still running, as
/// `GET /api/running` lists them: `phase` is `waiting`, `queued`, `in_line`, `starting`,
/// `generating` (with `percent` when the model says) or `saving`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningGeneration {
    pub job: String,
    pub prompt: String,
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// When the server started it (epoch milliseconds).
    pub started_ms: u64,
}

/// What the waiting page of a browser without JavaScript shows
/// (`/making/{job}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakingView {
    pub job: String,
    pub prompt: String,
    /// The phase's sentence while it runs.
    pub label: String,
    pub elapsed_secs: u64,
    /// The image made, once there is one (the page then goes to it).
    pub image: Option<String>,
    /// How it ended without an image, as a sentence.
    pub error: Option<String>,
}

/// Where a generation is, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Running(Phase),
    /// The image is kept.
    Finished,
    /// It failed (the credit was given back).
    Failed,
    /// The visitor cancelled it (the credit was given back).
    Canceled,
}

impl JobState {
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running(_))
    }
}

/// A reading of a generation's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    pub state: JobState,
    /// Milliseconds since the server started it.
    pub elapsed_ms: u64,
    /// True once someone asked to cancel it.
    pub cancel_requested: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_32_lowercase_hex_digits() {
        let id = JobId::from_bytes([0xab; 16]);
        assert_eq!(id.as_str(), "ab".repeat(16));
        assert_eq!(JobId::parse(id.as_str()), Ok(id));
        for bad in [
            "",
            "abc",
            &"AB".repeat(16),
            &"ag".repeat(16),
            &"a".repeat(33),
            "../../../../etc/passwd0000000000",
        ] {
            assert_eq!(JobId::parse(bad), Err(BadJobId), "{bad:?}");
        }
    }

    #[test]
    fn phases_read_as_sentences() {
        assert_eq!(
            Phase::Generating { percent: Some(45) }.label(),
            "Generating… 45%"
        );
        assert_eq!(Phase::Waiting.label(), "Waiting for the model…");
        assert_eq!(Phase::Queued.label(), "Waiting for a free painter…");
        assert_eq!(
            Phase::InLine(2).label(),
            "Waiting for a free GPU… 2 ahead of you"
        );
    }
}
