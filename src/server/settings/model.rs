//! `[model]`, `[prompt]`, `[image]`, `[offline]`, `[progress]`: which model
//! makes the images and how it is asked, what a prompt may be, and the offline
//! painter's picture.

use super::{invalid, within, SettingsError};
use crate::prompt::DEFAULT_MAX_CHARS;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptSettings {
    pub max_chars: usize,
}

impl Default for PromptSettings {
    fn default() -> Self {
        Self {
            max_chars: DEFAULT_MAX_CHARS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// Which model makes the pictures: `auto` (Replicate when
    /// `REPLICATE_API_TOKEN` is set, else the offline painter), `replicate`,
    /// `cog` (the owner's own model servers, `COG_URLS`) or `offline`.
    pub backend: Backend,
    /// `owner/name` of the Replicate model.
    pub id: String,
    /// The model version (64 hex digits).
    pub version: String,
    /// Put in front of every visitor prompt; the model was trained on this phrase.
    pub prompt_prefix: String,
    /// Overall bound on one generation, from create to stored image (seconds).
    pub deadline_secs: u64,
    /// `Cancel-After` on each prediction: Replicate stops it on its own this
    /// many seconds after its creation, even if no process of the app is left
    /// to (1 to `deadline_secs`; unset: 60, or the deadline if shorter).
    pub cancel_after_secs: Option<u64>,
    /// How long the create request is held open for a synchronous answer
    /// (`Prefer: wait`, 0–60 s). 0, the default: the create answers at once with
    /// the prediction's id, so a run nobody wants is stopped before it bills.
    pub wait_secs: u64,
    /// Pause between polls once the prediction runs asynchronously (milliseconds).
    pub poll_interval_ms: u64,
    /// Largest output image accepted (bytes).
    pub max_image_bytes: usize,
    /// The model's inputs besides the prompt, passed as they are.
    pub input: serde_json::Map<String, serde_json::Value>,
    /// Whether Replicate calls the app back at `{site.public_url}/webhooks/replicate`
    /// instead of being polled: `auto` (on when `site.public_url` is https),
    /// `on`, `off`.
    pub webhooks: WebhookMode,
    /// With webhooks on, how often the running instance still reads its
    /// prediction itself, in case events are lost (seconds).
    pub fallback_poll_secs: u64,
    /// The account's budget of creates per `budget_window_secs`, shared by
    /// every instance (Replicate's limit: 600 a minute).
    pub budget_creates: u32,
    /// The account's budget of other API calls (reads, cancels, lists) per
    /// `budget_window_secs` (Replicate's limit: 3,000 a minute).
    pub budget_calls: u32,
    pub budget_window_secs: u64,
}

/// `model.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    #[default]
    Auto,
    Replicate,
    Cog,
    Offline,
}

/// `[cog]`: the owner's own model servers (their addresses and tokens are in
/// the environment: `COG_URLS`, `COG_TOKEN`, `COG_WEBHOOK_TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CogFileSettings {
    /// Where the model servers reach the app for their webhooks
    /// (`{this}/webhooks/cog`), when it is not `site.public_url` (a private
    /// network address, say).
    pub webhook_base_url: Option<String>,
}

impl CogFileSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if let Some(base) = &self.webhook_base_url {
            let usable = url::Url::parse(base)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
            if !usable {
                return invalid("cog.webhook_base_url", "must be an http(s) address");
            }
        }
        Ok(())
    }
}

/// `model.webhooks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookMode {
    Auto,
    On,
    Off,
}

impl Default for ModelSettings {
    fn default() -> Self {
        let serde_json::Value::Object(input) = serde_json::json!({
            "negative_prompt": "ugly, deformed, noisy, blurry, distorted, out of focus, bad anatomy, extra limbs, poorly drawn face, poorly drawn hands, missing fingers, text, watermark, signature, low quality, jpeg artifacts",
            "width": 1024,
            "height": 1024,
            "num_outputs": 1,
            "scheduler": "K_EULER",
            "num_inference_steps": 50,
            "guidance_scale": 7.5,
            "prompt_strength": 0.8,
            "refine": "no_refiner",
            "high_noise_frac": 0.8,
            "apply_watermark": true,
            "lora_scale": 0.6,
        }) else {
            unreachable!("a JSON object literal")
        };
        Self {
            backend: Backend::Auto,
            id: "doriandarko/sdxl-hiroshinagai".into(),
            version: "563a66acc0b39e5308e8372bed42504731b7fec3bc21f2fcbea413398690f3ec".into(),
            prompt_prefix: "In the style of HISGH. ".into(),
            deadline_secs: 120,
            cancel_after_secs: None,
            wait_secs: 0,
            poll_interval_ms: 500,
            max_image_bytes: 20_000_000,
            input,
            webhooks: WebhookMode::Auto,
            fallback_poll_secs: 10,
            budget_creates: 600,
            budget_calls: 3_000,
            budget_window_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageSettings {
    pub width: u32,
    pub height: u32,
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            width: 768,
            height: 768,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineSettings {
    /// Extra latency for the offline generator, to imitate a model (milliseconds).
    pub delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressSettings {
    /// How often a running generation looks for a cancel request (milliseconds):
    /// the longest a cancel waits, and with Redis / Upstash one read per period
    /// per running generation.
    pub cancel_check_ms: u64,
    /// How long a page's generation goes on once the page is gone (closed,
    /// reloaded, its connection lost), in seconds: the time a reloaded page,
    /// a browser without JavaScript refreshing its waiting page, or the
    /// visitor's other device has to come back to it. Past it, the run is
    /// stopped as if cancelled. 0: stopped at once (nothing to come back to).
    pub return_grace_secs: u64,
}

impl Default for ProgressSettings {
    fn default() -> Self {
        Self {
            cancel_check_ms: 500,
            return_grace_secs: 5,
        }
    }
}

/// `Cancel-After` unless the owner says otherwise: a run is ~10 s of
/// processing; a minute leaves room for a queue or a boot.
const DEFAULT_CANCEL_AFTER_SECS: u64 = 60;

impl ModelSettings {
    /// The `Cancel-After` sent with each prediction, in seconds.
    pub fn cancel_after_secs(&self) -> u64 {
        self.cancel_after_secs
            .unwrap_or(DEFAULT_CANCEL_AFTER_SECS.min(self.deadline_secs))
    }

    /// Whether webhooks are on, given the site's public address.
    pub fn webhooks_on(&self, public_origin: Option<&str>) -> bool {
        match self.webhooks {
            WebhookMode::Off => false,
            WebhookMode::On => true,
            WebhookMode::Auto => public_origin.is_some_and(|url| url.starts_with("https://")),
        }
    }

    pub(super) fn check(&self) -> Result<(), SettingsError> {
        within("model.wait_secs", self.wait_secs, 0..=60)?;
        within("model.fallback_poll_secs", self.fallback_poll_secs, 1..=600)?;
        within("model.budget_creates", self.budget_creates, 1..=1_000_000)?;
        within("model.budget_calls", self.budget_calls, 1..=1_000_000)?;
        within(
            "model.budget_window_secs",
            self.budget_window_secs,
            1..=3_600,
        )?;
        for (path, zero) in [
            ("model.deadline_secs", self.deadline_secs == 0),
            ("model.poll_interval_ms", self.poll_interval_ms == 0),
            ("model.max_image_bytes", self.max_image_bytes == 0),
        ] {
            if zero {
                return invalid(path, "must be greater than 0");
            }
        }
        if let Some(secs) = self.cancel_after_secs {
            within("model.cancel_after_secs", secs, 1..=self.deadline_secs)?;
        }
        let version_ok =
            self.version.len() == 64 && self.version.bytes().all(|b| b.is_ascii_hexdigit());
        if !version_ok {
            return invalid("model.version", "must be the 64-hex-digit version id");
        }
        Ok(())
    }
}

impl PromptSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        within("prompt.max_chars", self.max_chars, 1..=10_000)
    }
}

impl ProgressSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        within(
            "progress.cancel_check_ms",
            self.cancel_check_ms,
            50..=10_000,
        )?;
        within(
            "progress.return_grace_secs",
            self.return_grace_secs,
            0..=120,
        )
    }
}

impl ImageSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        let problem = "must be between 16 and 2048 pixels";
        for (path, value) in [("image.width", self.width), ("image.height", self.height)] {
            if !(16..=2048).contains(&value) {
                return invalid(path, problem);
            }
        }
        Ok(())
    }
}
