//! Scalar units a plan is written in: durations (`1.5s`, `500ms`, `2m`) and sizes (`4KiB`, `1MB`, `100`).
//!
//! Both deserialize from YAML scalars; a bad value is a deserialization error, so serde-saphyr attaches
//! the line and column of the offending scalar.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use super::limits::{MAX_CLOCK_OFFSET, MAX_DISK_LIMIT, MAX_PATH_COMPONENT, MAX_PATH_LEN, MAX_RUN, MAX_SOAK};

/// A non-negative duration written the human way. Negative values are rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(into = "String")]
pub struct Dur(pub Duration);

impl Dur {
    /// Milliseconds; saturates (a resolved plan's durations are all within [`MAX_RUN`]).
    pub fn ms(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
    pub fn from_ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
}

/// What a duration key accepts, for messages.
pub const DURATION_ALLOWED: &str = "a duration from 0 to 24h, e.g. 500ms, 3s, 1.5s, 2m, 1h";

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

/// Parses `250ms`, `3s`, `1.5s`, `2m`, `1h 30m`, or a bare number of seconds. Never panics: values
/// beyond [`MAX_CLOCK_OFFSET`] (the longest duration any key takes) are errors, not overflows.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("`{t}` is negative; allowed: {DURATION_ALLOWED}"));
    }
    let secs = |v: f64, t: &str| match Duration::try_from_secs_f64(v) {
        Ok(d) if d <= MAX_CLOCK_OFFSET => Ok(d),
        _ => Err(too_long(t)),
    };
    if let Ok(v) = t.parse::<f64>() {
        return if v.is_finite() && v >= 0.0 {
            secs(v, t)
        } else {
            Err(bad_duration(t))
        };
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
        return secs(v * scale, t);
    }
    match humantime::parse_duration(t) {
        Ok(d) if d <= MAX_CLOCK_OFFSET => Ok(d),
        Ok(_) | Err(humantime::DurationError::NumberOverflow) => Err(too_long(t)),
        Err(_) => Err(bad_duration(t)),
    }
}

/// A number as a user would write it: `1e300`, not three hundred digits.
fn show_f64(v: f64) -> String {
    if v.abs() >= 1e15 {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

fn too_long(t: &str) -> String {
    format!("`{t}` is too long; allowed: {DURATION_ALLOWED}")
}

fn bad_duration(t: &str) -> String {
    format!("`{t}` is not a duration; allowed: {DURATION_ALLOWED}")
}

fn split_number(t: &str) -> Option<(&str, &str)> {
    let idx = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    Some((&t[..idx], t[idx..].trim()))
}

/// Reads a duration scalar (a string, or a number of seconds) held to `max`; `allowed` words the
/// key's range in messages. [`Dur`] and [`LongDur`] differ only in these two.
struct DurationVisitor {
    max: Duration,
    allowed: &'static str,
}

impl DurationVisitor {
    /// A parse error in this key's words (`parse_duration` speaks of the day-long keys).
    fn words(&self, e: String) -> String {
        e.replace(DURATION_ALLOWED, self.allowed)
    }

    fn within(&self, d: Duration, t: &str) -> Result<Duration, String> {
        if d > self.max {
            return Err(format!("`{t}` is too long; allowed: {}", self.allowed));
        }
        Ok(d)
    }
}

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as 500ms, 3s or 2m")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v)
            .map_err(|e| self.words(e))
            .and_then(|d| self.within(d, v))
            .map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.within(Duration::from_secs(v.min(u64::MAX / 2)), &v.to_string())
            .map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("`{v}` is negative; allowed: {}", self.allowed))),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        let shown = show_f64(v);
        parse_duration(&shown)
            .map_err(|e| self.words(e))
            .and_then(|d| self.within(d, &shown))
            .map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor {
            max: MAX_RUN,
            allowed: DURATION_ALLOWED,
        })
        .map(Dur)
    }
}

/// A soak's length: a duration like [`Dur`], but up to [`MAX_SOAK`] (30 days) instead of a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub struct LongDur(pub Duration);

impl LongDur {
    pub fn ms(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl From<LongDur> for String {
    fn from(d: LongDur) -> String {
        humantime::format_duration(d.0).to_string()
    }
}

impl fmt::Display for LongDur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// What a soak's `duration` accepts, for messages.
pub const SOAK_DURATION_ALLOWED: &str = "a duration from 10s to 30d, e.g. 30m, 8h, 7d";

impl<'de> Deserialize<'de> for LongDur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor {
            max: MAX_SOAK,
            allowed: SOAK_DURATION_ALLOWED,
        })
        .map(LongDur)
    }
}

/// A byte count written as `100`, `4KiB`, `1MiB`, `2MB`, `1GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Size(pub u64);

/// What a size accepts, for messages.
pub const SIZE_ALLOWED: &str = "bytes, e.g. 100, 4KiB, 1MiB, 2MB, 1GiB";

/// Parses a size; anything over [`MAX_DISK_LIMIT`] (the largest size any key takes) is an error, so
/// nothing saturates or wraps.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{t}` is not a size; allowed: {SIZE_ALLOWED}");
    if t.starts_with('-') {
        return Err(format!("`{t}` is negative; allowed: {SIZE_ALLOWED}"));
    }
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
    let bytes = (v * scale).round();
    if !(bytes.is_finite() && bytes >= 0.0) {
        return Err(bad());
    }
    if bytes > MAX_DISK_LIMIT as f64 {
        return Err(too_large(t));
    }
    // In range: the float holds a whole number of bytes no larger than 4 GiB.
    Ok(bytes as u64)
}

fn too_large(t: &str) -> String {
    format!("`{t}` is too large; allowed: {SIZE_ALLOWED}, at most 4GiB")
}

fn size_of_u64(v: u64) -> Result<u64, String> {
    if v > MAX_DISK_LIMIT {
        return Err(too_large(&v.to_string()));
    }
    Ok(v)
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
                size_of_u64(v).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("`{v}` is negative; allowed: {SIZE_ALLOWED}"))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Size, E> {
                parse_size(&show_f64(v)).map(Size).map_err(E::custom)
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
                            return Err(E::custom(format!(
                                "size range `{v}` has its larger size first; allowed: MIN..MAX, e.g. 1KiB..64KiB"
                            )));
                        }
                        Ok(SizeRange { min, max })
                    }
                    None => parse_size(v).map(|s| SizeRange { min: s, max: s }).map_err(E::custom),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeRange, E> {
                let s = size_of_u64(v).map_err(E::custom)?;
                Ok(SizeRange { min: s, max: s })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeRange, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("`{v}` is negative; allowed: {SIZE_ALLOWED}"))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SizeRange, E> {
                self.visit_str(&show_f64(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Workload paths are relative, stay inside the sync folder, avoid the daemon's own `.syncpeer*`, and
/// fit the file system's limits.
pub(super) fn check_path(path: &str) -> Result<String, String> {
    let p = std::path::Path::new(path);
    let bad = path.is_empty()
        || path.len() > MAX_PATH_LEN
        || path.chars().any(char::is_control)
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        || p.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c.starts_with(".syncpeer") || c.len() > MAX_PATH_COMPONENT
        });
    if bad {
        let shown: String = path.chars().take(60).collect();
        return Err(format!(
            "path `{shown}` is not allowed; allowed: a relative path inside the sync folder, without `..`, \
             not starting with `.syncpeer`, at most {MAX_PATH_LEN} bytes and {MAX_PATH_COMPONENT} per name"
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
