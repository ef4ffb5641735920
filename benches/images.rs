//! Image variants: what storing an image adds to a generation, and how many
//! bytes the page saves. Paints offline pictures at 768 px (the offline
//! default) and 1024 px (SDXL's size), then times making both WebP variants
//! (decode, resize, encode; median of 7 on this machine) and prints the sizes
//! of the PNG and its variants, and the display variant's PSNR against the
//! original (above ~40 dB the two look the same at that size). Asserts nothing.
//!
//!     cargo bench --features ssr --bench images

use lofianime::prompt::Prompt;
use lofianime_domain::make_variants;
use lofianime_domain::{ImageGenerator, OfflineGenerator};
use std::time::{Duration, Instant};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "{:>6} {:>10} {:>13} {:>8} {:>11} {:>14} {:>10}",
        "size", "PNG B", "display B", "share", "thumb B", "variants ms", "PSNR dB"
    );
    for size in [768, 1024] {
        let painter = OfflineGenerator::new(size, size, Duration::ZERO);
        let prompt = Prompt::parse("a quiet train station at dusk, cherry blossoms", 500).unwrap();
        let png = runtime
            .block_on(painter.generate(&prompt))
            .expect("a painted picture")
            .bytes;
        let mut times = Vec::new();
        let mut made = None;
        for _ in 0..7 {
            let started = Instant::now();
            made = Some(make_variants(&png).expect("variants"));
            times.push(started.elapsed());
        }
        times.sort();
        let variants = made.unwrap();
        println!(
            "{:>6} {:>10} {:>13} {:>7.1}% {:>11} {:>14.1} {:>10.1}",
            format!("{size}px"),
            png.len(),
            variants.display.len(),
            100.0 * variants.display.len() as f64 / png.len() as f64,
            variants.thumb.len(),
            times[3].as_secs_f64() * 1000.0,
            psnr(&png, &variants.display),
        );
    }
}

/// Peak signal-to-noise ratio of `encoded` against `original` (same size).
fn psnr(original: &[u8], encoded: &[u8]) -> f64 {
    let a = image::load_from_memory(original).unwrap().into_rgb8();
    let b = image::load_from_memory(encoded).unwrap().into_rgb8();
    assert_eq!(a.dimensions(), b.dimensions());
    let squared: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let mse = squared / a.as_raw().len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}
