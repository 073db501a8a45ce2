//! Two `tidemark-archive` calls pushing the same segment at the same moment, as after an
//! `archive_command` timeout or when two clusters share a stanza by mistake: with the same
//! content both succeed and one object stays; with different content exactly one succeeds, the
//! other exits 1 naming both checksums, and the object holds the winner's bytes.
//!
//! The same-content race runs against a bucket on s3s-fs. The different-content race needs a
//! store whose create-only put is atomic, as AWS S3's and MinIO's are; s3s-fs 0.14.1 checks for
//! the object when a PutObject starts and renames its file into place when the body is in, so
//! there two overlapping puts of one key both succeed, the later replacing the earlier (this test
//! saw it in most runs of 10 rounds). That race therefore runs against the local directory,
//! whose puts link the file into place only if the name is free, and against the bucket only
//! one after the other.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Barrier;

use common::s3::{S3Server, repo_section, start_server};
use common::{Ran, WalLab};

/// A configuration with `repo` as its `[repo]` section, and the stanza created in it.
fn round_config(wal: &WalLab, name: &str, repo: &str) -> PathBuf {
    wal.config_with_stanza(&format!("{name}.toml"), repo)
}

/// The bucket, under a prefix of its own so each round starts empty.
fn bucket_config(wal: &WalLab, server: &S3Server, round: usize) -> PathBuf {
    round_config(
        wal,
        &format!("s3-round-{round}"),
        &repo_section(&server.endpoint, &format!("round-{round}")),
    )
}

/// A fresh local repository directory.
fn directory_config(wal: &WalLab, round: usize) -> PathBuf {
    let repo = wal.lab.tmp.path().join(format!("repo-round-{round}"));
    round_config(
        wal,
        &format!("local-round-{round}"),
        &format!("path = \"{}\"\n", repo.display()),
    )
}

/// Runs `tidemark-archive` on both files at once.
fn push_both(wal: &WalLab, config: &Path, files: [&Path; 2]) -> [Ran; 2] {
    let config = config.to_str().unwrap();
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        let pushes = files.map(|file| {
            let start = &start;
            scope.spawn(move || {
                start.wait();
                common::run(
                    &wal.lab,
                    "tidemark-archive",
                    &["--config", config, file.to_str().unwrap()],
                )
            })
        });
        pushes.map(|push| push.join().unwrap())
    })
}

/// What the repository gives back for `name`, fetched and checked as restore_command would.
fn archived(wal: &WalLab, config: &Path, name: &str, round: usize) -> Vec<u8> {
    let destination = wal.lab.tmp.path().join(format!("fetched-{round}"));
    let config = config.to_str().unwrap();
    let ran = common::run(
        &wal.lab,
        "tidemark",
        &[
            "--config",
            config,
            "archive-get",
            name,
            destination.to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    fs::read(destination).unwrap()
}

/// Asserts the outcome of a race between `original` (pushed as `a`) and `other` (as `b`):
/// exactly one succeeded, the other was refused as different content, and the object holds the
/// winner's bytes.
fn assert_one_winner(
    round: usize,
    name: &str,
    pushed: [Ran; 2],
    stored: &[u8],
    contents: [&[u8]; 2],
) {
    let [a, b] = &pushed;
    let (winner, loser, winner_bytes) = match (a.code, b.code) {
        (Some(0), Some(1)) => (a, b, contents[0]),
        (Some(1), Some(0)) => (b, a, contents[1]),
        _ => panic!("round {round}: not exactly one push succeeded: {a:?} {b:?}"),
    };
    assert!(
        winner
            .only_line()
            .contains(&format!("INFO: archived {name}")),
        "round {round}: {winner:?}"
    );
    assert!(
        loser
            .only_line()
            .contains("it is already archived with different content"),
        "round {round}: {loser:?}"
    );
    assert!(
        stored == winner_bytes,
        "round {round}: the object holds the loser's bytes"
    );
}

#[test]
fn concurrent_pushes_of_one_segment_end_as_the_design_says() {
    let server = start_server();
    let wal = WalLab::new("tm-race-");
    let name = wal.segments()[1].clone();
    let original = fs::read(wal.raw.join(&name)).unwrap();
    let other = common::with_other_content(&original);
    let original_file = wal.file_named(&name, &original);
    let other_file = wal.file_named(&name, &other);

    for round in 0..10 {
        // The same content at once into the bucket: both succeed, the object is the segment.
        let config = bucket_config(&wal, &server, round);
        let [a, b] = push_both(&wal, &config, [&original_file, &original_file]);
        assert_eq!(
            (a.code, b.code),
            (Some(0), Some(0)),
            "round {round}: {a:?} {b:?}"
        );
        assert!(
            archived(&wal, &config, &name, round) == original,
            "round {round}: the object is not the segment"
        );
        let keys = common::s3::keys_under(&server, &format!("round-{round}/main/wal"));
        assert_eq!(keys.len(), 1, "round {round}: {keys:?}");

        // Other content afterwards: refused, the object kept.
        let late = common::run(
            &wal.lab,
            "tidemark-archive",
            &[
                "--config",
                config.to_str().unwrap(),
                other_file.to_str().unwrap(),
            ],
        );
        assert_eq!(late.code, Some(1), "round {round}: {late:?}");
        assert!(
            late.only_line()
                .contains("it is already archived with different content"),
            "round {round}: {late:?}"
        );
        assert!(
            archived(&wal, &config, &name, round) == original,
            "round {round}: the object was replaced"
        );

        // Different content at once into a directory: exactly one wins.
        let config = directory_config(&wal, round);
        let pushed = push_both(&wal, &config, [&original_file, &other_file]);
        let stored = archived(&wal, &config, &name, round);
        assert_one_winner(round, &name, pushed, &stored, [&original, &other]);
    }
}
