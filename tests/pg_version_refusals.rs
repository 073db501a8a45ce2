//! A stanza holds one PostgreSQL major. WAL written by another major, and a backup from a server
//! of another major, are refused with one line naming both versions; a major Tidemark does not
//! support (a data directory of 19, WAL with 19's page magic) is refused by name with the range
//! it does support. Each refusal exits 1 and leaves the repository as it was. Real 16 and 17
//! servers (the version matrix's packages) write the WAL and answer the backup.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{run, snapshot};
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{Lab, PgBinaries, ThrowawayCluster, give_to_owner};

/// [`common::refused`] for `program --config <lab config> args`.
fn refused(lab: &Lab, program: &str, args: &[&str], expected: &str) {
    let mut all = vec!["--config", lab.config_path.to_str().unwrap()];
    all.extend_from_slice(args);
    common::refused(lab, program, &all, expected);
}

/// A complete segment of `cluster`, several segments on (so no segment of the stanza's own
/// cluster has its name), copied to `<dir>/<name>` where the cluster owner can read it.
fn complete_segment(cluster: &ThrowawayCluster, dir: &Path) -> PathBuf {
    let mut statements = vec!["CREATE TABLE filler (i int)"];
    for _ in 0..6 {
        statements.extend(["INSERT INTO filler VALUES (1)", "SELECT pg_switch_wal()"]);
    }
    cluster.execute_each(&statements).unwrap();
    // The newest segment before the one in use is complete.
    let in_use = cluster
        .query("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap();
    let pg_wal = cluster.data_dir().join("pg_wal");
    let name = fs::read_dir(&pg_wal)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| common::is_segment_name(name) && *name < in_use)
        .max()
        .expect("a complete segment");
    let copy = dir.join(&name);
    fs::copy(pg_wal.join(&name), &copy).unwrap();
    give_to_owner(&copy).unwrap();
    copy
}

#[test]
fn wal_and_a_backup_of_another_major_are_refused_naming_both_versions() {
    let lab = Lab::for_major("tm-versions-", &common::binaries(), 16).unwrap();
    let mut primary = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    primary.stop().unwrap();
    let mut seventeen = ThrowawayCluster::init(
        &PgBinaries::for_major(17).unwrap(),
        lab.tmp.path(),
        "pg17",
        1,
    )
    .unwrap();
    seventeen.start().unwrap();
    let segment = complete_segment(&seventeen, lab.tmp.path());

    refused(
        &lab,
        "tidemark-archive",
        &[segment.to_str().unwrap()],
        &format!(
            "tidemark-archive: ERROR: archive {}: it was written by PostgreSQL 17, but the stanza is bound to PostgreSQL 16: after a major upgrade, create a new stanza",
            segment.display()
        ),
    );

    let mut page = fs::read(&segment).unwrap();
    page[0..2].copy_from_slice(&0xD120u16.to_le_bytes());
    fs::write(&segment, page).unwrap();
    refused(
        &lab,
        "tidemark-archive",
        &[segment.to_str().unwrap()],
        &format!(
            "tidemark-archive: ERROR: archive {}: it was written by a PostgreSQL version Tidemark does not support (page magic 0xD120; Tidemark supports PostgreSQL 12 to 18), but the stanza is bound to PostgreSQL 16",
            segment.display()
        ),
    );

    // The stanza's configuration pointed at the 17 server, as after an upgrade in place.
    lab.write_config_with_conninfo(primary.data_dir(), "", Some(&seventeen.conninfo()))
        .unwrap();
    refused(
        &lab,
        "tidemark",
        &["backup"],
        &format!(
            "tidemark: ERROR: backup: the server at {}/.s.PGSQL.{} runs PostgreSQL 17, but stanza 'main' holds PostgreSQL 16: back up a server of the stanza's version, or create a new stanza for the upgraded cluster",
            seventeen.socket_dir().display(),
            seventeen.port()
        ),
    );
}

#[test]
fn a_major_tidemark_does_not_support_is_refused_naming_the_supported_range() {
    let lab = Lab::for_major("tm-nineteen-", &common::binaries(), 18).unwrap();
    let primary = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    // A data directory that says it is 19: the stanza's, with PG_VERSION rewritten.
    let future = lab.tmp.path().join("future");
    fs::create_dir_all(future.join("global")).unwrap();
    fs::write(future.join("PG_VERSION"), "19\n").unwrap();
    fs::copy(
        primary.data_dir().join("global/pg_control"),
        future.join("global/pg_control"),
    )
    .unwrap();
    testkit::owner::give_to_owner_recursively(&future).unwrap();
    let config = fs::read_to_string(&lab.config_path).unwrap();
    fs::write(
        &lab.config_path,
        format!(
            "{config}\n[stanza.future]\npgdata = \"{}\"\n",
            future.display()
        ),
    )
    .unwrap();
    refused(
        &lab,
        "tidemark",
        &["--stanza", "future", "stanza-create"],
        "tidemark: ERROR: PostgreSQL 19 is not supported: Tidemark supports PostgreSQL 12 to 18",
    );
}

/// PostgreSQL 18's initdb turns data checksums on, and BASE_BACKUP then verifies every page it
/// sends: a damaged page ends the backup with the server's error, on one line, and no backup.
#[test]
fn a_page_checksum_failure_on_18_fails_the_backup_with_one_line_and_no_backup() {
    let lab = Lab::for_major("tm-checksums-", &common::binaries(), 18).unwrap();
    let mut primary = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    assert_eq!(primary.query("SHOW data_checksums").unwrap(), "on");
    primary
        .execute_each(&[
            "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 2000) g",
            "CHECKPOINT",
        ])
        .unwrap();
    let relation_name = common::backups::relation_path(&primary, "t");
    let relation = primary.data_dir().join(&relation_name);
    primary.stop().unwrap();
    let mut bytes = fs::read(&relation).unwrap();
    bytes[8192 + 4000] ^= 0xFF;
    fs::write(&relation, bytes).unwrap();
    primary.start().unwrap();

    let before = snapshot(&lab.repo_path.join("main/backup"));
    let ran = run(
        &lab,
        "tidemark",
        &["--config", lab.config_path.to_str().unwrap(), "backup"],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    // The server's warning names the page; the error says what to do.
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{ran:?}");
    assert!(
        lines[0].starts_with(&format!(
            "tidemark: WARN: server says: checksum verification failed in file \"./{}\", block 1: ",
            relation_name
        )),
        "{ran:?}"
    );
    assert_eq!(
        lines[1],
        "tidemark: ERROR: backup: BASE_BACKUP: server says: checksum verification failure during base backup (SQLSTATE XX001): the server's warnings above name the damaged file and block; repair it (from a standby or an earlier backup) and back up again"
    );
    assert!(snapshot(&lab.repo_path.join("main/backup")) == before);
    let info = lab.tidemark(&["info", "--output", "json"]).unwrap();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["backups"].as_array().map(Vec::len), Some(0), "{info}");
}
