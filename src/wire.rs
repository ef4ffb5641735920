//! The server-function glue for the shared types: the one error type every
//! server function fails with (its kinds, statuses and sentences) and the JSON
//! codec its answers travel in. It stays in this crate because Leptos' traits
//! (`FromServerFnError`, the codec traits) can only be implemented beside the
//! types they are implemented for; the shared values themselves live in
//! `lofianime_wire`, re-exported here so `crate::wire::X` names one place.

pub use lofianime_wire::*;

use http::StatusCode;
use leptos::server_fn::codec::Post;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::{ContentType, Decodes, Encodes, Format, FormatType};
use lofianime_wire::prompt::PromptError;
use serde::{Deserialize, Serialize};

/// Server-function answers as JSON, read from text. The same as Leptos' own
/// JSON codec except for the reading: island props are read from text too, so
/// every type both carry is decoded by one copy of its code in the bundle
/// (serde_json's text and byte readers each get their own).
pub struct JsonText;

/// Answers in [`JsonText`] (`output = JsonAnswer` on a server function).
pub type JsonAnswer = Post<JsonText>;

impl ContentType for JsonText {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonText {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonText {
    type Error = leptos::serde_json::Error;

    fn encode(output: &T) -> Result<leptos::server_fn::Bytes, Self::Error> {
        leptos::serde_json::to_vec(output).map(leptos::server_fn::Bytes::from)
    }
}

impl<T: serde::de::DeserializeOwned> Decodes<T> for JsonText {
    type Error = leptos::serde_json::Error;

    fn decode(bytes: leptos::server_fn::Bytes) -> Result<T, Self::Error> {
        // Invalid UTF-8 is an error from the same reader, with its position.
        match std::str::from_utf8(&bytes) {
            Ok(text) => leptos::serde_json::from_str(text),
            Err(_) => leptos::serde_json::from_str(&String::from_utf8_lossy(&bytes)),
        }
    }
}

/// Why a server function failed, as the visitor may know it. `Display` is the
/// sentence shown on the page; [`ApiError::status`] the HTTP status. On the wire
/// it is `{"kind": "RateLimited", "data": {…}, "message": "No generations
/// remaining."}`: a caller that is not the page still reads the sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(remote = "Self", tag = "kind", content = "data")]
pub enum ApiError {
    #[error("{0}")]
    InvalidPrompt(PromptError),
    #[error("No generations remaining.")]
    RateLimited(Quota),
    #[error("No generations remaining: the budget shared by all visitors is used up for now.")]
    BudgetSpent(Quota),
    /// Today's dollar budget is spent (the quota's numbers are in cents; it
    /// reopens at the next UTC midnight).
    #[error("Today's image budget is used up.")]
    DailyBudgetSpent(Quota),
    #[error("Rate limiter unavailable, please try again shortly.")]
    LimiterUnavailable,
    #[error("The model flagged this image as unsafe. Try a different prompt.")]
    Unsafe,
    #[error(
        "The model took too long to answer. Your generation was not counted; please try again."
    )]
    ModelTimedOut,
    #[error("The model is busy right now; try again in {retry_after_secs} s.")]
    ModelBusy { retry_after_secs: u64 },
    /// None of the owner's model servers can take a run: nothing was counted.
    #[error("The model is not available right now. Please try again shortly.")]
    ModelUnavailable,
    #[error("{}", match (counted, model_started) {
        (false, _) => "Cancelled before the model started: not counted.",
        (true, true) => "Cancelled: the model had already started, so this one counted.",
        (true, false) => "Cancelled: this one counted, as too many generations were stopped or failed in this window.",
    })]
    Canceled { counted: bool, model_started: bool },
    #[error("The generation's progress cannot be reached right now; please try again shortly.")]
    JobBoardUnavailable,
    #[error("Images cannot be saved right now, so nothing was generated or counted. Please try again shortly.")]
    ImagesUnavailable,
    #[error("Your recent images cannot be loaded right now; please try again shortly.")]
    RecentImagesUnavailable,
    /// The body or query could not be decoded; the detail is data for API
    /// clients, never part of the sentence (a page shows the sentence of an error
    /// named in its URL, so no sentence carries free text).
    #[error("The request could not be read: it is not what this page sends.")]
    MalformedRequest(String),
    #[error("The generation id must be 32 lowercase hexadecimal digits.")]
    BadJobId,
    /// The `aspect` field is not one of the shapes.
    #[error("The shape (aspect) must be square, portrait or landscape.")]
    BadAspect,
    /// The `seed` field is not a whole number the model takes.
    #[error("The seed must be a whole number from 0 to 4294967295.")]
    BadSeed,
    #[error("This generation id is already in use; reload the page and try again.")]
    JobIdTaken,
    #[error("The server is restarting: your generation was stopped and not counted. Please try again in a moment.")]
    ShuttingDown,
    /// Sign-in is required (or signed-out visitors have no quota) and the
    /// visitor is signed out: nothing was spent.
    #[error("Sign in to generate images.")]
    SignInRequired,
    /// The owner paused generation: nothing was spent.
    #[error("Generation is paused by the site's owner. Please try again later.")]
    Paused,
    /// The owner blocked this visitor: nothing was spent.
    #[error("Generating images is blocked for this visitor.")]
    Blocked,
    /// The owner removed the image.
    #[error("This image was removed.")]
    ImageRemoved,
    /// The visitor who made the image deleted it.
    #[error("This image was deleted.")]
    ImageDeleted,
    #[error("No such image.")]
    NoSuchImage,
    /// Only the visitor who made an image may delete it: nothing changed.
    #[error("Only the visitor who made this image can delete it.")]
    NotYourImage,
    #[error("Could not reach the server. Check your connection and try again.")]
    Network,
    #[error("An error occurred. Please try again later.")]
    Internal,
}

impl ApiError {
    /// The HTTP status the server answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidPrompt(_)
            | Self::MalformedRequest(_)
            | Self::BadJobId
            | Self::BadAspect
            | Self::BadSeed
            | Self::JobIdTaken => StatusCode::BAD_REQUEST,
            Self::RateLimited(_) | Self::BudgetSpent(_) | Self::DailyBudgetSpent(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::LimiterUnavailable
            | Self::ModelBusy { .. }
            | Self::ModelUnavailable
            | Self::JobBoardUnavailable
            | Self::ImagesUnavailable
            | Self::RecentImagesUnavailable
            | Self::ShuttingDown
            | Self::Paused => StatusCode::SERVICE_UNAVAILABLE,
            Self::Blocked | Self::NotYourImage => StatusCode::FORBIDDEN,
            Self::ImageRemoved | Self::ImageDeleted | Self::NoSuchImage => StatusCode::NOT_FOUND,
            Self::Unsafe => StatusCode::UNPROCESSABLE_ENTITY,
            Self::SignInRequired => StatusCode::UNAUTHORIZED,
            // The request lost to the visitor's own cancel request.
            Self::Canceled { .. } => StatusCode::CONFLICT,
            Self::ModelTimedOut => StatusCode::GATEWAY_TIMEOUT,
            Self::Network | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Serialize for ApiError {
    /// The adjacently tagged kind and data, flattened beside the sentence.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Tagged<'a>(&'a ApiError);
        impl Serialize for Tagged<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                ApiError::serialize(self.0, serializer)
            }
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(flatten)]
            error: Tagged<'a>,
            message: String,
        }
        Body {
            error: Tagged(self),
            message: self.to_string(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ApiError {
    /// Reads `kind`, then its `data`; the sentence is rebuilt from them. Written
    /// by hand: serde's derive for a tagged enum buffers fields of any order,
    /// which costs the browser bundle about 30 KB; the server always writes
    /// `kind` first.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ErrorVisitor)
    }
}

struct ErrorVisitor;

/// The `data` field of the error being read (other fields are skipped).
fn data<'de, A: serde::de::MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
) -> Result<T, A::Error> {
    while let Some(key) = map.next_key::<String>()? {
        if key == "data" {
            return map.next_value();
        }
        map.next_value::<serde::de::IgnoredAny>()?;
    }
    Err(serde::de::Error::missing_field("data"))
}

impl<'de> serde::de::Visitor<'de> for ErrorVisitor {
    type Value = ApiError;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an error object whose first field is its kind")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ApiError, A::Error> {
        use serde::de::Error;
        if map.next_key::<String>()?.as_deref() != Some("kind") {
            return Err(A::Error::custom("an error's first field must be its kind"));
        }
        #[derive(Deserialize)]
        struct Busy {
            retry_after_secs: u64,
        }
        #[derive(Deserialize)]
        struct Stopped {
            counted: bool,
            model_started: bool,
        }
        let kind: String = map.next_value()?;
        let error = match kind.as_str() {
            "InvalidPrompt" => ApiError::InvalidPrompt(data(&mut map)?),
            "RateLimited" => ApiError::RateLimited(data(&mut map)?),
            "BudgetSpent" => ApiError::BudgetSpent(data(&mut map)?),
            "DailyBudgetSpent" => ApiError::DailyBudgetSpent(data(&mut map)?),
            "LimiterUnavailable" => ApiError::LimiterUnavailable,
            "Unsafe" => ApiError::Unsafe,
            "ModelTimedOut" => ApiError::ModelTimedOut,
            "ModelBusy" => {
                let busy: Busy = data(&mut map)?;
                ApiError::ModelBusy {
                    retry_after_secs: busy.retry_after_secs,
                }
            }
            "Canceled" => {
                let stopped: Stopped = data(&mut map)?;
                ApiError::Canceled {
                    counted: stopped.counted,
                    model_started: stopped.model_started,
                }
            }
            "ModelUnavailable" => ApiError::ModelUnavailable,
            "JobBoardUnavailable" => ApiError::JobBoardUnavailable,
            "ImagesUnavailable" => ApiError::ImagesUnavailable,
            "RecentImagesUnavailable" => ApiError::RecentImagesUnavailable,
            "MalformedRequest" => ApiError::MalformedRequest(data(&mut map)?),
            "BadJobId" => ApiError::BadJobId,
            "BadAspect" => ApiError::BadAspect,
            "BadSeed" => ApiError::BadSeed,
            "JobIdTaken" => ApiError::JobIdTaken,
            "SignInRequired" => ApiError::SignInRequired,
            "Paused" => ApiError::Paused,
            "Blocked" => ApiError::Blocked,
            "ImageRemoved" => ApiError::ImageRemoved,
            "ImageDeleted" => ApiError::ImageDeleted,
            "NoSuchImage" => ApiError::NoSuchImage,
            "NotYourImage" => ApiError::NotYourImage,
            "ShuttingDown" => ApiError::ShuttingDown,
            "Network" => ApiError::Network,
            _ => ApiError::Internal,
        };
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(error)
    }
}

impl From<lofianime_wire::shape::ChoiceError> for ApiError {
    fn from(error: lofianime_wire::shape::ChoiceError) -> Self {
        match error {
            lofianime_wire::shape::ChoiceError::Aspect => Self::BadAspect,
            lofianime_wire::shape::ChoiceError::Seed => Self::BadSeed,
        }
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonText;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The request's body or query could not be decoded into the arguments.
            ServerFnErrorErr::Args(detail)
            | ServerFnErrorErr::MissingArg(detail)
            | ServerFnErrorErr::Deserialization(detail) => Self::MalformedRequest(detail),
            ServerFnErrorErr::Request(_) => Self::Network,
            _ => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_kind_data_and_sentence() {
        let error = ApiError::RateLimited(Quota {
            limit: 5,
            remaining: 0,
            reset_ms: 42,
        });
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "RateLimited",
                "data": {"limit": 5, "remaining": 0, "reset_ms": 42},
                "message": "No generations remaining."
            })
        );
        let text = serde_json::to_string(&error).unwrap();
        assert_eq!(serde_json::from_str::<ApiError>(&text).unwrap(), error);
        let unit = serde_json::to_string(&ApiError::LimiterUnavailable).unwrap();
        assert_eq!(
            unit,
            r#"{"kind":"LimiterUnavailable","message":"Rate limiter unavailable, please try again shortly."}"#
        );
        assert_eq!(
            serde_json::from_str::<ApiError>(&unit).unwrap(),
            ApiError::LimiterUnavailable
        );
        let counted = ApiError::Canceled {
            counted: true,
            model_started: true,
        };
        assert_eq!(
            counted.to_string(),
            "Cancelled: the model had already started, so this one counted."
        );
        let refunded = ApiError::Canceled {
            counted: false,
            model_started: false,
        };
        assert_eq!(
            refunded.to_string(),
            "Cancelled before the model started: not counted."
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let quota = Quota {
            limit: 5,
            remaining: 1,
            reset_ms: 9,
        };
        for error in [
            ApiError::InvalidPrompt(PromptError::TooLong { chars: 9, max: 5 }),
            ApiError::InvalidPrompt(PromptError::Empty),
            ApiError::RateLimited(quota),
            ApiError::BudgetSpent(quota),
            ApiError::DailyBudgetSpent(quota),
            ApiError::LimiterUnavailable,
            ApiError::Unsafe,
            ApiError::ModelTimedOut,
            ApiError::ModelBusy {
                retry_after_secs: 7,
            },
            ApiError::Canceled {
                counted: true,
                model_started: false,
            },
            ApiError::JobBoardUnavailable,
            ApiError::ImagesUnavailable,
            ApiError::RecentImagesUnavailable,
            ApiError::MalformedRequest("x".into()),
            ApiError::BadJobId,
            ApiError::JobIdTaken,
            ApiError::ModelUnavailable,
            ApiError::ShuttingDown,
            ApiError::SignInRequired,
            ApiError::Network,
            ApiError::Internal,
        ] {
            let json = serde_json::to_string(&error).unwrap();
            assert_eq!(
                serde_json::from_str::<ApiError>(&json).unwrap(),
                error,
                "{json}"
            );
        }
        // Data before kind is refused rather than buffered.
        assert!(serde_json::from_str::<ApiError>(r#"{"data":1,"kind":"RateLimited"}"#).is_err());
    }

    #[test]
    fn no_sentence_carries_text_from_the_request() {
        // An error named in a page's URL (`?__err=…`) is shown by its sentence:
        // a forged detail must not reach the page.
        let forged = ApiError::MalformedRequest("Call 555-0100 to claim your prize".into());
        assert!(!forged.to_string().contains("555"));
        let json = serde_json::to_value(&forged).unwrap();
        assert_eq!(
            json["data"], "Call 555-0100 to claim your prize",
            "API clients keep it"
        );
    }
}
