//! Scalar units a plan is written in: durations (`1.5s`, `500ms`, `2m`) and sizes (`4KiB`, `1MB`, `100`).
//!
//! Both deserialize from YAML scalars; a bad value is a deserialization error, so serde-saphyr attaches
//! the line and column of the offending scalar.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A non-negative duration written the human way. Negative values are rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(into = "String")]
pub struct Dur(pub Duration);

impl Dur {
    pub fn ms(self) -> u64 {
        self.0.as_millis() as u64
    }
    pub fn from_ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        humantime::format_duration(d.0).to_string()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Parses `250ms`, `3s`, `1.5s`, `2m`, `1h 30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!(
            "duration `{t}` is negative; durations are >= 0 (e.g. 500ms, 3s, 2m)"
        ));
    }
    if let Ok(secs) = t.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    // humantime has no fractions ("1.5s"): handle a single fractional unit ourselves.
    if let Some((num, unit)) = split_number(t)
        && num.contains('.')
    {
        let v: f64 = num.parse().map_err(|_| bad_duration(t))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad_duration(t)),
        };
        return Ok(Duration::from_secs_f64(v * scale));
    }
    humantime::parse_duration(t).map_err(|_| bad_duration(t))
}

fn bad_duration(t: &str) -> String {
    format!("`{t}` is not a duration; write e.g. 500ms, 3s, 1.5s, 2m, 1h")
}

fn split_number(t: &str) -> Option<(&str, &str)> {
    let idx = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    Some((&t[..idx], t[idx..].trim()))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 3s or 2m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                if v < 0 {
                    return Err(E::custom(format!("duration `{v}` is negative; durations are >= 0")));
                }
                Ok(Dur(Duration::from_secs(v as u64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(E::custom(format!("duration `{v}` is negative; durations are >= 0")));
                }
                Ok(Dur(Duration::from_secs_f64(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count written as `100`, `4KiB`, `1MiB`, `2MB`, `1GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Size(pub u64);

pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{t}` is not a size; write e.g. 100, 4KiB, 1MiB, 2MB (bytes, >= 0)");
    let idx = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..idx], t[idx..].trim());
    let v: f64 = num.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    Ok((v * scale).round() as u64)
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 100, 4KiB or 1MiB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("size `{v}` is negative; sizes are >= 0 bytes")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size or an inclusive range of sizes (`1KiB..64KiB`), drawn uniformly by the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SizeRange {
    pub min: u64,
    pub max: u64,
}

impl<'de> Deserialize<'de> for SizeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = SizeRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size (4KiB) or a range of sizes (1KiB..64KiB)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeRange, E> {
                match v.split_once("..") {
                    Some((a, b)) => {
                        let (min, max) = (parse_size(a).map_err(E::custom)?, parse_size(b).map_err(E::custom)?);
                        if min > max {
                            return Err(E::custom(format!("size range `{v}` has min > max")));
                        }
                        Ok(SizeRange { min, max })
                    }
                    None => parse_size(v).map(|s| SizeRange { min: s, max: s }).map_err(E::custom),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeRange, E> {
                Ok(SizeRange { min: v, max: v })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeRange, E> {
                let s =
                    u64::try_from(v).map_err(|_| E::custom(format!("size `{v}` is negative; sizes are >= 0 bytes")))?;
                Ok(SizeRange { min: s, max: s })
            }
        }
        d.deserialize_any(V)
    }
}

/// Workload paths are relative, stay inside the sync folder, and avoid the daemon's own `.syncpeer*`.
pub(super) fn check_path(path: &str) -> Result<String, String> {
    let p = std::path::Path::new(path);
    let bad = path.is_empty()
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        || p.components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with(".syncpeer"));
    if bad {
        return Err(format!(
            "path `{path}` must be relative, without `..`, and not start with `.syncpeer`"
        ));
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_the_human_way() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("-3s").unwrap_err().contains("negative"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }
}
