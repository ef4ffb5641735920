//! How the pages say times, windows, errors and file names; plain functions,
//! tested here.

use crate::wire::ApiError;

/// "5 h 12 min", "12 min", "42 s": how long until `reset_ms`.
pub fn describe_wait(now_ms: u64, reset_ms: u64) -> String {
    let secs = reset_ms.saturating_sub(now_ms).div_ceil(1000);
    match (secs / 3600, (secs % 3600).div_ceil(60), secs) {
        (0, _, s) if s < 60 => format!("{s} s"),
        (0, m, _) => format!("{m} min"),
        (h, 60, _) => format!("{} h", h + 1),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// An error as the studio says it (the shared budget's refusal with when it reopens).
pub fn error_sentence(error: &ApiError, now_ms: u64) -> String {
    match error {
        ApiError::BudgetSpent(budget) | ApiError::DailyBudgetSpent(budget) => format!(
            "{error} It reopens in {}.",
            describe_wait(now_ms, budget.reset_ms)
        ),
        other => other.to_string(),
    }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn describe_age(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", secs / 60),
        3_600..86_400 => format!("{} h ago", secs / 3_600),
        86_400..172_800 => "yesterday".to_owned(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A file name for a downloaded image, from its prompt: "a-quiet-train-station.png".
pub fn download_name(prompt: &str, url: &str) -> String {
    let extension = url.rsplit_once('.').map_or("png", |(_, ext)| ext);
    let mut slug = String::new();
    for word in prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if slug.len() + word.len() + 1 > 60 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word.to_lowercase());
    }
    if slug.is_empty() {
        slug.push_str("lofianime");
    }
    format!("{slug}.{extension}")
}

/// The page with `prompt` already typed in.
pub fn again_url(prompt: &str) -> String {
    let encoded: String = prompt
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/?prompt={encoded}")
}

/// "day", "6 hours", "90 seconds": a window length as a person says it.
pub fn describe_window(window_ms: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (86_400_000, "day"),
        (3_600_000, "hour"),
        (60_000, "minute"),
        (1_000, "second"),
        (1, "millisecond"),
    ];
    let (size, name) = UNITS
        .into_iter()
        .find(|(size, _)| window_ms.is_multiple_of(*size))
        .unwrap_or((1, "millisecond"));
    match window_ms / size {
        1 => name.to_owned(),
        n => format!("{n} {name}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::describe_window;

    #[test]
    fn downloads_are_named_after_the_prompt() {
        use super::download_name;
        assert_eq!(
            download_name("A quiet train station, at dusk!", "/images/x.png"),
            "a-quiet-train-station-at-dusk.png"
        );
        assert_eq!(download_name("東京の夜", "/images/x.jpg"), "東京の夜.jpg");
        assert_eq!(download_name("!!!", "/images/x.png"), "lofianime.png");
        assert!(download_name(&"word ".repeat(40), "/images/x.png").len() <= 64);
    }

    #[test]
    fn a_spent_daily_budget_says_when_it_reopens() {
        use crate::wire::{ApiError, Quota};
        let now_ms = 1_000_000;
        let reset_ms = now_ms + (6 * 3600 + 2 * 60) * 1000;
        let spent = ApiError::DailyBudgetSpent(Quota {
            limit: 500,
            remaining: 0,
            reset_ms,
        });
        assert_eq!(
            super::error_sentence(&spent, now_ms),
            "Today's image budget is used up. It reopens in 6 h 2 min."
        );
    }

    #[test]
    fn the_prompt_again_link_encodes_the_prompt() {
        assert_eq!(
            super::again_url("a cat & dog?"),
            "/?prompt=a+cat+%26+dog%3F"
        );
    }

    #[test]
    fn waits_read_the_way_people_say_them() {
        use super::describe_wait;
        assert_eq!(describe_wait(0, 42_000), "42 s");
        assert_eq!(describe_wait(0, 12 * 60_000), "12 min");
        assert_eq!(describe_wait(0, 5 * 3_600_000 + 12 * 60_000), "5 h 12 min");
        assert_eq!(describe_wait(0, 3_600_000), "1 h");
        assert_eq!(describe_wait(0, 3_600_000 - 1), "1 h");
        assert_eq!(describe_wait(10, 5), "0 s");
    }

    #[test]
    fn ages_read_the_way_people_say_them() {
        use super::describe_age;
        assert_eq!(describe_age(59_999, 0), "just now");
        assert_eq!(describe_age(5 * 60_000, 0), "5 min ago");
        assert_eq!(describe_age(3 * 3_600_000 + 5, 0), "3 h ago");
        assert_eq!(describe_age(30 * 3_600_000, 0), "yesterday");
        assert_eq!(describe_age(3 * 86_400_000, 0), "3 days ago");
        assert_eq!(
            describe_age(0, 10),
            "just now",
            "a clock behind is not negative"
        );
    }

    #[test]
    fn windows_read_the_way_people_say_them() {
        assert_eq!(describe_window(86_400_000), "day");
        assert_eq!(describe_window(2 * 86_400_000), "2 days");
        assert_eq!(describe_window(6 * 3_600_000), "6 hours");
        assert_eq!(describe_window(90_000), "90 seconds");
        assert_eq!(describe_window(250), "250 milliseconds");
    }
}
