//! The smaller copies of an image that pages show: a lossy WebP at most 1024 px
//! wide for the result, and a 320 px one for lists (a 160 px tile on a 2x
//! screen). The original stays as the model made it, for Download and link
//! previews. Decoding and resizing by the `image` crate, encoding by libwebp
//! (the `webp` crate): CPU work, so callers run it off the async threads.

use bytes::Bytes;
use image::imageops::FilterType;
use image::RgbImage;
use lofianime_wire::Variant;
use std::borrow::Cow;

/// WebP quality of the display variant: at the size it is shown, it looks like
/// the PNG (measured by `cargo bench --bench images`: about 5% of its bytes at
/// 35 dB PSNR on the grainy offline pictures; 88 doubles the bytes for +1 dB).
pub const DISPLAY_QUALITY: f32 = 82.0;
/// WebP quality of the thumbnail: 160 px tiles hide more.
pub const THUMB_QUALITY: f32 = 72.0;

/// An original's size and its two smaller copies, encoded.
#[derive(Debug, Clone)]
pub struct Variants {
    pub width: u32,
    pub height: u32,
    pub display: Bytes,
    pub thumb: Bytes,
}

impl Variants {
    pub fn bytes(&self, variant: Variant) -> Option<&Bytes> {
        match variant {
            Variant::Display => Some(&self.display),
            Variant::Thumb => Some(&self.thumb),
            Variant::Original => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error("the image cannot be decoded: {0}")]
    Decode(#[from] image::ImageError),
    #[error("WebP encoding failed: {0}")]
    Encode(String),
}

/// Decodes `original` (PNG, JPEG or WebP) and makes both variants.
pub fn make_variants(original: &[u8]) -> Result<Variants, VariantError> {
    let image = image::load_from_memory(original)?.into_rgb8();
    let (width, height) = image.dimensions();
    Ok(Variants {
        width,
        height,
        display: encode(&shrink(&image, Variant::Display), DISPLAY_QUALITY)?,
        thumb: encode(&shrink(&image, Variant::Thumb), THUMB_QUALITY)?,
    })
}

/// The image at `variant`'s size (borrowed when it already fits).
fn shrink(image: &RgbImage, variant: Variant) -> Cow<'_, RgbImage> {
    let (width, height) = variant.size_of(image.width(), image.height());
    if (width, height) == image.dimensions() {
        Cow::Borrowed(image)
    } else {
        Cow::Owned(image::imageops::resize(
            image,
            width,
            height,
            FilterType::Triangle,
        ))
    }
}

fn encode(image: &RgbImage, quality: f32) -> Result<Bytes, VariantError> {
    let encoder = webp::Encoder::from_rgb(image.as_raw(), image.width(), image.height());
    let encoded = encoder
        .encode_simple(false, quality)
        .map_err(|error| VariantError::Encode(format!("{error:?}")))?;
    Ok(Bytes::copy_from_slice(&encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noisy 768 px PNG, like the offline painter's (noise is what makes PNGs big).
    fn noisy_png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| {
            let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 23;
            image::Rgb([(x / 3 + n) as u8, (y / 3 + n) as u8, ((x + y) / 6) as u8])
        });
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
    fn variants_are_webp_at_their_sizes_and_much_smaller() {
        let png = noisy_png(768, 512);
        let variants = make_variants(&png).unwrap();
        assert_eq!((variants.width, variants.height), (768, 512));
        assert_eq!(size_of_webp(&variants.display), (768, 512));
        assert_eq!(size_of_webp(&variants.thumb), (320, 213));
        assert!(
            variants.display.len() * 5 <= png.len(),
            "display {} B vs PNG {} B",
            variants.display.len(),
            png.len()
        );
        assert!(variants.thumb.len() < variants.display.len());
    }

    #[test]
    fn wide_images_are_brought_down_to_1024() {
        let variants = make_variants(&noisy_png(1200, 600)).unwrap();
        assert_eq!(size_of_webp(&variants.display), (1024, 512));
    }

    #[test]
    fn what_is_not_an_image_is_an_error() {
        assert!(matches!(
            make_variants(b"\x89PNG not really"),
            Err(VariantError::Decode(_))
        ));
    }
}
