//! What a prompt decides about its picture: the time of day, the setting and
//! the seed every stroke is drawn from; and the order the strokes are painted in.

use super::paint::{Canvas, Palette};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setting {
    Hills,
    City,
    Sea,
}

/// Everything that decides a picture, derived from the prompt.
pub(super) struct Scene {
    pub(super) palette: Palette,
    pub(super) setting: Setting,
    pub(super) seed: [u8; 32],
}

impl Scene {
    #[cfg(test)]
    pub(super) fn from_prompt(prompt: &str) -> Self {
        Self::from_prompt_and_seed(prompt, None)
    }

    /// The scene for `prompt`; another `seed` draws every stroke anew (the
    /// prompt's words still choose the time of day and the setting).
    pub(super) fn from_prompt_and_seed(prompt: &str, seed: Option<u32>) -> Self {
        let mut hash = Sha256::new();
        hash.update(prompt.as_bytes());
        if let Some(seed) = seed {
            hash.update(b"\0seed");
            hash.update(seed.to_be_bytes());
        }
        let seed: [u8; 32] = hash.finalize().into();
        let lower = prompt.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        // A keyword matches the start of a word: "rainy" is rain, "train" is not.
        let has = |keywords: &[&str]| {
            keywords
                .iter()
                .any(|k| words.iter().any(|w| w.starts_with(k)))
        };
        let palette = if has(&["rain", "storm", "cloudy", "grey", "gray", "fog"]) {
            Palette::rain()
        } else if has(&["night", "moon", "star", "midnight", "dark", "neon"]) {
            Palette::night()
        } else if has(&["morning", "sunrise", "dawn", "noon", "day"]) {
            Palette::morning()
        } else if has(&["sunset", "evening"]) {
            Palette::sunset()
        } else if has(&["dusk", "twilight", "purple"]) {
            Palette::dusk()
        } else if has(&["golden", "autumn", "afternoon", "summer", "warm"]) {
            Palette::golden()
        } else {
            [Palette::sunset(), Palette::dusk(), Palette::golden()][seed[0] as usize % 3]
        };
        let setting = if has(&[
            "city", "street", "tokyo", "town", "building", "rooftop", "skyline", "shop", "cafe",
            "station", "train", "alley", "downtown",
        ]) {
            Setting::City
        } else if has(&[
            "sea", "ocean", "beach", "lake", "river", "water", "harbor", "harbour", "shore", "bay",
            "coast", "pool",
        ]) {
            Setting::Sea
        } else if has(&[
            "mountain",
            "hill",
            "field",
            "meadow",
            "forest",
            "valley",
            "countryside",
        ]) {
            Setting::Hills
        } else {
            [Setting::Hills, Setting::City, Setting::Sea][seed[1] as usize % 3]
        };
        Self {
            palette,
            setting,
            seed,
        }
    }

    /// Paints the scene into RGB8 pixels, row by row.
    pub(super) fn paint(&self, width: u32, height: u32) -> Vec<u8> {
        let mut canvas = Canvas::new(width as usize, height as usize, self.palette);
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        let horizon = match self.setting {
            Setting::Sea => 0.58,
            _ => 0.66,
        };
        canvas.sky(horizon);
        if self.palette.stars {
            canvas.stars(&mut rng);
        }
        let sun_x = rng.random_range(0.22..0.78);
        let sun_y = horizon - rng.random_range(0.06..0.16);
        let sun_r = rng.random_range(0.07..0.11);
        canvas.sun(sun_x, sun_y, sun_r);
        canvas.clouds(&mut rng, horizon);
        match self.setting {
            Setting::Hills => canvas.hills(&mut rng, horizon),
            Setting::City => canvas.city(&mut rng, horizon),
            Setting::Sea => canvas.sea(&mut rng, horizon, sun_x),
        }
        if self.palette.rain {
            canvas.rain(&mut rng);
        }
        canvas.finish(&mut rng)
    }
}
