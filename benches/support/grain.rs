//! Pictures as a model makes them, for the benchmarks: soft gradients under
//! film grain (deterministic; grain is what makes a model's PNGs 1.5–2.5 MB).

use image::{ImageEncoder, RgbImage};

/// A `size` px square picture with grain of amplitude `grain`.
pub fn grainy(size: u32, grain: i32) -> RgbImage {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    RgbImage::from_fn(size, size, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % (2 * grain as u64 + 1)) as i32 - grain;
        let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
        let base = [
            60.0 + 150.0 * fy + 30.0 * (fx * 12.0).sin(),
            80.0 + 100.0 * fx + 25.0 * (fy * 9.0).cos(),
            140.0 + 80.0 * (1.0 - fy) + 20.0 * ((fx + fy) * 20.0).sin(),
        ];
        image::Rgb(base.map(|c| (c as i32 + noise).clamp(0, 255) as u8))
    })
}

/// `image` as a PNG.
pub fn png_of(image: &RgbImage) -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    png
}
