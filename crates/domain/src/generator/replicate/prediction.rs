//! What Replicate answers: a prediction, its record (did it process, for how
//! many billed seconds), a create that failed, and the small readers of its
//! answers (problem bodies, `Retry-After`, progress bars, image bytes).

use super::super::{ImageFormat, ModelError, RunRecord};
use base64::Engine;
use bytes::Bytes;
use lofianime_wire::progress::Phase;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// A create that did not give us a prediction, and whether it may have started
/// one all the same (then it counts as billed: its id is unknown, so it can be
/// neither stopped nor read).
pub(in crate::generator) struct CreateFailed {
    pub(in crate::generator) error: ModelError,
    pub(in crate::generator) may_have_started: bool,
}

impl CreateFailed {
    /// Refused by the provider: no prediction was started.
    pub(in crate::generator) fn refused(error: ModelError) -> Self {
        Self {
            error,
            may_have_started: false,
        }
    }

    /// What the owner is billed for a create that failed like this.
    pub(in crate::generator) fn record(&self, deadline: Duration) -> RunRecord {
        if self.may_have_started {
            RunRecord::assumed_billed(None, deadline)
        } else {
            RunRecord {
                run_id: None,
                processed: false,
                billed_secs: 0.0,
            }
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
pub(in crate::generator) struct Prediction {
    pub(in crate::generator) id: String,
    pub(in crate::generator) status: String,
    #[serde(default)]
    pub(in crate::generator) output: Value,
    #[serde(default)]
    pub(in crate::generator) error: Value,
    #[serde(default)]
    pub(in crate::generator) logs: Option<String>,
    /// When it started processing (and billing); null while it has not.
    #[serde(default)]
    pub(in crate::generator) started_at: Option<String>,
    #[serde(default)]
    pub(in crate::generator) metrics: Option<PredictionMetrics>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub(in crate::generator) struct PredictionMetrics {
    /// Billed seconds of a public time-billed model, once the run ended.
    #[serde(default)]
    pub(in crate::generator) predict_time: Option<f64>,
}

impl Prediction {
    pub(in crate::generator) fn first_output(&self) -> Option<&str> {
        match &self.output {
            Value::String(s) if !s.is_empty() => Some(s),
            Value::Array(items) => items
                .iter()
                .find_map(|v| v.as_str().filter(|s| !s.is_empty())),
            _ => None,
        }
    }

    /// Keeps only the last `max` bytes of the logs (the last progress bar).
    pub(in crate::generator) fn keep_logs_tail(&mut self, max: usize) {
        if let Some(logs) = &mut self.logs {
            if logs.len() > max {
                let mut from = logs.len() - max;
                while !logs.is_char_boundary(from) {
                    from += 1;
                }
                *logs = logs[from..].to_owned();
            }
        }
    }

    pub(in crate::generator) fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "canceled" | "aborted"
        )
    }

    /// What the provider billed for this run, once it is over.
    pub(in crate::generator) fn record(&self) -> Option<RunRecord> {
        if !self.is_terminal() {
            return None;
        }
        let billed_secs = self
            .metrics
            .as_ref()
            .and_then(|metrics| metrics.predict_time)
            .unwrap_or(0.0)
            .max(0.0);
        Some(RunRecord {
            run_id: Some(self.id.clone()),
            processed: self.started_at.is_some() || billed_secs > 0.0,
            billed_secs,
        })
    }

    /// Terminal, or still `processing` but already holding its output (SDXL
    /// models answer like that when `Prefer: wait` runs out at the last moment).
    pub(in crate::generator) fn is_done(&self) -> bool {
        self.is_terminal() || (self.status == "processing" && self.first_output().is_some())
    }

    /// The phase to show: `starting`, then `processing` with the last progress
    /// bar percentage in the logs (diffusers print `45%|████▌     | 23/50`).
    pub(in crate::generator) fn phase(&self) -> Phase {
        match self.status.as_str() {
            "starting" => Phase::Starting,
            _ => Phase::Generating {
                percent: self.logs.as_deref().and_then(last_percent),
            },
        }
    }

    pub(in crate::generator) fn error_text(&self) -> String {
        match &self.error {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

/// The parts of an RFC 7807 problem body worth logging.
pub(in crate::generator) fn problem(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(300).collect();
    };
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut text = format!("{} {}", field("title"), field("detail"))
        .trim()
        .to_owned();
    if let Some(fields) = value.get("invalid_fields") {
        text.push_str(&format!(" invalid_fields: {fields}"));
    }
    text
}

/// `Retry-After` in seconds or as an HTTP date, or a `retry_after` in the body.
pub(in crate::generator) fn retry_after(headers: &HeaderMap, body: &str) -> Option<Duration> {
    let from_header = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .ok()
                .or_else(|| {
                    httpdate::parse_http_date(v)
                        .ok()
                        .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
                })
        });
    from_header.or_else(|| {
        serde_json::from_str::<Value>(body)
            .ok()?
            .get("retry_after")?
            .as_f64()
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
    })
}

/// The last `NN%|` in a model's logs.
pub(in crate::generator) fn last_percent(logs: &str) -> Option<u8> {
    logs.rmatch_indices("%|").find_map(|(at, _)| {
        let digits: String = logs[..at]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse::<u8>().ok().filter(|p| *p <= 100)
    })
}

/// Exponential back-off with full jitter: a random delay up to base * 2^attempt.
pub(in crate::generator) fn backoff(base: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1 << attempt.min(6));
    ceiling.mul_f64(rand::random_range(0.5..1.0))
}

/// Identifies a known image format from its first bytes.
pub(in crate::generator) fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// The bytes of a `data:` URI's payload (`rest` follows `data:`), refused
/// unread when it would decode to more than `max` bytes.
pub(in crate::generator) fn decode_data_uri(rest: &str, max: usize) -> Result<Bytes, ModelError> {
    let (_, encoded) = rest
        .split_once(";base64,")
        .ok_or_else(|| ModelError::BadOutput("a data URI that is not base64".into()))?;
    if encoded.len() / 4 * 3 > max + 3 {
        return Err(ModelError::BadOutput(format!(
            "output larger than {max} bytes"
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map(Bytes::from)
        .map_err(|e| ModelError::BadOutput(format!("bad base64 in the data URI: {e}")))
}

pub(in crate::generator) fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "(url)");
    }
    text
}
