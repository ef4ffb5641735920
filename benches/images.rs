//! Where an image's CPU time goes when it is stored, and what each choice in
//! `crates/domain/src/variants.rs` buys. For the offline painter's 768 px
//! picture and a 1024 px picture under film grain (SDXL's size; grain is
//! what makes its PNGs 1.5–2.5 MB), median of 7 runs each, on this machine:
//! - decoding the PNG; resizing with the `image` crate's Triangle filter (as
//!   before) and with `fast_image_resize`'s Catmull-Rom (now);
//! - WebP at each quality and method: bytes, ms, PSNR against the source at
//!   the variant's size;
//! - what a visitor downloads to see the result at 1× (the column is 704 px)
//!   and 2×, before (the 1024 px display variant, method 4) and now (medium
//!   704 px, resp. display 1024 px, method 0), and its PSNR as seen (scaled
//!   to the column);
//! - what storing an image costs before its answer now, and its thumbnail
//!   after;
//! - the offline painter: painting, and its PNG.
//!
//! Asserts nothing.
//!
//!     cargo bench --features ssr --bench images

#[path = "support/grain.rs"]
mod grain;

use image::RgbImage;
use lofianime_domain::image_work::{self, Encoding};
use lofianime_domain::Variant;
use std::time::Instant;

fn median_ms(runs: usize, mut work: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let squared: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    10.0 * (255.0 * 255.0 / (squared / a.as_raw().len() as f64)).log10()
}

/// `image` scaled to `width` (Catmull-Rom), as a browser shows it.
fn seen_at(image: &RgbImage, width: u32) -> RgbImage {
    let height = (u64::from(image.height()) * u64::from(width) / u64::from(image.width())) as u32;
    image_work::resize(image, width, height)
}

fn webp_pixels(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes).unwrap().into_rgb8()
}

fn study(name: &str, png: &[u8]) {
    let source = image_work::decode(png).unwrap();
    let (width, height) = source.dimensions();
    println!("\n== {name}: {width}x{height}, PNG {} B", png.len());
    let decode = median_ms(7, || {
        image_work::decode(png).unwrap();
    });
    println!("decode: {decode:.1} ms");
    for variant in [Variant::Medium, Variant::Thumb] {
        let (w, h) = variant.size_of(width, height);
        if (w, h) == (width, height) {
            continue;
        }
        let before = median_ms(7, || {
            image::imageops::resize(&source, w, h, image::imageops::FilterType::Triangle);
        });
        let now = median_ms(7, || {
            image_work::resize(&source, w, h);
        });
        println!("resize to {w} px: image Triangle {before:.2} ms, fast_image_resize Catmull-Rom {now:.2} ms");
    }
    println!("WebP by quality and method (PSNR against the source at that size):");
    let mut sizes_done = Vec::new();
    for variant in [Variant::Display, Variant::Medium, Variant::Thumb] {
        let (w, h) = variant.size_of(width, height);
        if sizes_done.contains(&w) {
            continue;
        }
        sizes_done.push(w);
        let target = image_work::resize(&source, w, h);
        for quality in [72.0, 82.0] {
            let mut line = format!("  {w:>4} px q{quality:<3}");
            for method in [0, 1, 2, 3, 4, 6] {
                let encoding = Encoding { quality, method };
                let mut bytes = Default::default();
                let ms = median_ms(3, || {
                    bytes = image_work::encode_with(&target, encoding).unwrap();
                });
                let back = webp_pixels(&bytes);
                line.push_str(&format!(
                    " | m{method} {:>7} B {:>5.1} ms {:>5.2} dB",
                    bytes.len(),
                    ms,
                    psnr(&target, &back)
                ));
            }
            println!("{line}");
        }
    }
    // The medium variant by quality, as a 1x visitor sees it (the column's
    // width), against the display variant as it was made before.
    let column = 704.min(width);
    let reference = seen_at(&source, column);
    let medium = image_work::shrink(&source, Variant::Medium)
        .unwrap()
        .into_owned();
    println!("medium variant seen at {column} px, by quality and method:");
    for quality in [82.0, 86.0, 88.0, 92.0, 92.5, 93.0, 95.0] {
        let mut line = format!("  q{quality:<3}");
        for method in [0, 1, 4] {
            let bytes = image_work::encode_with(&medium, Encoding { quality, method }).unwrap();
            line.push_str(&format!(
                " | m{method} {:>7} B {:>5.2} dB",
                bytes.len(),
                psnr(&reference, &seen_at(&webp_pixels(&bytes), column))
            ));
        }
        println!("{line}");
    }
    // What a visitor downloads, and how it looks at the column's width.
    let before_display = image_work::encode_with(
        &image_work::resize(
            &source,
            Variant::Display.size_of(width, height).0,
            Variant::Display.size_of(width, height).1,
        ),
        Encoding {
            quality: 82.0,
            method: 4,
        },
    )
    .unwrap();
    let now_medium = image_work::make(&source, Variant::Medium).unwrap();
    // A 2x visitor gets the widest variant the page offers.
    let widest = lofianime::wire::srcset_variants(width, height)
        .last()
        .map_or(Variant::Medium, |(variant, _)| *variant);
    let now_display = image_work::make(&source, widest).unwrap();
    let seen = |bytes: &[u8]| psnr(&reference, &seen_at(&webp_pixels(bytes), column));
    // The medium variant as it was until December 2026: 768 px, quality 95
    // method 0 when downscaled, else 82 method 1.
    let wide_medium = image_work::resize(&source, 768.min(width), height * 768.min(width) / width);
    let wide_encoding = if width > 768 { (95.0, 0) } else { (82.0, 1) };
    let wide_medium = image_work::encode_with(
        &wide_medium,
        Encoding {
            quality: wide_encoding.0,
            method: wide_encoding.1,
        },
    )
    .unwrap();
    println!(
        "1x visitor (seen at {column} px): before {} B ({:.2} dB), 768 px medium {} B ({:.2} dB), now {} B ({:.2} dB)",
        before_display.len(),
        seen(&before_display),
        wide_medium.len(),
        seen(&wide_medium),
        now_medium.len(),
        seen(&now_medium)
    );
    // Seen at the display variant's size: a narrower widest variant (a 768 px
    // picture offers 704 px) is scaled up to it, as the browser does.
    let reference = seen_at(&source, Variant::Display.size_of(width, height).0);
    let seen_2x = |bytes: &[u8]| psnr(&reference, &seen_at(&webp_pixels(bytes), reference.width()));
    println!(
        "2x visitor (seen at {} px): before {} B ({:.2} dB), now {} B ({:.2} dB)",
        reference.width(),
        before_display.len(),
        seen_2x(&before_display),
        now_display.len(),
        seen_2x(&now_display)
    );
    // Storing: before the answer (decode, medium, the thumbnail's pixels),
    // then the thumbnail.
    let mut first = None;
    let answer = median_ms(7, || {
        first = Some(image_work::first_variants(png, None, false).unwrap());
    });
    let thumb_pixels = first.unwrap().thumb_pixels.unwrap();
    let after = median_ms(7, || {
        image_work::encode(&thumb_pixels, Variant::Thumb).unwrap();
    });
    let display = median_ms(3, || {
        image_work::make(&source, Variant::Display).unwrap();
    });
    println!(
        "storing now: {answer:.1} ms before the answer (decode + medium), {after:.1} ms after it (thumbnail); the display variant on its first request {display:.1} ms"
    );
    let with_pixels = median_ms(7, || {
        image_work::first_variants(png, Some(&source), false).unwrap();
    });
    println!(
        "  with the pixels at hand (the offline painter): {with_pixels:.1} ms before the answer"
    );
}

fn main() {
    let painted = lofianime_domain::render_offline(
        "a quiet train station at dusk, cherry blossoms",
        768,
        768,
    )
    .unwrap();
    let paint = median_ms(7, || {
        lofianime_domain::render_offline(
            "a quiet train station at dusk, cherry blossoms",
            768,
            768,
        )
        .unwrap();
    });
    println!(
        "offline painter, 768 px: {paint:.1} ms to paint and encode its PNG ({} B)",
        painted.0.len()
    );
    study("the offline painter's picture", &painted.0);
    study(
        "a grainy 1024 px picture",
        &grain::png_of(&grain::grainy(1024, 13)),
    );
}
