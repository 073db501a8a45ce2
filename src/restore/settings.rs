//! The recovery settings a restore leaves: the `restore_command` PostgreSQL runs and the target,
//! written into `postgresql.auto.conf`, and `recovery.signal`. They are written last, once all
//! the data is durable, each through a temporary file that is fsynced and renamed, with the
//! directory fsynced after it, and `recovery.signal` last of all: a crash never leaves a data
//! directory set to recover with data missing.
//!
//! Values cross two parsers before they take effect: `postgresql.conf`'s, which reads
//! backslash escapes and doubled quotes inside `'...'`, and, for `restore_command`,
//! PostgreSQL's substitution of `%f`, `%p`, `%r` and `%%`, then `sh -c`.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, bail};

use crate::storage::durable;

/// `restore_command` running `words` (a program and its arguments) then `%f %p`: each word
/// quoted for `sh -c` and every `%` in it doubled, so that PostgreSQL's substitution gives the
/// shell the words as they are. A word that is not UTF-8 cannot be written into
/// `postgresql.conf` faithfully and is refused.
pub fn restore_command(words: &[&OsStr]) -> anyhow::Result<String> {
    let mut command = Vec::with_capacity(words.len() + 2);
    for word in words {
        let Some(text) = word.to_str() else {
            bail!(
                "'{}' is not UTF-8, so restore_command cannot name it: use a path in UTF-8",
                word.to_string_lossy()
            );
        };
        command.push(shell_word(text).replace('%', "%%"));
    }
    command.extend(["%f".to_owned(), "%p".to_owned()]);
    Ok(command.join(" "))
}

/// `text` as one word for `sh`: as it is when it holds nothing the shell reads specially, else
/// in single quotes (a quote inside as `'\''`).
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A value as `postgresql.conf` reads it back: in single quotes, with quotes doubled and
/// backslashes and line breaks escaped (its parser reads `\\`, `\n` and `\r` inside quotes).
pub fn quote_setting(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

/// The block appended to `postgresql.auto.conf` (read last, so its lines win).
pub fn block(label: &str, settings: &[(&str, String)]) -> String {
    let mut text = format!("\n# Written by tidemark restore of backup {label}.\n");
    for (key, value) in settings {
        text.push_str(&format!("{key} = {}\n", quote_setting(value)));
    }
    text
}

/// Appends `block` to the restored `postgresql.auto.conf` by writing the whole file anew, then
/// creates `recovery.signal`; each durable before the next.
pub fn write(pgdata: &Path, block: &str) -> anyhow::Result<()> {
    let auto_conf = pgdata.join("postgresql.auto.conf");
    let mut text = match std::fs::read(&auto_conf) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", auto_conf.display())),
    };
    text.extend_from_slice(block.as_bytes());
    durable::write_replacing(&auto_conf, &text, 0o600, pgdata)
        .with_context(|| format!("write {}", auto_conf.display()))?;
    let signal = pgdata.join("recovery.signal");
    durable::write_replacing(&signal, b"", 0o600, pgdata)
        .with_context(|| format!("create {}", signal.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_and_line_breaks_survive_postgresql_conf() {
        assert_eq!(quote_setting("plain"), "'plain'");
        assert_eq!(quote_setting("it's"), "'it''s'");
        assert_eq!(quote_setting(r"a\b"), r"'a\\b'");
        assert_eq!(quote_setting("a\nb\rc"), r"'a\nb\rc'");
    }

    #[test]
    fn restore_command_words_survive_substitution_and_the_shell() {
        let command = restore_command(&[
            OsStr::new("/usr/local/bin/tidemark-restore"),
            OsStr::new("--config"),
            OsStr::new("/etc/it's 100%f sure/tidemark.toml"),
            OsStr::new("--stanza"),
            OsStr::new("main"),
        ])
        .unwrap();
        assert_eq!(
            command,
            r"/usr/local/bin/tidemark-restore --config '/etc/it'\''s 100%%f sure/tidemark.toml' --stanza main %f %p"
        );
        let not_utf8 = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/etc/\xff");
        assert!(restore_command(&[not_utf8]).is_err());
    }

    #[test]
    fn the_settings_are_added_to_the_restored_file_and_the_signal_made() {
        let pgdata = tempfile::tempdir().unwrap();
        std::fs::write(
            pgdata.path().join("postgresql.auto.conf"),
            "work_mem = '8MB'\n",
        )
        .unwrap();
        let block = block("L", &[("recovery_target_name", "it's".to_owned())]);
        write(pgdata.path(), &block).unwrap();
        assert_eq!(
            std::fs::read_to_string(pgdata.path().join("postgresql.auto.conf")).unwrap(),
            "work_mem = '8MB'\n\n# Written by tidemark restore of backup L.\nrecovery_target_name = 'it''s'\n"
        );
        assert!(pgdata.path().join("recovery.signal").is_file());
        assert_eq!(std::fs::read_dir(pgdata.path()).unwrap().count(), 2);
    }
}
