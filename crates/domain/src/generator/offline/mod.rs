//! The offline generator: paints a calm lofi landscape from the prompt alone, so the
//! app works on a fresh machine with no account. The same prompt always gives the
//! same picture; words in the prompt steer it ("night", "city", "sea", "rain", …).

use super::{GeneratedImage, ImageFormat, ImageGenerator, Look, ModelError, ProgressReporter};
use crate::cpu;
use async_trait::async_trait;
use bytes::Bytes;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use lofianime_wire::progress::Phase;
use lofianime_wire::prompt::Prompt;
use std::time::Duration;

mod paint;
mod scene;

use scene::Scene;

/// Paints pictures locally. `delay` imitates a model's latency (0 by default).
#[derive(Debug, Clone)]
pub struct OfflineGenerator {
    width: u32,
    height: u32,
    delay: Duration,
}

impl OfflineGenerator {
    pub fn new(width: u32, height: u32, delay: Duration) -> Self {
        Self {
            width,
            height,
            delay,
        }
    }
}

#[async_trait]
impl ImageGenerator for OfflineGenerator {
    fn describe(&self) -> String {
        format!(
            "offline generator ({}x{} PNG painted locally, no model calls; set REPLICATE_API_TOKEN to use the real model)",
            self.width, self.height
        )
    }

    fn is_offline(&self) -> bool {
        true
    }

    /// Starting for the first quarter of the configured delay; then, once a CPU
    /// worker is free (queued until then), generating: the rest of the delay
    /// and the painting itself, on that worker.
    async fn generate_with_progress(
        &self,
        prompt: &Prompt,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        self.paint(prompt, None, progress).await
    }

    /// The shape scaled to the configured size of a square picture; the same
    /// prompt, shape and seed always give the same picture.
    async fn generate_look(
        &self,
        prompt: &Prompt,
        look: Look,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        self.paint(prompt, Some(look), progress).await
    }
}

impl OfflineGenerator {
    async fn paint(
        &self,
        prompt: &Prompt,
        look: Option<Look>,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        progress.report(Phase::Starting);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay / 4).await;
        }
        // Painting and PNG encoding are CPU work: on a CPU worker, off the async
        // threads. Until one is free the generation is queued, not drawing (so
        // leaving or cancelling costs nothing).
        if cpu::all_busy() {
            progress.report(Phase::Queued);
        }
        let worker = cpu::worker().await;
        progress.report(Phase::Generating { percent: None });
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay - self.delay / 4).await;
        }
        let (width, height) = match look {
            Some(look) => look.aspect.scaled(self.width, self.height),
            None => (self.width, self.height),
        };
        let seed = look.map(|look| look.seed);
        let text = prompt.as_str().to_owned();
        let (png, pixels) =
            cpu::run_with(worker, move || render_seeded(&text, seed, width, height))
                .await
                .map_err(|e| ModelError::Render(format!("render task failed: {e}")))??;
        // The pixels go along: the image's variants are made without
        // decoding the PNG again.
        Ok(GeneratedImage {
            bytes: Bytes::from(png),
            format: ImageFormat::Png,
            pixels: Some(std::sync::Arc::new(pixels)),
            seed,
            owner: None,
        })
    }
}

/// Paints the scene for `prompt` and encodes it as PNG.
#[cfg(test)]
pub fn render_png(prompt: &str, width: u32, height: u32) -> Result<Vec<u8>, ModelError> {
    render(prompt, width, height).map(|(png, _)| png)
}

/// Paints the scene for `prompt`: the PNG, and its pixels.
pub fn render(prompt: &str, width: u32, height: u32) -> Result<(Vec<u8>, RgbImage), ModelError> {
    render_seeded(prompt, None, width, height)
}

/// Paints the scene for `prompt` and `seed` (none: the prompt's own).
pub fn render_seeded(
    prompt: &str,
    seed: Option<u32>,
    width: u32,
    height: u32,
) -> Result<(Vec<u8>, RgbImage), ModelError> {
    let pixels = Scene::from_prompt_and_seed(prompt, seed).paint(width, height);
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Adaptive)
        .write_image(&pixels, width, height, ExtendedColorType::Rgb8)
        .map_err(|e| ModelError::Render(format!("PNG encoding failed: {e}")))?;
    let pixels = RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| ModelError::Render("the painting has the wrong size".into()))?;
    Ok((png, pixels))
}

#[cfg(test)]
mod tests {
    use super::scene::Setting;
    use super::*;

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .expect("a valid PNG")
            .to_rgb8()
    }

    #[test]
    fn renders_a_png_of_the_requested_size() {
        let png = render_png("a quiet train station at dusk", 96, 64).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let image = decode(&png);
        assert_eq!((image.width(), image.height()), (96, 64));
    }

    #[test]
    fn the_same_prompt_gives_the_same_picture() {
        assert_eq!(
            render_png("rainy street", 64, 64).unwrap(),
            render_png("rainy street", 64, 64).unwrap()
        );
    }

    #[test]
    fn different_prompts_give_different_pictures() {
        assert_ne!(
            render_png("rainy street", 64, 64).unwrap(),
            render_png("rainy streets", 64, 64).unwrap()
        );
    }

    #[test]
    fn a_night_prompt_is_darker_than_a_morning_prompt() {
        let brightness = |prompt: &str| {
            let image = decode(&render_png(prompt, 64, 64).unwrap());
            image
                .pixels()
                .map(|p| p.0.iter().map(|&c| c as u64).sum::<u64>())
                .sum::<u64>()
        };
        assert!(brightness("a lake at night") < brightness("a lake in the morning"));
    }

    #[test]
    fn the_picture_is_not_flat() {
        // A real scene has many colours; a blank or test-pattern image has few.
        let image = decode(&render_png("hills", 128, 128).unwrap());
        let distinct: std::collections::HashSet<_> = image.pixels().map(|p| p.0).collect();
        assert!(distinct.len() > 500, "only {} colours", distinct.len());
    }

    #[test]
    fn keywords_match_whole_words_from_their_start() {
        assert!(Scene::from_prompt("a rainy street").palette.rain);
        assert!(!Scene::from_prompt("a quiet train station").palette.rain);
        assert_eq!(
            Scene::from_prompt("a quiet train station").setting,
            Setting::City
        );
        assert_eq!(Scene::from_prompt("Ocean waves").setting, Setting::Sea);
    }

    #[tokio::test]
    async fn the_generator_returns_png_bytes() {
        let generator = OfflineGenerator::new(48, 48, Duration::ZERO);
        let prompt = Prompt::parse("a cat on a rooftop", 500).unwrap();
        let image = generator.generate(&prompt).await.unwrap();
        assert_eq!(image.format, ImageFormat::Png);
        assert_eq!(decode(&image.bytes).width(), 48);
    }
}
