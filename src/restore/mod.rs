//! `tidemark restore`: lay out a backup as a data directory, with every chunk verified, and
//! write the recovery settings so that `pg_ctl start` recovers through `tidemark-restore` to the
//! target and finishes on its own.

pub mod planning;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::archive::prefetch::RestoreSpool;
use crate::repo::Stanza;
use crate::repo::catalog::{BackupEntry, BackupRecord, EntryKind};
use target::{RecoveryTarget, backup_labelled};

/// What to do with a `--pgdata` that is not empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingData {
    /// Refuse.
    Refuse,
    /// Keep files whose size and CRC-32C match the backup, rewrite the others, remove strays.
    Delta,
    /// Remove everything there first.
    Force,
}

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub pgdata: PathBuf,
    pub target: RecoveryTarget,
    pub target_action: String,
    pub target_timeline: Option<String>,
    pub exclusive: bool,
    pub backup_label: Option<String>,
    /// Tablespace OID → directory to restore it to instead of its original location.
    pub tablespace_map: BTreeMap<u32, PathBuf>,
    pub existing: ExistingData,
    /// The restore_command to write.
    pub restore_command: String,
}

/// What was done.
#[derive(Debug)]
pub struct RestoreReport {
    pub label: String,
    pub why: String,
    pub files_written: u64,
    pub files_kept: u64,
    pub bytes_written: u64,
    pub removed: u64,
    pub elapsed: Duration,
}

/// Where an entry of the backup goes on disk.
fn destination(entry_path: &str, pgdata: &Path, tablespaces: &HashMap<u32, PathBuf>) -> PathBuf {
    if let Some(rest) = entry_path.strip_prefix("pg_tblspc/")
        && let Some((oid, inner)) = rest.split_once('/')
        && let Some(location) = oid.parse().ok().and_then(|oid: u32| tablespaces.get(&oid))
    {
        return location.join(inner);
    }
    pgdata.join(entry_path)
}

fn is_empty_dir(path: &Path) -> anyhow::Result<bool> {
    match fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn remove_contents(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let kind = fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .with_context(|| format!("remove {}", path.display()))?;
    }
    Ok(())
}

/// Whether the file at `path` already holds exactly this entry's content.
fn matches(path: &Path, entry: &BackupEntry) -> bool {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return false;
    };
    if !metadata.is_file() || metadata.len() != entry.size {
        return false;
    }
    // Streamed: relation files run to 1 GiB.
    let crc = File::open(path).and_then(|mut file| {
        let mut crc = 0u32;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(&mut file, &mut buffer)? {
                0 => return Ok(crc),
                n => crc = crc32c::crc32c_append(crc, &buffer[..n]),
            }
        }
    });
    crc.ok() == entry.crc32c
}

/// Writes one file from its chunks, checking each chunk and the whole file's CRC-32C.
fn write_file(stanza: &Stanza<'_>, entry: &BackupEntry, path: &Path) -> anyhow::Result<u64> {
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut crc = 0u32;
    let mut chunk = Vec::new();
    for reference in &entry.chunks {
        stanza.get_blob(&reference.sha256, &mut chunk)?;
        crc = crc32c::crc32c_append(crc, &chunk);
        file.write_all(&chunk)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if Some(crc) != entry.crc32c {
        bail!(
            "{}: restored content has CRC-32C {crc:08x}, the backup recorded {:?}",
            entry.path,
            entry.crc32c
        );
    }
    file.set_permissions(fs::Permissions::from_mode(entry.mode & 0o7777))?;
    file.set_modified(UNIX_EPOCH + Duration::from_secs(entry.mtime))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    Ok(entry.size)
}

fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Restores a backup of `stanza` as `options` say.
pub fn restore(stanza: &Stanza<'_>, options: &RestoreOptions) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    let backups = stanza.list_backups()?;
    // Plan first: a target recovery cannot reach is refused before anything is written, and
    // the backup is the one the plan starts from. --backup overrides the choice, not the check.
    let request = planning::request(
        &options.target,
        options.exclusive,
        options.target_timeline.as_deref(),
    )?;
    let plan = planning::plan_for(stanza, &backups, &request)?;
    let (record, why) = match options.backup_label.as_deref() {
        Some(label) => (
            backup_labelled(&backups, label)?,
            format!("backup {label} was asked for with --backup"),
        ),
        None => {
            let record = backups
                .iter()
                .find(|b| b.label == plan.backup)
                .context("the plan names a backup that is not listed")?;
            (record, plan.why.clone())
        }
    };
    let record: BackupRecord = record.clone();
    let pgdata = &options.pgdata;

    // Where each tablespace goes, and a check that nothing there would be overwritten.
    let mut tablespaces = HashMap::new();
    for tablespace in &record.tablespaces {
        let location = options
            .tablespace_map
            .get(&tablespace.oid)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(&tablespace.location));
        tablespaces.insert(tablespace.oid, location);
    }
    if let Some(oid) = options
        .tablespace_map
        .keys()
        .find(|oid| !tablespaces.contains_key(oid))
    {
        let known: Vec<String> = record
            .tablespaces
            .iter()
            .map(|t| t.oid.to_string())
            .collect();
        bail!(
            "--tablespace-map names tablespace {oid}, which backup {} does not have (it has: {})",
            record.label,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    if pgdata.join("postmaster.pid").exists() {
        bail!(
            "{} has a postmaster.pid: a server may be running on it; stop it first",
            pgdata.display()
        );
    }
    let mut targets: Vec<&Path> = vec![pgdata.as_path()];
    targets.extend(tablespaces.values().map(PathBuf::as_path));
    // A tablespace's original location may belong to a cluster still running on this host:
    // only locations named with --tablespace-map are ever cleared.
    for record_tablespace in &record.tablespaces {
        let location = &tablespaces[&record_tablespace.oid];
        if !options.tablespace_map.contains_key(&record_tablespace.oid) && !is_empty_dir(location)?
        {
            bail!(
                "tablespace {}'s location {} is not empty, and restore never clears a location it was not given: restore it elsewhere with --tablespace-map {}=DIR, or in place with --tablespace-map {}={} and --delta or --force",
                record_tablespace.oid,
                location.display(),
                record_tablespace.oid,
                record_tablespace.oid,
                location.display()
            );
        }
    }
    for dir in &targets {
        if !is_empty_dir(dir)? {
            match options.existing {
                ExistingData::Refuse => bail!(
                    "{} is not empty: restore into an empty directory, or use --delta to keep the files that match the backup, or --force to overwrite it",
                    dir.display()
                ),
                ExistingData::Force => remove_contents(dir)?,
                ExistingData::Delta => {}
            }
        }
    }

    // Directories and links first, in path order so parents come before children.
    for dir in &targets {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    fs::set_permissions(pgdata, fs::Permissions::from_mode(0o700))?;
    let mut entries: Vec<&BackupEntry> = record.entries.iter().collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Directory) {
        let path = destination(&entry.path, pgdata, &tablespaces);
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode & 0o7777))?;
    }
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        let path = destination(&entry.path, pgdata, &tablespaces);
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(entry.link.as_deref().unwrap_or_default(), &path)
            .with_context(|| format!("create link {}", path.display()))?;
    }
    let tblspc = pgdata.join("pg_tblspc");
    fs::create_dir_all(&tblspc)?;
    for (oid, location) in &tablespaces {
        let link = tblspc.join(oid.to_string());
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(location, &link)
            .with_context(|| format!("create link {}", link.display()))?;
    }

    // Files, in parallel.
    let files: Vec<&BackupEntry> = entries
        .iter()
        .copied()
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    let next = Mutex::new(files.iter());
    let totals = Mutex::new((0u64, 0u64, 0u64));
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let Some(entry) =
                            next.lock().expect("no panic while locked").next().copied()
                        else {
                            return Ok(());
                        };
                        let path = destination(&entry.path, pgdata, &tablespaces);
                        if options.existing == ExistingData::Delta && matches(&path, entry) {
                            totals.lock().expect("no panic while locked").1 += 1;
                            continue;
                        }
                        let written = write_file(stanza, entry, &path)?;
                        let mut totals = totals.lock().expect("no panic while locked");
                        totals.0 += 1;
                        totals.2 += written;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("a restore worker does not panic")?;
        }
        Ok(())
    })?;

    // --delta: remove what the backup does not have.
    let mut removed = 0;
    if options.existing == ExistingData::Delta {
        let wanted: std::collections::HashSet<PathBuf> = record
            .entries
            .iter()
            .map(|e| destination(&e.path, pgdata, &tablespaces))
            .chain(tablespaces.keys().map(|oid| tblspc.join(oid.to_string())))
            .collect();
        for dir in &targets {
            removed += remove_strays(dir, &wanted)?;
        }
    }

    // PostgreSQL recreates the tablespace links from tablespace_map at startup: it must name
    // the locations used here.
    // Rewritten only when a location moved: otherwise the backed-up file stays byte for byte
    // what the manifest lists, and pg_verifybackup passes.
    let moved = record
        .tablespaces
        .iter()
        .any(|t| tablespaces[&t.oid].as_path() != Path::new(&t.location));
    if moved {
        let mut map = String::new();
        let mut ordered: Vec<(&u32, &PathBuf)> = tablespaces.iter().collect();
        ordered.sort();
        for (oid, location) in ordered {
            let escaped = location
                .to_string_lossy()
                .replace('\\', "\\\\")
                .replace('\n', "\\\n")
                .replace('\r', "\\\r");
            map.push_str(&format!("{oid} {escaped}\n"));
        }
        fs::write(pgdata.join("tablespace_map"), map)?;
    }
    if record.has_manifest {
        fs::write(
            pgdata.join("backup_manifest"),
            stanza.get_backup_manifest(&record.label)?,
        )?;
    }
    // The prefetcher of tidemark-restore follows the plan, timeline switches included.
    if record.label == plan.backup {
        RestoreSpool::locate(&pgdata.join("pg_wal"), stanza.name()).write_plan(&plan.segments)?;
    }
    write_recovery_settings(pgdata, &record, options)?;
    for dir in &targets {
        File::open(dir)?.sync_all()?;
    }
    let (files_written, files_kept, bytes_written) = *totals.lock().expect("no panic while locked");
    Ok(RestoreReport {
        label: record.label.clone(),
        why,
        files_written,
        files_kept,
        bytes_written,
        removed,
        elapsed: started.elapsed(),
    })
}

/// Removes every path under `dir` that is not in `wanted` (nor a parent of one).
fn remove_strays(dir: &Path, wanted: &std::collections::HashSet<PathBuf>) -> anyhow::Result<u64> {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries {
        let path = entry?.path();
        let metadata = fs::symlink_metadata(&path)?;
        let is_parent = wanted.iter().any(|w| w.starts_with(&path) && *w != path);
        if wanted.contains(&path) || is_parent {
            if metadata.is_dir() {
                removed += remove_strays(&path, wanted)?;
            }
            continue;
        }
        if metadata.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Appends the recovery settings to `postgresql.auto.conf` (read last, so they win) and
/// creates `recovery.signal`.
fn write_recovery_settings(
    pgdata: &Path,
    record: &BackupRecord,
    options: &RestoreOptions,
) -> anyhow::Result<()> {
    let mut settings: Vec<(&str, String)> =
        vec![("restore_command", options.restore_command.clone())];
    settings.extend(options.target.settings());
    if options.target != RecoveryTarget::EndOfArchive && options.target != RecoveryTarget::Immediate
    {
        settings.push((
            "recovery_target_inclusive",
            if options.exclusive { "off" } else { "on" }.to_owned(),
        ));
    }
    settings.push(("recovery_target_action", options.target_action.clone()));
    if let Some(timeline) = &options.target_timeline {
        settings.push(("recovery_target_timeline", timeline.clone()));
    }
    let mut text = format!(
        "\n# Written by tidemark restore of backup {}.\n",
        record.label
    );
    for (key, value) in settings {
        text.push_str(&format!("{key} = {}\n", quote_setting(&value)));
    }
    let path = pgdata.join("postgresql.auto.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    File::create(pgdata.join("recovery.signal"))?.sync_all()?;
    Ok(())
}
