//! PostgreSQL time: a `TimestampTz` (commit times, restore point times, `recovery_target_time`
//! as the server compares it) counts microseconds from 2000-01-01 00:00:00 UTC, PostgreSQL's
//! epoch, not from the Unix epoch. Converting to it, and printing it as UTC text.

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
pub const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Unix microseconds as PostgreSQL time.
pub fn from_unix_micros(unix_micros: i64) -> i64 {
    unix_micros - POSTGRES_EPOCH_UNIX_MICROS
}

/// PostgreSQL time as UTC text with every microsecond digit, as PostgreSQL prints a
/// `timestamptz` in UTC (`2026-11-21 14:32:07.000000+00`); the bare number when it lies beyond
/// the calendar's range.
pub fn format_utc(postgres_micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(postgres_micros + POSTGRES_EPOCH_UNIX_MICROS)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        .unwrap_or_else(|| postgres_micros.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_time_counts_from_2000() {
        assert_eq!(format_utc(0), "2000-01-01 00:00:00.000000+00");
        assert_eq!(format_utc(6000), "2000-01-01 00:00:00.006000+00");
        // 2026-11-21 14:32:07.5 UTC.
        let unix = 1_795_271_527_500_000;
        assert_eq!(
            format_utc(from_unix_micros(unix)),
            "2026-11-21 14:32:07.500000+00"
        );
        // Past the year 262143: no calendar date.
        let far = i64::MAX - POSTGRES_EPOCH_UNIX_MICROS;
        assert_eq!(format_utc(far), far.to_string());
    }
}
