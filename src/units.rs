//! Sizes and durations the way a person reads and writes them.

use std::fmt;

/// `1536` → `1.5 KiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Stored size as a percentage of the original.
pub fn ratio(stored: u64, original: u64) -> String {
    if original == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", stored as f64 * 100.0 / original as f64)
    }
}

/// A size as a configuration file gives it: `"16MiB"`, `"5 GiB"`, `"512KiB"`, or a number of
/// bytes. Units are binary (KiB = 1024 bytes); decimal ones (`MB`) are refused rather than
/// guessed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// The units a [`ByteSize`] may be written in, with their sizes.
const SIZE_UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let not_a_size = || {
            format!(
                "{text:?} is not a size: write a whole number and one of B, KiB, MiB, GiB, TiB, such as \"16MiB\""
            )
        };
        let trimmed = text.trim();
        let digits = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits);
        let unit = unit.trim_start();
        let multiplier = match unit {
            "" => 1,
            _ => match SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
                Some((_, multiplier)) => *multiplier,
                None => return Err(not_a_size()),
            },
        };
        let number: u64 = number.parse().map_err(|_| not_a_size())?;
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large a size"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bytes(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        struct SizeVisitor;

        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"16MiB\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                ByteSize::parse(text).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, count: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(count))
            }

            fn visit_i64<E: serde::de::Error>(self, count: i64) -> Result<ByteSize, E> {
                u64::try_from(count).map(ByteSize).map_err(|_| {
                    E::custom(format!("{count} is not a size: sizes are not negative"))
                })
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn sizes_are_written_with_binary_units() {
        assert_eq!(ByteSize::parse("16MiB"), Ok(ByteSize(16 << 20)));
        assert_eq!(ByteSize::parse(" 5 GiB "), Ok(ByteSize(5 << 30)));
        assert_eq!(ByteSize::parse("512KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("1TiB"), Ok(ByteSize(1 << 40)));
        assert_eq!(ByteSize::parse("7B"), Ok(ByteSize(7)));
        assert_eq!(ByteSize::parse("1048576"), Ok(ByteSize(1 << 20)));
        for bad in ["16MB", "16 mib", "1.5MiB", "-5MiB", "MiB", "", "sixteen"] {
            let message = ByteSize::parse(bad).unwrap_err();
            assert_eq!(
                message,
                format!(
                    "{bad:?} is not a size: write a whole number and one of B, KiB, MiB, GiB, TiB, such as \"16MiB\""
                )
            );
        }
        assert_eq!(
            ByteSize::parse("99999999TiB").unwrap_err(),
            "\"99999999TiB\" is too large a size"
        );
        assert_eq!(ByteSize(16 << 20).to_string(), "16.0 MiB");
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(16 << 20), "16.0 MiB");
        assert_eq!(super::ratio(1, 4), "25.0%");
    }
}
