//! What counts as a usable prompt. Shared by the server (which enforces it) and the
//! browser (which can tell the visitor before a round trip).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The default upper bound on a prompt's length, in characters (`prompt.max_chars`).
pub const DEFAULT_MAX_CHARS: usize = 500;

/// Why a prompt was refused. Each variant's `Display` is the sentence the visitor sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PromptError {
    #[error("Please enter a prompt.")]
    Empty,
    #[error("The prompt is too long: {chars} characters, at most {max} allowed.")]
    TooLong { chars: usize, max: usize },
    #[error("The prompt contains control characters; please use plain text.")]
    ControlCharacters,
}

/// A prompt that passed validation: trimmed, non-empty, within the length limit and
/// free of control characters (new lines and tabs become spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(String);

impl Prompt {
    /// Parses raw visitor input. Length is counted in Unicode scalar values, the way a
    /// person counts characters, not in bytes.
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, PromptError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(PromptError::Empty);
        }
        let chars = trimmed.chars().count();
        if chars > max_chars {
            return Err(PromptError::TooLong {
                chars,
                max: max_chars,
            });
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(PromptError::ControlCharacters);
        }
        let single_line = trimmed
            .split(['\n', '\r', '\t'])
            .filter(|part| !part.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self(single_line))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        let prompt = Prompt::parse("  a quiet train station at dusk \n", 500).unwrap();
        assert_eq!(prompt.as_str(), "a quiet train station at dusk");
    }

    #[test]
    fn empty_and_blank_prompts_are_refused() {
        assert_eq!(Prompt::parse("", 500), Err(PromptError::Empty));
        assert_eq!(Prompt::parse(" \t\n ", 500), Err(PromptError::Empty));
    }

    #[test]
    fn the_length_limit_counts_characters_not_bytes() {
        let at_limit = "あ".repeat(500);
        assert!(Prompt::parse(&at_limit, 500).is_ok());
        let over = "あ".repeat(501);
        assert_eq!(
            Prompt::parse(&over, 500),
            Err(PromptError::TooLong {
                chars: 501,
                max: 500
            })
        );
    }

    #[test]
    fn the_limit_applies_after_trimming() {
        let padded = format!("   {}   ", "x".repeat(10));
        assert!(Prompt::parse(&padded, 10).is_ok());
        assert!(Prompt::parse(&"x".repeat(11), 10).is_err());
    }

    #[test]
    fn line_breaks_inside_become_single_spaces() {
        let prompt = Prompt::parse("rainy street\n\nneon signs\tcat", 500).unwrap();
        assert_eq!(prompt.as_str(), "rainy street neon signs cat");
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(
            Prompt::parse("sunset\u{0007}beach", 500),
            Err(PromptError::ControlCharacters)
        );
        assert_eq!(
            Prompt::parse("nul\0byte", 500),
            Err(PromptError::ControlCharacters)
        );
    }

    #[test]
    fn the_error_messages_say_what_to_fix() {
        assert_eq!(PromptError::Empty.to_string(), "Please enter a prompt.");
        assert_eq!(
            PromptError::TooLong {
                chars: 612,
                max: 500
            }
            .to_string(),
            "The prompt is too long: 612 characters, at most 500 allowed."
        );
    }
}
