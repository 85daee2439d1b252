//! Human durations as written in `hal0.toml`: `90s`, `10m`, `1h30m`, `500ms`, `0s`.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a sequence of `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, JsonSchema)]
#[schemars(transparent)]
pub struct HumanDuration(
    #[schemars(
        with = "String",
        regex(pattern = r"^([0-9]{1,9}(ms|s|m|h|d)){1,5}$"),
        length(max = 64)
    )]
    pub Duration,
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty; write it like \"90s\", \"10m\" or \"1h30m\"")]
    Empty,
    #[error(
        "{input:?} is not a duration: {reason}; write it like \"90s\", \"10m\" or \"1h30m\" (units: ms, s, m, h, d)"
    )]
    Invalid { input: String, reason: String },
}

impl HumanDuration {
    pub fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let invalid = |reason: &str| DurationError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total = Duration::ZERO;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(invalid("expected a number"));
            }
            let n: u64 = s[start..i]
                .parse()
                .map_err(|_| invalid("number too large"))?;
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[ustart..i];
            let part = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "d" => Duration::from_secs(n.saturating_mul(86400)),
                "" => return Err(invalid("missing unit after the number")),
                other => return Err(invalid(&format!("unknown unit {other:?}"))),
            };
            total = total
                .checked_add(part)
                .ok_or_else(|| invalid("too large"))?;
        }
        Ok(HumanDuration(total))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{}", ms / size, unit)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HumanDuration::parse(s)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_durations_parse() {
        let cases = [
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("0s", 0),
            ("1d", 86_400_000),
            ("2m30s", 150_000),
        ];
        for (input, ms) in cases {
            assert_eq!(
                HumanDuration::parse(input).unwrap().0.as_millis(),
                ms,
                "{input}"
            );
        }
    }

    #[test]
    fn invalid_durations_say_why() {
        for input in ["", "10", "m", "10x", "ten minutes", "1.5h", "-1s"] {
            assert!(HumanDuration::parse(input).is_err(), "{input}");
        }
        let err = HumanDuration::parse("10x").unwrap_err().to_string();
        assert!(err.contains("unknown unit \"x\""), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for input in ["90s", "10m", "1h30m", "500ms", "0s", "1d2h"] {
            let d = HumanDuration::parse(input).unwrap();
            assert_eq!(HumanDuration::parse(&d.to_string()).unwrap(), d);
        }
        assert_eq!(HumanDuration::parse("90s").unwrap().to_string(), "1m30s");
    }
}
