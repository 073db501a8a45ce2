//! `tidemark restore` refuses a backup whose integrity fails, naming the file, and leaves
//! `--pgdata` as the user guide says: untouched when the backup's record and PostgreSQL's
//! manifest disagree (checked before anything is written); incomplete and impossible to start —
//! no `global/pg_control`, no `recovery.signal`, no recovery settings — when a chunk turns out
//! damaged or missing while the files are written. Once the repository is repaired,
//! `restore --delta` finishes the job and the server recovers.

mod common;

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};
use testkit::Lab;
use testkit::steps::start_restored;
use testkit::steps::{PrimaryOptions, archiving_primary};

/// Runs `tidemark restore --pgdata <pgdata> <extra>` and returns its one stderr line, having
/// checked that it failed with exit code 1.
fn refused(lab: &Lab, pgdata: &Path, extra: &[&str]) -> String {
    let ran = common::run_restore(lab, &lab.config_path, pgdata, extra);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    println!("refused: {}", ran.only_line());
    ran.only_line().to_owned()
}

/// PostgreSQL's manifest text with `change` applied to its file list, and its own checksum
/// made right again: a manifest that is valid, only different.
fn altered_manifest(original: &[u8], change: impl FnOnce(&mut Vec<serde_json::Value>)) -> Vec<u8> {
    let manifest: serde_json::Value = serde_json::from_slice(original).unwrap();
    let mut files = manifest["Files"].as_array().unwrap().clone();
    change(&mut files);
    let body = format!(
        "{{ \"PostgreSQL-Backup-Manifest-Version\": {},\n\"Files\": {},\n\"WAL-Ranges\": {},\n",
        manifest["PostgreSQL-Backup-Manifest-Version"],
        serde_json::Value::Array(files),
        manifest["WAL-Ranges"]
    );
    let checksum: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{body}\"Manifest-Checksum\": \"{checksum}\"}}\n").into_bytes()
}

/// A change to a manifest's file list.
type ManifestChange<'a> = Box<dyn Fn(&mut Vec<serde_json::Value>) + 'a>;

fn listed<'f>(files: &'f mut [serde_json::Value], path: &str) -> &'f mut serde_json::Value {
    files
        .iter_mut()
        .find(|f| f["Path"] == path)
        .unwrap_or_else(|| panic!("the manifest does not list {path}"))
}

/// A restore with `extra` is refused part way: its one line starts with `start` and ends with
/// `incomplete`, and the directory is left incomplete and unstartable.
fn refused_part_way(lab: &Lab, pgdata: &Path, extra: &[&str], start: &str, incomplete: &str) {
    let line = refused(lab, pgdata, extra);
    assert!(
        line.starts_with(start) && line.ends_with(incomplete),
        "{line}"
    );
    common::backups::assert_incomplete_and_unstartable(lab, pgdata);
}

#[test]
fn integrity_failures_are_refused_naming_the_file_and_leave_pgdata_as_documented() {
    let lab = Lab::new("tm-rrefuse-", &common::binaries()).unwrap();
    let mut cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    cluster
        .query("CREATE TABLE first AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 2000) g")
        .unwrap();
    cluster
        .query("CREATE TABLE second AS SELECT g AS id, md5((g * 3)::text) AS note FROM generate_series(1, 2000) g")
        .unwrap();
    let checksum_sql = "SELECT md5(string_agg(note, ',' ORDER BY id)) FROM first";
    let checksum = cluster.query(checksum_sql).unwrap();
    let first = common::backups::relation_path(&cluster, "first");
    let second = common::backups::relation_path(&cluster, "second");
    let label = common::backups::back_up_and_stop(&lab, &mut cluster);
    let pgdata = lab.tmp.path().join("restored");
    let incomplete = format!(
        "; {} is left incomplete and cannot be started (its global/pg_control is written last): restore again with --delta or --force once the cause is fixed",
        pgdata.display()
    );

    // The record and the manifest disagree: refused before anything is written.
    let manifest_path =
        common::backups::object_path(&lab, &format!("main/backup/{label}/backup_manifest"));
    let manifest = common::backups::read_object(&manifest_path);
    let mismatches: [(&str, ManifestChange, String); 4] = [
        (
            "wrong size",
            Box::new(|files| listed(files, "PG_VERSION")["Size"] = 4.into()),
            "PG_VERSION: the manifest says 4 bytes, the backup has 3".to_owned(),
        ),
        (
            "wrong CRC",
            Box::new(|files| listed(files, "PG_VERSION")["Checksum"] = "00000000".into()),
            "PG_VERSION: the manifest says CRC-32C 00000000, the backup's content has ".to_owned(),
        ),
        (
            "no CRC",
            Box::new(|files| {
                let file = listed(files, &first).as_object_mut().unwrap();
                file.remove("Checksum");
                file.remove("Checksum-Algorithm");
            }),
            format!(
                "{first}: the manifest gives no CRC-32C for it, though CRC-32C checksums were asked for"
            ),
        ),
        (
            "a file the backup lacks",
            Box::new(|files| {
                let mut extra = listed(files, "PG_VERSION").clone();
                extra["Path"] = "base/5/99999".into();
                files.push(extra);
            }),
            "the manifest lists base/5/99999, but the backup has no such file".to_owned(),
        ),
    ];
    for (what, change, detail) in mismatches {
        common::backups::rewrite_object(&manifest_path, &altered_manifest(&manifest, change));
        let line = refused(&lab, &pgdata, &[]);
        let prefix = format!(
            "tidemark: ERROR: restore: backup {label} does not match its backup_manifest, so nothing was written: {detail}"
        );
        assert!(line.starts_with(&prefix), "{what}: {line}");
        assert!(
            line.ends_with("; restore another backup with --backup LABEL"),
            "{what}: {line}"
        );
        assert!(!pgdata.exists(), "{what}: {} was created", pgdata.display());
    }
    common::backups::rewrite_object(&manifest_path, &manifest);

    // A damaged chunk: found while writing, the file named, the directory left unstartable.
    let first_blob = common::backups::only_blob_of(&lab, &label, &first);
    let good_blob = fs::read(&first_blob).unwrap();
    let mut damaged = good_blob.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    fs::write(&first_blob, &damaged).unwrap();
    let blob_key = first_blob.strip_prefix(&lab.repo_path).unwrap().display();
    refused_part_way(
        &lab,
        &pgdata,
        &[],
        &format!(
            "tidemark: ERROR: restore: write {first}: blob {blob_key} in {} is damaged: its stored bytes are damaged: ",
            lab.repo_path.display()
        ),
        &incomplete,
    );
    fs::write(&first_blob, &good_blob).unwrap();

    // A missing chunk, met by --delta over the incomplete directory.
    let second_blob = common::backups::only_blob_of(&lab, &label, &second);
    let kept_aside = lab.tmp.path().join("kept-aside");
    fs::rename(&second_blob, &kept_aside).unwrap();
    let blob_key = second_blob.strip_prefix(&lab.repo_path).unwrap().display();
    refused_part_way(
        &lab,
        &pgdata,
        &["--delta"],
        &format!(
            "tidemark: ERROR: restore: write {second}: blob {blob_key} does not exist in {}",
            lab.repo_path.display()
        ),
        &incomplete,
    );
    fs::rename(&kept_aside, &second_blob).unwrap();

    // Repaired: --delta completes the directory and the server recovers from it.
    let report = lab
        .tidemark(&["restore", "--pgdata", pgdata.to_str().unwrap(), "--delta"])
        .unwrap();
    assert!(report.contains("files kept as they were"), "{report}");
    let restored = start_restored(&lab, "restored", &[("archive_mode", "off")]).unwrap();
    assert_eq!(restored.query(checksum_sql).unwrap(), checksum);
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
}

#[test]
fn mistakes_in_the_request_are_refused_before_anything_is_written() {
    let lab = Lab::new("tm-rrequest-", &common::binaries()).unwrap();
    let mut cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    let label = common::backups::take_backup(&lab);
    cluster.stop().unwrap();
    let pgdata = lab.tmp.path().join("restored");
    let elsewhere = lab.tmp.path().join("elsewhere");
    let elsewhere_map = format!("16999={}", elsewhere.display());
    let refusals: [(&[&str], String); 6] = [
        (
            &["--tablespace-map", &elsewhere_map],
            format!(
                "tidemark: ERROR: restore: --tablespace-map names tablespace 16999, which backup {label} does not have (it has: none)"
            ),
        ),
        (
            &["--tablespace-map", "16999=x"],
            "tidemark: ERROR: --tablespace-map '16999=x': the directory must be an absolute path"
                .to_owned(),
        ),
        (
            &["--tablespace-map", "x"],
            "tidemark: ERROR: --tablespace-map 'x' is not OID=DIR".to_owned(),
        ),
        (
            &["--backup", "nope"],
            format!("tidemark: ERROR: restore: there is no backup labelled nope (backups: {label})"),
        ),
        (
            &["--target", "bogus"],
            "tidemark: ERROR: --target 'bogus' is not known: the only value is 'immediate'"
                .to_owned(),
        ),
        (
            &["--target-time", "2026-11-21 15:58:00"],
            "tidemark: ERROR: cannot read --target-time '2026-11-21 15:58:00': write it as 'YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]', with a numeric UTC offset: premature end of input".to_owned(),
        ),
    ];
    for (extra, expected) in refusals {
        assert_eq!(refused(&lab, &pgdata, extra), expected, "{extra:?}");
        assert!(!pgdata.exists(), "{extra:?} created {}", pgdata.display());
        assert!(
            !elsewhere.exists(),
            "{extra:?} created {}",
            elsewhere.display()
        );
    }

    // A data directory a server may be running on is left exactly as it is, even with --force.
    fs::create_dir(&pgdata).unwrap();
    fs::write(pgdata.join("postmaster.pid"), b"12345\n").unwrap();
    fs::write(pgdata.join("precious"), b"keep me").unwrap();
    testkit::give_to_owner(&pgdata).unwrap();
    let before = common::snapshot(&pgdata);
    for extra in [&[][..], &["--force"], &["--delta"]] {
        assert_eq!(
            refused(&lab, &pgdata, extra),
            format!(
                "tidemark: ERROR: restore: {} has a postmaster.pid: a server may be running on it; stop it first",
                pgdata.display()
            ),
            "{extra:?}"
        );
        assert_eq!(common::snapshot(&pgdata), before, "{extra:?} changed it");
    }
}
