//! What a visitor may choose besides the prompt: the picture's shape and its
//! seed. SDXL is trained on about a megapixel in a few shapes; the model gets
//! the shape's size and the seed as its `width`, `height` and `seed` inputs.

use serde::{Deserialize, Serialize};

/// The picture's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aspect {
    #[default]
    Square,
    Portrait,
    Landscape,
}

impl Aspect {
    pub const ALL: [Aspect; 3] = [Aspect::Square, Aspect::Portrait, Aspect::Landscape];

    /// `square`, `portrait` or `landscape` (as forms and the JSON API send it).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|aspect| aspect.as_str() == text.trim())
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Square => "square",
            Self::Portrait => "portrait",
            Self::Landscape => "landscape",
        }
    }

    /// What the form's choice says.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Square => "Square",
            Self::Portrait => "Portrait",
            Self::Landscape => "Landscape",
        }
    }

    /// The model's size for this shape (SDXL's: about a megapixel).
    pub const fn model_size(self) -> (u32, u32) {
        match self {
            Self::Square => (1024, 1024),
            Self::Portrait => (896, 1152),
            Self::Landscape => (1152, 896),
        }
    }

    /// This shape at `square` pixels a side for its square: the offline
    /// painter's size (multiples of 8).
    pub fn scaled(self, square_width: u32, square_height: u32) -> (u32, u32) {
        let (width, height) = self.model_size();
        let scale =
            |side: u32, of: u32| ((u64::from(side) * u64::from(of) / 1024) as u32 / 8 * 8).max(8);
        (scale(width, square_width), scale(height, square_height))
    }

    /// The shape of a picture `width` × `height`.
    pub fn of(width: u32, height: u32) -> Self {
        // More than 10 % apart: not square.
        if u64::from(width) * 10 > u64::from(height) * 11 {
            Self::Landscape
        } else if u64::from(height) * 10 > u64::from(width) * 11 {
            Self::Portrait
        } else {
            Self::Square
        }
    }
}

/// What a page says of a picture: "Portrait · seed 42" (or just the shape
/// when the seed is not known).
pub fn about(aspect: Aspect, seed: Option<u32>) -> String {
    match seed {
        Some(seed) => format!("{} · seed {seed}", aspect.label()),
        None => aspect.label().to_owned(),
    }
}

/// Why a visitor's choice could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceError {
    Aspect,
    Seed,
}

/// What a visitor asked for besides the prompt: a shape, and a seed when they
/// want a picture again (none: a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Choices {
    pub aspect: Aspect,
    pub seed: Option<u32>,
}

impl Choices {
    /// Reads the form's or the API's optional `aspect` and `seed`: absent or
    /// empty means the default (square, a new seed).
    pub fn parse(aspect: Option<&str>, seed: Option<&str>) -> Result<Self, ChoiceError> {
        let aspect = match aspect.map(str::trim).filter(|a| !a.is_empty()) {
            None => Aspect::default(),
            Some(text) => Aspect::parse(text).ok_or(ChoiceError::Aspect)?,
        };
        let seed = match seed.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => {
                Some(text.parse::<u32>().map_err(|_| ChoiceError::Seed)?)
            }
            Some(_) => return Err(ChoiceError::Seed),
        };
        Ok(Self { aspect, seed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_read_from_text_and_bad_ones_named() {
        assert_eq!(Choices::parse(None, None), Ok(Choices::default()));
        assert_eq!(
            Choices::parse(Some(" portrait "), Some("4294967295")),
            Ok(Choices {
                aspect: Aspect::Portrait,
                seed: Some(u32::MAX)
            })
        );
        assert_eq!(
            Choices::parse(Some(""), Some("")),
            Ok(Choices::default()),
            "empty fields are the defaults"
        );
        assert_eq!(
            Choices::parse(Some("round"), None),
            Err(ChoiceError::Aspect)
        );
        assert_eq!(
            Choices::parse(Some("Square"), None),
            Err(ChoiceError::Aspect)
        );
        for seed in ["4294967296", "-1", "1.5", "12abc", "+3"] {
            assert_eq!(
                Choices::parse(None, Some(seed)),
                Err(ChoiceError::Seed),
                "{seed}"
            );
        }
    }

    #[test]
    fn shapes_have_the_models_sizes_and_are_recognised_from_a_size() {
        assert_eq!(Aspect::Portrait.model_size(), (896, 1152));
        assert_eq!(Aspect::Landscape.model_size(), (1152, 896));
        assert_eq!(Aspect::Portrait.scaled(768, 768), (672, 864));
        assert_eq!(Aspect::Square.scaled(64, 64), (64, 64));
        for aspect in Aspect::ALL {
            let (w, h) = aspect.model_size();
            assert_eq!(Aspect::of(w, h), aspect);
            let (w, h) = aspect.scaled(768, 768);
            assert_eq!(Aspect::of(w, h), aspect);
        }
    }
}
