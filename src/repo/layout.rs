//! Where each kind of object lives in the repository. Every key starts with the stanza name:
//!
//! ```text
//! <stanza>/stanza.json                                  identity of the cluster the stanza serves
//! <stanza>/wal/<TTTTTTTTLLLLLLLL>/<segment>             segments, .partial and .backup files,
//!                                                       one directory per timeline and 4 GiB of WAL
//! <stanza>/wal/history/<TTTTTTTT>.history               timeline history files
//! <stanza>/walindex/<TTTTTTTTLLLLLLLL>/<segment>          what each archived segment's records say
//! <stanza>/backup/<label>/backup.json                    a complete backup's record (written last)
//! <stanza>/backup/<label>/backup_manifest                PostgreSQL's manifest of that backup
//! <stanza>/blob/<first 2 hex digits>/<SHA-256>           file contents, in chunks, shared by backups
//! <stanza>/lock/<kind>-<host>-<pid>-<nanos>.<seq>        a running backup's or expire's lock
//! _check/<host>-<pid>-<nanoseconds>                     `tidemark check`'s probe, deleted at once
//! _source/<name>/source.json                            which kind of source the name is
//! _source/<name>/snapshot/<id>/snapshot.json             a complete snapshot's record (written last)
//! _source/<name>/blob/<first 2 hex digits>/<name>        snapshot content, in chunks, shared
//! _source/<name>/lock/<kind>-<host>-<pid>-<nanos>.<seq>  a running snapshot's or expire's lock
//! ```

use crate::pg::{SegmentName, TimelineId, WalFileName};
use crate::storage::ObjectKey;

/// Why a string cannot name a stanza.
#[derive(Debug, thiserror::Error)]
#[error(
    "'{0}' is not a valid stanza name: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
)]
pub struct InvalidStanzaName(pub String);

/// Checks a stanza name; it becomes a directory or key prefix, so it is kept plain.
pub fn check_stanza_name(name: &str) -> Result<(), InvalidStanzaName> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(InvalidStanzaName(name.to_owned()))
    }
}

/// Why a string cannot name a source.
#[derive(Debug, thiserror::Error)]
#[error(
    "'{0}' is not a valid source name: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
)]
pub struct InvalidSourceName(pub String);

/// Checks a source name, kept plain as a stanza name is.
pub fn check_source_name(name: &str) -> Result<(), InvalidSourceName> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(InvalidSourceName(name.to_owned()))
    }
}

/// 1 to 64 letters, digits, `_` or `-`, starting with a letter or digit: a name that is one
/// key component, can be no other name's prefix, and never starts like `_check` or `_source`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn key(text: String) -> ObjectKey {
    ObjectKey::new(text).expect("layout builds keys from checked stanza names and WAL file names")
}

/// The stanza's identity object.
pub fn stanza_identity(stanza: &str) -> ObjectKey {
    key(format!("{stanza}/stanza.json"))
}

/// Everything archived from the stanza's WAL.
pub fn wal_root(stanza: &str) -> ObjectKey {
    key(format!("{stanza}/wal"))
}

/// The WAL directory `TTTTTTTTLLLLLLLL` of a timeline and "log" (4 GiB of WAL): the first 16
/// hex digits of the names of the segments it holds.
pub fn wal_directory(timeline: TimelineId, log: u32) -> String {
    format!("{:08X}{log:08X}", timeline.0)
}

/// The WAL directory a segment is kept in.
pub fn wal_directory_of(segment: SegmentName) -> String {
    wal_directory(segment.timeline, segment.log)
}

/// The object holding one archived WAL file.
pub fn wal_file(stanza: &str, name: WalFileName) -> ObjectKey {
    match name.segment() {
        Some(segment) => key(format!("{stanza}/wal/{}/{name}", wal_directory_of(segment))),
        None => key(format!("{stanza}/wal/history/{name}")),
    }
}

/// The index entry of an archived segment (or `.partial`).
pub fn wal_index(stanza: &str, name: WalFileName) -> ObjectKey {
    let segment = name.segment().expect("only segments are indexed");
    key(format!(
        "{stanza}/walindex/{}/{name}",
        wal_directory_of(segment)
    ))
}

/// Where a stanza's WAL index is: entries and packs.
pub fn wal_index_root(stanza: &str) -> ObjectKey {
    key(format!("{stanza}/walindex"))
}

/// The directory of index entries for one WAL directory (`TTTTTTTTLLLLLLLL`).
pub fn wal_index_directory(stanza: &str, directory: &str) -> ObjectKey {
    key(format!("{stanza}/walindex/{directory}"))
}

/// Where the packs of index entries are.
pub fn wal_index_packs(stanza: &str) -> ObjectKey {
    key(format!("{stanza}/walindex/packs"))
}

/// A pack of `count` index entries of one WAL directory.
pub fn wal_index_pack(stanza: &str, directory: &str, count: usize) -> ObjectKey {
    key(format!("{stanza}/walindex/packs/{directory}.{count:05}"))
}

/// Where all backups of a stanza are.
pub fn backup_root(stanza: &str) -> ObjectKey {
    key(format!("{stanza}/backup"))
}

/// A backup's record; its presence is what makes the backup exist.
pub fn backup_record(stanza: &str, label: &str) -> ObjectKey {
    key(format!("{stanza}/backup/{label}/backup.json"))
}

/// PostgreSQL's manifest of a backup.
pub fn backup_manifest(stanza: &str, label: &str) -> ObjectKey {
    key(format!("{stanza}/backup/{label}/backup_manifest"))
}

/// Where all chunks of a stanza's backups are.
pub fn blob_root(stanza: &str) -> ObjectKey {
    key(format!("{stanza}/blob"))
}

/// A chunk of file content, named by its SHA-256 (lower-case hex).
pub fn blob(stanza: &str, sha256: &str) -> ObjectKey {
    key(format!("{stanza}/blob/{}/{sha256}", &sha256[..2]))
}

/// Where the locks of a stanza's running backups and expires are.
pub fn lock_root(stanza: &str) -> ObjectKey {
    key(format!("{stanza}/lock"))
}

/// Renewal `seq` of the lock `name` (`<kind>-<host>-<pid>-<nanos>`, see `lock`).
pub fn lock(stanza: &str, name: &str, seq: u64) -> ObjectKey {
    key(format!("{stanza}/lock/{name}.{seq}"))
}

/// Where every source's objects are.
pub const SOURCES: &str = "_source";

/// The key prefix of a source's objects: its chunk pool and locks live under it as a stanza's
/// live under the stanza's name.
pub fn source_owner(source: &str) -> String {
    format!("{SOURCES}/{source}")
}

/// What kind of source the name is, recorded by its first snapshot.
pub fn source_identity(source: &str) -> ObjectKey {
    key(format!("{SOURCES}/{source}/source.json"))
}

/// Where a source's snapshots are.
pub fn snapshot_root(source: &str) -> ObjectKey {
    key(format!("{SOURCES}/{source}/snapshot"))
}

/// A snapshot's record; its presence is what makes the snapshot exist.
pub fn snapshot_record(source: &str, id: &str) -> ObjectKey {
    key(format!("{SOURCES}/{source}/snapshot/{id}/snapshot.json"))
}

/// A probe object for `tidemark check`, unique to this host, process and instant. Stanza names
/// start with a letter or digit, so `_check` can be no stanza's.
pub fn check_probe() -> ObjectKey {
    let host = crate::storage::durable::host_name();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    key(format!("_check/{host}-{}-{nanos}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_wal_file_has_its_place() {
        let cases = [
            (
                "000000020000000A000000FF",
                "main/wal/000000020000000A/000000020000000A000000FF",
            ),
            (
                "000000020000000A000000FF.partial",
                "main/wal/000000020000000A/000000020000000A000000FF.partial",
            ),
            (
                "000000010000000000000007.00000028.backup",
                "main/wal/0000000100000000/000000010000000000000007.00000028.backup",
            ),
            ("00000002.history", "main/wal/history/00000002.history"),
        ];
        for (name, expected) in cases {
            assert_eq!(
                wal_file("main", WalFileName::parse(name).unwrap()).as_str(),
                expected
            );
        }
    }

    #[test]
    fn stanza_names_are_plain() {
        for ok in ["main", "db-1", "Prod_2", "a"] {
            assert!(check_stanza_name(ok).is_ok(), "{ok}");
        }
        let too_long = "x".repeat(65);
        for bad in ["", "-x", "_x", "a/b", "a.b", "..", "a b", too_long.as_str()] {
            assert!(check_stanza_name(bad).is_err(), "{bad}");
        }
    }
}
