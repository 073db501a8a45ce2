//! Sizes and durations the way a person reads them.

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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_naturally() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(16 << 20), "16.0 MiB");
        assert_eq!(super::ratio(1, 4), "25.0%");
    }
}
