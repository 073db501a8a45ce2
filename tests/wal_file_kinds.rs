//! Besides segments, PostgreSQL archives `.partial` segments (whose tail may hold stale pages
//! recycled from older WAL) and backup history files; both are stored and restored byte for
//! byte, and stale pages are accepted only in a `.partial`.

mod common;

use std::fs;

use common::{WalLab, run};

#[test]
fn partial_and_backup_history_files_round_trip() {
    let wal = WalLab::new("tm-kinds-");
    let config = wal.config();
    let segments = wal.segments();
    let (older, newer) = (
        fs::read(wal.raw.join(&segments[0])).unwrap(),
        fs::read(wal.raw.join(&segments[2])).unwrap(),
    );
    // The newer segment's first half, then pages left over from an older segment.
    let mut stale_tail = newer.clone();
    stale_tail[newer.len() / 2..].copy_from_slice(&older[newer.len() / 2..]);

    let as_segment = wal.file_named(&segments[2], &stale_tail);
    let refused = run(
        &wal.lab,
        "tidemark-archive",
        &["--config", config, as_segment.to_str().unwrap()],
    );
    assert_eq!(refused.code, Some(1), "{refused:?}");
    // Stale pages right after real ones, or after the zeros that follow a switch.
    let line = refused.only_line();
    assert!(
        line.contains("(renamed, recycled or copied over)")
            || line.contains("after the zero-filled end of its WAL"),
        "{refused:?}"
    );

    let partial_name = format!("{}.partial", segments[2]);
    let backup_name = format!("{}.00000028.backup", segments[1]);
    let backup_text = format!(
        "START WAL LOCATION: 0/{0}000028 (file {1})\nSTOP WAL LOCATION: 0/{0}000138 (file {1})\nCHECKPOINT LOCATION: 0/{0}000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-21 13:46:24 UTC\nLABEL: test\nSTART TIMELINE: 1\nSTOP TIME: 2026-11-21 13:46:24 UTC\nSTOP TIMELINE: 1\n",
        &segments[1][22..],
        segments[1]
    );
    for (name, content) in [
        (&partial_name, &stale_tail[..]),
        (&backup_name, backup_text.as_bytes()),
    ] {
        let path = wal.file_named(name, content);
        let pushed = run(
            &wal.lab,
            "tidemark-archive",
            &["--config", config, path.to_str().unwrap()],
        );
        assert_eq!(pushed.code, Some(0), "{pushed:?}");
        let destination = wal.lab.tmp.path().join(format!("restored-{name}"));
        let restored = run(
            &wal.lab,
            "tidemark-restore",
            &["--config", config, name, destination.to_str().unwrap()],
        );
        assert_eq!(restored.code, Some(0), "{restored:?}");
        assert_eq!(fs::read(&destination).unwrap(), content, "{name}");
    }
    let info: serde_json::Value = serde_json::from_str(
        &run(
            &wal.lab,
            "tidemark",
            &["--config", config, "info", "--output", "json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(info["partial_files"], serde_json::json!([partial_name]));
    assert_eq!(
        info["backup_history_files"],
        serde_json::json!([backup_name])
    );

    let not_backup = wal.file_named(&format!("{}.00000030.backup", segments[1]), b"LABEL: x\n");
    let refused = run(
        &wal.lab,
        "tidemark-archive",
        &["--config", config, not_backup.to_str().unwrap()],
    );
    assert_eq!(refused.code, Some(1));
    assert_eq!(
        refused.only_line(),
        format!(
            "tidemark-archive: ERROR: archive {}: it is not a backup history file: it does not start with 'START WAL LOCATION: '",
            not_backup.display()
        )
    );
}

#[test]
fn a_restore_clears_what_a_killed_restore_left_in_pg_wal() {
    let wal = WalLab::new("tm-leftover-");
    let config = wal.config();
    let name = &wal.segments()[1];
    let pushed = run(
        &wal.lab,
        "tidemark-archive",
        &["--config", config, wal.raw.join(name).to_str().unwrap()],
    );
    assert_eq!(pushed.code, Some(0), "{pushed:?}");
    let pg_wal = wal.lab.tmp.subdir("pg_wal").unwrap();
    // What a tidemark-restore killed mid-write leaves: its temporary file, named for a process
    // that no longer exists.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = tidemark::storage::durable::host_name();
    let leftover = pg_wal.join(format!(".RECOVERYXLOG.{host}.{dead}.0.tmp"));
    fs::write(&leftover, b"half a segment").unwrap();
    let destination = pg_wal.join("RECOVERYXLOG");
    let restored = run(
        &wal.lab,
        "tidemark-restore",
        &["--config", config, name, destination.to_str().unwrap()],
    );
    assert_eq!(restored.code, Some(0), "{restored:?}");
    assert!(
        !leftover.exists(),
        "the killed restore's temporary file is still in pg_wal"
    );
    let names: Vec<_> = fs::read_dir(&pg_wal)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["RECOVERYXLOG"]);
}

#[test]
fn every_push_indexes_its_segment_and_rebuild_restores_a_lost_entry() {
    let wal = WalLab::new("tm-index-");
    let config = wal.config();
    let segments = wal.segments();
    for name in &segments {
        let pushed = run(
            &wal.lab,
            "tidemark-archive",
            &["--config", config, wal.raw.join(name).to_str().unwrap()],
        );
        assert_eq!(pushed.code, Some(0), "{pushed:?}");
    }
    let entry = |name: &str| {
        wal.lab
            .repo_path
            .join("main/walindex")
            .join(&name[..16])
            .join(name)
    };
    for name in &segments {
        assert!(entry(name).is_file(), "no index entry for {name}");
    }
    let lost = entry(&segments[1]);
    let original = fs::read(&lost).unwrap();
    fs::remove_file(&lost).unwrap();
    let rebuilt = run(
        &wal.lab,
        "tidemark",
        &["--config", config, "index", "rebuild"],
    );
    assert_eq!(rebuilt.code, Some(0), "{rebuilt:?}");
    assert_eq!(
        rebuilt.stdout,
        format!(
            "WAL index of stanza 'main': {} segments, 1 entries written, {} already there, 1 packs written\n",
            segments.len(),
            segments.len() - 1
        )
    );
    assert_eq!(
        fs::read(&lost).unwrap(),
        original,
        "the rebuilt entry equals the one written at push"
    );
    // The entries of the WAL directory are packed, named by how many it holds; a second
    // rebuild finds nothing to write.
    let pack = wal.lab.repo_path.join(format!(
        "main/walindex/packs/{}.{:05}",
        &segments[0][..16],
        segments.len()
    ));
    assert!(pack.is_file(), "no pack at {}", pack.display());
    let again = run(
        &wal.lab,
        "tidemark",
        &["--config", config, "index", "rebuild"],
    );
    assert_eq!(
        again.stdout,
        format!(
            "WAL index of stanza 'main': {} segments, 0 entries written, {} already there, 0 packs written\n",
            segments.len(),
            segments.len()
        )
    );
}
