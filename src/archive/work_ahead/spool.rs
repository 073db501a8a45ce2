//! The spool where the work-ahead worker and the calls meet: what each of its files says, and
//! when one may be trusted. Nothing in it is fsynced, and losing any of it loses nothing.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::archive::helper_process::{HelperLock, spool_dirs};
use crate::repo::Stanza;
use crate::storage::durable;

/// What identifies the content of a WAL file without reading it: PostgreSQL never rewrites a
/// file it marked `.ready`, and a recycled file gets a new name and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    len: u64,
    mtime_ns: i128,
    inode: u64,
}

impl Fingerprint {
    pub fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let meta = fs::metadata(path)?;
        Ok(Fingerprint {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        })
    }

    fn to_line(self) -> String {
        format!("{} {} {}", self.len, self.mtime_ns, self.inode)
    }

    fn parse(line: &str) -> Option<Fingerprint> {
        let mut fields = line.split_whitespace();
        let fingerprint = Fingerprint {
            len: fields.next()?.parse().ok()?,
            mtime_ns: fields.next()?.parse().ok()?,
            inode: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(fingerprint)
    }
}

/// Where a push went: the repository, the stanza and the cluster it serves. A `.ok` vouches for
/// a file only to a call whose configuration names the same: after `[repo]` is repointed, a
/// file pushed to the old repository is not archived as far as the new one is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedTo {
    repository: String,
    stanza: String,
    system_id: u64,
}

impl PushedTo {
    pub fn of(stanza: &Stanza<'_>) -> PushedTo {
        PushedTo {
            repository: stanza.repository().storage().location(),
            stanza: stanza.name().to_owned(),
            system_id: stanza.identity().system_id,
        }
    }
}

/// The content of a `.ok` file: the fingerprint of the file pushed, then where it went, one
/// line each (the repository last, as a location may hold spaces).
fn ok_record(fingerprint: Fingerprint, to: &PushedTo) -> String {
    format!(
        "{}\n{} {}\n{}\n",
        fingerprint.to_line(),
        to.system_id,
        to.stanza,
        to.repository
    )
}

fn parse_ok_record(text: &str) -> Option<(Fingerprint, PushedTo)> {
    let mut lines = text.lines();
    let fingerprint = Fingerprint::parse(lines.next()?)?;
    let (system_id, stanza) = lines.next()?.split_once(' ')?;
    let repository = lines.next()?;
    lines.next().is_none().then_some(())?;
    Some((
        fingerprint,
        PushedTo {
            repository: repository.to_owned(),
            stanza: stanza.to_owned(),
            system_id: system_id.parse().ok()?,
        },
    ))
}

/// The spool directory of one stanza:
/// * `<name>.ok`, written by the worker only after the push of `<name>` returned, that is once
///   the file is durable in the repository: the size, modification time and inode of the file
///   it pushed (so it never vouches for a file since replaced) and where it pushed it;
/// * `<name>.error`, the one line why the worker's last attempt at `<name>` failed;
/// * `worker.lock`, held (`flock`) by the one worker of the spool for as long as it runs;
/// * `worker.log`, the worker's stderr.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool of `stanza`: under `spool_path` when configured, else in `pg_wal/.tidemark`,
    /// which base backups leave out (PostgreSQL never sends `pg_wal`'s contents).
    pub fn locate(spool_path: Option<&Path>, pg_wal: &Path, stanza: &str) -> Spool {
        let root = spool_path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| pg_wal.join(".tidemark"));
        Spool {
            dir: root.join("archive").join(stanza),
        }
    }

    /// The spools of every stanza under `pg_wal` in the default place.
    pub fn all_in(pg_wal: &Path) -> Vec<Spool> {
        spool_dirs(pg_wal, "archive")
            .into_iter()
            .map(|dir| Spool { dir })
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("create spool directory {}", self.dir.display()))
    }

    fn ok_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ok"))
    }

    fn error_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.error"))
    }

    pub fn lock(&self) -> HelperLock {
        HelperLock::new(self.dir.join("worker.lock"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("worker.log")
    }

    /// Fails unless a small file can be written here, as the worker must before it pushes
    /// anything: a push it cannot record helps no call.
    pub fn check_writable(&self) -> anyhow::Result<()> {
        let probe = self.dir.join("worker.probe");
        durable::write_whole(&probe, b"probe\n")
            .and_then(|()| fs::remove_file(&probe))
            .with_context(|| format!("write to spool directory {}", self.dir.display()))
    }

    /// Records that the file `name` with `fingerprint` is durable in the repository `to`.
    pub fn mark_ok(
        &self,
        name: &str,
        fingerprint: Fingerprint,
        to: &PushedTo,
    ) -> anyhow::Result<()> {
        remove_if_there(&self.error_path(name))
            .and_then(|()| {
                durable::write_whole(&self.ok_path(name), ok_record(fingerprint, to).as_bytes())
            })
            .with_context(|| {
                format!(
                    "record in spool {} that {name} is archived",
                    self.dir.display()
                )
            })
    }

    /// Records why the attempt to push `name` failed.
    pub fn mark_error(&self, name: &str, error: &str) -> anyhow::Result<()> {
        durable::write_whole(&self.error_path(name), error.as_bytes())
            .with_context(|| format!("record in spool {} why {name} failed", self.dir.display()))
    }

    /// Whether a worker made the file at `path` durable in `to`, as the file is now.
    pub fn is_ok(&self, name: &str, path: &Path, to: &PushedTo) -> bool {
        let Ok(recorded) = fs::read_to_string(self.ok_path(name)) else {
            return false;
        };
        let Ok(now) = Fingerprint::of(path) else {
            return false;
        };
        parse_ok_record(&recorded)
            .is_some_and(|(fingerprint, pushed_to)| fingerprint == now && pushed_to == *to)
    }

    /// The worker's error for `name`, removed so that the next call tries again.
    pub fn take_error(&self, name: &str) -> Option<String> {
        let path = self.error_path(name);
        let text = fs::read_to_string(&path).ok()?;
        let _ = fs::remove_file(&path);
        Some(text.trim().to_owned())
    }

    /// Removes the error of an earlier attempt at `name`, which is no answer for a new one.
    pub fn forget_error(&self, name: &str) -> anyhow::Result<()> {
        remove_if_there(&self.error_path(name))
            .with_context(|| format!("remove {} from spool", self.error_path(name).display()))
    }

    /// Whether the last attempt at `name` failed less than `within` ago: such a file waits
    /// (rather than being pushed again and again while the repository is down) until that
    /// time has passed or a call for it removes the error.
    pub fn failed_within(&self, name: &str, within: Duration) -> bool {
        fs::metadata(self.error_path(name))
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| {
                SystemTime::now()
                    .duration_since(at)
                    .map_or(true, |age| age < within)
            })
    }

    /// Removes the `.ok` and `.error` files of WAL files not in `ready` (PostgreSQL no longer
    /// wants them archived), so that the spool holds no more than `pg_wal` does.
    pub fn remove_stale(&self, ready: &[String]) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let name = file_name
                .strip_suffix(".ok")
                .or_else(|| file_name.strip_suffix(".error"));
            if name.is_some_and(|name| !ready.iter().any(|r| r == name)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Removes temporary files left by killed writers.
    pub fn remove_abandoned(&self) {
        durable::remove_all_abandoned(&self.dir);
    }
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        removed => removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed_to(repository: &str) -> PushedTo {
        PushedTo {
            repository: repository.to_owned(),
            stanza: "main".to_owned(),
            system_id: 7_345_012_345_678_901_234,
        }
    }

    #[test]
    fn an_ok_vouches_only_for_the_same_file_in_the_same_repository() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dir: dir.path().join("spool"),
        };
        spool.create().unwrap();
        let wal = dir.path().join("000000010000000000000003");
        fs::write(&wal, b"segment").unwrap();
        let here = pushed_to("s3://bucket at http://127.0.0.1:9000");
        spool
            .mark_ok(
                "000000010000000000000003",
                Fingerprint::of(&wal).unwrap(),
                &here,
            )
            .unwrap();
        assert!(spool.is_ok("000000010000000000000003", &wal, &here));
        assert!(!spool.is_ok(
            "000000010000000000000003",
            &wal,
            &pushed_to("/var/lib/tidemark")
        ));
        let other_cluster = PushedTo {
            system_id: 1,
            ..here.clone()
        };
        assert!(!spool.is_ok("000000010000000000000003", &wal, &other_cluster));
        // Replaced by another file of the same name: not vouched for.
        fs::remove_file(&wal).unwrap();
        fs::write(&wal, b"segment").unwrap();
        assert!(!spool.is_ok("000000010000000000000003", &wal, &here));
    }

    #[test]
    fn an_ok_of_the_old_format_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dir: dir.path().to_owned(),
        };
        let wal = dir.path().join("000000010000000000000003");
        fs::write(&wal, b"segment").unwrap();
        let fingerprint = Fingerprint::of(&wal).unwrap();
        fs::write(
            spool.ok_path("000000010000000000000003"),
            format!("{}\n", fingerprint.to_line()),
        )
        .unwrap();
        assert!(!spool.is_ok("000000010000000000000003", &wal, &pushed_to("/r")));
    }

    #[test]
    fn a_record_reads_back_whatever_the_location_holds() {
        let fingerprint = Fingerprint {
            len: 16 << 20,
            mtime_ns: 1_700_000_000_123_456_789,
            inode: 42,
        };
        let to = pushed_to("s3://bucket/prefix at AWS");
        assert_eq!(
            parse_ok_record(&ok_record(fingerprint, &to)),
            Some((fingerprint, to))
        );
        assert_eq!(parse_ok_record("1 2 3\n"), None);
        assert_eq!(parse_ok_record("1 2 3 4\n5 main\n/r\n"), None);
    }

    #[test]
    fn a_fresh_error_holds_a_file_back_and_a_forgotten_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dir: dir.path().to_owned(),
        };
        let name = "000000010000000000000003";
        assert!(!spool.failed_within(name, Duration::from_secs(60)));
        spool
            .mark_error(name, "archive it: repository down")
            .unwrap();
        assert!(spool.failed_within(name, Duration::from_secs(60)));
        assert!(!spool.failed_within(name, Duration::ZERO));
        spool.forget_error(name).unwrap();
        spool.forget_error(name).unwrap();
        assert!(!spool.failed_within(name, Duration::from_secs(60)));
        assert_eq!(spool.take_error(name), None);
    }
}
