//! `tidemark restore`: lay out a backup as a data directory, with every chunk verified, and
//! write the recovery settings so that `pg_ctl start` recovers through `tidemark-restore` to the
//! target and finishes on its own.
//!
//! The order makes it crash-safe. Nothing is written until the plan, the backup's record against
//! its manifest and the places are checked. Then come the directories, links and files, each
//! file fsynced, then every directory fsynced, and `global/pg_control` last among the data
//! ([`pg_control`]); only then the recovery settings, and `recovery.signal` last of all
//! ([`settings`]). A restore that stops anywhere before the end leaves a directory PostgreSQL
//! refuses to start, and one that ends leaves everything it wrote durable.
//!
//! When recovery crosses a timeline switch inside a segment, the older timeline's copy of that
//! segment is put in `pg_wal` with the data, before `global/pg_control` ([`switch_copies`]):
//! PostgreSQL reads a transaction prepared before the switch from there and nowhere else.
//!
//! While the files are written, the restore shows its progress (`progress`): a bar on a
//! terminal, a line every 10 s otherwise.
//!
//! May import: `planning/` (a restore plans first, and writes the target's settings),
//! `archive::prefetch` (to hand the plan to `tidemark-restore`'s prefetcher), `archive::get`
//! (a switch segment's older copy is fetched and verified as `restore_command` does it),
//! `backup::verify`,
//! `repo/`, `storage::durable`, `progress` and `pg/`.

mod backup_choice;
mod files;
mod pg_control;
mod places;
pub mod settings;
mod switch_copies;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::archive::prefetch::RestoreSpool;
use crate::backup::verify;
use crate::pg::SegmentName;
use crate::pg::backup_manifest::BackupManifest;
use crate::planning::inputs::plan_for;
use crate::planning::planner::SwitchSegment;
use crate::planning::target::{PlanRequest, RecoveryTarget};
use crate::progress::Progress;
use crate::repo::Stanza;
use crate::repo::catalog::{BackupEntry, BackupRecord, EntryKind};
use crate::storage::durable;
use backup_choice::chosen_backup;
use places::Places;

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
    /// The older timeline's copies of switch segments: put in `pg_wal`, unless not archived.
    pub switch_copies: Vec<SwitchSegment>,
    pub elapsed: Duration,
}

/// Restores a backup of `stanza` as `options` say.
pub fn restore(stanza: &Stanza<'_>, options: &RestoreOptions) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    let backups = stanza.list_backups()?;
    // Plan first: a target recovery cannot reach is refused before anything is written, and
    // the backup is the one the plan starts from. --backup overrides the choice, not the check.
    let request = PlanRequest::new(
        &options.target,
        options.exclusive,
        options.target_timeline.as_deref(),
    )?;
    let plan = plan_for(stanza, &backups, &request)?;
    let (record, why) = chosen_backup(&backups, &plan, options.backup_label.as_deref())?;
    let manifest = checked_manifest(stanza, record)?;
    let places = Places::new(record, &options.pgdata, &options.tablespace_map)?;
    places.check_nothing_is_overwritten_unasked(options.existing)?;

    places.make_tops(options.existing)?;
    // The prefetcher of tidemark-restore follows the plan, timeline switches included.
    let prefetch_plan = (record.label == plan.backup).then_some(plan.segments.as_slice());
    let switch_copies = plan.copies_to_place(record.start_lsn);
    let beside = Beside {
        manifest: manifest.as_deref(),
        prefetch_plan,
        switch_copies: &switch_copies,
    };
    let written = lay_out(stanza, record, &places, options.existing, &beside)
        .map_err(|e| {
            anyhow::anyhow!(
                "{e:#}; {} is left incomplete and cannot be started (its global/pg_control is written last): restore again with --delta or --force once the cause is fixed",
                places.pgdata.display()
            )
        })?;
    settings::write(
        &places.pgdata,
        &settings::block(&record.label, &recovery_settings(options)),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "write the recovery settings: {e:#}; {} holds all the data but is not set to recover: restore again with --delta once the cause is fixed",
            places.pgdata.display()
        )
    })?;
    Ok(RestoreReport {
        label: record.label.clone(),
        why,
        files_written: written.files,
        files_kept: written.kept,
        bytes_written: written.bytes,
        removed: written.removed,
        switch_copies: switch_copies.into_iter().cloned().collect(),
        elapsed: started.elapsed(),
    })
}

/// PostgreSQL's manifest of the backup, read and compared with the backup's record before
/// anything is written: the two must agree on every file, or the backup is not restored.
/// `None` for a backup of PostgreSQL 12, which sends no manifest.
fn checked_manifest(stanza: &Stanza<'_>, record: &BackupRecord) -> anyhow::Result<Option<Vec<u8>>> {
    if !record.has_manifest {
        return Ok(None);
    }
    let bytes = stanza.get_backup_manifest(&record.label)?;
    let checked = BackupManifest::parse(&bytes)
        .map_err(anyhow::Error::from)
        .and_then(|manifest| verify::check_against_manifest(&record.entries, &manifest));
    if let Err(e) = checked {
        bail!(
            "backup {} does not match its backup_manifest, so nothing was written: {e:#}; restore another backup with --backup LABEL",
            record.label
        );
    }
    Ok(Some(bytes))
}

/// What laying the backup out did.
struct LaidOut {
    files: u64,
    kept: u64,
    bytes: u64,
    removed: u64,
}

/// What a restore writes beside the backup's own files.
struct Beside<'a> {
    /// PostgreSQL's manifest of the backup (none for PostgreSQL 12).
    manifest: Option<&'a [u8]>,
    /// The plan handed to the prefetcher (a cache), when the planned backup is restored.
    prefetch_plan: Option<&'a [SegmentName]>,
    /// The older timeline's copies of switch segments, for `pg_wal`.
    switch_copies: &'a [&'a SwitchSegment],
}

/// Lays the backup out under `places`, which exist, with what goes `beside` it: every file and
/// directory made durable, `global/pg_control` put in place last.
fn lay_out(
    stanza: &Stanza<'_>,
    record: &BackupRecord,
    places: &Places,
    existing: ExistingData,
    beside: &Beside<'_>,
) -> anyhow::Result<LaidOut> {
    let pgdata = &places.pgdata;
    pg_control::withdraw(pgdata)?;
    let mut entries: Vec<&BackupEntry> = record.entries.iter().collect();
    // Path order: parents come before children.
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    make_directories_and_links(&entries, places)?;
    let (control, files): (Vec<&BackupEntry>, Vec<&BackupEntry>) = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .partition(|e| e.path == pg_control::ENTRY);
    let mut progress = Progress::new("restore", "written");
    progress.set_total(files.iter().chain(&control).map(|e| e.size).sum(), false);
    let delta = existing == ExistingData::Delta;
    let written = files::write_all(stanza, &files, places, delta, &progress)?;
    let removed = if existing == ExistingData::Delta {
        places.remove_strays(record)?
    } else {
        0
    };
    write_beside_the_backup(record, places, beside.manifest)?;
    if let Some(segments) = beside.prefetch_plan {
        RestoreSpool::locate(&pgdata.join("pg_wal"), stanza.name()).write_plan(segments)?;
    }
    switch_copies::place(stanza, beside.switch_copies, pgdata)?;
    for dir in places.directories(record) {
        durable::fsync_dir(&dir).with_context(|| format!("fsync {}", dir.display()))?;
    }
    let mut control_bytes = 0;
    for entry in &control {
        control_bytes += pg_control::put_in_place(pgdata, |path| {
            files::write_file(stanza, entry, path, &progress)
        })?;
    }
    progress.finish();
    Ok(LaidOut {
        files: written.files + control.len() as u64,
        kept: written.kept,
        bytes: written.bytes + control_bytes,
        removed,
    })
}

/// Writes, durably, what is not in the backup's files: PostgreSQL's `backup_manifest`, and
/// `tablespace_map` for the locations used. The map is rewritten only when a location moved:
/// otherwise the backed-up file stays byte for byte what the manifest lists, and
/// pg_verifybackup passes.
fn write_beside_the_backup(
    record: &BackupRecord,
    places: &Places,
    manifest: Option<&[u8]>,
) -> anyhow::Result<()> {
    let pgdata = &places.pgdata;
    if places.moved(record) {
        let map = places.tablespace_map();
        durable::write_replacing(
            &pgdata.join("tablespace_map"),
            map.as_bytes(),
            0o600,
            pgdata,
        )
        .context("write tablespace_map")?;
    }
    if let Some(manifest) = manifest {
        durable::write_replacing(&pgdata.join("backup_manifest"), manifest, 0o600, pgdata)
            .context("write backup_manifest")?;
    }
    Ok(())
}

/// Makes the backup's directories with their modes, its links, and the link of every
/// tablespace to where it is restored.
fn make_directories_and_links(entries: &[&BackupEntry], places: &Places) -> anyhow::Result<()> {
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Directory) {
        let path = places.destination(&entry.path);
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        places::set_mode(&path, entry.mode & 0o7777)?;
    }
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        let path = places.destination(&entry.path);
        replace_link(Path::new(entry.link.as_deref().unwrap_or_default()), &path)?;
    }
    fs::create_dir_all(places.pgdata.join("pg_tblspc"))
        .with_context(|| format!("create {}/pg_tblspc", places.pgdata.display()))?;
    for (oid, location) in &places.tablespaces {
        replace_link(location, &places.link(*oid))?;
    }
    Ok(())
}

/// Makes `link` a symbolic link to `target`, replacing a link or file there.
fn replace_link(target: &Path, link: &Path) -> anyhow::Result<()> {
    match fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove {}", link.display()));
        }
        _ => {}
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("create link {}", link.display()))
}

/// The settings that make PostgreSQL recover to the target through `restore_command`.
fn recovery_settings(options: &RestoreOptions) -> Vec<(&'static str, String)> {
    let mut settings = vec![("restore_command", options.restore_command.clone())];
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
    settings
}
