//! A source's snapshots through the repository-wide commands: `info` lists the source beside
//! the stanza (or alone), `verify --source` reads every chunk and names a damaged one, and
//! `expire --source` keeps what `[source.NAME.retention]` says and sweeps the rest. Against a
//! real `redis-server` on a free loopback port.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::configured::Configured;
use common::direct::describe;
use testkit::redis_workload::{keyspace_state, populate};
use testkit::{RedisOptions, RedisServer};

/// A repository and a configuration naming source `cache` on `server`, with `retention`.
struct Setup {
    dir: tempfile::TempDir,
    tidemark: Configured,
}

impl std::ops::Deref for Setup {
    type Target = Configured;

    fn deref(&self) -> &Configured {
        &self.tidemark
    }
}

impl Setup {
    fn new(server: &RedisServer, retention: &str) -> Setup {
        Setup::with_repo_lines(server, "", retention)
    }

    /// A setup whose `[repo]` has `repo_lines` too (`DIR` stands for its directory), and a
    /// key file `DIR/repo.key` when they name one.
    fn with_repo_lines(server: &RedisServer, repo_lines: &str, retention: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("tm-src-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("tidemark.toml");
        let repo_lines = repo_lines.replace("DIR", dir.path().to_str().unwrap());
        if repo_lines.contains("key_file") {
            let key: String = (0..32u32)
                .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
                .collect();
            let key_path = dir.path().join("repo.key");
            fs::write(&key_path, format!("{key}\n")).unwrap();
            fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let text = format!(
            "[repo]\npath = \"{}\"\n{repo_lines}\n[source.cache]\ntype = \"redis\"\nurl = \"{}\"\n{retention}",
            dir.path().join("repo").display(),
            server.url()
        );
        fs::write(&config, text).unwrap();
        Setup {
            dir,
            tidemark: Configured { config },
        }
    }

    /// Every stored chunk file of the source.
    fn chunk_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        collect_files(&self.dir.path().join("repo/_source/cache/blob"), &mut files);
        files.sort();
        files
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Three snapshots of a server whose data changes between them.
fn three_snapshots(retention: &str) -> (Setup, RedisServer) {
    let server = RedisServer::start(&RedisOptions::default());
    let setup = Setup::new(&server, retention);
    populate(&mut server.client(), 40, 500);
    for round in 0..3u64 {
        let value = format!("round {round} ").repeat(4096);
        let _: () = redis::cmd("SET")
            .arg("round")
            .arg(value)
            .query(&mut server.client())
            .unwrap();
        setup.ok(&["source", "backup", "cache"]);
    }
    (setup, server)
}

#[test]
fn info_verify_and_expire_cover_a_sources_snapshots() {
    let (setup, _server) = three_snapshots("[source.cache.retention]\nfull = 1\n");
    let info = setup.json(&["info", "--output", "json"]);
    assert_eq!(info["sources"][0]["source"], "cache", "{info:#}");
    assert_eq!(info["sources"][0]["kind"], "redis");
    assert_eq!(info["sources"][0]["snapshots"], 3);
    assert!(setup.ok(&["info"]).contains("cache (redis): 3 snapshots"));

    let verified = setup.ok(&["verify", "--source", "cache"]);
    assert!(
        verified.contains("3 snapshots") && verified.contains(", 0 problems"),
        "{verified}"
    );

    let dry = setup.ok(&["expire", "--source", "cache", "--dry-run"]);
    assert!(
        dry.contains("dry run") && dry.matches("expired").count() == 2,
        "{dry}"
    );
    assert_eq!(
        setup
            .json(&["source", "list", "cache", "--output", "json"])
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let report = setup.json(&["expire", "--source", "cache", "--output", "json"]);
    assert_eq!(report["sweep"]["state"], "swept", "{report:#}");
    let left = setup.json(&["source", "list", "cache", "--output", "json"]);
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), 1);
    let kept_chunks = left[0]["streams"][0]["chunks"].as_array().unwrap().len();
    assert_eq!(
        setup.chunk_files().len(),
        kept_chunks,
        "the expired snapshots' chunks are swept"
    );
    let verified = setup.ok(&["verify", "--source", "cache"]);
    assert!(!verified.contains("finding:"), "{verified}");
}

#[test]
fn verify_names_a_damaged_chunk_and_exits_1() {
    let (setup, _server) = three_snapshots("");
    let chunk = setup.chunk_files().pop().unwrap();
    let mut bytes = fs::read(&chunk).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&chunk, bytes).unwrap();
    let output = setup.run(&["verify", "--source", "cache"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let name = chunk.file_name().unwrap().to_str().unwrap();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("problem: ") && l.contains(name)),
        "{stdout}"
    );
}

#[test]
fn expire_without_a_rule_for_the_source_is_refused_and_deletes_nothing() {
    let (setup, _server) = three_snapshots("");
    let before = setup.chunk_files();
    let line = setup.refused(&["expire", "--source", "cache"]);
    assert!(
        line.contains("no retention rule is set for source 'cache'"),
        "{line}"
    );
    assert_eq!(setup.chunk_files(), before);
    let line = setup.refused(&["verify", "--source", "nosuch"]);
    assert!(
        line.contains("source 'nosuch' is not in the config file"),
        "{line}"
    );
}

#[test]
fn a_snapshot_in_an_encrypted_repository_is_sealed_and_restores_exactly() {
    let server = RedisServer::start(&RedisOptions::default());
    populate(&mut server.client(), 41, 2_000);
    let before = keyspace_state(&mut server.client());
    let setup = Setup::with_repo_lines(
        &server,
        "cipher = \"aes-256-gcm\"\nkey_file = \"DIR/repo.key\"\n",
        "",
    );
    setup.ok(&["source", "backup", "cache"]);
    // Neither the RDB's magic nor a key name is readable in any stored object.
    let mut files = Vec::new();
    collect_files(&setup.dir.path().join("repo/_source"), &mut files);
    assert!(!files.is_empty());
    for file in &files {
        let bytes = fs::read(file).unwrap();
        for needle in [&b"REDIS00"[..], b"redis-ver"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext {:?}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    let dir = setup.dir.path().join("restored");
    fs::create_dir(&dir).unwrap();
    setup.ok(&["source", "restore", "cache", "--to", dir.to_str().unwrap()]);
    let restored = RedisServer::start_in(&dir, &RedisOptions::default());
    assert_eq!(keyspace_state(&mut restored.client()), before);
}

#[test]
fn a_restore_never_reads_the_sources_password_file() {
    let server = RedisServer::start(&RedisOptions::default());
    populate(&mut server.client(), 42, 300);
    let setup = Setup::new(&server, "");
    setup.ok(&["source", "backup", "cache"]);
    // A password file others can read: every command that connects to the source refuses it,
    // but restoring a snapshot does not connect to the source.
    let open = setup.dir.path().join("open.pass");
    fs::write(&open, "secret").unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    let text = fs::read_to_string(&setup.config).unwrap();
    let with_file = text.replace(
        "type = \"redis\"\n",
        &format!("type = \"redis\"\npassword_file = \"{}\"\n", open.display()),
    );
    fs::write(&setup.config, with_file).unwrap();
    let line = setup.refused(&["source", "backup", "cache"]);
    assert!(line.contains(open.to_str().unwrap()), "{line}");
    let dir = setup.dir.path().join("restored");
    fs::create_dir(&dir).unwrap();
    setup.ok(&["source", "restore", "cache", "--to", dir.to_str().unwrap()]);
    assert!(dir.join("dump.rdb").is_file());
}
