//! Where the repository's secret comes from — a passphrase file, a command that prints the
//! passphrase (Vault, a cloud KMS), a key file, or `TIDEMARK_PASSPHRASE` — and reading it into
//! memory that is wiped when dropped. No error here ever holds a byte of the secret, nor of
//! what the command printed.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use super::secret_file::read_secret_file;

/// The environment variable a passphrase may come from, when the configuration names no source.
pub const PASSPHRASE_VARIABLE: &str = "TIDEMARK_PASSPHRASE";

/// The longest passphrase read from a file, a command or the environment.
pub const MAX_PASSPHRASE_LEN: usize = 64 * 1024;

/// The longest key file: 64 hex digits, a newline, and room for a CR or stray whitespace is
/// not allowed, so this only bounds the read.
const MAX_KEY_FILE_LEN: usize = 4096;

/// How long `passphrase_command` may take: a vault that does not answer must not hang
/// `archive_command` for ever.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The one source of the repository's secret that the configuration names. Its `Debug` leaves
/// out the command, which may carry a token.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `[repo] passphrase_file`: a file of mode 0600 holding the passphrase.
    PassphraseFile(PathBuf),
    /// `[repo] passphrase_command`: run with `sh -c`, its standard output is the passphrase.
    PassphraseCommand(String),
    /// `[repo] key_file`: 32 random bytes as 64 hex digits; no key derivation needed.
    KeyFile(PathBuf),
    /// `TIDEMARK_PASSPHRASE` in the environment.
    PassphraseEnv,
}

/// The secret a source gave: a passphrase (which Argon2id turns into a slot key) or a key (which
/// is the slot key). Wiped when dropped; never printed.
pub enum Secret {
    Passphrase(Zeroizing<Vec<u8>>),
    Key(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Passphrase(_) => f.write_str("Secret::Passphrase(<redacted>)"),
            Secret::Key(_) => f.write_str("Secret::Key(<redacted>)"),
        }
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::PassphraseFile(path) => f.debug_tuple("PassphraseFile").field(path).finish(),
            KeySource::PassphraseCommand(_) => f.write_str("PassphraseCommand(<redacted>)"),
            KeySource::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
            KeySource::PassphraseEnv => f.write_str("PassphraseEnv"),
        }
    }
}

impl KeySource {
    /// How an error should point at this source: "passphrase_file /etc/tidemark/repo.pass".
    pub fn describe(&self) -> String {
        match self {
            KeySource::PassphraseFile(path) => format!("passphrase_file {}", path.display()),
            // The command itself may hold a token; only its kind is named.
            KeySource::PassphraseCommand(_) => "passphrase_command".to_owned(),
            KeySource::KeyFile(path) => format!("key_file {}", path.display()),
            KeySource::PassphraseEnv => PASSPHRASE_VARIABLE.to_owned(),
        }
    }

    /// Reads the secret: the file, the command's output or the environment variable.
    pub fn read(&self) -> anyhow::Result<Secret> {
        match self {
            KeySource::PassphraseFile(path) => {
                let bytes = read_secret_file(path, "passphrase_file", MAX_PASSPHRASE_LEN)?;
                passphrase(bytes, &self.describe())
            }
            KeySource::PassphraseCommand(command) => passphrase(
                run_passphrase_command(command, COMMAND_TIMEOUT)?,
                "passphrase_command",
            ),
            KeySource::KeyFile(path) => {
                let bytes = read_secret_file(path, "key_file", MAX_KEY_FILE_LEN)?;
                parse_key_file(&bytes)
                    .map(Secret::Key)
                    .with_context(|| format!("key_file {}", path.display()))
            }
            KeySource::PassphraseEnv => {
                let value = std::env::var_os(PASSPHRASE_VARIABLE).with_context(|| {
                    format!("{PASSPHRASE_VARIABLE} is not set in the environment of this command")
                })?;
                let bytes = Zeroizing::new(value.into_encoded_bytes());
                if bytes.len() > MAX_PASSPHRASE_LEN {
                    bail!(
                        "{PASSPHRASE_VARIABLE} is longer than {MAX_PASSPHRASE_LEN} bytes: set it to the passphrase alone"
                    );
                }
                passphrase(bytes, PASSPHRASE_VARIABLE)
            }
        }
    }
}

/// A passphrase as read: one trailing newline dropped (files and `echo` end with one); empty is
/// refused, since it would protect nothing.
pub fn passphrase(mut bytes: Zeroizing<Vec<u8>>, from: &str) -> anyhow::Result<Secret> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.is_empty() {
        bail!("{from} gives an empty passphrase: it must hold the repository's passphrase");
    }
    Ok(Secret::Passphrase(bytes))
}

/// A key file's 64 hex digits (and at most one trailing newline) as 32 bytes. The error never
/// shows the file's content.
pub fn parse_key_file(bytes: &[u8]) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut key = Zeroizing::new([0u8; 32]);
    if text.len() != 64 || !text.iter().all(u8::is_ascii_hexdigit) {
        bail!(
            "it does not hold a key: a key file is 64 hex digits (32 random bytes) and a newline, as `openssl rand -hex 32` prints"
        );
    }
    for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |d: u8| (d as char).to_digit(16).expect("checked hex") as u8;
        *byte = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Ok(key)
}

/// Runs `passphrase_command` with `sh -c`: no standard input, standard error dropped (a failing
/// vault client may print what it was given), standard output captured up to
/// [`MAX_PASSPHRASE_LEN`]. Waits at most `timeout`, then kills the command's process group.
/// The errors say only how it ended.
pub fn run_passphrase_command(
    command: &str,
    timeout: Duration,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, so that a timeout stops what it started too.
        .process_group(0)
        .spawn()
        .context("run passphrase_command with sh")?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    // The read is on its own thread so that the wait below is bounded even if the command (or
    // something it left running) keeps the pipe open without writing.
    std::thread::spawn(move || {
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_LEN + 1));
        let read = (&mut stdout)
            .take(MAX_PASSPHRASE_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map(|_| bytes);
        let _ = sender.send(read);
    });
    let group =
        rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    let kill_group = || {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    };
    let output = match receiver.recv_timeout(timeout) {
        Ok(read) => read,
        Err(_) => {
            kill_group();
            let _ = child.wait();
            bail!(
                "passphrase_command did not finish within {} s: check that it can reach its vault",
                timeout.as_secs_f64()
            );
        }
    };
    let output = output.context("read passphrase_command's output")?;
    if output.len() > MAX_PASSPHRASE_LEN {
        kill_group();
        let _ = child.wait();
        bail!(
            "passphrase_command printed more than {} KiB: it must print the passphrase alone",
            MAX_PASSPHRASE_LEN / 1024
        );
    }
    // Output ends when the command closed it, normally by exiting; still, never wait for ever.
    let status = wait_bounded(&mut child, timeout).inspect_err(|_| kill_group())?;
    if !status.success() {
        match status.code() {
            Some(code) => bail!(
                "passphrase_command exited with status {code}: fix the command (its output is not shown, as it may hold the passphrase)"
            ),
            None => bail!("passphrase_command was killed by a signal ({status}): fix the command"),
        }
    }
    if output.is_empty() {
        bail!(
            "passphrase_command printed nothing: it must print the repository's passphrase on standard output"
        );
    }
    Ok(output)
}

/// Waits for `child`, polling, at most `timeout`.
fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("wait for passphrase_command")? {
            return Ok(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "passphrase_command did not exit within {} s of closing its output: check it",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase_of(secret: Secret) -> Vec<u8> {
        match secret {
            Secret::Passphrase(bytes) => bytes.to_vec(),
            Secret::Key(_) => panic!("a key, not a passphrase"),
        }
    }

    #[test]
    fn one_trailing_newline_is_dropped_and_empty_is_refused() {
        let read = |text: &[u8]| passphrase(Zeroizing::new(text.to_vec()), "passphrase_file /p");
        assert_eq!(passphrase_of(read(b"pass\n").unwrap()), b"pass");
        assert_eq!(passphrase_of(read(b"pass\n\n").unwrap()), b"pass\n");
        assert_eq!(passphrase_of(read(b" pass ").unwrap()), b" pass ");
        for empty in [&b""[..], b"\n"] {
            assert_eq!(
                format!("{:#}", read(empty).unwrap_err()),
                "passphrase_file /p gives an empty passphrase: it must hold the repository's passphrase"
            );
        }
    }

    #[test]
    fn a_key_file_is_64_hex_digits() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let key = parse_key_file(hex.as_bytes()).unwrap();
        assert_eq!(key[0], 0x00);
        assert_eq!(key[1], 0x11);
        assert_eq!(key[31], 0xff);
        assert_eq!(
            *parse_key_file(format!("{hex}\n").as_bytes()).unwrap(),
            *key
        );
        let secret_looking = "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        for bad in [
            "",
            &hex[..62],
            &format!("{hex}00"),
            &format!("{hex}\n\n"),
            &format!("{hex}\r\n"),
            secret_looking,
        ] {
            let error = format!("{:#}", parse_key_file(bad.as_bytes()).unwrap_err());
            assert_eq!(
                error,
                "it does not hold a key: a key file is 64 hex digits (32 random bytes) and a newline, as `openssl rand -hex 32` prints"
            );
        }
    }

    #[test]
    fn a_passphrase_command_gives_its_output() {
        let out = run_passphrase_command("echo 'correct horse'", COMMAND_TIMEOUT).unwrap();
        assert_eq!(&out[..], b"correct horse\n");
        // Standard error is dropped, and standard input is empty.
        let out =
            run_passphrase_command("cat; echo secret >&2; printf x", COMMAND_TIMEOUT).unwrap();
        assert_eq!(&out[..], b"x");
    }

    #[test]
    fn a_failing_command_is_named_by_its_status_only() {
        let error =
            run_passphrase_command("echo hunter2; echo hunter2 >&2; exit 3", COMMAND_TIMEOUT)
                .unwrap_err();
        let error = format!("{error:#}");
        assert_eq!(
            error,
            "passphrase_command exited with status 3: fix the command (its output is not shown, as it may hold the passphrase)"
        );
        let error = format!(
            "{:#}",
            run_passphrase_command("true", COMMAND_TIMEOUT).unwrap_err()
        );
        assert_eq!(
            error,
            "passphrase_command printed nothing: it must print the repository's passphrase on standard output"
        );
        let error = format!(
            "{:#}",
            run_passphrase_command("kill -9 $$", COMMAND_TIMEOUT).unwrap_err()
        );
        assert!(
            error.starts_with("passphrase_command was killed by a signal"),
            "{error}"
        );
        let error = format!(
            "{:#}",
            run_passphrase_command("head -c 70000 /dev/zero", COMMAND_TIMEOUT).unwrap_err()
        );
        assert_eq!(
            error,
            "passphrase_command printed more than 64 KiB: it must print the passphrase alone"
        );
    }

    #[test]
    fn a_command_that_hangs_is_stopped_with_what_it_started() {
        // The background sleep keeps the pipe open after sh exits: the bound must still hold,
        // and the process group is killed, so the sleep does not outlive the test.
        let error =
            run_passphrase_command("sleep 30 & sleep 30", Duration::from_millis(300)).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "passphrase_command did not finish within 0.3 s: check that it can reach its vault"
        );
    }
}
