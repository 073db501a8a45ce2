//! The whole cycle on an encrypted repository, in a local directory (the key in a key file) and
//! in a bucket on `s3s-fs` (the key from a passphrase file): PostgreSQL 15 archives through
//! `tidemark-archive` while pgbench and a recorded workload commit, `tidemark backup` stores base
//! backups, and restores to random instants between commits (the seed is printed) give back
//! exactly the rows committed by then, having read exactly the segments `tidemark plan` named.
//!
//! Then every byte the repository holds is searched for what the cluster wrote in the clear: a
//! marker text written into a table and into the workload's rows, and the cluster's system
//! identifier as 8 little-endian bytes (in every WAL page's long header and in `pg_control`).
//! Neither may be found, no object may be in an unencrypted frame, and no chunk may be named
//! as an unencrypted repository names the same content. The same WAL and the same database are
//! archived and backed up alongside into an unencrypted repository (compression off in both, so
//! only the cipher differs), where the same search must find both: the search can fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::encryption::{
    chunk_names, files_under, plaintext_in, random_hex, unencrypted_frames, with_key_file,
    with_passphrase_file, write_key_file, write_passphrase_file,
};
use common::s3::{BUCKET, repo_section, start_server};
use testkit::steps::{PrimaryOptions, archiving_primary, restore_to_instant};
use testkit::workload::{self, CommittedRow};
use testkit::{Lab, ThrowawayCluster};

/// Both repositories store objects uncompressed: compression would hide plaintext from the
/// search in the unencrypted one, and the encrypted one must hide it by the cipher alone.
const UNCOMPRESSED: &str = "compress = \"none\"\n";

/// The table holding the marker row.
const MARKER_TABLE: &str = "tidemark_marker";

/// Where the two repositories of a run are.
enum Backend {
    /// Local directories: the lab's (encrypted) and `<lab>/plain-repo`.
    Local,
    /// Prefixes `enc` and `plain` of the test bucket.
    S3 { endpoint: String },
}

/// One run: the lab (its configuration is the encrypted repository's), the configuration of
/// the unencrypted repository beside it, and the marker text.
struct Run {
    lab: Lab,
    plain_config: PathBuf,
    marker: String,
}

impl Run {
    /// A lab whose primary archives every WAL file into both repositories, with pgbench's
    /// tables, the workload's table and the marker row.
    fn start(
        backend: &Backend,
        encrypted_lines: impl FnOnce(&Lab) -> String,
    ) -> (Run, ThrowawayCluster) {
        let lab = Lab::new("tm-enc-cycle-", &common::binaries()).unwrap();
        let marker = format!("tidemark-marker-{}", random_hex(16));
        println!("marker {marker}");
        let encrypted = format!("{}{UNCOMPRESSED}", encrypted_lines(&lab));
        let plain_config = lab.tmp.path().join("plain.toml");
        let archive_command = format!(
            "{} && {} --config {} --stanza main %p",
            lab.archive_command(),
            lab.bin_dir.join("tidemark-archive").display(),
            plain_config.display()
        );
        let options = PrimaryOptions::default()
            .commit_timestamps()
            .archive_command(archive_command);
        let options = match backend {
            Backend::Local => options.repo_extra(&encrypted),
            Backend::S3 { endpoint } => {
                options.repo_section(format!("{}{encrypted}", repo_section(endpoint, "enc")))
            }
        };
        let primary = archiving_primary(&lab, &options).unwrap();
        let plain_repo = match backend {
            Backend::Local => format!(
                "path = \"{}\"\n",
                lab.tmp.path().join("plain-repo").display()
            ),
            Backend::S3 { endpoint } => repo_section(endpoint, "plain"),
        };
        common::write_config_file(
            &plain_config,
            &format!(
                "[repo]\n{plain_repo}{UNCOMPRESSED}\n[stanza.main]\npgdata = \"{}\"\nconninfo = \"{}\"\n",
                primary.data_dir().display(),
                primary.conninfo()
            ),
            0o600,
        );
        let run = Run {
            lab,
            plain_config,
            marker,
        };
        run.tidemark_plain(&["stanza-create"]);
        common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "1"]));
        workload::create_table(&primary).unwrap();
        primary
            .query(&format!(
                "CREATE TABLE {MARKER_TABLE} (note text NOT NULL); INSERT INTO {MARKER_TABLE} VALUES ('{}')",
                run.marker
            ))
            .unwrap();
        (run, primary)
    }

    /// `tidemark --config <plain> <args>`, which must succeed.
    fn tidemark_plain(&self, args: &[&str]) -> String {
        let mut full = vec!["--config", self.plain_config.to_str().unwrap()];
        full.extend_from_slice(args);
        let ran = common::run(&self.lab, "tidemark", &full);
        assert_eq!(
            ran.code,
            Some(0),
            "tidemark {args:?} (unencrypted): {ran:?}"
        );
        ran.stdout
    }

    /// Backups into both repositories, recorded rows tagged with the marker beside pgbench, a
    /// second backup of the encrypted repository while pgbench runs, more rows; everything
    /// archived, the primary stopped. Returns the recorded rows and the system identifier.
    fn write_history(&self, mut primary: ThrowawayCluster) -> (Vec<CommittedRow>, u64) {
        primary.query("CHECKPOINT").unwrap();
        common::backups::take_backup(&self.lab);
        let plain_backup = self.tidemark_plain(&["backup"]);
        assert!(plain_backup.contains(" complete: "), "{plain_backup}");
        let noise = common::pgbench(&primary, &["-n", "-c", "2", "-R", "150", "-T", "4"]);
        workload::insert_rows(&primary, 60, Duration::from_millis(30), &self.marker).unwrap();
        common::wait_ok(noise);
        testkit::pgbench::throughout(
            &primary,
            2,
            || common::pgbench(&primary, &["-n", "-c", "2", "-R", "150", "-T", "1"]),
            || common::backups::take_backup(&self.lab),
        );
        let noise = common::pgbench(&primary, &["-n", "-c", "2", "-R", "150", "-T", "4"]);
        workload::insert_rows(&primary, 60, Duration::from_millis(30), &self.marker).unwrap();
        common::wait_ok(noise);
        let rows = workload::committed_rows(&primary).unwrap();
        assert_eq!(rows.len(), 120);
        testkit::switch_and_wait_for_archive(&primary).unwrap();
        let system_id = primary.system_identifier().unwrap();
        primary.stop().unwrap();
        (rows, system_id)
    }

    /// Plans and restores to `count` random instants between commits; each restored cluster
    /// must hold exactly the rows committed by then and the marker row, with no Tidemark error
    /// in its log, having fetched exactly the planned segments.
    fn restore_to_random_instants(&self, rows: &[CommittedRow], count: usize) {
        for n in 0..count {
            let index = fastrand::usize(1..rows.len() - 1);
            let instant = workload::instant_between(rows, index).unwrap();
            let target = workload::format_instant(instant);
            println!(
                "restore {n}: to {target}, after row {index} of {}",
                rows.len()
            );
            let plan: serde_json::Value = serde_json::from_str(
                &self
                    .lab
                    .tidemark(&["plan", "--target-time", &target, "--output", "json"])
                    .unwrap_or_else(|e| panic!("{e:#}")),
            )
            .unwrap();
            let planned: BTreeSet<String> = common::planned_segments(&plan).into_iter().collect();
            // PostgreSQL's own read-ahead would ask for a segment past the stop (pitr_proof.rs).
            let restored = restore_to_instant(
                &self.lab,
                &format!("restored-{n}"),
                rows,
                instant,
                &[("archive_mode", "off"), ("recovery_prefetch", "off")],
            )
            .unwrap_or_else(|e| panic!("{e:#}"))
            .cluster;
            common::assert_recovered_as_planned(&restored, &planned);
            let marker = restored
                .query(&format!("SELECT note FROM {MARKER_TABLE}"))
                .unwrap();
            assert_eq!(marker, self.marker);
            common::discard(restored);
        }
    }

    /// Searches every stored byte of both repositories (`encrypted` and `plain`, each file by
    /// its path) for the marker and the system identifier, and compares their chunk names.
    fn check_no_plaintext(
        &self,
        encrypted: &BTreeMap<String, Vec<u8>>,
        plain: &BTreeMap<String, Vec<u8>>,
        system_id: u64,
    ) {
        let system_id = system_id.to_le_bytes();
        let needles: [(&str, &[u8]); 2] = [
            ("the marker text", self.marker.as_bytes()),
            ("the system identifier (8 LE bytes)", &system_id),
        ];
        let stored: usize = encrypted.values().map(Vec::len).sum();
        println!(
            "searched {} files, {stored} bytes, of the encrypted repository",
            encrypted.len()
        );
        assert_eq!(plaintext_in(encrypted, &needles), Vec::<String>::new());
        let found_in_plain = plaintext_in(plain, &needles);
        for (what, _) in needles {
            assert!(
                found_in_plain.iter().any(|f| f.starts_with(what)),
                "the search found no {what} in the unencrypted repository either: {found_in_plain:?}"
            );
        }

        let sealed = encrypted
            .values()
            .filter(|bytes| bytes.starts_with(b"TIDEMARK"))
            .count();
        assert!(
            sealed > 20,
            "only {sealed} objects in the encrypted repository"
        );
        assert_eq!(unencrypted_frames(encrypted), Vec::<String>::new());

        // The unencrypted repository names chunks by their SHA-256; the same files, backed up
        // the same minute, must get other names where the names are keyed.
        let plain_chunks: BTreeSet<String> = chunk_names(plain).into_iter().collect();
        let encrypted_chunks: BTreeSet<String> = chunk_names(encrypted).into_iter().collect();
        assert!(!plain_chunks.is_empty() && !encrypted_chunks.is_empty());
        let shared: Vec<&String> = plain_chunks.intersection(&encrypted_chunks).collect();
        assert!(
            shared.is_empty(),
            "{} of {} chunk names in the encrypted repository are those of the unencrypted one (SHA-256 of the content), e.g. {:?}",
            shared.len(),
            encrypted_chunks.len(),
            shared.first()
        );
    }
}

#[test]
fn an_encrypted_local_repository_restores_to_instants_exactly_and_holds_no_plaintext() {
    common::seed_randomness();
    let (run, primary) = Run::start(&Backend::Local, |lab| {
        with_key_file(&write_key_file(lab, "repo.key"))
    });
    let (rows, system_id) = run.write_history(primary);
    run.restore_to_random_instants(&rows, 3);
    let encrypted = files_under(&run.lab.repo_path);
    let plain = files_under(&run.lab.tmp.path().join("plain-repo"));
    run.check_no_plaintext(&encrypted, &plain, system_id);
}

#[test]
fn an_encrypted_bucket_restores_to_instants_exactly_and_holds_no_plaintext() {
    common::seed_randomness();
    let server = start_server();
    let backend = Backend::S3 {
        endpoint: server.endpoint.clone(),
    };
    let (run, primary) = Run::start(&backend, |lab| {
        let passphrase = common::encryption::random_passphrase();
        with_passphrase_file(&write_passphrase_file(lab, "repo.pass", &passphrase))
    });
    let (rows, system_id) = run.write_history(primary);
    run.restore_to_random_instants(&rows, 2);
    // Everything the server keeps (objects as files under the bucket's directory, and its own
    // files beside it) but the unencrypted repository's prefix.
    let plain_dir = Path::new(BUCKET).join("plain");
    let encrypted: BTreeMap<String, Vec<u8>> = files_under(server.data_dir())
        .into_iter()
        .filter(|(name, _)| !Path::new(name).starts_with(&plain_dir))
        .collect();
    assert!(
        encrypted
            .keys()
            .any(|name| name.starts_with(&format!("{BUCKET}/enc/main/wal/"))),
        "the bucket's objects are not where the search looks: {:?}",
        encrypted.keys().take(10).collect::<Vec<_>>()
    );
    let plain = files_under(&server.data_dir().join(&plain_dir));
    run.check_no_plaintext(&encrypted, &plain, system_id);
    // Everything went through the bucket: the local repository directory was never made.
    assert!(!run.lab.repo_path.exists());
}
