//! What `tidemark-archive` promises about durability, checked on the system calls it makes,
//! under `strace -f`: every object it stores is written under a temporary name, fsynced,
//! renamed into place without replacing anything, and then its directory and every directory
//! up to the repository root are fsynced, before it exits 0. A push that finds the object
//! already there (a retry after a crash) fsyncs that object and the same chain before it says
//! so. And with any one fsync made to fail (EIO injected), the push fails, a retry whose fsyncs
//! all fail fails too, and only a retry that fsynced the object and its chain exits 0.
//!
//! A backup fsyncs every chunk it writes before its rename, and every chunk of an earlier
//! backup it finds in place; the directory chains of both are fsynced (once per directory, after
//! the last chunk) before its record refers to them. So does a source's snapshot (a bucket's)
//! for the chunks it writes.
//!
//! Real WAL segments from a real cluster; a history file, whose directory is a sibling of the
//! segments'; each case in a fresh repository, so every directory is new.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::direct::{DirectRepo, describe};
use common::strace::{self, Syscall, Traced};
use testkit::Lab;
use testkit::owner_command;
use testkit::steps::{PrimaryOptions, archiving_primary};

/// A history file of timeline 2, as PostgreSQL writes one at a promotion.
const HISTORY: &[u8] = b"1\t0/3000028\tno recovery target specified\n";

/// What a test pushes: a real segment, or a history file.
struct Pushed {
    file: PathBuf,
}

struct Setup {
    wal: common::WalLab,
    work: PathBuf,
    files: Vec<Pushed>,
}

impl Setup {
    fn new() -> Setup {
        let wal = common::WalLab::new("tm-fsync-");
        let work = wal.lab.tmp.path().join("fsync");
        std::fs::create_dir(&work).unwrap();
        let segment = wal.segment_path(1);
        let history = work.join("00000002.history");
        std::fs::write(&history, HISTORY).unwrap();
        Setup {
            files: vec![Pushed { file: segment }, Pushed { file: history }],
            wal,
            work,
        }
    }

    fn repo(&self, name: &str) -> DirectRepo {
        DirectRepo::create(
            &self.wal.lab.bin_dir,
            self.wal.cluster.data_dir(),
            self.work.join(name),
        )
    }

    fn push(&self, repo: &DirectRepo, pushed: &Pushed) -> Command {
        repo.push(&self.wal.lab.bin_dir, &pushed.file)
    }

    fn traced(&self, command: &Command, extra: &[&str], name: &str) -> Traced {
        strace::run(command, extra, &self.work.join(format!("{name}.trace")))
    }
}

/// The directories whose entries must be durable for `object` to be: its own and every one
/// above it up to the repository root.
fn chain(object: &Path, root: &Path) -> Vec<PathBuf> {
    object
        .ancestors()
        .skip(1)
        .take_while(|dir| dir.starts_with(root))
        .map(Path::to_path_buf)
        .collect()
}

/// Fails unless every directory of `object`'s chain is fsynced by the traced process after
/// the entry leading to the object last changed: the object's own directory after call `at`
/// (the rename that put the object there, or the one that found it taken), each directory
/// above it after the last making of the directory below it on the object's path, or at any
/// time when the process made none (another process made it, and may have died before its
/// fsync).
fn assert_chain_durable(traced: &Traced, at: usize, object: &Path, root: &Path) {
    let chain = chain(object, root);
    for (level, dir) in chain.iter().enumerate() {
        let changed = if level == 0 {
            Some(at)
        } else {
            let below = &chain[level - 1];
            traced.find_before(traced.calls.len(), |c| {
                c.name.starts_with("mkdir")
                    && c.succeeded()
                    && c.made_dir().as_deref() == Some(below.as_path())
            })
        };
        let after = changed.map_or(0, |i| i + 1);
        assert!(
            (after..traced.calls.len()).any(|i| traced.calls[i].is_fsync_of(dir)),
            "{} is not fsynced after its entries changed ({}), yet {} was reported stored; calls:\n{}",
            dir.display(),
            changed.map_or("by another process".to_owned(), |i| format!(
                "{}({})",
                traced.calls[i].name, traced.calls[i].args
            )),
            object.display(),
            traced.listing()
        );
    }
}

/// The objects renamed into place in the repository: (call index, temporary, final).
fn stores(traced: &Traced, root: &Path) -> Vec<(usize, PathBuf, PathBuf)> {
    traced
        .calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name.starts_with("rename") && c.succeeded())
        .filter_map(|(i, c)| c.rename_paths().map(|(from, to)| (i, from, to)))
        .filter(|(_, _, to)| to.starts_with(root))
        .collect()
}

/// Every object stored was written and fsynced under its temporary name, renamed without
/// replacing, and its directory chain fsynced afterwards.
fn assert_stored_durably(traced: &Traced, root: &Path) -> usize {
    assert_stored_durably_under(traced, root, root)
}

/// [`assert_stored_durably`] for the objects stored under `under` (inside `root`) only.
fn assert_stored_durably_under(traced: &Traced, root: &Path, under: &Path) -> usize {
    let mut stored = stores(traced, root);
    stored.retain(|(_, _, object)| object.starts_with(under));
    for (at, temp, object) in &stored {
        let rename = &traced.calls[*at];
        assert!(
            rename.name == "renameat2" && rename.args.contains("RENAME_NOREPLACE"),
            "{} was put in place by {}({}), not a rename that never replaces",
            object.display(),
            rename.name,
            rename.args
        );
        let is_temp = |c: &Syscall| c.fd_path().as_deref() == Some(temp.as_path());
        let fsynced = traced
            .find_before(*at, |c| c.name == "fsync" && c.succeeded() && is_temp(c))
            .unwrap_or_else(|| {
                panic!(
                    "{} was renamed into place without an fsync of {}; calls:\n{}",
                    object.display(),
                    temp.display(),
                    traced.listing()
                )
            });
        let last_write = traced
            .find_before(*at, |c| c.name.contains("write") && is_temp(c))
            .expect("the temporary file was written");
        assert!(
            last_write < fsynced,
            "{} was written after its fsync",
            temp.display()
        );
        assert_chain_durable(traced, *at, object, root);
    }
    stored.len()
}

#[test]
fn every_object_stored_or_found_is_fsynced_with_its_directory_chain_before_success() {
    let setup = Setup::new();
    for (n, pushed) in setup.files.iter().enumerate() {
        let repo = setup.repo(&format!("order-{n}"));
        let push = setup.push(&repo, pushed);
        let first = setup.traced(&push, &[], &format!("order-{n}-first"));
        assert!(first.output.status.success(), "{}", describe(&first.output));
        let stored = assert_stored_durably(&first, &repo.path);
        assert!(stored >= 1, "the push stored nothing:\n{}", first.listing());

        // The same file again, as PostgreSQL retries after a crash: every object found in
        // place is fsynced, and its chain, after the rename said it was taken.
        let again = setup.traced(&push, &[], &format!("order-{n}-again"));
        assert!(again.output.status.success(), "{}", describe(&again.output));
        let taken: Vec<(usize, PathBuf)> = again
            .calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == "renameat2" && c.errno() == Some("EEXIST"))
            .filter_map(|(i, c)| c.rename_paths().map(|(_, to)| (i, to)))
            .collect();
        assert_eq!(
            taken.len(),
            stored,
            "each object of the first push is found taken once:\n{}",
            again.listing()
        );
        for (at, object) in &taken {
            assert!(
                again.find_after(*at, |c| c.is_fsync_of(object)).is_some(),
                "{} was found in place but never fsynced; calls:\n{}",
                object.display(),
                again.listing()
            );
            assert_chain_durable(&again, *at, object, &repo.path);
        }
        assert_eq!(stores(&again, &repo.path).len(), 0, "nothing is replaced");
    }
}

#[test]
fn a_failed_fsync_fails_the_push_and_only_a_retry_that_made_the_copy_durable_succeeds() {
    let setup = Setup::new();
    for (n, pushed) in setup.files.iter().enumerate() {
        let clean_repo = setup.repo(&format!("count-{n}"));
        let clean = setup.traced(&setup.push(&clean_repo, pushed), &[], "count");
        assert!(clean.output.status.success(), "{}", describe(&clean.output));
        let fsyncs = clean.calls.iter().filter(|c| c.name == "fsync").count();
        assert!(fsyncs >= 2, "a push fsyncs at least a file and a directory");
        for when in 1..=fsyncs {
            let case = format!("file {n}, fsync {when} of {fsyncs}");
            let repo = setup.repo(&format!("eio-{n}-{when}"));
            let push = setup.push(&repo, pushed);
            let inject = format!("inject=fsync:error=EIO:when={when}");
            let failed = setup.traced(&push, &["-e", &inject], &format!("eio-{n}-{when}"));
            let injected: Vec<&Syscall> = failed.calls.iter().filter(|c| c.injected()).collect();
            assert_eq!(
                injected.len(),
                1,
                "{case}: one fsync fails:\n{}",
                failed.listing()
            );
            assert_eq!(
                failed.output.status.code(),
                Some(1),
                "{case}: a push whose fsync of {:?} failed must fail: {}",
                injected[0].fd_path(),
                describe(&failed.output)
            );

            // The archiver's retry, with the disk still failing every fsync: never success.
            let all_fail = setup.traced(&push, &["-e", "inject=fsync:error=EIO"], "all-fail");
            assert_eq!(
                all_fail.output.status.code(),
                Some(1),
                "{case}: a retry that could fsync nothing reported success: {}\ncalls:\n{}",
                describe(&all_fail.output),
                all_fail.listing()
            );

            // Once the disk recovers, the retry succeeds, having made everything durable.
            let retry = setup.traced(&push, &[], &format!("retry-{n}-{when}"));
            assert!(
                retry.output.status.success(),
                "{case}: {}",
                describe(&retry.output)
            );
            for object in objects(&repo) {
                assert_reported_durably(&retry, &object, &repo.path, &case);
            }
            assert_stored_durably(&retry, &repo.path);
        }
    }
}

/// Fails unless the traced process made `object` durable before it exited: it stored the
/// object itself (fsynced, renamed, chain fsynced), or found it taken and then fsynced it and
/// its chain.
fn assert_reported_durably(traced: &Traced, object: &Path, root: &Path, case: &str) {
    let renamed_to_object =
        |c: &Syscall| c.name == "renameat2" && c.rename_paths().is_some_and(|(_, to)| to == object);
    let at = traced
        .find_before(traced.calls.len(), renamed_to_object)
        .unwrap_or_else(|| {
            panic!(
                "{case}: the retry succeeded without putting or finding {}:\n{}",
                object.display(),
                traced.listing()
            )
        });
    if traced.calls[at].errno() == Some("EEXIST") {
        assert!(
            traced.find_after(at, |c| c.is_fsync_of(object)).is_some(),
            "{case}: the retry found {} in place and succeeded without fsyncing it:\n{}",
            object.display(),
            traced.listing()
        );
    }
    assert_chain_durable(traced, at, object, root);
}

/// The objects a push left in a direct repository (the stanza's identity aside, which
/// `stanza-create` wrote).
fn objects(repo: &DirectRepo) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![repo.path.join(common::direct::STANZA)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.')
                && path.parent() != Some(repo.path.join(common::direct::STANZA).as_path())
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_backup_fsyncs_every_chunk_it_stores_or_reuses_before_its_record() {
    let lab = Lab::new("tm-fsync-backup-", &common::binaries()).unwrap();
    let cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    cluster
        .query("CREATE TABLE kept AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 50000) g")
        .unwrap();
    cluster.query("CHECKPOINT").unwrap();
    lab.tidemark(&["backup"]).unwrap();

    // The second backup finds most chunks in place. Each was written by the first backup; had
    // that one been killed after a rename and before its fsyncs, only this backup's own fsyncs
    // could make them durable before its record refers to them.
    let config = lab.config_path.to_str().unwrap();
    common::backups::wait_for_the_next_second();
    let mut second = owner_command(&lab.bin_dir.join("tidemark"), lab.tmp.path());
    second.args(["--config", config, "backup"]);
    let trace_file = lab.tmp.path().join("backup.trace");
    let traced = strace::run(&second, &[], &trace_file);
    assert!(
        traced.output.status.success(),
        "{}",
        describe(&traced.output)
    );

    let repo = tidemark::config::Config::load(&lab.config_path)
        .unwrap()
        .open_repository()
        .unwrap();
    let stanza = repo.open_stanza("main").unwrap();
    let backups = stanza.list_backups().unwrap();
    assert_eq!(backups.len(), 2);
    let record = |label: &str| {
        let key = tidemark::repo::layout::backup_record("main", label);
        lab.repo_path.join(key.as_str())
    };
    let record_in_place = traced
        .find_before(traced.calls.len(), |c| {
            c.name == "renameat2"
                && c.succeeded()
                && c.rename_paths()
                    .is_some_and(|(_, to)| to == record(&backups[1].label))
        })
        .expect("the second backup stored its record");
    let chunks: std::collections::BTreeSet<&str> = backups[1]
        .entries
        .iter()
        .flat_map(|entry| entry.chunks.iter().map(|chunk| chunk.name.as_str()))
        .collect();
    let before_record = Traced {
        output: traced.output.clone(),
        calls: traced.calls[..record_in_place].to_vec(),
    };
    // Every chunk it wrote: fsynced before its rename, its directory chain after it and before
    // the record (a backup owes those fsyncs until its last chunk, and pays them once each).
    let stored = assert_stored_durably(&before_record, &lab.repo_path);
    assert!(stored > 0, "the second backup stored no chunk of its own");
    let mut reused = 0;
    for sha256 in chunks {
        let blob = lab
            .repo_path
            .join(tidemark::repo::layout::blob("main", sha256).as_str());
        let stored_now = stores(&before_record, &lab.repo_path)
            .iter()
            .any(|(_, _, to)| *to == blob);
        if stored_now {
            continue;
        }
        reused += 1;
        let fsynced = before_record
            .find_before(record_in_place, |c| c.is_fsync_of(&blob))
            .unwrap_or_else(|| {
                panic!(
                    "the second backup refers to chunk {} without having fsynced it",
                    blob.display()
                )
            });
        assert_chain_durable(&before_record, fsynced, &blob, &lab.repo_path);
    }
    assert!(reused > 0, "the second backup reused no chunk");
    drop(cluster);
}

#[test]
fn a_source_snapshot_fsyncs_every_chunk_before_its_record() {
    let server = common::s3::start_server();
    let client = common::bucket::TestClient::new(&server.endpoint);
    client.create_bucket("src");
    client.put_all("src", common::bucket::varied_objects(60, 1 << 20, 3));
    let setup = common::bucket_setup::BucketSetup::new(&server.endpoint, "");
    let mut snapshot =
        common::direct::direct(common::binaries().tidemark.parent().unwrap(), "tidemark");
    snapshot
        .arg("--config")
        .arg(&setup.config)
        .args(["source", "backup", "uploads"]);
    let traced = strace::run(&snapshot, &[], &setup.dir.path().join("snapshot.trace"));
    assert!(
        traced.output.status.success(),
        "{}",
        describe(&traced.output)
    );
    let repo = setup.repo();
    let record_in_place = traced
        .find_before(traced.calls.len(), |c| {
            c.name == "renameat2"
                && c.succeeded()
                && c.rename_paths()
                    .is_some_and(|(_, to)| to.starts_with(&repo) && to.ends_with("snapshot.json"))
        })
        .expect("the snapshot stored its record");
    let before_record = Traced {
        output: traced.output.clone(),
        calls: traced.calls[..record_in_place].to_vec(),
    };
    // Every chunk (objects' contents and the snapshot's lists): fsynced before its rename, its
    // directory chain after it and before the record. (The lock, stored before them, was made
    // durable by its own put; the record's directories are the record's.)
    let chunks = repo.join("_source/uploads/blob");
    let stored = assert_stored_durably_under(&before_record, &repo, &chunks);
    assert!(
        stored >= 60,
        "only {stored} chunks stored before the record"
    );
}

#[test]
fn strace_logs_are_read_with_calls_interrupted_by_other_threads_joined() {
    let log = "\
7 openat(AT_FDCWD</w>, \"d/f\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3</w/d/f>
8 fsync(4</w/d> <unfinished ...>
7 mkdir(\"/w/e\", 0777) = 0
8 <... fsync resumed>)       = 0
7 renameat2(AT_FDCWD</w>, \"/w/d/.t\", AT_FDCWD</w>, \"/w/d/g\", RENAME_NOREPLACE) = 0
7 unlink(\"/w/gone\") = -1 ENOENT (No such file or directory)
7 +++ exited with 0 +++
";
    let events = strace::events(&strace::read(log));
    let effects: Vec<(&Effect, usize, usize)> = events
        .iter()
        .map(|e| (&e.effect, e.started, e.ended))
        .collect();
    let p = PathBuf::from;
    use strace::Effect;
    assert_eq!(
        effects,
        vec![
            (&Effect::Added(p("/w/d/f")), 0, 0),
            (&Effect::OpenedForWriting(p("/w/d/f")), 0, 0),
            (&Effect::Added(p("/w/e")), 2, 2),
            (&Effect::Fsynced(p("/w/d")), 1, 3),
            (
                &Effect::Renamed {
                    from: p("/w/d/.t"),
                    to: p("/w/d/g")
                },
                4,
                4
            ),
        ]
    );
}
