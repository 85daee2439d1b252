//! Memory sizes as written in `hal0.toml`: `96GiB`, `512MiB`, `1.5GB`, or a plain byte count;
//! and as Kubernetes quantities are written: `8Gi`, `512Mi`, `2G`, `500M`, `1k`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, JsonSchema)]
#[schemars(transparent)]
pub struct ByteSize(#[schemars(with = "String")] pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a memory size: {reason}; write it like \"96GiB\", \"512MiB\", \"1.5GB\" or \"8Gi\""
)]
pub struct ByteSizeError {
    input: String,
    reason: String,
}

const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Kubernetes quantity suffixes, matched exactly (case matters: `m` would be milli).
const QUANTITY_UNITS: [(&str, u64); 9] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

/// The strings [`ByteSize::parse`] accepts whatever their value, as a pattern for the CRD
/// schema (Go's RE2 syntax). Anything it admits parses: at most 18 digits for a plain byte
/// count and 6 (+3 decimals) before a unit keep every value below `u64::MAX`.
pub const BYTESIZE_PATTERN: &str =
    r"^([0-9]{1,18}|[0-9]{1,6}(\.[0-9]{1,3})? ?((?i:[kmgt]i?b|b)|[KMGT]i|[kKMGT]))$";

impl ByteSize {
    pub fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }

    pub fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    pub fn parse(input: &str) -> Result<Self, ByteSizeError> {
        let err = |reason: &str| ByteSizeError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let s = input.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        if num.is_empty() {
            return Err(err("expected a number"));
        }
        let unit = unit.trim();
        let mult = if unit.is_empty() {
            1
        } else if let Some((_, m)) = QUANTITY_UNITS.iter().find(|(u, _)| *u == unit) {
            *m
        } else if unit == "m" {
            return Err(err(
                "\"m\" means milli (a thousandth); for megabytes write \"M\", \"Mi\" or \"MiB\"",
            ));
        } else {
            UNITS
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(unit))
                .map(|(_, m)| *m)
                .ok_or_else(|| {
                    err(&format!(
                        "unknown unit {unit:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, or Kubernetes' Ki, Mi, Gi, Ti, k, M, G, T)"
                    ))
                })?
        };
        let value: f64 = num.parse().map_err(|_| err("bad number"))?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(err("too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if b >= size {
                let v = b as f64 / size as f64;
                return if b.is_multiple_of(size) {
                    write!(f, "{}{unit}", b / size)
                } else {
                    write!(f, "{v:.1}{unit}")
                };
            }
        }
        write!(f, "{b}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(ByteSize::parse("96GiB").unwrap(), ByteSize::gib(96));
        assert_eq!(ByteSize::parse("512MiB").unwrap(), ByteSize::mib(512));
        assert_eq!(ByteSize::parse("1.5GB").unwrap().0, 1_500_000_000);
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1024);
        assert_eq!(ByteSize::parse("2 gib").unwrap(), ByteSize::gib(2));
    }

    #[test]
    fn cluster_style_quantities_parse() {
        assert_eq!(ByteSize::parse("8Gi").unwrap(), ByteSize::gib(8));
        assert_eq!(ByteSize::parse("512Mi").unwrap(), ByteSize::mib(512));
        assert_eq!(ByteSize::parse("1Ti").unwrap().0, 1 << 40);
        assert_eq!(ByteSize::parse("2G").unwrap().0, 2_000_000_000);
        assert_eq!(ByteSize::parse("500M").unwrap().0, 500_000_000);
        assert_eq!(ByteSize::parse("1k").unwrap().0, 1000);
        assert_eq!(ByteSize::parse("1.5Gi").unwrap(), ByteSize(1536 << 20));
        let milli = ByteSize::parse("512m").unwrap_err().to_string();
        assert!(milli.contains("milli"), "{milli}");
    }

    #[test]
    fn the_largest_pattern_values_fit() {
        for s in [
            "999999999999999999",
            "999999.999TiB",
            "999999.999Ti",
            "999999T",
        ] {
            assert!(ByteSize::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for s in ["", "GiB", "12XB", "1..2GB", "8gi", "8mi"] {
            assert!(ByteSize::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(ByteSize::gib(96).to_string(), "96GiB");
        assert_eq!(ByteSize(1536 << 20).to_string(), "1.5GiB");
        assert_eq!(ByteSize(10).to_string(), "10B");
    }
}
