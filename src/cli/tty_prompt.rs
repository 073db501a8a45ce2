//! Asking for a secret on the terminal (`/dev/tty`, not standard input, so a pipe cannot answer
//! by accident), with echo off while it is typed and restored whatever happens.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};

use anyhow::{Context, bail};
use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

use tidemark::repo::keys::MAX_PASSPHRASE_LEN;

/// Echo turned off on the terminal while this lives.
struct EchoOff<'a> {
    tty: &'a File,
    saved: rustix::termios::Termios,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a File) -> anyhow::Result<EchoOff<'a>> {
        let saved = tcgetattr(tty).context("read the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // The newline still shows, so the next prompt starts on its own line.
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(tty, OptionalActions::Flush, &quiet).context("turn echo off")?;
        Ok(EchoOff { tty, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty, OptionalActions::Now, &self.saved);
    }
}

/// Asks `prompt` on the terminal and reads one line with echo off, without its newline.
fn ask(tty: &File, prompt: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    // Echo goes off (and what was typed ahead is discarded) before the prompt shows, so
    // nothing typed in answer to it can be echoed.
    let _echo_off = EchoOff::new(tty)?;
    (&*tty)
        .write_all(prompt.as_bytes())
        .context("write to the terminal")?;
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_LEN + 1));
    // One byte at a time, so nothing past the newline is read away from the terminal; the
    // byte is wiped after.
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        if (&*tty).read(&mut *byte).context("read from the terminal")? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            break;
        }
        if line.len() == MAX_PASSPHRASE_LEN {
            bail!("the passphrase typed is longer than {MAX_PASSPHRASE_LEN} bytes");
        }
        line.push(byte[0]);
    }
    Ok(line)
}

/// Asks for a new passphrase twice on the terminal; refused if the two differ or it is empty.
pub fn ask_new_passphrase() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            anyhow::anyhow!(
                "no terminal to ask for the new passphrase on ({e}): give --new-passphrase-file FILE or set TIDEMARK_NEW_PASSPHRASE"
            )
        })?;
    let first = ask(&tty, "New passphrase: ")?;
    let second = ask(&tty, "The same again: ")?;
    if first != second {
        bail!("the two passphrases typed differ; nothing changed");
    }
    if first.is_empty() {
        bail!("the passphrase typed is empty; nothing changed");
    }
    Ok(first)
}
