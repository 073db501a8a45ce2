//! Every way an encrypted repository's key can be missing or wrong is refused with one line,
//! exit 1, nothing written: a wrong passphrase, an empty passphrase file, a missing key file, a
//! key file readable by others, a `passphrase_command` that fails (its own stderr dropped) or
//! prints nothing, two key sources at once, a key source without a cipher, a cipher without a
//! key source, encryption asked of an existing unencrypted stanza, and an encrypted repository
//! opened without a cipher. Each is tried with `tidemark-archive` (a push) and
//! `tidemark-restore` (a fetch), the stanza ones with `stanza-create` too, on real WAL of a
//! PostgreSQL 15 cluster.
//!
//! And the passphrase never shows: not in any program's stderr, not in `info --output json`, not
//! in the repository's bytes, not in `/proc/<pid>/cmdline` of a running `tidemark-archive` (caught
//! while its `passphrase_command` waits on a FIFO), which is not dumpable either (its /proc files
//! belong to root: no core file, no ptrace by its own user).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::WalLab;
use common::encryption::{
    CIPHER, files_under, random_passphrase, with_key_file, with_passphrase_file, write_key_file,
    write_passphrase_file,
};

/// What the line for an encrypted repository opened without a cipher says.
const ENCRYPTED_WITHOUT_CIPHER: &str = "is encrypted: set [repo] cipher = \"aes-256-gcm\" and passphrase_file, passphrase_command or key_file";

/// What the line for encryption asked of an existing unencrypted stanza says: what is wrong
/// (the stanza named) and both ways out.
const NOT_ENCRYPTED: [&str; 4] = [
    "stanza 'main' ",
    " is not encrypted; encryption cannot be turned on for an existing stanza: create ",
    " new repository",
    "set [repo] cipher = \"none\"",
];

/// A lab with real archived WAL, its unencrypted stanza (the lab's repository), and an
/// encrypted repository beside it whose stanza holds the first segment.
struct Keys {
    wal: WalLab,
    encrypted_repo: PathBuf,
    passphrase: String,
    /// Every stderr the programs wrote, searched for the passphrase at the end.
    stderr: String,
}

impl Keys {
    fn new() -> Keys {
        let wal = WalLab::new("tm-key-refusals-");
        let passphrase = random_passphrase();
        let file = write_passphrase_file(&wal.lab, "repo.pass", &passphrase);
        let encrypted_repo = wal.lab.tmp.path().join("encrypted-repo");
        let mut keys = Keys {
            encrypted_repo,
            passphrase,
            stderr: String::new(),
            wal,
        };
        let config = keys.wal.config_with_stanza(
            "encrypted.toml",
            &keys.encrypted(&with_passphrase_file(&file)),
        );
        let segment = keys.wal.segment_path(0);
        let pushed = keys.run(
            "tidemark-archive",
            &[
                "--config",
                config.to_str().unwrap(),
                segment.to_str().unwrap(),
            ],
        );
        assert_eq!(pushed.code, Some(0), "{pushed:?}");
        keys
    }

    /// `[repo]` lines of the encrypted repository with `lines` after them.
    fn encrypted(&self, lines: &str) -> String {
        format!("path = \"{}\"\n{lines}", self.encrypted_repo.display())
    }

    /// `[repo]` lines of the unencrypted repository with `lines` after them.
    fn plain(&self, lines: &str) -> String {
        format!("path = \"{}\"\n{lines}", self.wal.lab.repo_path.display())
    }

    /// A configuration `<lab>/<name>.toml` (mode 0600) with `repo` as its `[repo]` section and
    /// the cluster as stanza `main`; no stanza is created.
    fn config(&self, name: &str, repo: &str) -> PathBuf {
        let path = self.wal.lab.tmp.path().join(format!("{name}.toml"));
        common::write_config_file(
            &path,
            &format!(
                "[repo]\n{repo}\n[stanza.main]\npgdata = \"{}\"\n",
                self.wal.cluster.data_dir().display()
            ),
            0o600,
        );
        path
    }

    fn run(&mut self, program: &str, args: &[&str]) -> common::Ran {
        let ran = common::run(&self.wal.lab, program, args);
        self.stderr.push_str(&ran.stderr);
        ran
    }

    /// With configuration `config`, a push of a segment not yet archived and a fetch of the
    /// archived one are refused with one line each, exit 1, nothing written to `repo` or to
    /// the fetch's destination; `also_stanza_create` tries `stanza-create` too. Each line must
    /// satisfy `check`.
    fn refused_everywhere(
        &mut self,
        what: &str,
        config: &Path,
        repo: &Path,
        also_stanza_create: bool,
        check: impl Fn(&str) -> bool,
    ) {
        let config = config.to_str().unwrap();
        let unarchived = self.wal.segment_path(1);
        let archived = self.wal.segments()[0].clone();
        let destination = self.wal.lab.tmp.path().join("fetched-RECOVERYXLOG");
        let mut attempts: Vec<(&str, Vec<&str>)> = vec![
            (
                "tidemark-archive",
                vec!["--config", config, unarchived.to_str().unwrap()],
            ),
            (
                "tidemark-restore",
                vec!["--config", config, &archived, destination.to_str().unwrap()],
            ),
        ];
        if also_stanza_create {
            attempts.push(("tidemark", vec!["--config", config, "stanza-create"]));
        }
        for (program, args) in attempts {
            let line = common::refusal_in(&self.wal.lab, repo, program, &args);
            self.stderr.push_str(&line);
            println!("{what}, {program}: {line}");
            assert!(
                line.contains(": ERROR: ") && check(&line),
                "{what}, {program}: {line}"
            );
            assert!(!destination.exists(), "{what}: {program} wrote %p");
        }
    }
}

#[test]
fn key_problems_are_refused_with_one_line_and_change_nothing() {
    common::seed_randomness();
    let mut keys = Keys::new();
    let lab_dir = keys.wal.lab.tmp.path().to_owned();
    let encrypted_repo = keys.encrypted_repo.clone();

    let wrong = write_passphrase_file(&keys.wal.lab, "wrong.pass", &random_passphrase());
    let config = keys.config("wrong", &keys.encrypted(&with_passphrase_file(&wrong)));
    keys.refused_everywhere("wrong passphrase", &config, &encrypted_repo, false, |l| {
        l.contains("does not open") && l.contains("passphrase_file")
    });

    let empty = write_passphrase_file(&keys.wal.lab, "empty.pass", "");
    let config = keys.config("empty", &keys.encrypted(&with_passphrase_file(&empty)));
    keys.refused_everywhere(
        "empty passphrase file",
        &config,
        &encrypted_repo,
        false,
        |l| l.contains(&empty.display().to_string()) && l.contains("empty"),
    );

    let absent = lab_dir.join("absent.key");
    let config = keys.config("absent", &keys.encrypted(&with_key_file(&absent)));
    keys.refused_everywhere("missing key file", &config, &encrypted_repo, false, |l| {
        l.contains(&absent.display().to_string())
    });

    let open_key = write_key_file(&keys.wal.lab, "open.key");
    fs::set_permissions(&open_key, fs::Permissions::from_mode(0o644)).unwrap();
    let config = keys.config("open", &keys.encrypted(&with_key_file(&open_key)));
    keys.refused_everywhere("key file mode 0644", &config, &encrypted_repo, false, |l| {
        l.contains(&open_key.display().to_string())
    });

    let failing = format!(
        "cipher = \"{CIPHER}\"\npassphrase_command = \"echo tidemark-command-stderr >&2; exit 3\"\n"
    );
    let config = keys.config("failing", &keys.encrypted(&failing));
    keys.refused_everywhere(
        "passphrase_command exits 3",
        &config,
        &encrypted_repo,
        false,
        |l| {
            l.contains("passphrase_command exited with status 3")
                && !l.contains("tidemark-command-stderr")
        },
    );

    let silent = format!("cipher = \"{CIPHER}\"\npassphrase_command = \"true\"\n");
    let config = keys.config("silent", &keys.encrypted(&silent));
    keys.refused_everywhere(
        "passphrase_command prints nothing",
        &config,
        &encrypted_repo,
        false,
        |l| l.contains("passphrase_command printed nothing"),
    );

    let two = format!(
        "{}key_file = \"{}\"\n",
        with_passphrase_file(&lab_dir.join("repo.pass")),
        open_key.display()
    );
    let config = keys.config("two", &keys.encrypted(&two));
    keys.refused_everywhere("two key sources", &config, &encrypted_repo, false, |l| {
        l.contains("passphrase_file") && l.contains("key_file")
    });

    let no_source = format!("cipher = \"{CIPHER}\"\n");
    let config = keys.config("no-source", &keys.encrypted(&no_source));
    keys.refused_everywhere(
        "cipher without a key source",
        &config,
        &encrypted_repo,
        false,
        |l| {
            [
                "passphrase_file",
                "passphrase_command",
                "key_file",
                "TIDEMARK_PASSPHRASE",
            ]
            .iter()
            .all(|way| l.contains(way))
        },
    );

    let config = keys.config("no-cipher", &keys.encrypted(""));
    keys.refused_everywhere(
        "encrypted repository, no cipher",
        &config,
        &encrypted_repo,
        true,
        |l| l.contains(ENCRYPTED_WITHOUT_CIPHER),
    );

    let stray_key = with_key_file(&write_key_file(&keys.wal.lab, "stray.key"))
        .replace(&format!("cipher = \"{CIPHER}\"\n"), "");
    let config = keys.config("key-no-cipher", &keys.plain(&stray_key));
    let plain_repo = keys.wal.lab.repo_path.clone();
    keys.refused_everywhere(
        "a key source without a cipher",
        &config,
        &plain_repo,
        true,
        |l| l.contains("key_file") && l.contains("cipher"),
    );

    let passphrase_file = lab_dir.join("repo.pass");
    let config = keys.config(
        "turn-on",
        &keys.plain(&with_passphrase_file(&passphrase_file)),
    );
    keys.refused_everywhere(
        "cipher on an unencrypted stanza",
        &config,
        &plain_repo,
        true,
        |l| NOT_ENCRYPTED.iter().all(|part| l.contains(part)),
    );
    assert!(!plain_repo.join("_keys").exists());

    the_passphrase_never_shows(&mut keys);
}

/// The passphrase is in no stderr so far, not in `info --output json`, not in the repository,
/// and not in any process's arguments while a push waits for it.
fn the_passphrase_never_shows(keys: &mut Keys) {
    let config = keys.wal.lab.tmp.path().join("encrypted.toml");
    let info = keys.run(
        "tidemark",
        &[
            "--config",
            config.to_str().unwrap(),
            "info",
            "--output",
            "json",
        ],
    );
    assert_eq!(info.code, Some(0), "{info:?}");
    assert!(!info.stdout.contains(&keys.passphrase), "{}", info.stdout);

    a_push_waiting_for_its_passphrase_shows_it_nowhere(keys);

    assert!(!keys.stderr.contains(&keys.passphrase), "{}", keys.stderr);
    let stored = files_under(&keys.encrypted_repo);
    let found = common::encryption::plaintext_in(
        &stored,
        &[("the passphrase", keys.passphrase.as_bytes())],
    );
    assert_eq!(found, Vec::<String>::new());
}

/// A `tidemark-archive` whose `passphrase_command` reads a FIFO waits until the test writes the
/// passphrase into it; meanwhile no process on the machine has it in its arguments, and the
/// waiting program's /proc files belong to root (it made itself not dumpable). Then it pushes.
fn a_push_waiting_for_its_passphrase_shows_it_nowhere(keys: &mut Keys) {
    let lab = &keys.wal.lab;
    let fifo = lab.tmp.path().join("passphrase.fifo");
    let made = Command::new("mkfifo")
        .arg("-m")
        .arg("0600")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    testkit::give_to_owner(&fifo).unwrap();
    let lines = format!(
        "cipher = \"{CIPHER}\"\npassphrase_command = \"cat {}\"\n",
        fifo.display()
    );
    let config = keys.config("fifo", &keys.encrypted(&lines));
    let segment = keys.wal.segment_path(2);
    let mut pushing = testkit::owner_command(&lab.bin_dir.join("tidemark-archive"), lab.tmp.path())
        .arg("--config")
        .arg(&config)
        .arg(&segment)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let fifo_arg = fifo.display().to_string();
    let config_arg = config.display().to_string();
    let deadline = Instant::now() + common::PATIENCE;
    let archive_pid = loop {
        let processes = common::processes();
        let waiting = processes.iter().any(|(_, args)| {
            args.iter()
                .any(|a| String::from_utf8_lossy(a).contains(&fifo_arg))
        });
        let archive = processes.iter().find(|(_, args)| {
            args.first()
                .is_some_and(|a| a.ends_with(b"tidemark-archive"))
                && args.iter().any(|a| a == config_arg.as_bytes())
        });
        if let (true, Some((pid, _))) = (waiting, archive) {
            break *pid;
        }
        assert!(
            Instant::now() < deadline,
            "the push never ran its passphrase_command"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for (pid, args) in common::processes() {
        let joined = args.join(&b' ');
        assert!(
            common::encryption::find(&joined, keys.passphrase.as_bytes()).is_none(),
            "process {pid} has the passphrase in its arguments"
        );
    }
    let owner = fs::metadata(format!("/proc/{archive_pid}/status"))
        .unwrap()
        .uid();
    assert_eq!(
        owner, 0,
        "tidemark-archive (pid {archive_pid}) is dumpable: its /proc files belong to uid {owner}"
    );

    let mut writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer
        .write_all(format!("{}\n", keys.passphrase).as_bytes())
        .unwrap();
    drop(writer);
    let deadline = Instant::now() + common::PATIENCE;
    while pushing.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the push did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = pushing.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    keys.stderr.push_str(&stderr);
    assert!(output.status.success(), "{stderr}");
}
