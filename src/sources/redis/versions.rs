//! Which RDB format versions a Redis server can load, from the version it reports, and the
//! refusal a restore gives before writing anything when a snapshot is newer than its target.
//!
//! A Redis server loads every RDB version up to its own (`rdbver > RDB_VERSION` is the loader's
//! only refusal: "Can't handle RDB format version"), so one number per release line says it all.
//! The table is data, checked against redis `src/rdb.h` up to 7.4 (`RDB_VERSION 12`).
//!
//! A server newer than the table (Redis 8 and later) is "unknown": it loads at least what 7.4
//! loads, so a snapshot of version ≤ 12 goes ahead; a newer snapshot goes ahead with a warning,
//! and the target's own loader is the judge. Refusing there would block every restore of a
//! Redis 8 snapshot into Redis 8 until this table learns its number.
//!
//! Valkey reports `redis_version:7.2.4` for compatibility whatever its own release, and Valkey
//! 7.2 to 8.x write and load RDB 11, which is what 7.2 gives; a Valkey from 9 on (its own
//! `valkey_version`) is treated as unknown, since it is said to use new RDB numbers.

use anyhow::bail;

use super::info::InfoFields;
use super::rdb::NEWEST_KNOWN_RDB_VERSION;

/// Release lines (major, minor) from which a version of the RDB format is loaded, newest first.
const FIRST_RELEASE_LOADING: [((u32, u32), u32); 7] = [
    ((7, 4), 12),
    ((7, 2), 11),
    ((7, 0), 10),
    ((5, 0), 9),
    ((4, 0), 8),
    ((3, 2), 7),
    ((2, 6), 6),
];

/// The release line after the newest in the table: from it on, a server is unknown.
const FIRST_UNKNOWN_RELEASE: (u32, u32) = (7, 6);

/// The newest RDB version a Redis `redis_version` (e.g. `7.0.15`) loads; `None` when the table
/// does not know it: newer than 7.4, older than 2.6, or not a version.
pub fn max_rdb_version(redis_version: &str) -> Option<u32> {
    let release = major_minor(redis_version)?;
    if release >= FIRST_UNKNOWN_RELEASE {
        return None;
    }
    FIRST_RELEASE_LOADING
        .iter()
        .find(|(first, _)| release >= *first)
        .map(|(_, rdb)| *rdb)
}

/// What a server, from its `INFO server` fields, loads: its `redis_version` through the table,
/// except a Valkey from 9 on, which is unknown whatever `redis_version` it reports.
pub fn server_max_rdb_version(info_server: &InfoFields) -> Result<Option<u32>, String> {
    let field = |name| info_server.get(name).map(String::as_str);
    let Some(redis_version) = field("redis_version") else {
        return Err("its INFO server has no redis_version".to_owned());
    };
    if let Some(valkey) = field("valkey_version")
        && major_minor(valkey).is_none_or(|(major, _)| major >= 9)
    {
        return Ok(None);
    }
    if major_minor(redis_version).is_none() {
        return Err(format!(
            "its redis_version {redis_version:?} is not a version"
        ));
    }
    Ok(max_rdb_version(redis_version))
}

/// Refuses to restore an RDB of `rdb_version` into `target` (a name for messages) whose
/// `INFO server` fields are given, when it loads only older versions; warns when it cannot tell.
pub fn check_loadable(
    target: &str,
    info_server: &InfoFields,
    rdb_version: u32,
) -> anyhow::Result<()> {
    let version = info_server.get("redis_version").map_or("?", String::as_str);
    let max = match server_max_rdb_version(info_server) {
        Ok(max) => max,
        Err(why) => bail!("check which RDB versions {target} loads: {why}"),
    };
    match max {
        Some(max) if rdb_version > max => bail!(
            "the snapshot is RDB version {rdb_version} and {target} (Redis {version}) loads RDB \
             versions up to {max}: restore into a Redis that loads version {rdb_version} (or newer)"
        ),
        Some(_) => Ok(()),
        None if major_minor(version).is_some_and(|release| release < (2, 6)) => bail!(
            "{target} runs Redis {version}, older than 2.6, which loads no RDB version Tidemark \
             restores: restore into Redis 2.6 or newer"
        ),
        None if rdb_version > NEWEST_KNOWN_RDB_VERSION => {
            tracing::warn!(
                "{target} runs Redis {version}, newer than Tidemark knows; the snapshot is RDB \
                 version {rdb_version}, also newer: going ahead, and the server's loader decides"
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// `(major, minor)` of a dotted version such as `7.0.15` or `8.0-rc1`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_text = parts.next()?;
    let digits: String = minor_text
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::info::parse_info;
    use super::*;

    #[test]
    fn each_release_line_loads_its_own_rdb_version() {
        let cases = [
            ("2.6.17", Some(6)),
            ("2.8.24", Some(6)),
            ("3.0.7", Some(6)),
            ("3.2.12", Some(7)),
            ("4.0.14", Some(8)),
            ("5.0.14", Some(9)),
            ("6.0.20", Some(9)),
            ("6.2.14", Some(9)),
            ("7.0.15", Some(10)),
            ("7.2.4", Some(11)),
            ("7.4.1", Some(12)),
            ("7.6.0", None),
            ("8.0.0", None),
            ("2.4.18", None),
            ("seven", None),
            ("7", None),
        ];
        for (version, expected) in cases {
            assert_eq!(max_rdb_version(version), expected, "{version}");
        }
    }

    #[test]
    fn valkey_counts_as_its_reported_redis_version_until_9() {
        let valkey8 = "# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\n";
        assert_eq!(server_max_rdb_version(&parse_info(valkey8)), Ok(Some(11)));
        let valkey9 = "# Server\r\nredis_version:7.2.4\r\nvalkey_version:9.0.0\r\n";
        assert_eq!(server_max_rdb_version(&parse_info(valkey9)), Ok(None));
        assert!(server_max_rdb_version(&parse_info("# Server\r\n")).is_err());
    }

    #[test]
    fn a_snapshot_newer_than_its_target_is_refused_naming_both() {
        let check = |version: &str, rdb| {
            check_loadable(
                "t",
                &parse_info(&format!("redis_version:{version}\r\n")),
                rdb,
            )
        };
        assert!(check("7.0.15", 10).is_ok());
        assert!(check("7.0.15", 9).is_ok());
        let refusal = check("7.0.15", 11).unwrap_err().to_string();
        assert!(refusal.contains("RDB version 11"), "{refusal}");
        assert!(refusal.contains("up to 10"), "{refusal}");
        // Newer than the table: known versions go ahead, and so (with a warning) unknown ones.
        assert!(check("8.2.0", 12).is_ok());
        assert!(check("8.2.0", 13).is_ok());
        assert!(check("2.4.0", 6).is_err());
    }

    #[test]
    fn the_table_ends_at_the_newest_rdb_version_the_snapshot_side_knows() {
        assert_eq!(FIRST_RELEASE_LOADING[0].1, NEWEST_KNOWN_RDB_VERSION);
    }
}
