//! Secrets kept out of reach while Tidemark runs: a running program is not dumpable, so another
//! process of the same user cannot read its environment (`TIDEMARK_PASSPHRASE`) or memory; and
//! `tidemark key change-passphrase` asks on the terminal with echo off, so the new passphrase is
//! not on the screen (or in a session log).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use testkit::Lab;
use tidemark::repo::keys::{KeySource, RepoKeys};
use tidemark::storage::LocalDirectory;

mod common;

/// Long enough for any machine; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(120);

/// An encrypted repository at `repo` that `passphrase` opens; returns its id.
fn encrypted_repository(repo: &Path, passphrase: &str) -> String {
    let source = KeySource::PassphraseCommand(format!("printf %s '{passphrase}'"));
    let keys = RepoKeys::new(Arc::new(LocalDirectory::new(repo)), source);
    keys.create_or_open().unwrap().repository_id().to_owned()
}

#[test]
fn a_running_program_is_not_dumpable() {
    let lab = Lab::new("tm-keysecrets-", &common::binaries()).unwrap();
    encrypted_repository(&lab.repo_path, "dumpable test");
    testkit::owner::give_to_owner_recursively(&lab.repo_path).unwrap();
    // The passphrase command, a child of the running `tidemark` and of the same user, tries to
    // read its parent's environment (as it could if the parent were dumpable), `stat` and
    // `cmdline`, and notes what happened where the test can see it.
    let mark = lab.tmp.path().join("mark");
    common::write_config_file(
        &lab.config_path,
        &format!(
            "[repo]\npath = \"{}\"\ncipher = \"aes-256-gcm\"\npassphrase_command = \"for f in environ stat cmdline; do if cat /proc/$PPID/$f > /dev/null 2>&1; then echo $f readable; else echo $f refused; fi; done > {mark}; printf %s 'dumpable test'\"\n[stanza.main]\n",
            lab.repo_path.display(),
            mark = mark.display()
        ),
        0o600,
    );
    let ran = common::run(
        &lab,
        "tidemark",
        &["--config", lab.config_path.to_str().unwrap(), "key", "list"],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // Its environment is closed; what lock liveness (`stat`: the start time) and the helpers'
    // discovery (`cmdline`) read stays open.
    assert_eq!(
        std::fs::read_to_string(&mark).unwrap(),
        "environ refused\nstat readable\ncmdline readable\n"
    );
}

/// A pseudo-terminal: the test holds the master side; a child opens the other as its
/// controlling terminal.
struct Terminal {
    master: File,
    slave_name: CString,
}

impl Terminal {
    fn new() -> Terminal {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave_name = ptsname(&master, Vec::new()).unwrap();
        Terminal {
            master: File::from(master),
            slave_name,
        }
    }

    /// Starts `command` in a session of its own whose controlling terminal is this one.
    fn spawn(&self, command: &mut Command) -> Child {
        let slave_name = self.slave_name.clone();
        // SAFETY: setsid and open are async-signal-safe, and the name was made before the fork.
        unsafe {
            command.pre_exec(move || {
                rustix::process::setsid()?;
                // A session leader without a terminal gets the first it opens.
                let slave = rustix::fs::open(
                    slave_name.as_c_str(),
                    rustix::fs::OFlags::RDWR,
                    rustix::fs::Mode::empty(),
                )?;
                std::mem::forget(slave);
                Ok(())
            });
        }
        command.stdin(Stdio::null()).spawn().unwrap()
    }

    /// Everything the terminal shows, chunk by chunk, until the child's side closes.
    fn output(&self) -> Receiver<Vec<u8>> {
        let mut master = self.master.try_clone().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends with EIO once no process holds the other side.
            while let Ok(n @ 1..) = master.read(&mut buffer) {
                if sender.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        receiver
    }

    fn type_line(&self, line: &str) {
        (&self.master)
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }
}

/// Reads `shown` from the terminal's output into `seen` until it holds `expected`.
fn wait_for(output: &Receiver<Vec<u8>>, seen: &mut Vec<u8>, expected: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(seen).contains(expected) {
        let left = deadline.saturating_duration_since(Instant::now());
        match output.recv_timeout(left) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(_) => panic!(
                "the terminal never showed {expected:?}; it showed {:?}",
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

/// Runs `tidemark key change-passphrase` on a terminal, typing `first` and `second` when asked;
/// returns its exit code, stderr and everything the terminal showed.
fn change_on_terminal(config: &Path, first: &str, second: &str) -> (Option<i32>, String, String) {
    let terminal = Terminal::new();
    let output = terminal.output();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    command
        .args([OsStr::new("--config"), config.as_os_str()])
        .args(["key", "change-passphrase"])
        .env_remove("TIDEMARK_NEW_PASSPHRASE")
        .env_remove("TIDEMARK_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = terminal.spawn(&mut command);
    let mut seen = Vec::new();
    wait_for(&output, &mut seen, "New passphrase: ");
    terminal.type_line(first);
    wait_for(&output, &mut seen, "The same again: ");
    terminal.type_line(second);
    let finished = child.wait_with_output().unwrap();
    drop(terminal);
    while let Ok(chunk) = output.recv_timeout(Duration::from_millis(200)) {
        seen.extend_from_slice(&chunk);
    }
    (
        finished.status.code(),
        String::from_utf8_lossy(&finished.stderr).into_owned(),
        String::from_utf8_lossy(&seen).into_owned(),
    )
}

fn configure(config: &Path, repo: &Path, passphrase_file: &Path) {
    std::fs::write(
        config,
        format!(
            "[repo]\npath = \"{}\"\ncipher = \"aes-256-gcm\"\npassphrase_file = \"{}\"\n[stanza.main]\n",
            repo.display(),
            passphrase_file.display()
        ),
    )
    .unwrap();
}

fn secret_file(path: PathBuf, text: &str) -> PathBuf {
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn the_new_passphrase_is_asked_twice_on_the_terminal_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let config = dir.path().join("tidemark.toml");
    let id = encrypted_repository(&repo, "typed old 51");
    let old = secret_file(dir.path().join("old.pass"), "typed old 51\n");
    configure(&config, &repo, &old);

    let (code, stderr, shown) = change_on_terminal(&config, "typed new 3a", "typed new 3b");
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "tidemark: ERROR: the two passphrases typed differ; nothing changed\n"
    );
    assert!(!shown.contains("typed new"), "echoed: {shown:?}");

    let (code, stderr, shown) = change_on_terminal(&config, "typed new 3a", "typed new 3a");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!shown.contains("typed new"), "echoed: {shown:?}");
    let new = secret_file(dir.path().join("new.pass"), "typed new 3a");
    configure(&config, &repo, &new);
    let listed = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("key"),
            OsStr::new("list"),
        ])
        .env_remove("TIDEMARK_PASSPHRASE")
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .starts_with(&format!("repository {id} (keyring generation 2)\n"))
    );
}
