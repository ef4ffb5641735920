//! Image generators: something that turns a validated prompt into image bytes.
//! The offline generator is the zero-configuration default; a hosted model
//! (Replicate) plugs in behind the same trait.

mod offline;

pub use offline::OfflineGenerator;

use crate::prompt::Prompt;
use async_trait::async_trait;
use bytes::Bytes;

/// The image formats the app stores and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    pub fn from_extension(extension: &str) -> Option<Self> {
        match extension {
            "png" => Some(Self::Png),
            "jpg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// Encoded image bytes and their format.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub bytes: Bytes,
    pub format: ImageFormat,
}

/// Why a generation failed. Details are for the log, never for the visitor.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error("the offline renderer failed: {0}")]
    Render(String),
}

#[async_trait]
pub trait ImageGenerator: Send + Sync + 'static {
    /// Says what the generator is, for logs and the page.
    fn describe(&self) -> String;

    /// True when no hosted model is involved (the page says so).
    fn is_offline(&self) -> bool;

    async fn generate(&self, prompt: &Prompt) -> Result<GeneratedImage, GeneratorError>;
}
