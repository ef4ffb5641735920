//! What the server and the page exchange, compiled for both the server and the
//! browser bundle and free of any web framework: the values the server functions
//! return, the rules both sides share (ids, image names, prompts, progress), and
//! the sentences a visitor reads. The server-function glue (the error type's
//! codec) lives in the app crate.

pub mod progress;
pub mod prompt;
pub mod shape;

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

/// A stored image's id: 32 lowercase hexadecimal digits. Parsing is the only
/// way to make one from outside input, so an id can never name a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

impl ImageId {
    /// `text` as an image id, if it has the shape ([`is_hex_id`]).
    pub fn parse(text: &str) -> Option<Self> {
        is_hex_id(text).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The image file extensions the app stores and serves as originals.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "webp"];

/// The sizes an image is served in: the original as the model made it (Download,
/// link previews), lossy WebPs to show on a page at 1x and 2x density, and a
/// small WebP for lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    Original,
    /// At most 704 px wide: the result in the page's 704 px column at 1x
    /// density, shown at its own size (made with the image, or for an image
    /// made through the JSON API, when first asked for). Images stored before
    /// keep their 768 px file, which the page shows scaled to the column.
    Medium,
    /// At most 1024 px wide: the result on a page, sharp on 2x screens (made
    /// when first asked for).
    Display,
    /// 320 px wide: a 160 px tile on a 2x screen.
    Thumb,
}

impl Variant {
    /// The widest this variant gets (originals keep their size).
    pub const fn max_width(self) -> Option<u32> {
        match self {
            Self::Original => None,
            Self::Medium => Some(704),
            Self::Display => Some(1024),
            Self::Thumb => Some(320),
        }
    }

    /// What follows the id in a variant's file name.
    const fn suffix(self) -> &'static str {
        match self {
            Self::Original => "",
            Self::Medium => "-medium.webp",
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
/// `{32 hex}-medium.webp`, `{32 hex}-display.webp` or `{32 hex}-thumb.webp`.
pub fn split_image_name(file_name: &str) -> Option<(&str, Variant, &str)> {
    let (stem, extension) = file_name.split_once('.')?;
    let (id, variant) = match stem.split_once('-') {
        None if IMAGE_EXTENSIONS.contains(&extension) => (stem, Variant::Original),
        Some((id, "medium")) if extension == "webp" => (id, Variant::Medium),
        Some((id, "display")) if extension == "webp" => (id, Variant::Display),
        Some((id, "thumb")) if extension == "webp" => (id, Variant::Thumb),
        _ => return None,
    };
    is_hex_id(id).then_some((id, variant, extension))
}

/// The variants a page offers for an original of `width` x `height`, as
/// `srcset` candidates (variant, width), narrowest first: the medium one
/// always (the page's `src`); the thumbnail only when it is narrower, the
/// display one only when it is wider. None is offered twice at one width,
/// so a browser never picks a thumbnail stretched to the column. A display
/// variant only a little wider than the medium one (the painter's 768 px
/// beside 704 px) is still offered: a 2x screen shown the 704 px one instead
/// sees 2.5 dB less of the picture (`cargo bench --bench images`), and it is
/// encoded to weigh no more than the medium one.
pub fn srcset_variants(width: u32, height: u32) -> Vec<(Variant, u32)> {
    let medium = Variant::Medium.size_of(width, height).0;
    let mut offered = Vec::with_capacity(3);
    let thumb = Variant::Thumb.size_of(width, height).0;
    if thumb < medium {
        offered.push((Variant::Thumb, thumb));
    }
    offered.push((Variant::Medium, medium));
    let display = Variant::Display.size_of(width, height).0;
    if display > medium {
        offered.push((Variant::Display, display));
    }
    offered
}

/// Whether `width` is a fifth narrower than `from_width`, or more.
pub const fn a_fifth_narrower(width: u32, from_width: u32) -> bool {
    width as u64 * 5 <= from_width as u64 * 4
}

/// The app's URL for a variant of image `id`.
pub fn variant_url(id: &str, variant: Variant) -> String {
    format!("{IMAGES_PATH}{id}{}", variant.suffix())
}

/// The page of image `id`: `/i/{id}`, the link a visitor shares.
pub fn image_page_path(id: &str) -> String {
    format!("/i/{id}")
}

/// The page a browser without JavaScript waits on while generation `job` runs.
pub fn making_path(job: &str) -> String {
    format!("/making/{job}")
}

/// A stored image as a page shows it: its original's URL (Download), its prompt
/// (title and alt text) and the original's size (the variants' sizes follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownImage {
    /// 32 hex digits; the variants' and the image page's URLs are built from it.
    pub id: String,
    /// The original's URL (`/images/{id}.png`, or under `storage.public_base_url`).
    pub url: String,
    /// The variant the page shows (`src`), the `srcset` it offers, and the
    /// thumbnail's URL (the server builds every image URL, so the page follows
    /// wherever the images are served from, and the bundle carries no
    /// srcset logic).
    pub shown_url: String,
    pub srcset: String,
    pub thumb_url: String,
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    /// The file name Download saves the original as (`a-quiet-harbour.png`).
    pub download_name: String,
    /// Its shape (`square`, `portrait`, `landscape`) and the seed it was
    /// made with (`None`: made before seeds were kept), which "More like
    /// this" and "Same again" send back; `about` says both for the page
    /// ("Portrait · seed 42"). Plain values: the browser bundle carries no
    /// code for the shapes.
    pub aspect: String,
    pub seed: Option<String>,
    pub about: String,
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
    /// The visitor reading the page made this image (they may delete it).
    pub yours: bool,
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
    /// The thumbnail's size (its shape; 0 for images listed before it was kept).
    pub width: u32,
    pub height: u32,
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
    /// The owner paused generation: the page says so instead of the form.
    #[serde(default)]
    pub paused: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        for variant in [Variant::Medium, Variant::Display, Variant::Thumb] {
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
    fn image_ids_are_parsed_once_by_the_shared_rule() {
        let id = ImageId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(id.as_str(), "0123456789abcdef0123456789abcdef");
        assert_eq!(id.to_string(), id.as_str());
        for bad in ["../etc/passwd", "", "0123456789ABCDEF0123456789ABCDEF"] {
            assert_eq!(ImageId::parse(bad), None, "{bad:?}");
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
        assert_eq!(Variant::Medium.size_of(1024, 1024), (704, 704));
        assert_eq!(Variant::Medium.size_of(1152, 896), (704, 548));
        assert_eq!(Variant::Medium.size_of(896, 1152), (704, 905));
    }

    #[test]
    fn a_page_offers_each_width_once_and_never_a_stretched_thumbnail() {
        let widths = |w, h| -> Vec<(Variant, u32)> { srcset_variants(w, h) };
        assert_eq!(
            widths(1024, 1024),
            [
                (Variant::Thumb, 320),
                (Variant::Medium, 704),
                (Variant::Display, 1024)
            ]
        );
        assert_eq!(
            widths(768, 768),
            [
                (Variant::Thumb, 320),
                (Variant::Medium, 704),
                (Variant::Display, 768)
            ],
            "the painter's 768 px: a 2x screen gets all of it"
        );
        assert_eq!(
            widths(704, 704),
            [(Variant::Thumb, 320), (Variant::Medium, 704)],
            "no display variant as wide as the medium one"
        );
        // A source of 320 px or less: its one size, at the medium quality.
        assert_eq!(widths(256, 256), [(Variant::Medium, 256)]);
        assert_eq!(widths(320, 200), [(Variant::Medium, 320)]);
        assert_eq!(
            widths(896, 1152),
            [
                (Variant::Thumb, 320),
                (Variant::Medium, 704),
                (Variant::Display, 896)
            ],
            "a portrait: its display variant is a fifth wider"
        );
        assert_eq!(
            widths(2048, 1024),
            [
                (Variant::Thumb, 320),
                (Variant::Medium, 704),
                (Variant::Display, 1024)
            ]
        );
    }
}
