//! Durations in configuration, read and written by `humantime`: `500ms`, `30s`, `5m`, `6h`, `1d`,
//! `1h 30m`, `1.5s`, `2days`, ..., or a plain whole number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses what `humantime` reads (`500ms`, `30s`, `5m`, `6h`, `1d`, `1h 30m`, `1.5s`, ...) or a
/// plain whole number of seconds (`300`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?} is too long"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 30s, 5m, 6h or 1d: {e}"))
}

/// Writes a duration the way [`parse_duration`] reads it (`90s` as `1m 30s`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A duration in a TOML file: a string as for [`parse_duration`], or an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDuration(pub Duration);

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(FileDuration(Duration::from_secs(s))),
            Raw::Text(t) => parse_duration(&t)
                .map(FileDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("300", Duration::from_secs(300)),
            (" 300 ", Duration::from_secs(300)),
            ("5m", Duration::from_secs(300)),
            ("5min", Duration::from_secs(300)),
            ("6h", Duration::from_secs(6 * 3600)),
            ("1d", Duration::from_secs(86_400)),
            ("2days", Duration::from_secs(2 * 86_400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
        ] {
            assert_eq!(parse_duration(text), Ok(d), "{text}");
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        for bad in [
            "",
            "m",
            "5 parsecs",
            "-1s",
            "1.5",
            "99999999999999999999",
            "s5",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }
}
