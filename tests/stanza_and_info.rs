//! `stanza-create` binds a stanza to one cluster once: again for the same cluster changes
//! nothing, for another cluster it is refused. `info` reports per timeline what is archived,
//! including segments missing in between, as text and as JSON.

mod common;

use std::fs;

use common::{WalLab, run, snapshot};
use testkit::ThrowawayCluster;

#[test]
fn stanza_create_is_idempotent_and_refuses_another_cluster() {
    let wal = WalLab::new("tm-stanza-");
    let config = wal.config();
    let before = snapshot(&wal.lab.repo_path);
    let again = run(&wal.lab, "tidemark", &["--config", config, "stanza-create"]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(
        again.stdout,
        format!(
            "stanza 'main' already exists in {} for this cluster (system identifier {}, PostgreSQL 15, 1 MiB WAL segments); nothing changed\n",
            wal.lab.repo_path.display(),
            wal.system_id
        )
    );
    assert!(snapshot(&wal.lab.repo_path) == before);

    let other = ThrowawayCluster::init(&wal.lab.pg, wal.lab.tmp.path(), "other", 1).unwrap();
    let other_config = wal.lab.tmp.path().join("other.toml");
    let text = fs::read_to_string(&wal.lab.config_path).unwrap();
    fs::write(
        &other_config,
        text.replace(
            wal.cluster.data_dir().to_str().unwrap(),
            other.data_dir().to_str().unwrap(),
        ),
    )
    .unwrap();
    let refused = run(
        &wal.lab,
        "tidemark",
        &["--config", other_config.to_str().unwrap(), "stanza-create"],
    );
    assert_eq!(refused.code, Some(1), "{refused:?}");
    let other_id = refused
        .only_line()
        .split("this data directory has system identifier ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(other_id, wal.system_id.to_string());
    assert_eq!(
        refused.only_line(),
        format!(
            "tidemark: ERROR: stanza 'main' already exists in {} for another cluster (system identifier {}, PostgreSQL 15, 1 MiB WAL segments); this data directory has system identifier {other_id}, PostgreSQL 15, 1 MiB WAL segments: use another stanza name",
            wal.lab.repo_path.display(),
            wal.system_id
        )
    );
    assert!(snapshot(&wal.lab.repo_path) == before);

    // A stanza without pgdata, and one whose pgdata is no data directory.
    let no_pgdata = wal.lab.tmp.path().join("no-pgdata.toml");
    let not_pgdata = wal.lab.tmp.path().join("not-pgdata.toml");
    for (config, stanza_section, expected) in [
        (
            &no_pgdata,
            "",
            format!(
                "tidemark: ERROR: stanza 'main' has no pgdata in config file {}: add pgdata = \"/path/to/data\" to [stanza.main]",
                no_pgdata.display()
            ),
        ),
        (
            &not_pgdata,
            "pgdata = \"/nonexistent\"\n",
            "tidemark: ERROR: cannot read /nonexistent/PG_VERSION: No such file or directory (os error 2); is /nonexistent a PostgreSQL data directory (pgdata in the config file)?".to_owned(),
        ),
    ] {
        fs::write(
            config,
            format!(
                "[repo]\npath = \"{}\"\n[stanza.main]\n{stanza_section}",
                wal.lab.repo_path.display()
            ),
        )
        .unwrap();
        let ran = run(
            &wal.lab,
            "tidemark",
            &["--config", config.to_str().unwrap(), "stanza-create"],
        );
        assert_eq!(ran.code, Some(1));
        assert_eq!(ran.only_line(), expected);
    }
    assert!(snapshot(&wal.lab.repo_path) == before);
}

#[test]
fn info_reports_each_timeline_with_its_gaps() {
    let wal = WalLab::new("tm-info-");
    let config = wal.config();
    let empty = run(&wal.lab, "tidemark", &["--config", config, "info"]);
    assert_eq!(empty.code, Some(0), "{empty:?}");
    assert!(
        empty.stdout.contains("    wal archive: empty\n"),
        "{}",
        empty.stdout
    );

    // Push all but the second of the first four segments: one gap.
    let segments = wal.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    for (i, name) in segments.iter().take(4).enumerate() {
        if i != 1 {
            let ran = run(
                &wal.lab,
                "tidemark-archive",
                &["--config", config, wal.raw.join(name).to_str().unwrap()],
            );
            assert_eq!(ran.code, Some(0), "{ran:?}");
        }
    }
    let text = run(&wal.lab, "tidemark", &["--config", config, "info"]).stdout;
    assert!(
        text.contains(&format!(
            "timeline 1: {} .. {}, 3 segments (1 MISSING), 3.0 MiB original",
            segments[0], segments[3]
        )),
        "{text}"
    );

    let json = run(
        &wal.lab,
        "tidemark",
        &["--config", config, "info", "--output", "json"],
    );
    assert_eq!(json.code, Some(0));
    let info: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(info["stanza"], "main");
    assert_eq!(info["system_id"].as_u64(), Some(wal.system_id));
    assert_eq!(info["pg_version"], 15);
    assert_eq!(info["segment_size"], 1048576);
    let timeline = &info["timelines"][0];
    assert_eq!(timeline["timeline"], 1);
    assert_eq!(timeline["first_segment"], segments[0].as_str());
    assert_eq!(timeline["last_segment"], segments[3].as_str());
    assert_eq!(timeline["segments"], 3);
    assert_eq!(timeline["missing_segments"], 1);
    assert_eq!(timeline["original_bytes"], 3 * 1048576);
    let stored = timeline["stored_bytes"].as_u64().unwrap();
    let on_disk: u64 = fs::read_dir(wal.lab.repo_path.join("main/wal").join(&segments[0][..16]))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(stored, on_disk);

    let ran = run(
        &wal.lab,
        "tidemark",
        &[
            "--config", config, "--stanza", "main", "info", "--output", "yaml",
        ],
    );
    assert_eq!(ran.code, Some(1));
    assert_eq!(
        ran.only_line(),
        "tidemark: ERROR: invalid value 'yaml' for '--output <OUTPUT>' [possible values: text, json]; run 'tidemark --help' for usage"
    );
}
