//! The two hot paths, end to end on real WAL, side by side with `cp` and pgBackRest in the same
//! run: how fast a backlog of `.ready` segments is archived, how fast a base backup replays the
//! archive to promotion, and what one `archive_command` / `restore_command` call costs.
//!
//! A throwaway PostgreSQL 15 cluster (16 MiB segments) with `archive_mode = on` and an empty
//! `archive_command` (so nothing is archived and every segment stays `.ready`) gets a base backup
//! (`pg_basebackup -X stream`), then a workload writes at least 1 GiB of WAL: `pgbench -i` and
//! `pgbench` runs, or batches of small rows (`common::wal_kinds`). Its stopped data directory is
//! the backlog every archiving run starts from; everything below runs on each kind of WAL in
//! turn (`TIDEMARK_BENCH_WAL=pgbench` or `small_rows` for one).
//!
//! * **Archiving drain**: per run, a copy of that directory is started with archiving still off,
//!   the tool's repository is prepared (untimed), then `archive_command` is set and reloaded; the
//!   time is until `pg_wal/archive_status` holds no `.ready` file. Tools: `cp` (the usual
//!   `test ! -f … && cp` recipe), `cp` made durable (`sync` of the file before its rename and of
//!   the directory after), pgBackRest `archive-push` synchronous and asynchronous (lz4,
//!   `process-max=2`), `tidemark-archive` synchronous and with work-ahead (`[archive] async`),
//!   both with Tidemark's default compression (zstd level 1); synchronous and work-ahead with 2
//!   workers again into an encrypted repository (`cipher = "aes-256-gcm"`, a key file).
//! * **Replay**: per run, a copy of the base backup recovers to the end of the archive; the time
//!   is from `pg_ctl start` until the server logs that it is ready to accept (read-write)
//!   connections. The floor has every segment already in `pg_wal` (no `restore_command`);
//!   the restore_command floor `mv`s each segment from a directory beside `pg_wal` where all
//!   were copied and synced before the start (what the protocol itself costs: a fork and a
//!   shell per segment, and PostgreSQL's fsyncs of each file it is handed); the others fetch
//!   each segment with `cp` from a directory, pgBackRest `archive-get` (sync,
//!   and async with `process-max=2`), or `tidemark-restore` with `[restore] prefetch` 0 (off),
//!   2, 8 (the default) and 32, and with prefetch 8 from the encrypted repository. Each
//!   recovered cluster's data is checked against the original.
//! * **CPU seconds** beside each drain's and replay's wall time: the server's processes (with
//!   the archive_command and restore_command calls they reaped), Tidemark's detached
//!   work-ahead workers and prefetchers, and pgBackRest's detached `:async` processes and their
//!   `:local` workers (sampled every 100 ms while they live). The encrypted /
//!   unencrypted ratios of both are printed for the runs the issue sets 1.15 for.
//! * **Single calls**: wall and CPU time of one `tidemark-archive` for a segment the work-ahead worker
//!   already pushed, one synchronous push (also into an encrypted repository), one
//!   `tidemark-restore` served from the prefetch spool and one fetched directly, next to `cp`
//!   and pgBackRest for the same files. These run as the bench's own user, without PostgreSQL,
//!   so no `runuser` start-up is counted.
//! * **S3**: Tidemark work-ahead (default workers) drains the backlog into a local directory and
//!   into a bucket on `s3s-fs` (started on a free loopback port), and replays with the default
//!   prefetch from each; the ratios S3 / local are set against the issue's 2× and 1.3×.
//!
//! Medians over the rounds (3, or `TIDEMARK_BENCH_ROUNDS`); the order of the tools rotates each
//! round. Prints, per kind of WAL, a table (with CPU milliseconds per segment and per call) and
//! the ratios the issue sets targets for, and writes `target/bench-results/hot_paths.json`. Needs the PostgreSQL 15 server programs and pgBackRest
//! (installed with apt-get when run as root and missing), `s3s-fs` (see `testkit/src/servers/s3s_fs.rs`),
//! and about 8 GiB free in /tmp. Run:
//! `cargo bench --bench hot_paths` (about 20 minutes per kind of WAL on 2 cores);
//! `TIDEMARK_BENCH_ONLY=encryption` runs only the Tidemark drains, replay and single pushes the
//! encrypted / unencrypted ratios compare (about 5 minutes).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::cpu::{HelperCpu, postmaster_pid, server_cpu, timed_call};
use common::s3::{BUCKET, S3Server, repo_section};
use common::wal_kinds::{SMALL_ROWS_CONTENT, WalKind, write_small_rows};
use common::{gib, in_rotation, median, pgbackrest_program, remove_if_present, sync_all};
use testkit::Lab;
use testkit::{ThrowawayCluster, give_to_owner, run_as_owner};

/// Timed rounds, unless `TIDEMARK_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 3;

/// The issue asks for at least this much real WAL.
const MIN_WAL_BYTES: u64 = 1 << 30;

/// `pgbench -i` scale of the workload (about 1.1 GiB of WAL), followed by pgbench runs of
/// 10 s until the WAL reaches [`WAL_TARGET_BYTES`].
const SCALE: &str = "90";
const WAL_TARGET_BYTES: u64 = 1200 << 20;

/// How often the CPU of Tidemark's detached helpers is read during a run.
const HELPER_SAMPLING: Duration = Duration::from_millis(100);

/// Single calls timed per kind.
const CALLS: usize = 15;

/// What pgbench leaves, compared between the original and each recovered copy.
const PGBENCH_CONTENT: &str = "SELECT (SELECT count(*) || '/' || sum(abalance) FROM pgbench_accounts) || ' ' || \
     (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)";

/// Where Tidemark's repository is: a local directory, or a bucket on `s3s-fs` on loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repo {
    Dir,
    S3,
}

impl Repo {
    fn label(self) -> &'static str {
        match self {
            Repo::Dir => "",
            Repo::S3 => ", S3",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Repo::Dir => "",
            Repo::S3 => "_s3",
        }
    }
}

/// Whether Tidemark's repository is encrypted (with a key file: no passphrase to stretch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cipher {
    None,
    KeyFile,
}

impl Cipher {
    fn label(self) -> &'static str {
        match self {
            Cipher::None => "",
            Cipher::KeyFile => ", encrypted",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Cipher::None => "",
            Cipher::KeyFile => "_encrypted",
        }
    }
}

/// How a run archives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Archiver {
    Cp,
    CpDurable,
    PgBackRestSync,
    PgBackRestAsync,
    TidemarkSync {
        cipher: Cipher,
    },
    TidemarkWorkAhead {
        workers: usize,
        repo: Repo,
        cipher: Cipher,
    },
}

/// The work-ahead runs compared: as many pushes at once as cores (the default), and twice as
/// many, which overlaps one push's fsyncs with another's compression. Synchronous and default
/// work-ahead run again into an encrypted repository, for the encrypted / unencrypted ratios.
const ARCHIVERS: [Archiver; 9] = [
    Archiver::Cp,
    Archiver::CpDurable,
    Archiver::PgBackRestSync,
    Archiver::PgBackRestAsync,
    Archiver::TidemarkSync {
        cipher: Cipher::None,
    },
    Archiver::TidemarkWorkAhead {
        workers: 2,
        repo: Repo::Dir,
        cipher: Cipher::None,
    },
    Archiver::TidemarkWorkAhead {
        workers: 4,
        repo: Repo::Dir,
        cipher: Cipher::None,
    },
    Archiver::TidemarkSync {
        cipher: Cipher::KeyFile,
    },
    Archiver::TidemarkWorkAhead {
        workers: 2,
        repo: Repo::Dir,
        cipher: Cipher::KeyFile,
    },
];

impl Archiver {
    /// Its label in the tables and its key in the results file.
    fn names(self) -> (String, String) {
        let (label, key) = match self {
            Archiver::Cp => ("cp", "cp"),
            Archiver::CpDurable => ("cp + fsync", "cp_fsync"),
            Archiver::PgBackRestSync => ("pgbackrest sync (lz4)", "pgbackrest_sync"),
            Archiver::PgBackRestAsync => ("pgbackrest async (lz4, 2 proc)", "pgbackrest_async"),
            Archiver::TidemarkSync { cipher } => {
                return (
                    format!("tidemark sync{}", cipher.label()),
                    format!("tidemark_sync{}", cipher.key()),
                );
            }
            Archiver::TidemarkWorkAhead {
                workers,
                repo,
                cipher,
            } => {
                return (
                    format!(
                        "tidemark work-ahead, {workers} workers{}{}",
                        repo.label(),
                        cipher.label()
                    ),
                    format!(
                        "tidemark_work_ahead_{workers}{}{}",
                        repo.key(),
                        cipher.key()
                    ),
                );
            }
        };
        (label.to_owned(), key.to_owned())
    }

    fn label(self) -> String {
        self.names().0
    }

    fn key(self) -> String {
        self.names().1
    }

    /// Whether the encrypted / unencrypted ratios compare it: sync and default work-ahead.
    fn encryption_compared(self) -> bool {
        matches!(
            self,
            Archiver::TidemarkSync { .. }
                | Archiver::TidemarkWorkAhead {
                    workers: 2,
                    repo: Repo::Dir,
                    ..
                }
        )
    }

    /// The same run into the encrypted repository.
    fn encrypted(self) -> Archiver {
        match self {
            Archiver::TidemarkSync { .. } => Archiver::TidemarkSync {
                cipher: Cipher::KeyFile,
            },
            Archiver::TidemarkWorkAhead { workers, repo, .. } => Archiver::TidemarkWorkAhead {
                workers,
                repo,
                cipher: Cipher::KeyFile,
            },
            other => other,
        }
    }
}

/// How a run replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replayer {
    /// Crash recovery from the backup: no restore_command, no restartpoints.
    InPgWal,
    /// Archive recovery (recovery.signal) with every segment in pg_wal and a restore_command
    /// that finds nothing: what recovery costs without fetching.
    InPgWalArchiveRecovery,
    /// `mv` of each segment from a directory beside `pg_wal`, where every segment was copied
    /// and synced before the start: the least any restore_command can do (no read, no write,
    /// nothing beside replay), so its ratio to the floor is what the restore_command protocol
    /// itself costs — PostgreSQL's fork and shell per segment, and its fsyncs of every file
    /// it is handed.
    MvStaged,
    Cp,
    PgBackRestSync,
    PgBackRestAsync,
    Tidemark {
        prefetch: usize,
        repo: Repo,
        cipher: Cipher,
    },
}

/// The default prefetch runs again from the encrypted repository, for the encrypted /
/// unencrypted ratio.
const REPLAYERS: [Replayer; 11] = [
    Replayer::InPgWal,
    Replayer::InPgWalArchiveRecovery,
    Replayer::MvStaged,
    Replayer::Cp,
    Replayer::PgBackRestSync,
    Replayer::PgBackRestAsync,
    Replayer::Tidemark {
        prefetch: 0,
        repo: Repo::Dir,
        cipher: Cipher::None,
    },
    Replayer::Tidemark {
        prefetch: 2,
        repo: Repo::Dir,
        cipher: Cipher::None,
    },
    Replayer::Tidemark {
        prefetch: 8,
        repo: Repo::Dir,
        cipher: Cipher::None,
    },
    Replayer::Tidemark {
        prefetch: 32,
        repo: Repo::Dir,
        cipher: Cipher::None,
    },
    Replayer::Tidemark {
        prefetch: 8,
        repo: Repo::Dir,
        cipher: Cipher::KeyFile,
    },
];

impl Replayer {
    /// Its label in the tables and its key in the results file.
    fn names(self) -> (String, String) {
        let (label, key) = match self {
            Replayer::InPgWal => ("WAL in pg_wal, crash recovery", "floor_crash_recovery"),
            Replayer::InPgWalArchiveRecovery => {
                ("WAL in pg_wal, archive recovery", "floor_archive_recovery")
            }
            Replayer::MvStaged => (
                "mv of a segment staged beside pg_wal (restore_command floor)",
                "mv_staged",
            ),
            Replayer::Cp => ("cp", "cp"),
            Replayer::PgBackRestSync => ("pgbackrest archive-get sync", "pgbackrest_sync"),
            Replayer::PgBackRestAsync => ("pgbackrest archive-get async", "pgbackrest_async"),
            Replayer::Tidemark {
                prefetch,
                repo,
                cipher,
            } => {
                let label = if prefetch == 0 {
                    format!("tidemark, no prefetch{}{}", repo.label(), cipher.label())
                } else {
                    format!(
                        "tidemark, prefetch {prefetch}{}{}",
                        repo.label(),
                        cipher.label()
                    )
                };
                return (
                    label,
                    format!("tidemark_prefetch_{prefetch}{}{}", repo.key(), cipher.key()),
                );
            }
        };
        (label.to_owned(), key.to_owned())
    }

    fn label(self) -> String {
        self.names().0
    }

    fn key(self) -> String {
        self.names().1
    }

    /// Whether the encrypted / unencrypted ratio compares it: the default prefetch.
    fn encryption_compared(self) -> bool {
        matches!(
            self,
            Replayer::Tidemark {
                prefetch: 8,
                repo: Repo::Dir,
                ..
            }
        )
    }

    /// The same run from the encrypted repository.
    fn encrypted(self) -> Replayer {
        match self {
            Replayer::Tidemark { prefetch, repo, .. } => Replayer::Tidemark {
                prefetch,
                repo,
                cipher: Cipher::KeyFile,
            },
            other => other,
        }
    }
}

/// Where `r`'s runs are kept: its place in [`REPLAYERS`].
fn replay_index(r: Replayer) -> usize {
    REPLAYERS
        .iter()
        .position(|x| *x == r)
        .expect("every replayer is in REPLAYERS")
}

/// Segment file names (24 hex digits).
fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn ready_count(pg_wal: &Path) -> anyhow::Result<usize> {
    Ok(fs::read_dir(pg_wal.join("archive_status"))
        .with_context(|| format!("list {}/archive_status", pg_wal.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
        .count())
}

/// Copies the segments in `from` into `to`, owned by the cluster owner.
fn copy_segments(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("list {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_segment(&name) {
            let target = to.join(&name);
            fs::copy(entry.path(), &target)?;
            give_to_owner(&target)?;
        }
    }
    Ok(())
}

/// `cp -a`, as the cluster owner, so the copy belongs to it.
fn copy_tree(lab: &Lab, from: &Path, to: &Path) -> anyhow::Result<()> {
    remove_if_present(to)?;
    run_as_owner(
        Path::new("/bin/cp"),
        &["-a".as_ref(), from.as_os_str(), to.as_os_str()],
        lab.tmp.path(),
    )
    .map(|_| ())
}

/// A directory owned by the cluster owner, emptied first.
fn fresh_dir(path: &Path) -> anyhow::Result<PathBuf> {
    remove_if_present(path)?;
    fs::create_dir_all(path)?;
    give_to_owner(path)?;
    Ok(path.to_owned())
}

/// Writes a file the cluster owner can read.
fn write_owned(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    give_to_owner(path)
}

/// Single-quoted for a shell.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Everything the runs share.
struct Bench {
    lab: Lab,
    pgbackrest: PathBuf,
    /// The stopped cluster with its backlog of `.ready` segments.
    backlog: PathBuf,
    /// The base backup taken before the workload.
    base: PathBuf,
    /// Where a run's cluster lives.
    run: PathBuf,
    /// The repositories each tool archived into last (replay reads them).
    cp_archive: PathBuf,
    pgbackrest_repo: PathBuf,
    tidemark_repo: PathBuf,
    /// Tidemark's encrypted repository (a local directory), and its key file.
    tidemark_encrypted_repo: PathBuf,
    key_file: PathBuf,
    /// The `s3s-fs` server whose bucket is [`Repo::S3`], when the `s3` part runs.
    s3: Option<S3Server>,
    /// What the workload left, by this query: every recovered copy must return it.
    content_query: &'static str,
    content: String,
    backlog_segments: usize,
}

impl Bench {
    fn tmp(&self) -> &Path {
        self.lab.tmp.path()
    }

    fn s3(&self) -> anyhow::Result<&S3Server> {
        self.s3.as_ref().context("s3s-fs was not started")
    }

    /// The local directory of Tidemark's repository encrypted or not.
    fn tidemark_dir(&self, cipher: Cipher) -> &Path {
        match cipher {
            Cipher::None => &self.tidemark_repo,
            Cipher::KeyFile => &self.tidemark_encrypted_repo,
        }
    }

    /// Empties Tidemark's repository at `repo`.
    fn fresh_tidemark_repo(&self, repo: Repo, cipher: Cipher) -> anyhow::Result<()> {
        match repo {
            Repo::Dir => fresh_dir(self.tidemark_dir(cipher)).map(|_| ()),
            Repo::S3 => {
                // s3s-fs keeps a bucket's objects as files in its directory.
                let bucket = self.s3()?.data_dir().join(BUCKET);
                remove_if_present(&bucket)?;
                fs::create_dir(&bucket).with_context(|| format!("create {}", bucket.display()))
            }
        }
    }

    /// A Tidemark configuration file for `repo`, encrypted or not, with `extra` sections
    /// appended; mode 0600, as one holding an S3 secret must be.
    fn tidemark_config(
        &self,
        name: &str,
        repo: Repo,
        cipher: Cipher,
        extra: &str,
    ) -> anyhow::Result<PathBuf> {
        let mut section = match repo {
            Repo::Dir => format!("path = \"{}\"\n", self.tidemark_dir(cipher).display()),
            Repo::S3 => repo_section(&self.s3()?.endpoint, ""),
        };
        if cipher == Cipher::KeyFile {
            section.push_str(&format!(
                "cipher = \"aes-256-gcm\"\nkey_file = \"{}\"\n",
                self.key_file.display()
            ));
        }
        let path = self.tmp().join(format!("{name}.toml"));
        write_owned(
            &path,
            &format!(
                "[repo]\n{section}{extra}\n[stanza.main]\npgdata = \"{}\"\n",
                self.run.display()
            ),
        )?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(path)
    }

    /// A pgBackRest configuration for the cluster at `self.run`.
    fn pgbackrest_config(&self, name: &str, asynchronous: bool) -> anyhow::Result<PathBuf> {
        let dir = self.tmp().join("pgbackrest");
        let spool = fresh_dir(&dir.join(format!("spool-{name}")))?;
        let path = self.tmp().join(format!("pgbackrest-{name}.conf"));
        write_owned(
            &path,
            &common::pgbackrest_conf(
                &format!(
                    "repo1-path={repo}\narchive-async={async_}\nspool-path={spool}\nlog-level-stderr=warn\n",
                    repo = self.pgbackrest_repo.display(),
                    async_ = if asynchronous { "y" } else { "n" },
                    spool = spool.display(),
                ),
                &dir,
                &self.run,
                &self.tmp().join("srun"),
            ),
        )?;
        Ok(path)
    }

    fn pgbackrest_command(&self, config: &Path, command: &str) -> String {
        format!(
            "{} --config={} --stanza=bench {command}",
            self.pgbackrest.display(),
            config.display()
        )
    }

    /// The archive_command of `archiver`, after preparing its (fresh) repository.
    fn prepare_archiver(&self, archiver: Archiver) -> anyhow::Result<String> {
        let tidemark_archive = self.lab.bin_dir.join("tidemark-archive");
        Ok(match archiver {
            Archiver::Cp => {
                let dir = quoted(&fresh_dir(&self.cp_archive)?);
                format!("test ! -f {dir}/%f && cp %p {dir}/%f")
            }
            Archiver::CpDurable => {
                let dir = quoted(&fresh_dir(&self.cp_archive)?);
                format!(
                    "test ! -f {dir}/%f && cp %p {dir}/%f.tmp && sync {dir}/%f.tmp && mv {dir}/%f.tmp {dir}/%f && sync {dir}"
                )
            }
            Archiver::PgBackRestSync | Archiver::PgBackRestAsync => {
                fresh_dir(&self.pgbackrest_repo)?;
                let config =
                    self.pgbackrest_config("archive", archiver == Archiver::PgBackRestAsync)?;
                let created = Command::new("runuser")
                    .args(["-u", "postgres", "--", "sh", "-c"])
                    .arg(self.pgbackrest_command(&config, "stanza-create"))
                    .current_dir(self.tmp())
                    .output()?;
                ensure!(
                    created.status.success(),
                    "pgbackrest stanza-create: {}",
                    String::from_utf8_lossy(&created.stderr)
                );
                self.pgbackrest_command(&config, "archive-push %p")
            }
            Archiver::TidemarkSync { .. } | Archiver::TidemarkWorkAhead { .. } => {
                let (repo, cipher, extra) = match archiver {
                    Archiver::TidemarkWorkAhead {
                        workers,
                        repo,
                        cipher,
                    } => (
                        repo,
                        cipher,
                        format!("[archive]\nasync = true\nworkers = {workers}\n"),
                    ),
                    Archiver::TidemarkSync { cipher } => (Repo::Dir, cipher, String::new()),
                    _ => unreachable!(),
                };
                self.fresh_tidemark_repo(repo, cipher)?;
                let config = self.tidemark_config("archive", repo, cipher, &extra)?;
                run_as_owner(
                    &self.lab.bin_dir.join("tidemark"),
                    &[
                        "--config".as_ref(),
                        config.as_os_str(),
                        "stanza-create".as_ref(),
                    ],
                    self.tmp(),
                )?;
                format!(
                    "{} --config {} --stanza main %p",
                    tidemark_archive.display(),
                    config.display()
                )
            }
        })
    }

    /// One timed drain of the backlog by `archiver`: its wall time and the CPU seconds of the
    /// server's processes (archive_command calls included) and of Tidemark's detached helpers.
    fn drain(&self, archiver: Archiver) -> anyhow::Result<(Duration, f64)> {
        copy_tree(&self.lab, &self.backlog, &self.run)?;
        let mut cluster =
            ThrowawayCluster::adopt(&self.lab.pg, self.tmp(), "run", self.run.clone())?;
        cluster.configure(&[("archive_command", "")])?;
        cluster.start()?;
        let command = self.prepare_archiver(archiver)?;
        let pg_wal = self.run.join("pg_wal");
        ensure!(
            ready_count(&pg_wal)? == self.backlog_segments,
            "the copy does not hold the backlog"
        );
        sync_all()?;
        cluster.configure(&[("archive_command", &command)])?;
        let postmaster = postmaster_pid(&self.run)?;
        let mut helpers = HelperCpu::new(&pg_wal).with_pgbackrest_under(self.tmp());
        let server_before = server_cpu(&postmaster)?;
        let started = Instant::now();
        cluster.query("SELECT pg_reload_conf()")?;
        let deadline = started + Duration::from_secs(1800);
        let mut next_sample = started;
        while ready_count(&pg_wal)? > 0 {
            if Instant::now() > deadline {
                bail!("not drained after 30 minutes: {}", cluster.log_tail(10));
            }
            if Instant::now() >= next_sample {
                helpers.sample();
                next_sample += HELPER_SAMPLING;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let elapsed = started.elapsed();
        helpers.sample();
        let cpu = server_cpu(&postmaster)? - server_before + helpers.total();
        let failed = cluster.query("SELECT failed_count FROM pg_stat_archiver")?;
        ensure!(
            failed == "0",
            "{failed} archive_command calls failed: {}",
            cluster.log_tail(10)
        );
        cluster.stop()?;
        Ok((elapsed, cpu))
    }

    /// One timed recovery of the base backup by `replayer`, to promotion: its wall time, the
    /// CPU seconds of the server (replay and restore_command calls) and of Tidemark's detached
    /// prefetcher, and what the `tidemark-restore` calls logged about themselves.
    fn replay(&self, replayer: Replayer) -> anyhow::Result<(Duration, f64, String)> {
        copy_tree(&self.lab, &self.base, &self.run)?;
        let mut settings: Vec<(String, String)> = vec![
            ("archive_mode".to_owned(), "off".to_owned()),
            ("recovery_target_action".to_owned(), "promote".to_owned()),
        ];
        let staged = self.run.join("staged");
        match replayer {
            // Every segment is already where recovery reads it.
            Replayer::InPgWal | Replayer::InPgWalArchiveRecovery => {
                copy_segments(&self.backlog.join("pg_wal"), &self.run.join("pg_wal"))?
            }
            // Every archived segment waits on pg_wal's file system (synced below, untimed).
            Replayer::MvStaged => {
                fs::create_dir(&staged)?;
                give_to_owner(&staged)?;
                copy_segments(&self.cp_archive, &staged)?
            }
            _ => {}
        }
        let restore_command = match replayer {
            Replayer::InPgWal => None,
            // PostgreSQL reads pg_wal when restore_command finds nothing.
            Replayer::InPgWalArchiveRecovery => Some("false".to_owned()),
            Replayer::MvStaged => Some(format!("mv {}/%f %p", quoted(&staged))),
            Replayer::Cp => Some(format!("cp {}/%f %p", quoted(&self.cp_archive))),
            Replayer::PgBackRestSync | Replayer::PgBackRestAsync => {
                let config =
                    self.pgbackrest_config("restore", replayer == Replayer::PgBackRestAsync)?;
                Some(self.pgbackrest_command(&config, "archive-get %f \"%p\""))
            }
            Replayer::Tidemark {
                prefetch,
                repo,
                cipher,
            } => {
                let config = self.tidemark_config(
                    "restore",
                    repo,
                    cipher,
                    &format!("[restore]\nprefetch = {prefetch}\n"),
                )?;
                Some(format!(
                    "{} --config {} --stanza main %f %p",
                    self.lab.bin_dir.join("tidemark-restore").display(),
                    config.display()
                ))
            }
        };
        if let Some(command) = restore_command {
            settings.push(("restore_command".to_owned(), command));
            write_owned(&self.run.join("recovery.signal"), "")?;
        }
        let mut cluster =
            ThrowawayCluster::adopt(&self.lab.pg, self.tmp(), "run", self.run.clone())?;
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        cluster.configure(&settings)?;
        let _ = fs::remove_file(cluster.log_file());
        sync_all()?;
        let mut helpers =
            HelperCpu::new(&self.run.join("pg_wal")).with_pgbackrest_under(self.tmp());
        let started = Instant::now();
        cluster.start()?;
        let postmaster = postmaster_pid(&self.run)?;
        let deadline = started + Duration::from_secs(1800);
        let mut next_sample = started;
        loop {
            if Instant::now() >= next_sample {
                helpers.sample();
                next_sample += HELPER_SAMPLING;
            }
            let log = fs::read_to_string(cluster.log_file()).unwrap_or_default();
            if log.contains("database system is ready to accept connections") {
                break;
            }
            // Connection attempts while it starts are refused with FATAL lines of their own.
            let failed = log.lines().any(|l| {
                l.contains("FATAL")
                    && !l.contains("the database system is starting up")
                    && !l.contains("not yet accepting connections")
            });
            if Instant::now() > deadline || failed {
                bail!("recovery did not finish: {}", cluster.log_tail(15));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let elapsed = started.elapsed();
        helpers.sample();
        let cpu = server_cpu(&postmaster)? + helpers.total();
        let content = cluster.query(self.content_query)?;
        ensure!(
            content == self.content,
            "{} recovered {content}, not {}",
            replayer.label(),
            self.content
        );
        cluster.stop()?;
        let log = fs::read_to_string(cluster.log_file()).unwrap_or_default();
        Ok((elapsed, cpu, restore_calls(&log)))
    }
}

/// What the `tidemark-restore` lines of a server log say: calls that restored a segment, how
/// many from the prefetch spool, and the median time each took by its own account.
fn restore_calls(log: &str) -> String {
    let restored: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("tidemark-restore: INFO: restored "))
        .collect();
    if restored.is_empty() {
        return String::new();
    }
    let prefetched = restored
        .iter()
        .filter(|l| l.contains(", prefetched) in "))
        .count();
    let took: Vec<f64> = restored
        .iter()
        .filter_map(|l| l.rsplit_once(" in ")?.1.strip_suffix(" ms")?.parse().ok())
        .collect();
    format!(
        "{} calls, {prefetched} from the spool, median {:.0} ms each",
        restored.len(),
        median(&took)
    )
}

/// One kind of single call: what, and the median wall and CPU milliseconds of its runs.
type CallMedians = (&'static str, f64, f64);

/// `label` with the medians of `runs` (wall and CPU milliseconds each).
fn call_medians(label: &'static str, runs: &[(f64, f64)]) -> CallMedians {
    (
        label,
        common::median_by(runs, |r| r.0),
        common::median_by(runs, |r| r.1),
    )
}

/// Single-call latencies and CPU in milliseconds (medians of [`CALLS`]), by kind.
fn single_calls(bench: &Bench) -> anyhow::Result<Vec<CallMedians>> {
    let calls = CallsSetup::new(bench)?;
    let mut results = calls.time_pushes()?;
    results.extend(calls.time_restores()?);
    results.extend(calls.time_baselines(bench)?);
    Ok(results)
}

/// A fake data directory that looks like one in recovery to tidemark-restore, and a pg_wal
/// with real segments marked ready, to tidemark-archive. Its postmaster.pid says a server
/// runs: the work-ahead worker leaves as soon as there is none.
struct CallsSetup {
    data: PathBuf,
    pg_wal: PathBuf,
    /// [`CALLS`] + 1 segment names, in order.
    names: Vec<String>,
    tidemark: PathBuf,
    archive: PathBuf,
    restore: PathBuf,
    repo: PathBuf,
    sync_config: PathBuf,
    ahead_config: PathBuf,
    prefetch_config: PathBuf,
    /// Synchronous, into an encrypted repository of its own (its key file is this process's:
    /// these calls run as the bench's own user).
    encrypted_config: PathBuf,
}

impl CallsSetup {
    fn new(bench: &Bench) -> anyhow::Result<CallsSetup> {
        let dir = bench.tmp().join("calls");
        fresh_dir(&dir)?;
        let data = fresh_dir(&dir.join("data"))?;
        fs::write(data.join("postmaster.pid"), "")?;
        let pg_wal = fresh_dir(&data.join("pg_wal"))?;
        fresh_dir(&pg_wal.join("archive_status"))?;
        let mut names: Vec<String> = fs::read_dir(bench.backlog.join("pg_wal"))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| is_segment(n))
            .collect();
        names.sort();
        let names: Vec<String> = names.into_iter().take(CALLS + 1).collect();
        for name in &names {
            fs::copy(bench.backlog.join("pg_wal").join(name), pg_wal.join(name))?;
            fs::write(
                pg_wal.join("archive_status").join(format!("{name}.ready")),
                "",
            )?;
        }
        let repo = dir.join("repo");
        let config = |name: &str, repo: &Path, extra: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(format!("{name}.toml"));
            fs::write(
                &path,
                format!(
                    "[repo]\npath = \"{}\"\n{extra}\n[stanza.main]\npgdata = \"{}\"\n",
                    repo.display(),
                    bench.backlog.display()
                ),
            )?;
            Ok(path)
        };
        let key_file = dir.join("repo.key");
        let key: String = (0..32)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect();
        fs::write(&key_file, format!("{key}\n"))?;
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600))?;
        let encrypted = format!(
            "cipher = \"aes-256-gcm\"\nkey_file = \"{}\"\n[restore]\nprefetch = 0\n",
            key_file.display()
        );
        Ok(CallsSetup {
            sync_config: config("sync", &repo, "[restore]\nprefetch = 0\n")?,
            ahead_config: config("ahead", &repo, "[archive]\nasync = true\n")?,
            prefetch_config: config("prefetch", &repo, "[restore]\nprefetch = 8\n")?,
            encrypted_config: config("encrypted", &dir.join("encrypted-repo"), &encrypted)?,
            tidemark: bench.lab.bin_dir.join("tidemark"),
            archive: bench.lab.bin_dir.join("tidemark-archive"),
            restore: bench.lab.bin_dir.join("tidemark-restore"),
            data,
            pg_wal,
            names,
            repo,
        })
    }

    /// `program` with `args`, run in the fake data directory.
    fn run(&self, program: &Path, args: &[&OsStr]) -> Command {
        let mut command = Command::new(program);
        command.args(args).current_dir(&self.data);
        command
    }

    /// `tidemark-archive --config CONFIG pg_wal/NAME`, timed: wall and CPU milliseconds.
    fn time_push(&self, config: &Path, name: &str) -> anyhow::Result<(f64, f64)> {
        let path = self.pg_wal.join(name);
        timed_call(&mut self.run(
            &self.archive,
            &["--config".as_ref(), config.as_os_str(), path.as_os_str()],
        ))
    }

    /// `tidemark-restore --config CONFIG NAME pg_wal/RECOVERYXLOG`, timed, after removing
    /// the destination as PostgreSQL does (a file left there would cost its removal).
    fn time_restore(&self, config: &Path, name: &str) -> anyhow::Result<(f64, f64)> {
        let destination = self.pg_wal.join("RECOVERYXLOG");
        let _ = fs::remove_file(&destination);
        timed_call(&mut self.run(
            &self.restore,
            &[
                "--config".as_ref(),
                config.as_os_str(),
                OsStr::new(name),
                destination.as_os_str(),
            ],
        ))
    }

    /// Synchronous pushes into a fresh repository (each segment once), then the rest through
    /// the work-ahead worker: the first call starts it; once it pushed everything, each call
    /// only finds its segment done.
    fn time_pushes(&self) -> anyhow::Result<Vec<CallMedians>> {
        let names = &self.names;
        remove_if_present(&self.repo)?;
        timed_call(&mut self.run(
            &self.tidemark,
            &[
                "--config".as_ref(),
                self.sync_config.as_os_str(),
                "stanza-create".as_ref(),
            ],
        ))?;
        let mut pushes = Vec::new();
        for name in &names[..names.len() / 2] {
            pushes.push(self.time_push(&self.sync_config, name)?);
        }
        let rest = &names[names.len() / 2..];
        self.time_push(&self.ahead_config, &rest[0])?;
        let spool = self.pg_wal.join(".tidemark/archive/main");
        let deadline = Instant::now() + Duration::from_secs(120);
        while rest.iter().any(|n| !spool.join(format!("{n}.ok")).exists()) {
            ensure!(
                Instant::now() < deadline,
                "the worker did not push the rest"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut hits = Vec::new();
        for name in &rest[1..] {
            hits.push(self.time_push(&self.ahead_config, name)?);
        }
        timed_call(&mut self.run(
            &self.tidemark,
            &[
                "--config".as_ref(),
                self.encrypted_config.as_os_str(),
                "stanza-create".as_ref(),
            ],
        ))?;
        let mut encrypted = Vec::new();
        for name in &names[..names.len() / 2] {
            encrypted.push(self.time_push(&self.encrypted_config, name)?);
        }
        Ok(vec![
            call_medians("tidemark-archive, synchronous push", &pushes),
            call_medians("tidemark-archive, synchronous push, encrypted", &encrypted),
            call_medians("tidemark-archive, already pushed by the worker", &hits),
        ])
    }

    /// Restores: direct, then from the spool of a fetcher (the fake data directory has a
    /// postmaster.pid and recovery.signal, so tidemark-restore prefetches).
    fn time_restores(&self) -> anyhow::Result<Vec<CallMedians>> {
        let mut direct = Vec::new();
        for name in &self.names {
            direct.push(self.time_restore(&self.sync_config, name)?);
        }
        fs::write(self.data.join("recovery.signal"), "")?;
        let restore_spool = self.pg_wal.join(".tidemark/restore/main");
        let mut spooled = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                // Time only hits: wait until the fetcher has it ready.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !restore_spool.join(format!("{name}.sum")).exists() {
                    ensure!(
                        Instant::now() < deadline,
                        "the fetcher did not fetch {name}"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let took = self.time_restore(&self.prefetch_config, name)?;
            if i > 0 {
                spooled.push(took);
            }
        }
        fs::remove_file(self.data.join("recovery.signal"))?;
        Ok(vec![
            call_medians("tidemark-restore, fetched directly", &direct),
            call_medians("tidemark-restore, from the prefetch spool", &spooled),
        ])
    }

    /// The same files with cp and pgBackRest (its repository from the last drain).
    fn time_baselines(&self, bench: &Bench) -> anyhow::Result<Vec<CallMedians>> {
        let destination = self.pg_wal.join("RECOVERYXLOG");
        let mut copies = Vec::new();
        for name in &self.names {
            let source = self.pg_wal.join(name);
            let _ = fs::remove_file(&destination);
            copies.push(timed_call(
                Command::new("cp").arg(&source).arg(&destination),
            )?);
        }
        let pgbackrest_config = bench.pgbackrest_config("calls", false)?;
        let mut gets = Vec::new();
        for name in &self.names {
            let _ = fs::remove_file(bench.tmp().join("pgbackrest-got"));
            gets.push(timed_call(
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&bench.pgbackrest)
                    .arg(format!("--config={}", pgbackrest_config.display()))
                    .args(["--stanza=bench", "archive-get", name])
                    .arg(bench.tmp().join("pgbackrest-got"))
                    .current_dir(bench.tmp()),
            )?);
        }
        let mut runuser = Vec::new();
        for _ in 0..CALLS {
            runuser.push(timed_call(
                Command::new("runuser").args(["-u", "postgres", "--", "true"]),
            )?);
        }
        let runuser = call_medians("runuser", &runuser);
        let gets = call_medians("pgbackrest archive-get sync (less runuser start-up)", &gets);
        Ok(vec![
            call_medians("cp of one segment", &copies),
            (gets.0, gets.1 - runuser.1, gets.2 - runuser.2),
        ])
    }
}

fn main() -> anyhow::Result<()> {
    let bench_started = Instant::now();
    let rounds = common::rounds(ROUNDS);
    let pgbackrest = pgbackrest_program()?;
    let pgbackrest_version = common::pgbackrest_version(&pgbackrest);
    // For a quicker look at one part: TIDEMARK_BENCH_ONLY=replay (or drain, calls, s3; a list).
    // The replay of pgBackRest, cp and Tidemark reads what their drains archived.
    let only = std::env::var("TIDEMARK_BENCH_ONLY").unwrap_or_default();
    let mut by_kind = serde_json::Map::new();
    for kind in WalKind::chosen()? {
        let results = run_on(kind, rounds, &only, &pgbackrest, &pgbackrest_version)?;
        by_kind.insert(kind.key().to_owned(), results);
    }
    by_kind.insert(
        "elapsed_s".to_owned(),
        serde_json::json!(bench_started.elapsed().as_secs_f64()),
    );
    let out = common::write_results("hot_paths", &serde_json::Value::Object(by_kind))?;
    println!(
        "\nwrote {} ({:.0} s in all)",
        out.display(),
        bench_started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every part `only` names (all when empty) on a backlog of WAL of `kind`, in a lab of its
/// own (removed after); prints its tables and returns its results.
fn run_on(
    kind: WalKind,
    rounds: usize,
    only: &str,
    pgbackrest: &Path,
    pgbackrest_version: &str,
) -> anyhow::Result<serde_json::Value> {
    println!("\n=== {} ===", kind.label());
    let lab = common::lab(&format!("tm-hbench-{}-", kind.key()))?;
    let backlog = Backlog::make(&lab, kind)?;
    let runs = |phase: &str| only.is_empty() || only.split(',').any(|p| p == phase);
    let bench = Bench {
        s3: runs("s3").then(common::s3::start_server),
        pgbackrest: pgbackrest.to_owned(),
        backlog: backlog.data_dir,
        base: backlog.base,
        run: lab.tmp.path().join("run"),
        cp_archive: lab.tmp.path().join("cp-archive"),
        pgbackrest_repo: lab.tmp.path().join("pgbackrest/repo"),
        tidemark_repo: lab.tmp.path().join("tidemark-repo"),
        tidemark_encrypted_repo: lab.tmp.path().join("tidemark-encrypted-repo"),
        key_file: common::owner_key_file(&lab, "repo.key")?,
        content_query: backlog.content_query,
        content: backlog.content,
        backlog_segments: backlog.segments,
        lab,
    };
    fresh_dir(&bench.tmp().join("pgbackrest"))?;

    // TIDEMARK_BENCH_ONLY=encryption: only the runs the encrypted / unencrypted ratios compare.
    let encryption_only =
        !only.is_empty() && !runs("drain") && !runs("replay") && runs("encryption");
    let drain_rounds = if runs("drain") || encryption_only {
        rounds
    } else if runs("replay") || runs("calls") {
        1
    } else {
        0
    };
    let drains = time_drains(&bench, drain_rounds, encryption_only)?;
    let replay_rounds = if runs("replay") || encryption_only {
        rounds
    } else {
        0
    };
    let replays = time_replays(&bench, replay_rounds, encryption_only)?;
    let calls = if runs("calls") {
        single_calls(&bench)?
    } else if encryption_only {
        // The pushes only: the restores and baselines read repositories this mode leaves out.
        CallsSetup::new(&bench)?.time_pushes()?
    } else {
        Vec::new()
    };
    // Tidemark as configured by default on this machine, except that work-ahead is on.
    let defaults = tidemark::config::Config::parse("[repo]\npath = \"/r\"\n")?;
    let s3 = S3AgainstLocal::time(
        &bench,
        if runs("s3") { rounds } else { 0 },
        defaults.archive.workers(),
        defaults.restore.prefetch(),
    )?;
    let timings = Timings {
        kind,
        segments: bench.backlog_segments,
        wal_bytes: backlog.wal_bytes,
        rounds,
        pgbackrest_version: pgbackrest_version.to_owned(),
        drains,
        replays,
        calls,
        s3,
    };
    println!(
        "\n{}: {} segments ({:.2} GiB); {}; medians of {rounds} rounds",
        kind.label(),
        bench.backlog_segments,
        gib(timings.wal_bytes),
        timings.pgbackrest_version
    );
    timings.print_tables();
    let ratios = timings.ratios();
    println!("\nratios ({})", kind.label());
    for (label, ratio) in &ratios {
        println!("  {label:<72} {ratio:>6.2}");
    }
    Ok(timings.results(&ratios))
}

/// The workload's WAL, left `.ready` in a stopped cluster, and a base backup from before it.
struct Backlog {
    base: PathBuf,
    data_dir: PathBuf,
    /// What `content_query` returned at the end of the workload.
    content_query: &'static str,
    content: String,
    segments: usize,
    wal_bytes: u64,
}

impl Backlog {
    /// The workload of `kind`, with archiving off: every segment stays .ready.
    fn make(lab: &Lab, kind: WalKind) -> anyhow::Result<Backlog> {
        let mut source = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "source", 16)?;
        source.configure(&[
            ("archive_mode", "on"),
            ("archive_command", ""),
            ("max_wal_size", "8GB"),
            ("checkpoint_timeout", "30min"),
        ])?;
        source.start()?;
        let base = lab.tmp.path().join("base");
        let port = source.port().to_string();
        run_as_owner(
            &lab.pg.path("pg_basebackup"),
            &[
                "-D".as_ref(),
                base.as_os_str(),
                "-X".as_ref(),
                "stream".as_ref(),
                "-c".as_ref(),
                "fast".as_ref(),
                "-h".as_ref(),
                source.socket_dir().as_os_str(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
            ],
            lab.tmp.path(),
        )?;
        let load_started = Instant::now();
        let (workload, content_query) = match kind {
            WalKind::Pgbench => (pgbench_workload(&source)?, PGBENCH_CONTENT),
            WalKind::SmallRows => {
                let rows = write_small_rows(&source, WAL_TARGET_BYTES)?;
                (
                    format!("{rows} small rows inserted, a third updated"),
                    SMALL_ROWS_CONTENT,
                )
            }
        };
        source.query("SELECT pg_switch_wal()")?;
        let content = source.query(content_query)?;
        source.stop()?;
        let data_dir = source.data_dir().to_owned();
        let segments = ready_count(&data_dir.join("pg_wal"))?;
        let wal_bytes = segments as u64 * (16 << 20);
        println!(
            "workload: {workload} wrote {segments} segments ({:.2} GiB of WAL) in {:.0} s",
            gib(wal_bytes),
            load_started.elapsed().as_secs_f64()
        );
        ensure!(
            wal_bytes >= MIN_WAL_BYTES,
            "only {:.2} GiB of WAL; the bench wants at least 1 GiB",
            gib(wal_bytes)
        );
        Ok(Backlog {
            base,
            data_dir,
            content_query,
            content,
            segments,
            wal_bytes,
        })
    }
}

/// `pgbench -i` at [`SCALE`], then runs of 10 s until the WAL reaches [`WAL_TARGET_BYTES`];
/// what it did.
fn pgbench_workload(source: &ThrowawayCluster) -> anyhow::Result<String> {
    let pgbench = |args: &[&str]| source.run_pgbench(args);
    pgbench(&["-i", "-q", "-s", SCALE])?;
    let written = || -> anyhow::Result<u64> {
        Ok(source
            .query("SELECT (pg_current_wal_lsn() - '0/0')::bigint")?
            .parse()?)
    };
    let mut pgbench_runs = 0;
    while written()? < WAL_TARGET_BYTES {
        pgbench(&["-n", "-c", "2", "-T", "10"])?;
        pgbench_runs += 1;
    }
    Ok(format!(
        "pgbench -i -s {SCALE} and {pgbench_runs} runs of 10 s of pgbench"
    ))
}

impl Bench {
    /// A drain by `archiver` in round `round` of `phase`, its line printed (the label
    /// `width` wide); its seconds.
    fn timed_drain(
        &self,
        phase: &str,
        width: usize,
        round: usize,
        archiver: Archiver,
    ) -> anyhow::Result<(f64, f64)> {
        let (took, cpu) = self
            .drain(archiver)
            .with_context(|| format!("{phase} round {}: {}", round + 1, archiver.label()))?;
        println!(
            "{phase:<6} round {}: {:<width$} {:>7.2} s  CPU {cpu:>6.1} s",
            round + 1,
            archiver.label(),
            took.as_secs_f64()
        );
        Ok((took.as_secs_f64(), cpu))
    }

    /// A replay by `replayer` in round `round` of `phase`, its line printed (the label
    /// `width` wide, then what the calls did); its seconds and CPU seconds.
    fn timed_replay(
        &self,
        phase: &str,
        width: usize,
        round: usize,
        replayer: Replayer,
    ) -> anyhow::Result<(f64, f64)> {
        let (took, cpu, calls) = self
            .replay(replayer)
            .with_context(|| format!("{phase} round {}: {}", round + 1, replayer.label()))?;
        println!(
            "{phase:<6} round {}: {:<width$} {:>7.2} s  CPU {cpu:>6.1} s  {calls}",
            round + 1,
            replayer.label(),
            took.as_secs_f64()
        );
        Ok((took.as_secs_f64(), cpu))
    }
}

/// Wall and CPU seconds of each run, by tool index.
struct Measured {
    wall: Vec<Vec<f64>>,
    cpu: Vec<Vec<f64>>,
}

impl Measured {
    fn new(tools: usize) -> Measured {
        Measured {
            wall: vec![Vec::new(); tools],
            cpu: vec![Vec::new(); tools],
        }
    }

    fn push(&mut self, index: usize, (wall, cpu): (f64, f64)) {
        self.wall[index].push(wall);
        self.cpu[index].push(cpu);
    }

    /// Median wall and CPU seconds of tool `index`.
    fn medians(&self, index: usize) -> (f64, f64) {
        (median(&self.wall[index]), median(&self.cpu[index]))
    }

    /// The median over the rounds of tool `a`'s wall time over tool `b`'s in the same round.
    /// This machine's speed drifts by up to twice over minutes, which a ratio of the two
    /// medians takes in whole when the slow minutes fall on one tool's runs more than the
    /// other's; runs of one round are at most one round apart.
    fn per_round_ratio(&self, a: usize, b: usize) -> f64 {
        let ratios: Vec<f64> = self.wall[a]
            .iter()
            .zip(&self.wall[b])
            .map(|(a, b)| a / b)
            .collect();
        median(&ratios)
    }

    /// Each tool's runs and medians, by key, for the results file.
    fn json(
        &self,
        keys: impl Iterator<Item = String>,
    ) -> serde_json::Map<String, serde_json::Value> {
        keys.enumerate()
            .map(|(i, key)| {
                let (wall, cpu) = self.medians(i);
                let runs = serde_json::json!({
                    "median": wall, "runs": self.wall[i], "cpu_median": cpu, "cpu_runs": self.cpu[i],
                });
                (key, runs)
            })
            .collect()
    }
}

/// The tools of `tools` a run compares, with their indexes: all, or only those the encrypted
/// / unencrypted ratios need (`TIDEMARK_BENCH_ONLY=encryption`).
fn chosen<T: Copy>(tools: &[T], encryption_only: bool, compared: fn(T) -> bool) -> Vec<(usize, T)> {
    tools
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, tool)| !encryption_only || compared(tool))
        .collect()
}

/// Drains of the backlog by each archiver in rotation, by [`ARCHIVERS`] index.
fn time_drains(bench: &Bench, rounds: usize, encryption_only: bool) -> anyhow::Result<Measured> {
    let mut drains = Measured::new(ARCHIVERS.len());
    let archivers = chosen(&ARCHIVERS, encryption_only, Archiver::encryption_compared);
    in_rotation(rounds, &archivers, |round, _, (index, archiver)| {
        drains.push(index, bench.timed_drain("drain", 42, round, archiver)?);
        Ok(())
    })?;
    Ok(drains)
}

/// Replays by each replayer in rotation, by [`REPLAYERS`] index. Replay reads what the last
/// round archived: each tool's repository is complete, since the rotation ends every round
/// with a different tool but each ran in it.
fn time_replays(bench: &Bench, rounds: usize, encryption_only: bool) -> anyhow::Result<Measured> {
    let mut replays = Measured::new(REPLAYERS.len());
    let replayers = chosen(&REPLAYERS, encryption_only, Replayer::encryption_compared);
    in_rotation(rounds, &replayers, |round, _, (index, replayer)| {
        replays.push(index, bench.timed_replay("replay", 42, round, replayer)?);
        Ok(())
    })?;
    Ok(replays)
}

/// Tidemark's work-ahead drain and prefetching replay, into a local directory (index 0) and
/// into S3 (index 1), in seconds.
struct S3AgainstLocal {
    workers: usize,
    prefetch: usize,
    drains: Vec<Vec<f64>>,
    replays: Vec<Vec<f64>>,
}

impl S3AgainstLocal {
    /// S3 against local, each drain followed by its replay so that replay reads what it
    /// archived.
    fn time(
        bench: &Bench,
        rounds: usize,
        workers: usize,
        prefetch: usize,
    ) -> anyhow::Result<S3AgainstLocal> {
        let mut drains: Vec<Vec<f64>> = vec![Vec::new(); 2];
        let mut replays: Vec<Vec<f64>> = vec![Vec::new(); 2];
        in_rotation(rounds, &[Repo::Dir, Repo::S3], |round, index, repo| {
            let archiver = Archiver::TidemarkWorkAhead {
                workers,
                repo,
                cipher: Cipher::None,
            };
            drains[index].push(bench.timed_drain("s3", 36, round, archiver)?.0);
            let replayer = Replayer::Tidemark {
                prefetch,
                repo,
                cipher: Cipher::None,
            };
            replays[index].push(bench.timed_replay("s3", 36, round, replayer)?.0);
            Ok(())
        })?;
        Ok(S3AgainstLocal {
            workers,
            prefetch,
            drains,
            replays,
        })
    }

    /// Medians of the drains, local then S3.
    fn drain(&self) -> [f64; 2] {
        [median(&self.drains[0]), median(&self.drains[1])]
    }

    /// Medians of the replays, local then S3.
    fn replay(&self) -> [f64; 2] {
        [median(&self.replays[0]), median(&self.replays[1])]
    }
}

/// Everything the bench measured.
struct Timings {
    kind: WalKind,
    segments: usize,
    wal_bytes: u64,
    rounds: usize,
    pgbackrest_version: String,
    drains: Measured,
    replays: Measured,
    /// Single calls: what, median wall and CPU milliseconds.
    calls: Vec<(&'static str, f64, f64)>,
    s3: S3AgainstLocal,
}

impl Timings {
    /// Median wall and CPU seconds of the drains by `a`.
    fn drain_medians(&self, a: Archiver) -> (f64, f64) {
        self.drains
            .medians(ARCHIVERS.iter().position(|x| *x == a).unwrap())
    }

    fn drain_median(&self, a: Archiver) -> f64 {
        self.drain_medians(a).0
    }

    /// Median wall and CPU seconds of the replays by `r`.
    fn replay_medians(&self, r: Replayer) -> (f64, f64) {
        self.replays.medians(replay_index(r))
    }

    fn replay_median(&self, r: Replayer) -> f64 {
        self.replay_medians(r).0
    }

    /// The median of `a`'s replay time over `b`'s, round by round.
    fn replay_per_round_ratio(&self, a: Replayer, b: Replayer) -> f64 {
        self.replays
            .per_round_ratio(replay_index(a), replay_index(b))
    }

    /// Prints the drain, replay, single-call and S3 tables.
    fn print_tables(&self) {
        let mb_per_s = |seconds: f64| self.wal_bytes as f64 / (1 << 20) as f64 / seconds;
        let per_segment = |cpu: f64| cpu * 1000.0 / self.segments as f64;
        println!(
            "\narchiving drain                                median      MiB/s     CPU s  CPU ms/segment"
        );
        for a in ARCHIVERS {
            let (m, cpu) = self.drain_medians(a);
            println!(
                "  {:<42} {:>7.2} s  {:>8.0}  {cpu:>8.1}  {:>14.1}",
                a.label(),
                m,
                mb_per_s(m),
                per_segment(cpu)
            );
        }
        println!(
            "\nreplay to promotion                            median      MiB/s     CPU s  CPU ms/segment"
        );
        for r in REPLAYERS {
            let (m, cpu) = self.replay_medians(r);
            println!(
                "  {:<42} {:>7.2} s  {:>8.0}  {cpu:>8.1}  {:>14.1}",
                r.label(),
                m,
                mb_per_s(m),
                per_segment(cpu)
            );
        }
        println!("\nencrypted / unencrypted (same run)          wall    CPU");
        for (label, wall, cpu) in self.encryption_ratios() {
            println!("  {label:<40} {wall:>6.2} {cpu:>6.2}");
        }
        println!("\nsingle call                                              median        CPU");
        for (label, ms, cpu) in &self.calls {
            println!("  {label:<52} {ms:>6.1} ms  {cpu:>6.1} ms");
        }
        println!(
            "\nS3 (s3s-fs on loopback) against local, work-ahead with {} workers and prefetch {}",
            self.s3.workers, self.s3.prefetch
        );
        println!("                                     local         S3   S3/local");
        for (label, [local, s3]) in [
            ("archiving drain", self.s3.drain()),
            ("replay to promotion", self.s3.replay()),
        ] {
            println!(
                "  {label:<32} {local:>7.2} s  {s3:>7.2} s  {:>8.2}",
                s3 / local
            );
        }
    }

    /// Encrypted over unencrypted for each run the issue sets 1.15 for: wall and CPU seconds.
    fn encryption_ratios(&self) -> Vec<(String, f64, f64)> {
        let drains = ARCHIVERS
            .into_iter()
            .filter(|a| a.encryption_compared() && *a != a.encrypted())
            .map(|a| {
                (
                    a.label(),
                    self.drain_medians(a),
                    self.drain_medians(a.encrypted()),
                )
            });
        let replays = REPLAYERS
            .into_iter()
            .filter(|r| r.encryption_compared() && *r != r.encrypted())
            .map(|r| {
                (
                    r.label(),
                    self.replay_medians(r),
                    self.replay_medians(r.encrypted()),
                )
            });
        drains
            .chain(replays)
            .map(|(label, (wall, cpu), (wall_encrypted, cpu_encrypted))| {
                (label, wall_encrypted / wall, cpu_encrypted / cpu)
            })
            .collect()
    }

    /// The ratios the issue sets targets for, with their labels.
    fn ratios(&self) -> Vec<(&'static str, f64)> {
        let work_ahead = self.drain_median(Archiver::TidemarkWorkAhead {
            workers: self.s3.workers,
            repo: Repo::Dir,
            cipher: Cipher::None,
        });
        let prefetcher = Replayer::Tidemark {
            prefetch: self.s3.prefetch,
            repo: Repo::Dir,
            cipher: Cipher::None,
        };
        let prefetch = self.replay_median(prefetcher);
        let (s3_drain, s3_replay) = (self.s3.drain(), self.s3.replay());
        vec![
            (
                "pgbackrest async / tidemark work-ahead (drain; target >= 3)",
                self.drain_median(Archiver::PgBackRestAsync) / work_ahead,
            ),
            (
                "cp + fsync / tidemark work-ahead (drain; target >= 1)",
                self.drain_median(Archiver::CpDurable) / work_ahead,
            ),
            (
                "cp / tidemark work-ahead (drain)",
                self.drain_median(Archiver::Cp) / work_ahead,
            ),
            (
                "tidemark prefetch / archive-recovery floor (replay; target <= 1.15)",
                prefetch / self.replay_median(Replayer::InPgWalArchiveRecovery),
            ),
            (
                "tidemark prefetch / archive-recovery floor, median of per-round ratios (replay)",
                self.replay_per_round_ratio(prefetcher, Replayer::InPgWalArchiveRecovery),
            ),
            (
                "restore_command floor (mv of staged segments) / archive-recovery floor (replay)",
                self.replay_median(Replayer::MvStaged)
                    / self.replay_median(Replayer::InPgWalArchiveRecovery),
            ),
            (
                "tidemark prefetch / restore_command floor (replay)",
                prefetch / self.replay_median(Replayer::MvStaged),
            ),
            (
                "tidemark prefetch / crash-recovery floor (replay)",
                prefetch / self.replay_median(Replayer::InPgWal),
            ),
            (
                "pgbackrest async / tidemark prefetch (replay; target >= 1.5)",
                self.replay_median(Replayer::PgBackRestAsync) / prefetch,
            ),
            (
                "S3 / local, tidemark work-ahead (drain; target <= 2)",
                s3_drain[1] / s3_drain[0],
            ),
            (
                "S3 / local, tidemark prefetch (replay; target <= 1.3)",
                s3_replay[1] / s3_replay[0],
            ),
        ]
    }

    /// What this kind's runs measured, for target/bench-results/hot_paths.json.
    fn results(&self, ratios: &[(&'static str, f64)]) -> serde_json::Value {
        let (drains, replays, s3) = (&self.drains, &self.replays, &self.s3);
        let (s3_drain, s3_replay) = (s3.drain(), s3.replay());
        serde_json::json!({
            "wal": self.kind.label(),
            "wal_segments": self.segments,
            "wal_bytes": self.wal_bytes,
            "rounds": self.rounds,
            "pgbackrest_version": self.pgbackrest_version,
            "drain_s": drains.json(ARCHIVERS.iter().map(|a| a.key())),
            "replay_s": replays.json(REPLAYERS.iter().map(|r| r.key())),
            "encrypted_over_unencrypted": self.encryption_ratios().into_iter().map(|(label, wall, cpu)| (label, serde_json::json!({"wall": wall, "cpu": cpu}))).collect::<serde_json::Map<_, _>>(),
            "s3_s": {
                "workers": s3.workers,
                "drain_local": {"median": s3_drain[0], "runs": s3.drains[0]},
                "drain_s3": {"median": s3_drain[1], "runs": s3.drains[1]},
                "replay_local": {"median": s3_replay[0], "runs": s3.replays[0]},
                "replay_s3": {"median": s3_replay[1], "runs": s3.replays[1]},
            },
            "single_call_ms": self.calls.iter().map(|(k, wall, cpu)| ((*k).to_owned(), serde_json::json!({"wall": wall, "cpu": cpu}))).collect::<serde_json::Map<_, _>>(),
            "ratios": ratios.iter().map(|(k, v)| ((*k).to_owned(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}
