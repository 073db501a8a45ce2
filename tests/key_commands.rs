//! `tidemark key list|rotate|change-passphrase|retire` on a local encrypted repository, run as the
//! built binary: what each prints, what it stores under `_keys/`, and each refusal as one line,
//! exit 1, the repository unchanged and no secret in any output. The keyring is created through
//! the library, as `stanza-create` will.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tidemark::repo::codec::Codec;
use tidemark::repo::keys::{KeySource, RepoKeys};
use tidemark::repo::stanza::STANZA_FORMAT;
use tidemark::repo::{Compression, Repository, StanzaIdentity, WriteSettings};
use tidemark::storage::{LocalDirectory, ObjectKey, Storage};

mod common;

const PASSPHRASE: &str = "old pass phrase 4e1";
const NEW_PASSPHRASE: &str = "new pass phrase 9c7";

struct KeyLab {
    dir: tempfile::TempDir,
    repo: PathBuf,
    config: PathBuf,
    repository_id: String,
}

impl KeyLab {
    /// A repository whose keyring the passphrase in `repo.pass` opens, and a configuration of
    /// `[repo]` lines `repo_keys` (passphrase_file by default).
    fn new() -> KeyLab {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let pass = write_secret(dir.path(), "repo.pass", &format!("{PASSPHRASE}\n"), 0o600);
        let source = KeySource::PassphraseFile(pass.clone());
        let keys = RepoKeys::new(Arc::new(LocalDirectory::new(&repo)), source);
        let repository_id = keys.create_or_open().unwrap().repository_id().to_owned();
        let config = dir.path().join("tidemark.toml");
        let lab = KeyLab {
            dir,
            repo,
            config,
            repository_id,
        };
        lab.configure(&format!(
            "cipher = \"aes-256-gcm\"\npassphrase_file = \"{}\"",
            pass.display()
        ));
        lab
    }

    fn configure(&self, repo_keys: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[repo]\npath = \"{}\"\n{repo_keys}\n[stanza.main]\n",
                self.repo.display()
            ),
        )
        .unwrap();
    }

    /// Runs `tidemark --config … key <args>` with `env` added, in a session of its own (no
    /// terminal to prompt on).
    fn key(&self, args: &[&str], env: &[(&str, &str)]) -> common::Ran {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        command
            .arg("--config")
            .arg(&self.config)
            .arg("key")
            .args(args)
            .env_remove("TIDEMARK_PASSPHRASE")
            .env_remove("TIDEMARK_NEW_PASSPHRASE")
            .envs(env.iter().copied());
        // SAFETY: setsid is async-signal-safe and touches no memory of this process.
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()?;
                Ok(())
            });
        }
        let output = command.output().unwrap();
        let ran = common::Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        for secret in [PASSPHRASE, NEW_PASSPHRASE] {
            assert!(
                !ran.stdout.contains(secret) && !ran.stderr.contains(secret),
                "a secret was printed: {ran:?}"
            );
        }
        ran
    }

    fn json_list(&self) -> serde_json::Value {
        let ran = self.key(&["list", "--output", "json"], &[]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        serde_json::from_str(&ran.stdout).unwrap()
    }

    /// `args` refused: exit 1, exactly `expected` on stderr, nothing on stdout, nothing changed.
    fn refused(&self, args: &[&str], env: &[(&str, &str)], expected: &str) {
        let before = common::snapshot(&self.repo);
        let ran = self.key(args, env);
        assert_eq!(ran.code, Some(1), "{args:?}: {ran:?}");
        assert_eq!(ran.only_line(), expected, "{args:?}");
        assert!(ran.stdout.is_empty(), "{ran:?}");
        assert!(
            common::snapshot(&self.repo) == before,
            "{args:?} changed the repository"
        );
    }

    fn keyring_objects(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.repo.join("_keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("keyring."))
            .collect();
        names.sort();
        names
    }
}

fn write_secret(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn list_and_rotate_show_and_change_only_ids_and_times() {
    let lab = KeyLab::new();
    let listed = lab.json_list();
    assert_eq!(listed["repository"], lab.repository_id.as_str());
    assert_eq!(
        (listed["generation"].as_u64(), listed["current"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["keys"][0]["id"], 1);
    assert!(listed["keys"][0]["superseded"].is_null());
    assert_eq!(listed["retired"], serde_json::json!([]));

    let rotated = lab.key(&["rotate"], &[]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    assert_eq!(
        rotated.stdout,
        "data key 2 is now current (keyring generation 2)\n"
    );
    assert!(rotated.stderr.is_empty(), "{rotated:?}");
    assert_eq!(lab.keyring_objects(), vec!["keyring.0000000002"]);
    let listed = lab.json_list();
    assert_eq!(
        (listed["generation"].as_u64(), listed["current"].as_u64()),
        (Some(2), Some(2))
    );
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["superseded"], keys[1]["created"]);
    assert!(keys[1]["superseded"].is_null());

    let text = lab.key(&["list"], &[]);
    assert_eq!(text.code, Some(0));
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("repository {} (keyring generation 2)", lab.repository_id)
    );
    assert!(lines[1].starts_with("data key 1: created ") && lines[1].contains(", superseded "));
    assert!(lines[2].starts_with("data key 2: created ") && lines[2].ends_with(", current"));
}

#[test]
fn a_changed_passphrase_opens_and_the_old_one_is_refused_in_one_line() {
    let lab = KeyLab::new();
    let new_file = write_secret(lab.dir.path(), "new.pass", NEW_PASSPHRASE, 0o600);
    let changed = lab.key(
        &[
            "change-passphrase",
            "--new-passphrase-file",
            new_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(changed.code, Some(0), "{changed:?}");
    assert_eq!(
        changed.stdout,
        format!(
            "repository {}'s keyring (generation 2) now opens with the new passphrase only: put it where [repo] takes it from on every host\n",
            lab.repository_id
        )
    );
    assert_eq!(lab.keyring_objects(), vec!["keyring.0000000002"]);
    let old_file = lab.dir.path().join("repo.pass");
    lab.refused(
        &["list"],
        &[],
        &format!(
            "tidemark: ERROR: the secret from passphrase_file {} does not open repository {}'s keyring (generation 2): check passphrase_file {}",
            old_file.display(),
            lab.repository_id,
            old_file.display()
        ),
    );
    // The new passphrase, from the environment this time, and changed again from there.
    lab.configure("cipher = \"aes-256-gcm\"");
    let env = [("TIDEMARK_PASSPHRASE", NEW_PASSPHRASE)];
    assert_eq!(lab.key(&["list"], &env).code, Some(0));
    let again = lab.key(
        &["change-passphrase"],
        &[env[0], ("TIDEMARK_NEW_PASSPHRASE", PASSPHRASE)],
    );
    assert_eq!(again.code, Some(0), "{again:?}");
    lab.configure(&format!(
        "cipher = \"aes-256-gcm\"\npassphrase_file = \"{}\"",
        old_file.display()
    ));
    assert_eq!(lab.json_list()["generation"], 3);
}

#[test]
fn each_refusal_is_one_line_and_changes_nothing() {
    let lab = KeyLab::new();
    let dir = lab.dir.path();
    let config = lab.config.display().to_string();
    let open_pass = write_secret(dir, "open.pass", PASSPHRASE, 0o644);
    // [repo] lines, arguments, environment, the one line expected.
    type Case<'a> = (String, Vec<&'a str>, &'a [(&'a str, &'a str)], String);
    let cases: Vec<Case> = vec![
        (
            String::new(),
            vec!["list"],
            &[],
            format!(
                "tidemark: ERROR: config file {config} has [repo] cipher = \"none\": `tidemark key` works on an encrypted repository only"
            ),
        ),
        (
            format!("cipher = \"aes-256-gcm\"\npassphrase_file = \"{}\"", open_pass.display()),
            vec!["rotate"],
            &[],
            format!(
                "tidemark: ERROR: passphrase_file {} is readable by others (mode 0644): chmod 600 it",
                open_pass.display()
            ),
        ),
        (
            // The command prints the passphrase on both outputs, and fails: neither is shown.
            format!(
                "cipher = \"aes-256-gcm\"\npassphrase_command = \"echo '{PASSPHRASE}'; echo '{PASSPHRASE}' >&2; exit 3\""
            ),
            vec!["rotate"],
            &[],
            "tidemark: ERROR: passphrase_command exited with status 3: fix the command (its output is not shown, as it may hold the passphrase)".to_owned(),
        ),
        (
            "cipher = \"aes-256-gcm\"\npassphrase_command = \"true\"".to_owned(),
            vec!["list"],
            &[],
            "tidemark: ERROR: passphrase_command printed nothing: it must print the repository's passphrase on standard output".to_owned(),
        ),
        (
            format!("cipher = \"aes-256-gcm\"\nkey_file = \"{}/missing.key\"", dir.display()),
            vec!["rotate"],
            &[],
            format!(
                "tidemark: ERROR: cannot read key_file {}/missing.key: No such file or directory (os error 2); check the path",
                dir.display()
            ),
        ),
        (
            "cipher = \"aes-256-gcm\"\npassphrase_command = \"printf %s wrong\"".to_owned(),
            vec!["rotate"],
            &[],
            format!(
                "tidemark: ERROR: the secret from passphrase_command does not open repository {}'s keyring (generation 1): check passphrase_command",
                lab.repository_id
            ),
        ),
        (
            format!(
                "cipher = \"aes-256-gcm\"\npassphrase_file = \"{}/repo.pass\"",
                dir.display()
            ),
            vec!["change-passphrase", "--new-passphrase-file", open_pass.to_str().unwrap()],
            &[],
            format!(
                "tidemark: ERROR: --new-passphrase-file {} is readable by others (mode 0644): chmod 600 it",
                open_pass.display()
            ),
        ),
        (
            format!(
                "cipher = \"aes-256-gcm\"\npassphrase_file = \"{}/repo.pass\"",
                dir.display()
            ),
            vec!["change-passphrase"],
            &[],
            "tidemark: ERROR: no terminal to ask for the new passphrase on (No such device or address (os error 6)): give --new-passphrase-file FILE or set TIDEMARK_NEW_PASSPHRASE".to_owned(),
        ),
        (
            format!(
                "cipher = \"aes-256-gcm\"\npassphrase_file = \"{}/repo.pass\"",
                dir.display()
            ),
            vec!["change-passphrase"],
            &[("TIDEMARK_NEW_PASSPHRASE", "\n")],
            "tidemark: ERROR: TIDEMARK_NEW_PASSPHRASE gives an empty passphrase: it must hold the repository's passphrase".to_owned(),
        ),
        (
            format!(
                "cipher = \"aes-256-gcm\"\npassphrase_file = \"{}/repo.pass\"",
                dir.display()
            ),
            vec!["rotate"],
            &[("TIDEMARK_PASSPHRASE", PASSPHRASE)],
            "tidemark: ERROR: TIDEMARK_PASSPHRASE is set and [repo] names passphrase_file too: unset TIDEMARK_PASSPHRASE, or remove passphrase_file from [repo]".to_owned(),
        ),
    ];
    for (repo_keys, args, env, expected) in cases {
        lab.configure(&repo_keys);
        lab.refused(&args, env, &expected);
    }
}

#[test]
fn a_key_file_repository_changes_to_a_new_key_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let key_file = write_secret(
        dir.path(),
        "repo.key",
        &format!("{}\n", "5a".repeat(32)),
        0o600,
    );
    let keys = RepoKeys::new(
        Arc::new(LocalDirectory::new(&repo)),
        KeySource::KeyFile(key_file.clone()),
    );
    let repository_id = keys.create_or_open().unwrap().repository_id().to_owned();
    let lab = KeyLab {
        config: dir.path().join("tidemark.toml"),
        dir,
        repo,
        repository_id,
    };
    lab.configure(&format!(
        "cipher = \"aes-256-gcm\"\nkey_file = \"{}\"",
        key_file.display()
    ));
    lab.refused(
        &["change-passphrase"],
        &[],
        &format!(
            "tidemark: ERROR: this repository is opened by key_file {}: give the new key with --new-key-file FILE (64 hex digits, mode 0600)",
            key_file.display()
        ),
    );
    let not_a_key = write_secret(lab.dir.path(), "bad.key", "hunter2\n", 0o600);
    lab.refused(
        &["change-passphrase", "--new-key-file", not_a_key.to_str().unwrap()],
        &[],
        &format!(
            "tidemark: ERROR: --new-key-file {}: it does not hold a key: a key file is 64 hex digits (32 random bytes) and a newline, as `openssl rand -hex 32` prints",
            not_a_key.display()
        ),
    );
    let new_key = write_secret(lab.dir.path(), "new.key", &"c3".repeat(32), 0o600);
    let changed = lab.key(
        &[
            "change-passphrase",
            "--new-key-file",
            new_key.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(changed.code, Some(0), "{changed:?}");
    assert!(changed.stdout.contains("now opens with the new key only"));
    let refused = lab.key(&["list"], &[]);
    assert_eq!(refused.code, Some(1));
    lab.configure(&format!(
        "cipher = \"aes-256-gcm\"\nkey_file = \"{}\"",
        new_key.display()
    ));
    assert_eq!(lab.json_list()["generation"], 2);
}

#[test]
fn retire_refuses_a_key_an_object_names_and_removes_one_nothing_names() {
    let lab = KeyLab::new();
    let storage: Arc<dyn Storage> = Arc::new(LocalDirectory::new(&lab.repo));
    let source = KeySource::PassphraseFile(lab.dir.path().join("repo.pass"));
    // A stanza with one object sealed with data key 1, as archiving leaves it.
    let repo = Repository::with_codec(
        Box::new(Arc::clone(&storage)),
        Codec::encrypted(
            WriteSettings {
                compression: Compression::Zstd,
                zstd_level: 1,
            },
            Arc::new(RepoKeys::new(Arc::clone(&storage), source.clone())),
        ),
    );
    repo.create_stanza(&StanzaIdentity {
        format: STANZA_FORMAT,
        stanza: "main".to_owned(),
        system_id: 7,
        pg_version: 15,
        segment_size: 16 << 20,
        created: "2026-12-06T00:00:00Z".to_owned(),
        cipher: None,
        repository: None,
        chunk_hash: None,
    })
    .unwrap();
    let sealed = ObjectKey::new("main/walindex/a").unwrap();
    repo.open_stanza("main")
        .unwrap()
        .put_new_object(&sealed, b"entry")
        .unwrap();
    // Data key 2 became current an hour ago, beyond the grace a running writer has.
    let keyring = RepoKeys::new(Arc::clone(&storage), source)
        .open_newest()
        .unwrap();
    let rotated = keyring.rotated(chrono::Utc::now() - chrono::Duration::hours(1));
    storage
        .put_if_absent(
            &ObjectKey::new("_keys/keyring.0000000002").unwrap(),
            &[&rotated.document().to_bytes()],
        )
        .unwrap();

    lab.refused(
        &["retire", "2"],
        &[],
        &format!(
            "tidemark: ERROR: data key 2 is the current key of repository {}: run `tidemark key rotate` first, and retire it once nothing uses it; nothing changed",
            lab.repository_id
        ),
    );
    lab.refused(
        &["retire", "1"],
        &[],
        "tidemark: ERROR: key 1 still encrypts 1 object (first: main/walindex/a): expire them first; nothing changed",
    );
    std::fs::remove_file(lab.repo.join("main/walindex/a")).unwrap();
    let retired = lab.key(&["retire", "1"], &[]);
    assert_eq!(retired.code, Some(0), "{retired:?}");
    assert_eq!(
        retired.stdout,
        "data key 1 is retired (keyring generation 3)\n"
    );
    assert_eq!(lab.keyring_objects(), vec!["keyring.0000000003"]);
    let listed = lab.json_list();
    assert_eq!(listed["retired"], serde_json::json!([1]));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["keys"][0]["id"], 2);
    lab.refused(
        &["retire", "1"],
        &[],
        &format!(
            "tidemark: ERROR: data key 1 of repository {} is already retired; nothing changed",
            lab.repository_id
        ),
    );
}
