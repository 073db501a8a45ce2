//! `tidemark restore` watched under `strace -f`: every file it restores is fsynced, every
//! directory that got new entries (its parents up to the first that existed included) is
//! fsynced after them, `global/pg_control` is put in place only after every other data file is
//! durable, and only then come the recovery settings: `postgresql.auto.conf` put in place and
//! its directory fsynced, and `recovery.signal` made last. A crash at any moment therefore never
//! leaves a data directory that PostgreSQL would start recovering with data missing.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::strace::{self, Effect, Event};
use testkit::Lab;
use testkit::owner_command;
use testkit::steps::{PrimaryOptions, archiving_primary};

/// What was restored where, and so which parts of the trace matter.
struct Restored {
    pgdata: PathBuf,
    /// The directories the restore had to make, the data directory's and the tablespace's
    /// topmost missing ancestors: everything of the restore's lies under them.
    made: Vec<PathBuf>,
    /// Where the tablespace went.
    tablespace: PathBuf,
}

impl Restored {
    fn settings(&self) -> PathBuf {
        self.pgdata.join("postgresql.auto.conf")
    }

    fn signal(&self) -> PathBuf {
        self.pgdata.join("recovery.signal")
    }

    /// The prefetcher's plan under `pg_wal/.tidemark` is a cache, written without fsync by
    /// design (losing it only costs prefetching): not part of the data.
    fn is_cache(&self, path: &Path) -> bool {
        path.starts_with(self.pgdata.join("pg_wal/.tidemark"))
    }

    fn is_watched(&self, path: &Path) -> bool {
        self.made.iter().any(|root| path.starts_with(root)) && !self.is_cache(path)
    }

    /// `recovery.signal` and the temporary file it is made through.
    fn is_signal(&self, path: &Path) -> bool {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        path.parent() == Some(self.pgdata.as_path())
            && (name == "recovery.signal" || name.starts_with(".recovery.signal."))
    }

    /// `postgresql.auto.conf`, `recovery.signal` and the temporary files they are written
    /// through (`.postgresql.auto.conf.<host>.<pid>.<n>.tmp`).
    fn is_setting(&self, path: &Path) -> bool {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        path.parent() == Some(self.pgdata.as_path())
            && [
                "postgresql.auto.conf",
                "recovery.signal",
                ".postgresql.auto.conf.",
                ".recovery.signal.",
            ]
            .iter()
            .any(|p| name == *p || (p.starts_with('.') && name.starts_with(p)))
    }
}

/// The names an event adds or removes: a rename does both.
fn changed_names(effect: &Effect) -> Vec<&Path> {
    match effect {
        Effect::Added(p) | Effect::Removed(p) => vec![p],
        Effect::Renamed { from, to } => vec![from, to],
        _ => vec![],
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().expect("traced paths are absolute")
}

/// Where each file's content became durable: the line where an fsync that started after the
/// file was last opened for writing returned, carried along renames.
fn content_synced(events: &[Event]) -> HashMap<PathBuf, (usize, Option<usize>)> {
    let mut files: HashMap<PathBuf, (usize, Option<usize>)> = HashMap::new();
    for event in events {
        match &event.effect {
            Effect::OpenedForWriting(p) => {
                files.insert(p.clone(), (event.ended, None));
            }
            Effect::Fsynced(p) => {
                if let Some((written, synced)) = files.get_mut(p)
                    && event.started > *written
                {
                    *synced = Some(event.ended);
                }
            }
            Effect::Renamed { from, to } => {
                if let Some(state) = files.remove(from) {
                    files.insert(to.clone(), state);
                }
            }
            _ => {}
        }
    }
    files
}

/// Whether `dir` was fsynced by a call that started after line `after` and returned before
/// line `before`.
fn dir_synced_between(events: &[Event], dir: &Path, after: usize, before: usize) -> bool {
    events.iter().any(|e| {
        e.effect == Effect::Fsynced(dir.to_path_buf()) && e.started > after && e.ended < before
    })
}

/// Every regular file under `dir`, links not followed.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = fs::symlink_metadata(&path).unwrap().file_type();
        if kind.is_dir() {
            files_under(&path, out);
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

/// Every way the traced restore fell short of the order the module doc states.
fn problems(events: &[Event], restored: &Restored) -> Vec<String> {
    let mut problems = Vec::new();
    let last = |wanted: &dyn Fn(&Effect) -> bool| events.iter().rev().find(|e| wanted(&e.effect));
    let settings = restored.settings();
    let signal = restored.signal();
    let Some(settings_written) = last(&|e| match e {
        Effect::OpenedForWriting(p) | Effect::Added(p) => *p == settings,
        Effect::Renamed { to, .. } => *to == settings,
        _ => false,
    }) else {
        return vec!["postgresql.auto.conf was never written".into()];
    };
    let Some(signal_made) = last(&|e| match e {
        Effect::Added(p) => *p == signal,
        Effect::Renamed { to, .. } => *to == signal,
        _ => false,
    }) else {
        return vec!["recovery.signal was never made".into()];
    };
    let settings_at = settings_written.started;
    let is_data = |p: &Path| restored.is_watched(p) && !restored.is_setting(p);

    // Data: every fsync done, every directory change synced, before the settings.
    for event in events {
        if let Effect::Fsynced(p) = &event.effect
            && is_data(p)
            && *p != restored.pgdata
            && event.ended >= settings_at
        {
            problems.push(format!(
                "{} was fsynced at line {}, after postgresql.auto.conf got its final content (line {settings_at})",
                p.display(),
                event.ended
            ));
        }
        for name in changed_names(&event.effect) {
            let dir = parent(name);
            if is_data(name) && !dir_synced_between(events, dir, event.ended, settings_at) {
                problems.push(format!(
                    "{} changed in {} at line {}, and that directory was not fsynced after it before postgresql.auto.conf got its final content (line {settings_at})",
                    name.display(),
                    dir.display(),
                    event.ended
                ));
            }
            if restored.is_setting(name)
                && !restored.is_signal(name)
                && !dir_synced_between(events, dir, event.ended, signal_made.started)
            {
                problems.push(format!(
                    "{} changed at line {} and {} was not fsynced after it before recovery.signal was made (line {})",
                    name.display(),
                    event.ended,
                    dir.display(),
                    signal_made.started
                ));
            }
            if restored.is_watched(name)
                && !restored.is_signal(name)
                && event.ended >= signal_made.started
            {
                problems.push(format!(
                    "{} changed at line {}, after recovery.signal was made (line {}): the signal must come last",
                    name.display(),
                    event.ended,
                    signal_made.started
                ));
            }
        }
    }
    if !dir_synced_between(events, &restored.pgdata, signal_made.ended, usize::MAX) {
        problems.push("the data directory was not fsynced after recovery.signal was made".into());
    }

    // Every file's content, pg_control's last among the data.
    let synced = content_synced(events);
    let mut files = Vec::new();
    files_under(&restored.pgdata, &mut files);
    files_under(&restored.tablespace, &mut files);
    let pg_control = restored.pgdata.join("global/pg_control");
    let pg_control_placed = last(&|e| matches!(e, Effect::Renamed { to, .. } if *to == pg_control));
    for file in files.iter().filter(|f| !restored.is_cache(f)) {
        let Some(&(_, Some(synced_at))) = synced.get(file) else {
            problems.push(format!(
                "{} was never fsynced after it was written",
                file.display()
            ));
            continue;
        };
        let deadline = if *file == signal {
            usize::MAX
        } else if *file == settings {
            signal_made.started
        } else {
            settings_at
        };
        if synced_at >= deadline {
            problems.push(format!(
                "{} became durable at line {synced_at}, too late (by line {deadline})",
                file.display()
            ));
        }
        if is_data(file)
            && *file != pg_control
            && pg_control_placed.is_some_and(|placed| synced_at >= placed.started)
        {
            problems.push(format!(
                "{} became durable at line {synced_at}, after global/pg_control was put in place",
                file.display()
            ));
        }
    }
    if pg_control_placed.is_none() {
        problems.push(
            "global/pg_control was not put in place by a rename at the end, so an interrupted restore could be started".into(),
        );
    }
    problems
}

#[test]
fn restore_makes_files_and_directories_durable_then_the_settings_then_the_signal() {
    let lab = Lab::new("tm-rdur-", &common::binaries()).unwrap();
    let mut cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    let location = lab.tmp.subdir("tablespace").unwrap();
    let oid = cluster.create_tablespace("outside", &location).unwrap();
    cluster
        .query(
            "CREATE TABLE far TABLESPACE outside AS SELECT g AS id FROM generate_series(1, 1000) g",
        )
        .unwrap();
    common::backups::back_up_and_stop(&lab, &mut cluster);

    // The data directory and the tablespace's new place, each under a parent the restore must
    // make and make durable too.
    let made = vec![
        lab.tmp.path().join("new-parent"),
        lab.tmp.path().join("new-tablespace-parent"),
    ];
    let restored = Restored {
        pgdata: made[0].join("restored"),
        tablespace: made[1].join("location"),
        made,
    };
    let trace_path = lab.tmp.path().join("restore.strace");
    let mapping = format!("{oid}={}", restored.tablespace.display());
    let mut restore = owner_command(&lab.bin_dir.join("tidemark"), lab.tmp.path());
    restore
        .arg("--config")
        .arg(&lab.config_path)
        .args(["restore", "--pgdata"])
        .arg(&restored.pgdata)
        .args(["--tablespace-map", &mapping]);
    let traced = strace::run(&restore, &[], &trace_path);
    assert!(
        traced.output.status.success(),
        "restore under strace failed: {}",
        String::from_utf8_lossy(&traced.output.stderr)
    );
    let events = traced.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.effect, Effect::Fsynced(p) if restored.is_watched(p))),
        "the trace holds no fsync of the restored directory: is strace tracing the restore?"
    );
    let problems = problems(&events, &restored);
    assert!(
        problems.is_empty(),
        "{} durability problems (trace in {}; TIDEMARK_KEEP_TMP=1 keeps it), the first ones:\n{}",
        problems.len(),
        trace_path.display(),
        problems[..problems.len().min(25)].join("\n")
            + "\n"
            + &problems[problems.len().saturating_sub(25)..].join("\n")
    );
}
