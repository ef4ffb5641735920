//! What the server and the page exchange: the values the server functions return,
//! the one error type they all fail with, and the shapes of the ids and URLs both
//! sides read. Compiled for both targets; nothing here runs server code.

use crate::prompt::PromptError;
use http::StatusCode;
use leptos::server_fn::codec::Post;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::{ContentType, Decodes, Encodes, Format, FormatType};
use serde::{Deserialize, Serialize};

/// The sentence a visitor sees when their generations are used up.
pub const NO_GENERATIONS_REMAINING: &str = "No generations remaining.";
/// The sentence for every failure whose detail belongs in the server log only.
pub const GENERIC_FAILURE: &str = "An error occurred. Please try again later.";

/// Where the app serves stored images: `/images/{file name}`.
pub const IMAGES_PATH: &str = "/images/";

/// True for the ids the app makes: 32 lowercase hexadecimal digits (128 random
/// bits). Generation ids and image names share the rule.
pub fn is_hex_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The image file extensions the app stores and serves as originals.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "webp"];

/// The sizes an image is served in: the original as the model made it (Download,
/// link previews), a lossy WebP to show on a page, and a small WebP for lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    Original,
    /// At most 1024 px wide: the result on a page, sharp on 2x screens.
    Display,
    /// 320 px wide: a 160 px tile on a 2x screen.
    Thumb,
}

impl Variant {
    /// The widest this variant gets (originals keep their size).
    pub const fn max_width(self) -> Option<u32> {
        match self {
            Self::Original => None,
            Self::Display => Some(1024),
            Self::Thumb => Some(320),
        }
    }

    /// What follows the id in a variant's file name.
    const fn suffix(self) -> &'static str {
        match self {
            Self::Original => "",
            Self::Display => "-display.webp",
            Self::Thumb => "-thumb.webp",
        }
    }

    /// This variant's size for an original of `width` x `height` (never enlarged).
    pub fn size_of(self, width: u32, height: u32) -> (u32, u32) {
        match self.max_width() {
            Some(max) if width > max => {
                let scaled = (u64::from(height) * u64::from(max) + u64::from(width) / 2)
                    / u64::from(width.max(1));
                (max, (scaled as u32).max(1))
            }
            _ => (width, height),
        }
    }
}

/// Splits an image file name into its id, variant and extension, if it has a
/// shape the server gives images: `{32 hex}.{png|jpg|webp}` (an original),
/// `{32 hex}-display.webp` or `{32 hex}-thumb.webp`.
pub fn split_image_name(file_name: &str) -> Option<(&str, Variant, &str)> {
    let (stem, extension) = file_name.split_once('.')?;
    let (id, variant) = match stem.split_once('-') {
        None if IMAGE_EXTENSIONS.contains(&extension) => (stem, Variant::Original),
        Some((id, "display")) if extension == "webp" => (id, Variant::Display),
        Some((id, "thumb")) if extension == "webp" => (id, Variant::Thumb),
        _ => return None,
    };
    is_hex_id(id).then_some((id, variant, extension))
}

/// The app's URL for the display or thumbnail variant of image `id`.
pub fn variant_url(id: &str, variant: Variant) -> String {
    format!("{IMAGES_PATH}{id}{}", variant.suffix())
}

/// The page of image `id`: `/i/{id}`, the link a visitor shares.
pub fn image_page_path(id: &str) -> String {
    format!("/i/{id}")
}

/// A stored image as a page shows it: its original's URL (Download), its prompt
/// (title and alt text) and the original's size (the variants' sizes follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownImage {
    /// 32 hex digits; the variants' and the image page's URLs are built from it.
    pub id: String,
    /// The original's URL (`/images/{id}.png`, or under `storage.public_base_url`).
    pub url: String,
    /// The display and thumbnail variants' URLs (the server builds every image
    /// URL, so the page follows wherever the images are served from).
    pub display_url: String,
    pub thumb_url: String,
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    /// The file name Download saves the original as (`a-quiet-harbour.png`).
    pub download_name: String,
}

/// An image's own page (`/i/{id}`): the image, and the absolute addresses a
/// link preview needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePage {
    pub image: ShownImage,
    /// This page's absolute URL (`og:url`).
    pub page_url: String,
    /// The picture's absolute URL for previews (`og:image`): the original, or
    /// the display variant when the original is larger than chat apps take.
    pub preview_url: String,
}

/// A visitor's generations: how many the policy allows, how many are left, and
/// when more become available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// When the visitor gets more (window end or next refill), epoch milliseconds.
    pub reset_ms: u64,
}

/// A finished generation as the page sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedImage {
    /// The image; its prompt is the one validated (trimmed).
    pub image: ShownImage,
    /// The visitor's quota after this generation; `None` when the limiter's store
    /// was down and the owner chose to generate uncounted.
    pub quota: Option<Quota>,
    /// The visitor's recent images with this one (the page needs no second call).
    pub recent: Vec<RecentImage>,
}

/// One of the visitor's recent images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentImage {
    /// The image's id (its page is `/i/{id}`).
    pub id: String,
    /// Its thumbnail's URL.
    pub thumb_url: String,
    pub prompt: String,
    /// When it was made, epoch milliseconds.
    pub created_ms: u64,
}

/// A visitor's quota as read by the server, with the server's clock at that
/// moment (so the page's first countdown renders the same on server and client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaReading {
    /// `None` when the limiter's store could not be read.
    pub quota: Option<Quota>,
    pub now_ms: u64,
}

/// Who the page is for, as far as sign-in goes. Read by the server while it
/// renders the page (never by the browser bundle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// Sign-in is on: the provider's name, for "Sign in with Google".
    pub sign_in_with: Option<String>,
    /// The signed-in account.
    pub account: Option<SignedInAs>,
    /// Whether this visitor may generate now (signed out in `required` mode, or
    /// with no signed-out quota, they may not).
    pub may_generate: bool,
    /// Generations per window for a signed-out visitor, when sign-in is on and
    /// they have a quota of their own.
    pub signed_out_limit: Option<u64>,
}

/// A signed-in account as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInAs {
    pub email: String,
    pub name: Option<String>,
}

/// What the page needs to know about the server's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// True when images come from the offline generator, not a hosted model.
    pub offline_generator: bool,
    pub max_prompt_chars: usize,
    pub limit: u64,
    /// The window as written in the settings, e.g. "1440 m".
    pub window: String,
    /// The same window in milliseconds.
    pub window_ms: u64,
    /// How many recent images the server keeps per visitor.
    pub recent_images: usize,
}

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
    #[error("{}", match (counted, model_started) {
        (false, _) => "Cancelled before the model started: not counted.",
        (true, true) => "Cancelled: the model had already started, so this one counted.",
        (true, false) => "Cancelled: this one counted, as too many generations were stopped or failed in this window.",
    })]
    Canceled { counted: bool, model_started: bool },
    #[error("The generation's progress cannot be reached right now; please try again shortly.")]
    JobBoardUnavailable,
    #[error("Your recent images cannot be loaded right now; please try again shortly.")]
    RecentImagesUnavailable,
    /// The body or query could not be decoded; the detail is data for API
    /// clients, never part of the sentence (a page shows the sentence of an error
    /// named in its URL, so no sentence carries free text).
    #[error("The request could not be read: it is not what this page sends.")]
    MalformedRequest(String),
    #[error("The generation id must be 32 lowercase hexadecimal digits.")]
    BadJobId,
    #[error("This generation id is already in use; reload the page and try again.")]
    JobIdTaken,
    #[error("The server is restarting: your generation was stopped and not counted. Please try again in a moment.")]
    ShuttingDown,
    /// Sign-in is required (or signed-out visitors have no quota) and the
    /// visitor is signed out: nothing was spent.
    #[error("Sign in to generate images.")]
    SignInRequired,
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
            | Self::JobIdTaken => StatusCode::BAD_REQUEST,
            Self::RateLimited(_) | Self::BudgetSpent(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::LimiterUnavailable
            | Self::ModelBusy { .. }
            | Self::JobBoardUnavailable
            | Self::RecentImagesUnavailable
            | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
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
            "JobBoardUnavailable" => ApiError::JobBoardUnavailable,
            "RecentImagesUnavailable" => ApiError::RecentImagesUnavailable,
            "MalformedRequest" => ApiError::MalformedRequest(data(&mut map)?),
            "BadJobId" => ApiError::BadJobId,
            "JobIdTaken" => ApiError::JobIdTaken,
            "SignInRequired" => ApiError::SignInRequired,
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
            ApiError::RecentImagesUnavailable,
            ApiError::MalformedRequest("x".into()),
            ApiError::BadJobId,
            ApiError::JobIdTaken,
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

    #[test]
    fn ids_and_image_names_have_one_shape() {
        assert!(is_hex_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdefa",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(!is_hex_id(bad), "{bad:?}");
        }
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            split_image_name(&format!("{id}.png")),
            Some((id, Variant::Original, "png"))
        );
        for variant in [Variant::Display, Variant::Thumb] {
            let url = variant_url(id, variant);
            let name = url.strip_prefix(IMAGES_PATH).unwrap();
            assert_eq!(split_image_name(name), Some((id, variant, "webp")));
        }
        for bad in [
            "0123456789abcdef0123456789abcdef.gif",
            "0123456789abcdef0123456789abcdef-display.png",
            "0123456789abcdef0123456789abcdef-large.webp",
            "0123456789abcdef0123456789abcdef",
            "../x.png",
            "x-thumb.webp",
        ] {
            assert_eq!(split_image_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn variants_shrink_to_their_width_and_keep_the_shape() {
        assert_eq!(Variant::Display.size_of(1024, 1024), (1024, 1024));
        assert_eq!(
            Variant::Display.size_of(768, 768),
            (768, 768),
            "never enlarged"
        );
        assert_eq!(Variant::Display.size_of(2048, 1536), (1024, 768));
        assert_eq!(Variant::Thumb.size_of(768, 768), (320, 320));
        assert_eq!(Variant::Thumb.size_of(1024, 576), (320, 180));
        assert_eq!(Variant::Original.size_of(4000, 3000), (4000, 3000));
        assert_eq!(Variant::Thumb.size_of(100_000, 1), (320, 1), "never zero");
    }
}
