//! The smaller copies of an image that pages show, as lossy WebP:
//! - `medium`, at most 704 px wide: the result in the page's 704 px column
//!   at 1× density (made with the image, before the answer);
//! - `thumb`, 320 px: a 160 px tile on a 2× screen (made right after the
//!   answer);
//! - `display`, at most 1024 px: the result at 2× density (made when first
//!   asked for).
//!
//! The original stays as the model made it, for Download and link previews.
//! An image is decoded once (the `image` crate; the offline painter hands over
//! its pixels and is not decoded at all), resized by `fast_image_resize`
//! (SIMD), encoded by libwebp with the method and quality chosen by
//! measurement (`cargo bench --bench images`). CPU work: callers run it on
//! the CPU workers ([`crate::cpu`]).

use bytes::Bytes;
use fast_image_resize as fir;
use image::RgbImage;
use lofianime_wire::Variant;
use std::borrow::Cow;
use std::cell::RefCell;

/// How one variant is encoded: libwebp's quality and method (0 fastest, 6
/// smallest).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Encoding {
    pub quality: f32,
    pub method: i32,
}

/// The encoding of `variant` at `width` px, made from an original `from_width`
/// px wide. Chosen by `cargo bench --bench images` (1024 px grainy pictures
/// as a model makes them, and the offline painter's 768 px ones) so that a
/// visitor gets at least the quality they got before, as seen on the page,
/// for fewer bytes, at a fraction of the CPU of libwebp's default method 4:
/// - the medium variant of a much larger original (a model's 1024 px shown
///   at 704 px) replaces the 1024 px display variant that 1x visitors got
///   before, which the browser scaled down, hiding its artefacts: quality 93
///   matches it (41.9 dB against 41.5 dB as seen) at 54 % of its bytes;
///   method 0 is as small as method 4 on grain, 4x faster;
/// - a medium variant a little smaller than its original (the painter's
///   768 px at 704 px) replaces the 768 px medium variant it had until
///   December 2026 (quality 82, seen scaled to 704 px): quality 86 is as good
///   (36.5 dB against 36.6 dB as seen) for 10 % fewer bytes; method 1 (method
///   0 adds 15-20 % on smooth pictures; method 4 costs 3x the time);
/// - a medium variant at its original's own size: quality 82 as before,
///   method 1;
/// - the display variant (2x) of a much larger original: quality 83, method
///   0 (37.1 dB against 36.9 dB before, 7 % fewer bytes);
/// - a display variant only a little wider than the medium one (the
///   painter's 768 px): quality 82 method 4, as before (56 KB at 34.9 dB as
///   seen on a 2x screen: method 0 needs 68 KB for it, and the 704 px medium
///   variant scaled up shows 32.4 dB). Made only when a 2x screen first asks;
/// - the thumbnail: quality 72 as before, method 2 (off the answer's path;
///   within 5 % of method 4's bytes at a third of its time).
pub fn encoding(variant: Variant, from_width: u32, width: u32) -> Encoding {
    const MEDIUM: u32 = match Variant::Medium.max_width() {
        Some(max) => max,
        None => u32::MAX,
    };
    // A fifth narrower or more (a portrait 896 px wide is too).
    let much_smaller = lofianime_wire::a_fifth_narrower(width, from_width);
    let (quality, method) = match variant {
        Variant::Medium if much_smaller => (93.0, 0),
        Variant::Medium if width < from_width => (86.0, 1),
        Variant::Medium | Variant::Original => (82.0, 1),
        Variant::Display
            if width > from_width.min(MEDIUM)
                && !lofianime_wire::a_fifth_narrower(from_width.min(MEDIUM), width) =>
        {
            (82.0, 4)
        }
        Variant::Display => (83.0, 0),
        Variant::Thumb => (72.0, 2),
    };
    Encoding { quality, method }
}

#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error("the image cannot be decoded: {0}")]
    Decode(#[from] image::ImageError),
    #[error("resizing failed: {0}")]
    Resize(String),
    #[error("WebP encoding failed: {0}")]
    Encode(String),
}

/// Decodes `original` (PNG, JPEG or WebP) to RGB pixels.
pub fn decode(original: &[u8]) -> Result<RgbImage, VariantError> {
    Ok(image::load_from_memory(original)?.into_rgb8())
}

/// The width and height `original` (PNG, JPEG or WebP) says it has, read from
/// its header without decoding it.
pub fn dimensions(original: &[u8]) -> Result<(u32, u32), VariantError> {
    Ok(image::ImageReader::new(std::io::Cursor::new(original))
        .with_guessed_format()
        .map_err(image::ImageError::IoError)?
        .into_dimensions()?)
}

/// `image` at `variant`'s size (borrowed when it already fits).
pub fn shrink(image: &RgbImage, variant: Variant) -> Result<Cow<'_, RgbImage>, VariantError> {
    resize_to(image, variant.size_of(image.width(), image.height()))
}

/// `image` at `(width, height)` (borrowed when it already is).
fn resize_to(
    image: &RgbImage,
    (width, height): (u32, u32),
) -> Result<Cow<'_, RgbImage>, VariantError> {
    if (width, height) == image.dimensions() {
        return Ok(Cow::Borrowed(image));
    }
    thread_local! {
        /// A resizer per CPU thread keeps its buffers between images.
        static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
    }
    let mut resized = RgbImage::new(width, height);
    // Catmull-Rom: sharper than bilinear, for a fraction of a millisecond
    // more at these sizes.
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom));
    RESIZER
        .with(|resizer| resizer.borrow_mut().resize(image, &mut resized, &options))
        .map_err(|error| VariantError::Resize(error.to_string()))?;
    Ok(Cow::Owned(resized))
}

/// `image`, already at `variant`'s size and not smaller than its original,
/// as WebP (the thumbnail's encoding does not depend on it).
pub fn encode(image: &RgbImage, variant: Variant) -> Result<Bytes, VariantError> {
    encode_with(image, encoding(variant, image.width(), image.width()))
}

/// `image` as WebP with `encoding`.
pub fn encode_with(image: &RgbImage, encoding: Encoding) -> Result<Bytes, VariantError> {
    libwebp::encode_rgb(image, encoding).map_err(VariantError::Encode)
}

/// libwebp's lossy encoder, called directly rather than through the `webp`
/// crate, which imports RGB pixels as ARGB (`use_argb = 1`) and then converts
/// them to YUV: a second pass over the pixels and a 4-bytes-per-pixel copy
/// that lossy encoding does not need. Imported straight to YUV, the same
/// bytes come out ~1 ms sooner per 704 px picture (`cargo bench --bench
/// images`). Written here, deliberately: a dozen calls of the `libwebp-sys`
/// bindings the `webp` crate itself uses.
mod libwebp {
    use super::Encoding;
    use bytes::Bytes;
    use image::RgbImage;
    use libwebp_sys as sys;

    /// Frees what libwebp allocated for a picture and its output, however
    /// the encode ends.
    struct Encode {
        picture: sys::WebPPicture,
        output: sys::WebPMemoryWriter,
    }

    impl Drop for Encode {
        fn drop(&mut self) {
            // SAFETY: both were initialised by libwebp (`WebPPictureInit`,
            // `WebPMemoryWriterInit`) before an `Encode` exists; freeing an
            // empty picture or writer is allowed.
            unsafe {
                sys::WebPPictureFree(&mut self.picture);
                sys::WebPMemoryWriterClear(&mut self.output);
            }
        }
    }

    pub(super) fn encode_rgb(image: &RgbImage, encoding: Encoding) -> Result<Bytes, String> {
        let (width, height) = image.dimensions();
        let too_large = || format!("{width}x{height} is too large for WebP");
        let width = i32::try_from(width).map_err(|_| too_large())?;
        let height = i32::try_from(height).map_err(|_| too_large())?;
        let stride = width.checked_mul(3).ok_or_else(too_large)?;
        let mut config = sys::WebPConfig::new().map_err(|()| "no WebP configuration".to_owned())?;
        config.quality = encoding.quality;
        config.method = encoding.method;
        config.lossless = 0;
        // SAFETY: the configuration is checked by libwebp; the picture and
        // the writer are initialised by libwebp before use; the import reads
        // `height` rows of `stride` bytes, which an `RgbImage` of these
        // dimensions holds (its buffer is exactly width * height * 3 bytes);
        // `custom_ptr` points at `encode.output`, which outlives the
        // `WebPEncode` call that writes through it, and is not moved while
        // it runs.
        unsafe {
            if sys::WebPValidateConfig(&config) == 0 {
                return Err(format!("invalid WebP settings: {encoding:?}"));
            }
            let mut encode = Encode {
                picture: sys::WebPPicture::new().map_err(|()| "no WebP picture".to_owned())?,
                output: std::mem::zeroed(),
            };
            sys::WebPMemoryWriterInit(&mut encode.output);
            encode.picture.use_argb = 0;
            encode.picture.width = width;
            encode.picture.height = height;
            if sys::WebPPictureImportRGB(&mut encode.picture, image.as_raw().as_ptr(), stride) == 0
            {
                return Err(format!(
                    "libwebp could not take the pixels ({:?})",
                    encode.picture.error_code
                ));
            }
            encode.picture.writer = Some(sys::WebPMemoryWrite);
            encode.picture.custom_ptr = std::ptr::addr_of_mut!(encode.output).cast();
            if sys::WebPEncode(&config, &mut encode.picture) == 0 {
                return Err(format!("{:?}", encode.picture.error_code));
            }
            let written = std::slice::from_raw_parts(encode.output.mem, encode.output.size);
            Ok(Bytes::copy_from_slice(written))
        }
    }
}

/// `image` at `width` x `height` (for measurements; variants use [`shrink`]).
pub fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_to(image, (width, height))
        .map(Cow::into_owned)
        .unwrap_or_else(|_| image.clone())
}

/// `variant` of the decoded `image`: resized, then encoded.
pub fn make(image: &RgbImage, variant: Variant) -> Result<Bytes, VariantError> {
    let shrunk = shrink(image, variant)?;
    encode_with(&shrunk, encoding(variant, image.width(), shrunk.width()))
}

/// A new image's variants: those ready before its answer, and the
/// thumbnail's pixels when it is encoded after.
pub struct FirstVariants {
    pub width: u32,
    pub height: u32,
    pub ready: Vec<(Variant, Bytes)>,
    pub thumb_pixels: Option<RgbImage>,
}

/// Decodes `original` (unless its `pixels` are at hand) and makes the medium
/// variant, and the thumbnail's pixels (resized from the medium's: cheaper,
/// and as sharp at 320 px). With `all`, the thumbnail and the display variant
/// are encoded now too.
pub fn first_variants(
    original: &[u8],
    pixels: Option<&RgbImage>,
    all: bool,
) -> Result<FirstVariants, VariantError> {
    let decoded;
    let image = match pixels {
        Some(pixels) => pixels,
        None => {
            decoded = decode(original)?;
            &decoded
        }
    };
    let (width, height) = image.dimensions();
    let medium = shrink(image, Variant::Medium)?;
    let medium_bytes = encode_with(&medium, encoding(Variant::Medium, width, medium.width()))?;
    let mut ready = vec![(Variant::Medium, medium_bytes.clone())];
    let thumb = match resize_to(&medium, Variant::Thumb.size_of(width, height))? {
        // A picture of 320 px or less: its thumbnail is the medium variant's
        // file, not a second encode of the same pixels.
        Cow::Borrowed(_) => {
            ready.push((Variant::Thumb, medium_bytes));
            None
        }
        Cow::Owned(thumb) => Some(thumb),
    };
    if !all {
        return Ok(FirstVariants {
            width,
            height,
            ready,
            thumb_pixels: thumb,
        });
    }
    if let Some(thumb) = thumb {
        ready.push((Variant::Thumb, encode(&thumb, Variant::Thumb)?));
    }
    if Variant::Display.size_of(width, height).0 > medium.width() {
        ready.push((Variant::Display, make(image, Variant::Display)?));
    }
    Ok(FirstVariants {
        width,
        height,
        ready,
        thumb_pixels: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noisy PNG, like the pictures a model makes (noise is what makes
    /// PNGs big).
    fn noisy(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 23;
            image::Rgb([(x / 3 + n) as u8, (y / 3 + n) as u8, ((x + y) / 6) as u8])
        })
    }

    fn png_of(image: &RgbImage) -> Vec<u8> {
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    fn size_of_webp(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WEBP");
        let decoded = image::load_from_memory_with_format(bytes, image::ImageFormat::WebP).unwrap();
        (decoded.width(), decoded.height())
    }

    #[test]
    fn a_new_image_gets_its_medium_variant_first_and_its_thumbnail_pixels() {
        let png = png_of(&noisy(1024, 683));
        let first = first_variants(&png, None, false).unwrap();
        assert_eq!((first.width, first.height), (1024, 683));
        assert_eq!(first.ready.len(), 1);
        assert_eq!(first.ready[0].0, Variant::Medium);
        assert_eq!(size_of_webp(&first.ready[0].1), (704, 470));
        assert!(
            first.ready[0].1.len() * 5 <= png.len(),
            "much smaller than the PNG"
        );
        let thumb = first.thumb_pixels.unwrap();
        assert_eq!(thumb.dimensions(), (320, 213));
        assert_eq!(
            size_of_webp(&encode(&thumb, Variant::Thumb).unwrap()),
            (320, 213)
        );
    }

    #[test]
    fn a_much_larger_original_gets_the_higher_quality_the_browser_no_longer_hides() {
        // A model's square, portrait and landscape pictures shown at 704 px.
        for from in [1024, 896, 1152] {
            assert_eq!(encoding(Variant::Medium, from, 704).quality, 93.0, "{from}");
        }
        // The painter's 768 px, a little larger than the column.
        assert_eq!(encoding(Variant::Medium, 768, 704).quality, 86.0);
        // A picture already at its size.
        for from in [704, 512, 256] {
            assert_eq!(
                encoding(Variant::Medium, from, from).quality,
                82.0,
                "{from}"
            );
        }
    }

    #[test]
    fn a_display_variant_a_little_wider_than_the_medium_one_weighs_no_more() {
        let painter = encoding(Variant::Display, 768, 768);
        assert_eq!((painter.quality, painter.method), (82.0, 4));
        for (from, width) in [(1024, 1024), (896, 896), (2048, 1024), (704, 704)] {
            let display = encoding(Variant::Display, from, width);
            assert_eq!((display.quality, display.method), (83.0, 0), "{from}");
        }
        // As bytes: the painter's display variant is no heavier than its
        // medium one, though 64 px wider.
        let (_, pixels) = crate::render_offline("a quiet harbour at dusk", 768, 768).unwrap();
        let display = make(&pixels, Variant::Display).unwrap();
        let medium = make(&pixels, Variant::Medium).unwrap();
        assert_eq!(size_of_webp(&display), (768, 768));
        assert!(
            display.len() <= medium.len() * 11 / 10,
            "display {} B, medium {} B",
            display.len(),
            medium.len()
        );
    }

    #[test]
    fn with_all_the_thumbnail_and_display_variants_are_made_too() {
        let pixels = noisy(1200, 600);
        let first =
            first_variants(b"not decoded: the pixels are at hand", Some(&pixels), true).unwrap();
        let sizes: Vec<(Variant, (u32, u32))> = first
            .ready
            .iter()
            .map(|(variant, bytes)| (*variant, size_of_webp(bytes)))
            .collect();
        assert_eq!(
            sizes,
            [
                (Variant::Medium, (704, 352)),
                (Variant::Thumb, (320, 160)),
                (Variant::Display, (1024, 512))
            ]
        );
        assert!(first.thumb_pixels.is_none());
    }

    #[test]
    fn a_small_picture_is_encoded_once_for_both_its_medium_and_thumbnail() {
        let png = png_of(&noisy(256, 200));
        let first = first_variants(&png, None, false).unwrap();
        assert!(first.thumb_pixels.is_none(), "nothing left to encode after");
        assert_eq!(first.ready.len(), 2);
        assert_eq!(first.ready[0].0, Variant::Medium);
        assert_eq!(first.ready[1], (Variant::Thumb, first.ready[0].1.clone()));
        assert_eq!(size_of_webp(&first.ready[1].1), (256, 200));
    }

    #[test]
    fn variants_are_never_enlarged() {
        let small = noisy(300, 200);
        assert!(matches!(
            shrink(&small, Variant::Display).unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            size_of_webp(&make(&small, Variant::Medium).unwrap()),
            (300, 200)
        );
    }

    #[test]
    fn what_is_not_an_image_is_an_error() {
        assert!(matches!(
            first_variants(b"\x89PNG not really", None, false),
            Err(VariantError::Decode(_))
        ));
    }
}
