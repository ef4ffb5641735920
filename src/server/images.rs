//! The stored images (`GET /images/{file}`), streamed from the image store.

use crate::server::errors;
use crate::server::state::AppState;
use crate::wire::{GENERIC_FAILURE, IMAGES_PATH};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lofianime_domain::{ImageKey, StorageError, StudioError};

/// The images' route.
pub fn routes() -> Router<AppState> {
    Router::new().route(&format!("{IMAGES_PATH}{{file}}"), get(serve_image))
}

/// `GET /images/{file}`: a stored image, streamed from the store, cacheable for a
/// year (keys are never reused).
pub async fn serve_image(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(key) = ImageKey::parse(&file) else {
        return (StatusCode::NOT_FOUND, "No such image.").into_response();
    };
    match state.studio.open_image(&key).await {
        Ok(Some(image)) => (
            [
                (header::CONTENT_TYPE, key.format().content_type().to_owned()),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
                (header::CONTENT_LENGTH, image.size.to_string()),
            ],
            // Passed on as the store sends it, never held whole.
            Body::from_stream(image.chunks),
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "No such image.").into_response(),
        Err(StudioError::ImageRemoved) => {
            (StatusCode::NOT_FOUND, "This image was removed.").into_response()
        }
        Err(StudioError::ImageDeleted) => {
            (StatusCode::NOT_FOUND, "This image was deleted.").into_response()
        }
        Err(failure) => {
            errors::log(&failure);
            match failure {
                // The store is slow, down or full for now: worth a retry.
                StudioError::ImageStore(
                    StorageError::Store(_)
                    | StorageError::TimedOut(_)
                    | StorageError::FailedRecently(_),
                ) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "5")],
                    "The image cannot be read right now. Please try again in a moment.",
                )
                    .into_response(),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, GENERIC_FAILURE).into_response(),
            }
        }
    }
}
