//! One generation as HTTP sees it (its answer and headers), and stored images
//! as pages show them: shared by the page's server functions, the JSON API and
//! the pages that come back to a generation ([`crate::server::returning`]).

use crate::app::download_name;
use crate::progress::JobId;
use crate::server::errors::{self, quota};
use crate::server::state::AppState;
use crate::shape::{Aspect, Choices};
use crate::wire::{srcset_variants, ApiError, CreatedImage, ImageId, ShownImage, Variant};
use axum::http::{header, HeaderName, HeaderValue};
use lofianime_domain::{
    Decision, Generated, ImageKey, ImageRecord, Presence, StudioError, Variants, Visitor,
};

/// `X-RateLimit-*` on every limited answer, plus `Retry-After` on a denial.
pub fn rate_limit_headers(decision: &Decision, now_ms: u64) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(decision.limit),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(decision.remaining),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(decision.reset_ms),
        ),
    ];
    if !decision.success {
        headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(decision.retry_after_secs(now_ms)),
        ));
    }
    headers
}

pub fn created_image(state: &AppState, generated: Generated) -> CreatedImage {
    CreatedImage {
        image: shown_image(state, &generated.image, generated.record),
        quota: generated.decision.as_ref().map(quota),
        recent: Vec::new(),
    }
}

/// The image `id` as an answer to a generation of `visitor`'s that a page
/// came back to: as the first request would have had it, with the quota now.
pub async fn created_image_from_record(
    state: &AppState,
    visitor: &Visitor,
    id: &ImageId,
) -> Result<CreatedImage, ApiError> {
    let record = state
        .studio
        .image_record(id)
        .await
        .map_err(|failure| errors::answer(&failure))?;
    let Some((key, record)) = record.and_then(|record| Some((record.key()?, record))) else {
        return Err(ApiError::NoSuchImage);
    };
    let quota = state.studio.quota(visitor).await.ok().map(|d| quota(&d));
    Ok(CreatedImage {
        image: shown_image(state, &key, record),
        quota,
        recent: Vec::new(),
    })
}

/// The variant a page shows and the `srcset` candidates it offers. Images
/// served from elsewhere have only the variants made when they were stored:
/// one stored before medium variants existed offers its thumbnail and display
/// variants, as it did.
fn variants_offered(
    record: &ImageRecord,
    served_elsewhere: bool,
) -> (Variant, Vec<(Variant, u32)>) {
    if record.medium || !served_elsewhere {
        return (
            Variant::Medium,
            srcset_variants(record.width, record.height),
        );
    }
    let thumb = Variant::Thumb.size_of(record.width, record.height).0;
    let display = Variant::Display.size_of(record.width, record.height).0;
    let mut offered = vec![(Variant::Display, display)];
    if thumb < display {
        offered.insert(0, (Variant::Thumb, thumb));
    }
    (Variant::Display, offered)
}

/// A stored image as pages show it.
pub fn shown_image(state: &AppState, key: &ImageKey, record: ImageRecord) -> ShownImage {
    let url = state.image_url(key);
    let (shown, offered) = variants_offered(&record, state.images_base.is_some());
    ShownImage {
        id: key.id().to_string(),
        download_name: download_name(&record.prompt, &url),
        shown_url: state.image_url(&key.variant(shown)),
        srcset: offered
            .iter()
            .map(|(variant, width)| format!("{} {width}w", state.image_url(&key.variant(*variant))))
            .collect::<Vec<_>>()
            .join(", "),
        thumb_url: state.image_url(&key.variant(Variant::Thumb)),
        url,
        prompt: record.prompt,
        aspect: Aspect::of(record.width, record.height).as_str().to_owned(),
        about: crate::shape::about(Aspect::of(record.width, record.height), record.seed),
        seed: record.seed.map(|seed| seed.to_string()),
        width: record.width,
        height: record.height,
    }
}

/// One generation for `visitor`, as HTTP sees it: the outcome, and the headers
/// to send with it (`X-RateLimit-*` whenever the limiter answered, `Retry-After`
/// on a denial or when the model is busy). Shared by the page's server function
/// and the JSON API.
pub async fn run_generation(
    state: &AppState,
    visitor: &Visitor,
    raw_prompt: &str,
    job: Option<&JobId>,
    choices: Choices,
) -> (
    Result<CreatedImage, ApiError>,
    Vec<(HeaderName, HeaderValue)>,
) {
    run_watched(state, visitor, raw_prompt, job, choices, None).await
}

/// [`run_generation`] for the JSON API: its answer is the original's URL,
/// so the page variants are made when first asked for.
pub async fn run_api_generation(
    state: &AppState,
    visitor: &Visitor,
    raw_prompt: &str,
    choices: Choices,
) -> (
    Result<CreatedImage, ApiError>,
    Vec<(HeaderName, HeaderValue)>,
) {
    let result = state
        .studio
        .generate_for_api(visitor, raw_prompt, choices)
        .await;
    answer_generation(state, result)
}

/// [`run_generation`] of a page's generation that may go on without its
/// request for a while ([`crate::server::returning`]).
pub async fn run_watched(
    state: &AppState,
    visitor: &Visitor,
    raw_prompt: &str,
    job: Option<&JobId>,
    choices: Choices,
    presence: Option<&Presence>,
) -> (
    Result<CreatedImage, ApiError>,
    Vec<(HeaderName, HeaderValue)>,
) {
    let result = state
        .studio
        .generate_watched(visitor, raw_prompt, job, choices, presence, Variants::First)
        .await;
    answer_generation(state, result)
}

/// A generation's outcome as HTTP answers it, counted.
fn answer_generation(
    state: &AppState,
    result: Result<Generated, StudioError>,
) -> (
    Result<CreatedImage, ApiError>,
    Vec<(HeaderName, HeaderValue)>,
) {
    let mut counted = errors::OutcomeCounter::start();
    let decision = match &result {
        Ok(generated) => generated.decision,
        Err(failure) => failure.decision(),
    };
    let mut headers = decision
        .map(|d| rate_limit_headers(&d, state.studio.now_ms()))
        .unwrap_or_default();
    let outcome = result
        .map(|generated| created_image(state, generated))
        .map_err(|f| errors::answer(&f));
    counted.set(&outcome);
    match &outcome {
        Err(ApiError::ModelBusy { retry_after_secs }) => {
            headers.push((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
        }
        // The owner decides when; a minute is a polite guess for scripts.
        Err(ApiError::Paused) => {
            headers.push((header::RETRY_AFTER, HeaderValue::from(60u64)));
        }
        // Another instance (or this one, restarted) will take it in a moment;
        // a store that cannot save images is probed again in a few seconds.
        Err(ApiError::ShuttingDown | ApiError::ImagesUnavailable) => {
            headers.push((
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER_RESTART_SECS),
            ));
        }
        _ => {}
    }
    (outcome, headers)
}

/// `Retry-After` of a generation refused or stopped by a shutdown.
const RETRY_AFTER_RESTART_SECS: u64 = 5;

#[cfg(test)]
mod offered_tests {
    use super::*;

    fn record(width: u32, medium: bool) -> ImageRecord {
        ImageRecord {
            original: "0123456789abcdef0123456789abcdef.png".into(),
            prompt: String::new(),
            width,
            height: width,
            created_ms: 0,
            bytes: 0,
            medium,
            seed: None,
            owner: None,
        }
    }

    #[test]
    fn an_older_image_served_from_elsewhere_offers_the_variants_it_has() {
        assert_eq!(
            variants_offered(&record(1024, false), true),
            (
                Variant::Display,
                vec![(Variant::Thumb, 320), (Variant::Display, 1024)]
            )
        );
        assert_eq!(
            variants_offered(&record(256, false), true),
            (Variant::Display, vec![(Variant::Display, 256)])
        );
        // Served by the app, a missing variant is made: the medium one shows.
        assert_eq!(
            variants_offered(&record(1024, false), false).0,
            Variant::Medium
        );
        assert_eq!(
            variants_offered(&record(1024, true), true),
            (Variant::Medium, srcset_variants(1024, 1024))
        );
    }
}
