//! Window lengths written the way `@upstash/ratelimit` accepts them: `"1440 m"`,
//! `"10 s"`, `"1d"` (an integer, at most one space, then ms|s|m|h|d).

/// A window length that could not be read; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a window length: write a whole number and a unit, e.g. \"1440 m\", \"10 s\", \"1d\" (units: ms, s, m, h, d)")]
pub struct WindowError {
    pub input: String,
}

/// Parses a window length into milliseconds. Zero is refused: a window must have a length.
pub fn parse_window(input: &str) -> Result<u64, WindowError> {
    let error = || WindowError {
        input: input.to_owned(),
    };
    let digits_end = input
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(error)?;
    let (number, rest) = input.split_at(digits_end);
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    let multiplier: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(error()),
    };
    let number: u64 = number.parse().map_err(|_| error())?;
    match number.checked_mul(multiplier) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_forms_the_js_library_accepts() {
        assert_eq!(parse_window("1440 m"), Ok(86_400_000));
        assert_eq!(parse_window("10 s"), Ok(10_000));
        assert_eq!(parse_window("1d"), Ok(86_400_000));
        assert_eq!(parse_window("250ms"), Ok(250));
        assert_eq!(parse_window("2 h"), Ok(7_200_000));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "m",
            "10",
            "10  s",
            " 10 s",
            "10 s ",
            "1.5 h",
            "-1 s",
            "10 w",
            "10 S",
            "0 s",
            "99999999999999999999 d",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn the_error_names_the_input_and_the_accepted_form() {
        let message = parse_window("1 week").unwrap_err().to_string();
        assert!(message.contains("\"1 week\""), "{message}");
        assert!(message.contains("\"1440 m\""), "{message}");
    }
}
