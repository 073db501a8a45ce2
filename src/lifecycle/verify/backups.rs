//! Whether each backup can be restored as recorded: every chunk it refers to is stored and
//! sound, and each file's chunks add up to the size and CRC-32C its record holds. A chunk's CRC
//! is computed once, when it is read (chunks are shared by files and backups), and combined per
//! file with `crc32c_combine`.

use std::collections::BTreeMap;

use super::findings::Problem;
use crate::repo::catalog::{BackupEntry, BackupRecord, EntryKind};
use crate::repo::layout;

/// What verify knows of one chunk, by its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// Read and checked: its original length and CRC-32C.
    Sound { len: u64, crc: u32 },
    /// Listed, not read (`--fast`), with a size a chunk can have.
    Listed,
    /// Stored, but wrong in the way said.
    Damaged(String),
    /// Not stored.
    Missing,
}

/// The problems of `records`' chunks (one per chunk, naming the backups and a file that need it)
/// and of their files.
pub fn backup_problems(
    stanza: &str,
    records: &[&BackupRecord],
    chunks: &BTreeMap<String, ChunkState>,
) -> Vec<Problem> {
    let mut problems = chunk_problems(stanza, records, chunks);
    for record in records {
        for entry in &record.entries {
            if let Some(problem) = file_problem(stanza, record, entry, chunks) {
                problems.push(problem);
            }
        }
    }
    problems
}

/// Who needs a chunk: the backups, and the first file that does.
struct Users<'a> {
    labels: Vec<&'a str>,
    file: &'a str,
}

fn chunk_problems(
    stanza: &str,
    records: &[&BackupRecord],
    chunks: &BTreeMap<String, ChunkState>,
) -> Vec<Problem> {
    let mut users: BTreeMap<&str, Users<'_>> = BTreeMap::new();
    for record in records {
        for entry in &record.entries {
            for chunk in &entry.chunks {
                let user = users.entry(chunk.name.as_str()).or_insert(Users {
                    labels: Vec::new(),
                    file: &entry.path,
                });
                if user.labels.last() != Some(&record.label.as_str()) {
                    user.labels.push(&record.label);
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (sha256, user) in users {
        let state = chunks.get(sha256).unwrap_or(&ChunkState::Missing);
        let what = match state {
            ChunkState::Sound { .. } | ChunkState::Listed => continue,
            ChunkState::Missing => "missing".to_owned(),
            ChunkState::Damaged(why) => why.clone(),
        };
        problems.push(Problem {
            object: layout::blob(stanza, sha256).to_string(),
            problem: format!(
                "{what}; a chunk of {} in backup(s) {}, which cannot be restored",
                user.file,
                user.labels.join(", ")
            ),
            action: "take a new backup now (it stores the content afresh), and do not restore those backups".to_owned(),
        });
    }
    problems
}

/// Whether `entry`'s sound chunks hold what the record says: their lengths, the file's size
/// and its CRC-32C. A file with a chunk not read or not sound is left to the chunk's problem.
fn file_problem(
    stanza: &str,
    record: &BackupRecord,
    entry: &BackupEntry,
    chunks: &BTreeMap<String, ChunkState>,
) -> Option<Problem> {
    if entry.kind != EntryKind::File {
        return None;
    }
    let (mut len, mut crc) = (0u64, 0u32);
    for chunk in &entry.chunks {
        let Some(&ChunkState::Sound {
            len: chunk_len,
            crc: chunk_crc,
        }) = chunks.get(&chunk.name)
        else {
            return None;
        };
        if chunk_len != chunk.size {
            return Some(record_problem(
                stanza,
                record,
                format!(
                    "file {}: chunk {} holds {chunk_len} bytes, the record says {}",
                    entry.path, chunk.name, chunk.size
                ),
            ));
        }
        crc = crc32c::crc32c_combine(crc, chunk_crc, chunk_len as usize);
        len += chunk_len;
    }
    let crc_differs = entry.crc32c.is_some_and(|recorded| recorded != crc);
    (len != entry.size || crc_differs).then(|| {
        record_problem(
            stanza,
            record,
            format!(
                "file {}: its chunks hold {len} bytes with CRC-32C {crc:08x}, the record says {} bytes with CRC-32C {}",
                entry.path,
                entry.size,
                entry.crc32c.map_or("(none)".to_owned(), |c| format!("{c:08x}"))
            ),
        )
    })
}

fn record_problem(stanza: &str, record: &BackupRecord, what: String) -> Problem {
    Problem {
        object: layout::backup_record(stanza, &record.label).to_string(),
        problem: format!(
            "{what}: backup {} cannot be restored as recorded",
            record.label
        ),
        action: "take a new backup now, and do not restore this one".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;
    use crate::repo::catalog::ChunkRef;

    fn file(path: &str, chunks: &[(&str, u64)], crc: u32) -> BackupEntry {
        BackupEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o600,
            mtime: 0,
            size: chunks.iter().map(|(_, size)| size).sum(),
            crc32c: Some(crc),
            chunks: chunks
                .iter()
                .map(|(sha256, size)| ChunkRef {
                    name: (*sha256).into(),
                    size: *size,
                })
                .collect(),
            link: None,
        }
    }

    #[test]
    fn a_file_crc_is_the_combination_of_its_chunks_crcs() {
        let (a, b) = (b"first chunk ".repeat(50), b"second".repeat(70));
        let whole = crc32c::crc32c(&[&a[..], &b[..]].concat());
        let sound = |bytes: &[u8]| ChunkState::Sound {
            len: bytes.len() as u64,
            crc: crc32c::crc32c(bytes),
        };
        let chunks = BTreeMap::from([("a".to_owned(), sound(&a)), ("b".to_owned(), sound(&b))]);
        let mut record = BackupRecord::example("1F", "2026-11-21T10:00:01Z", Lsn(1));
        let sizes = [("a", a.len() as u64), ("b", b.len() as u64)];
        record.entries = vec![file("base/1/1", &sizes, whole)];
        assert!(backup_problems("main", &[&record], &chunks).is_empty());
        record.entries = vec![file("base/1/1", &sizes, whole ^ 1)];
        let found = backup_problems("main", &[&record], &chunks);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].object, "main/backup/1F/backup.json");
        assert!(
            found[0]
                .problem
                .starts_with("file base/1/1: its chunks hold")
        );
    }

    #[test]
    fn a_missing_or_damaged_chunk_is_one_problem_naming_every_backup_that_needs_it() {
        let sha = |c: char| c.to_string().repeat(64);
        let mut first = BackupRecord::example("1F", "2026-11-21T10:00:01Z", Lsn(1));
        first.entries = vec![file("base/1/1", &[(&sha('a'), 3), (&sha('b'), 3)], 0)];
        let mut second = BackupRecord::example("2F", "2026-11-22T10:00:01Z", Lsn(2));
        second.entries = vec![file("base/1/2", &[(&sha('a'), 3)], 0)];
        let chunks = BTreeMap::from([(sha('b'), ChunkState::Damaged("bad".into()))]);
        let found = backup_problems("main", &[&first, &second], &chunks);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].object, format!("main/blob/aa/{}", sha('a')));
        assert_eq!(
            found[0].problem,
            "missing; a chunk of base/1/1 in backup(s) 1F, 2F, which cannot be restored"
        );
        assert!(
            found[1]
                .problem
                .starts_with("bad; a chunk of base/1/1 in backup(s) 1F,")
        );
    }
}
