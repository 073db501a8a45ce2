//! `tidemark-restore` reads and writes no more than the file asked for can be: an object whose
//! header promises more than one segment (or more than a history file's limit) is refused
//! before a byte reaches the destination's directory, and an object larger than any object of
//! a segment is refused after that many bytes, from a local directory and from a bucket (where
//! only that many are downloaded). A destination too full for a good segment is said to be
//! full, not the object damaged.

mod common;
#[path = "tmpfs/mod.rs"]
mod tmpfs;

use std::fs;
use std::path::PathBuf;

use common::WalLab;
use common::s3::{repo_section, start_server, test_settings};
use tidemark::repo::compress::Compression;
use tidemark::repo::object;
use tidemark::storage::{ObjectKey, S3Storage, Storage};
use tmpfs::Tmpfs;

/// The largest object a 1 MiB segment can be stored as: header, segment, and what the worst
/// compression adds.
const OBJECT_LIMIT_1MIB: u64 = 48 + (1 << 20) + (1 << 20) / 128 + (64 << 10);

/// The bytes of a valid Tidemark object holding `original`.
fn object_of(compression: Compression, original: &[u8]) -> Vec<u8> {
    let object = object::encode(compression, 1, original).unwrap();
    [&object.header_bytes()[..], &object.body].concat()
}

/// Stores `bytes` as the object of `name` in the lab's local repository, as the server's user
/// could have.
fn plant(wal: &WalLab, key: &str, bytes: &[u8]) -> PathBuf {
    let path = wal.lab.repo_path.join(key);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_header_promising_more_than_a_segment_or_a_history_file_is_refused_before_anything_is_written()
{
    let wal = WalLab::new("tm-bounded-header-");
    let config = wal.config();
    let segment = wal.segments()[1].clone();
    let good = wal.segments()[2].clone();
    let pushed = common::run(
        &wal.lab,
        "tidemark-archive",
        &["--config", config, wal.raw.join(&good).to_str().unwrap()],
    );
    assert_eq!(pushed.code, Some(0), "{pushed:?}");
    // Valid objects, checksums and all, of a 3 MiB "segment" and a 32 MiB "history file".
    let segment_key = format!("main/wal/{}/{segment}", &segment[..16]);
    plant(
        &wal,
        &segment_key,
        &object_of(Compression::Zstd, &vec![0u8; 3 << 20]),
    );
    let history_key = "main/wal/history/00000002.history";
    plant(
        &wal,
        history_key,
        &object_of(Compression::Zstd, &vec![b'#'; 32 << 20]),
    );
    // The destination's file system holds one segment: decompressing first would fill it.
    let small = Tmpfs::mount(&wal.lab.tmp.path().join("small"), 1 << 20);
    let destination = small.path().join("RECOVERYXLOG");
    let repo = wal.lab.repo_path.display();

    for (name, key, problem) in [
        (
            segment.as_str(),
            segment_key.as_str(),
            "holds 3145728 bytes, not a 1048576-byte segment",
        ),
        (
            "00000002.history",
            history_key,
            "holds 33554432 bytes, more than the 16777216 any history file may have",
        ),
    ] {
        let ran = common::run(
            &wal.lab,
            "tidemark-restore",
            &["--config", config, name, destination.to_str().unwrap()],
        );
        assert_eq!(ran.code, Some(1), "{ran:?}");
        assert_eq!(
            ran.only_line(),
            format!(
                "tidemark-restore: ERROR: restore {name}: archived object {key} in {repo} {problem}; nothing was written to {}",
                destination.display()
            )
        );
        assert_eq!(small.names(), Vec::<String>::new());
    }

    // A good segment into a file system too small for it: the disk is full, the object fine.
    let tiny = Tmpfs::mount(&wal.lab.tmp.path().join("tiny"), 512 << 10);
    let destination = tiny.path().join("RECOVERYXLOG");
    let ran = common::run(
        &wal.lab,
        "tidemark-restore",
        &["--config", config, &good, destination.to_str().unwrap()],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let line = ran.only_line();
    assert!(
        line.starts_with(&format!(
            "tidemark-restore: ERROR: restore {good}: write {}/.RECOVERYXLOG.",
            tiny.path().display()
        )) && line.ends_with(&format!(
            "; nothing was written to {}: No space left on device (os error 28)",
            destination.display()
        )),
        "{line}"
    );
    assert_eq!(tiny.names(), Vec::<String>::new());
}

#[test]
fn an_object_larger_than_any_of_a_segment_is_refused_after_that_many_bytes() {
    let wal = WalLab::new("tm-bounded-size-");
    let segment = wal.segments()[1].clone();
    let key = format!("main/wal/{}/{segment}", &segment[..16]);
    // Stored uncompressed: 3 MiB of object for a name that can only hold 1 MiB.
    let oversized = object_of(Compression::None, &vec![7u8; 3 << 20]);
    plant(&wal, &key, &oversized);
    let destination = wal.lab.tmp.path().join("RECOVERYXLOG");
    let refusal = |location: &str| {
        format!(
            "tidemark-restore: ERROR: restore {segment}: archived object {key} in {location} is larger than the {OBJECT_LIMIT_1MIB} bytes any object of a 1048576-byte file can be stored in: it is not one Tidemark archived for this stanza; nothing was read past that"
        )
    };
    let ran = common::run(
        &wal.lab,
        "tidemark-restore",
        &[
            "--config",
            wal.config(),
            &segment,
            destination.to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert_eq!(
        ran.only_line(),
        refusal(&wal.lab.repo_path.display().to_string())
    );
    assert!(!destination.exists());

    // The same object in a bucket: only a range of the limit and one byte is asked for.
    let server = start_server();
    let s3_config = wal.config_with_stanza("s3.toml", &repo_section(&server.endpoint, "prod"));
    let bucket = S3Storage::new(test_settings(&server.endpoint, "prod")).unwrap();
    bucket
        .put_if_absent(&ObjectKey::new(key.clone()).unwrap(), &[&oversized])
        .unwrap();
    let ran = common::run(
        &wal.lab,
        "tidemark-restore",
        &[
            "--config",
            s3_config.to_str().unwrap(),
            &segment,
            destination.to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert_eq!(
        ran.only_line(),
        refusal(&format!("s3://archive/prod at {}", server.endpoint))
    );
    assert!(!destination.exists());
}
