//! `[repo] cipher` and the one source of the repository's key: the file, the command, the key
//! file, or `TIDEMARK_PASSPHRASE` when the file names none. Every mistake is one line naming the
//! key and what to do.

use std::ffi::OsString;
use std::path::Path;

use anyhow::bail;

use super::schema::{Cipher, RepoConfig};
use crate::repo::keys::{KeySource, PASSPHRASE_VARIABLE};

impl RepoConfig {
    /// The sources of the key this section names, by key.
    fn named_key_sources(&self) -> Vec<&'static str> {
        [
            ("passphrase_file", self.passphrase_file.is_some()),
            ("passphrase_command", self.passphrase_command.is_some()),
            ("key_file", self.key_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// What the file alone can say is wrong with the cipher and its key source.
    pub(super) fn check_cipher(&self) -> anyhow::Result<()> {
        for (key, path) in [
            ("passphrase_file", &self.passphrase_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(path) = path {
                check_absolute(key, path)?;
            }
        }
        if let Some(command) = &self.passphrase_command
            && command.trim().is_empty()
        {
            bail!(
                "repo.passphrase_command is empty: give the command that prints the passphrase, e.g. \"vault kv get -field=passphrase secret/tidemark\""
            );
        }
        let sources = self.named_key_sources();
        if sources.len() > 1 {
            bail!(
                "[repo] names more than one source of the repository's key ({}): keep one and remove the rest",
                sources.join(", ")
            );
        }
        if let (Cipher::None, Some(key)) = (self.cipher, sources.first()) {
            bail!(
                "repo.{key} applies to an encrypted repository only, but cipher = \"none\": add cipher = \"aes-256-gcm\" to [repo] (for a new repository), or remove {key}"
            );
        }
        Ok(())
    }

    /// Where the repository's key comes from: `None` when `cipher = "none"`. The environment's
    /// `TIDEMARK_PASSPHRASE` is the source only when the file names none; set beside one, or
    /// with no cipher, it is refused rather than silently ignored.
    pub fn key_source(&self) -> anyhow::Result<Option<KeySource>> {
        self.key_source_with(std::env::var_os(PASSPHRASE_VARIABLE))
    }

    /// [`key_source`](RepoConfig::key_source) with `variable` as `TIDEMARK_PASSPHRASE`'s value.
    pub(super) fn key_source_with(
        &self,
        variable: Option<OsString>,
    ) -> anyhow::Result<Option<KeySource>> {
        let variable_set = variable.as_ref().is_some_and(|v| !v.is_empty());
        let named = match (
            &self.passphrase_file,
            &self.passphrase_command,
            &self.key_file,
        ) {
            (Some(path), _, _) => Some(KeySource::PassphraseFile(path.clone())),
            (_, Some(command), _) => Some(KeySource::PassphraseCommand(command.clone())),
            (_, _, Some(path)) => Some(KeySource::KeyFile(path.clone())),
            _ => None,
        };
        match (self.cipher, named) {
            (Cipher::None, _) if variable_set => bail!(
                "{PASSPHRASE_VARIABLE} is set but [repo] cipher = \"none\": add cipher = \"aes-256-gcm\" to [repo] (for a new repository), or unset {PASSPHRASE_VARIABLE}"
            ),
            (Cipher::None, _) => Ok(None),
            (Cipher::Aes256Gcm, Some(_)) if variable_set => {
                let key = self.named_key_sources()[0];
                bail!(
                    "{PASSPHRASE_VARIABLE} is set and [repo] names {key} too: unset {PASSPHRASE_VARIABLE}, or remove {key} from [repo]"
                )
            }
            (Cipher::Aes256Gcm, Some(source)) => Ok(Some(source)),
            (Cipher::Aes256Gcm, None) if variable_set => Ok(Some(KeySource::PassphraseEnv)),
            (Cipher::Aes256Gcm, None) if variable.is_some() => bail!(
                "{PASSPHRASE_VARIABLE} is empty: set it to the repository's passphrase, or name passphrase_file, passphrase_command or key_file in [repo]"
            ),
            (Cipher::Aes256Gcm, None) => bail!(
                "[repo] cipher = \"aes-256-gcm\" needs the repository's key: set passphrase_file, passphrase_command or key_file in [repo], or {PASSPHRASE_VARIABLE} in the environment"
            ),
        }
    }
}

pub(super) fn check_absolute(key: &str, path: &Path) -> anyhow::Result<()> {
    if path.as_os_str().is_empty() {
        bail!("repo.{key} is empty: name the file, as an absolute path");
    }
    if !path.is_absolute() {
        bail!(
            "repo.{key} '{}' must be an absolute path (archive_command runs in the data directory)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;

    fn repo(keys: &str) -> String {
        format!("[repo]\npath = \"/var/lib/tidemark\"\n{keys}\n")
    }

    fn refusal(text: &str) -> String {
        let message = format!("{:#}", Config::parse(text).unwrap_err());
        assert!(!message.contains('\n'), "{message:?} is not one line");
        message
    }

    #[test]
    fn every_mistake_in_the_file_is_one_line() {
        let cases = [
            (
                repo("cipher = \"aes-128\""),
                "line 3: unknown variant `aes-128`, expected `none` or `aes-256-gcm`",
            ),
            (
                repo(
                    "cipher = \"aes-256-gcm\"\npassphrase_file = \"/etc/p\"\nkey_file = \"/etc/k\"",
                ),
                "[repo] names more than one source of the repository's key (passphrase_file, key_file): keep one and remove the rest",
            ),
            (
                repo(
                    "cipher = \"aes-256-gcm\"\npassphrase_file = \"/etc/p\"\npassphrase_command = \"cat /etc/p\"",
                ),
                "[repo] names more than one source of the repository's key (passphrase_file, passphrase_command): keep one and remove the rest",
            ),
            (
                repo("passphrase_file = \"/etc/p\""),
                "repo.passphrase_file applies to an encrypted repository only, but cipher = \"none\": add cipher = \"aes-256-gcm\" to [repo] (for a new repository), or remove passphrase_file",
            ),
            (
                repo("cipher = \"none\"\nkey_file = \"/etc/k\""),
                "repo.key_file applies to an encrypted repository only, but cipher = \"none\"",
            ),
            (
                repo("passphrase_command = \"vault read\""),
                "repo.passphrase_command applies to an encrypted repository only",
            ),
            (
                repo("cipher = \"aes-256-gcm\"\npassphrase_file = \"repo.pass\""),
                "repo.passphrase_file 'repo.pass' must be an absolute path (archive_command runs in the data directory)",
            ),
            (
                repo("cipher = \"aes-256-gcm\"\nkey_file = \"\""),
                "repo.key_file is empty: name the file, as an absolute path",
            ),
            (
                repo("cipher = \"aes-256-gcm\"\npassphrase_command = \"  \""),
                "repo.passphrase_command is empty: give the command that prints the passphrase",
            ),
            (
                repo("cipher = \"aes-256-gcm\"\npassphrase = \"hunter2\""),
                "line 4: unknown key `passphrase`",
            ),
        ];
        for (text, expected) in cases {
            let message = refusal(&text);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn the_key_comes_from_exactly_one_source() {
        let config = |keys: &str| Config::parse(&repo(keys)).unwrap().repo;
        let variable = || Some(OsString::from("from the environment"));
        let plain = config("");
        assert_eq!(plain.cipher, Cipher::None);
        assert_eq!(plain.key_source_with(None).unwrap(), None);
        let file = config("cipher = \"aes-256-gcm\"\npassphrase_file = \"/etc/p\"");
        assert_eq!(
            file.key_source_with(None).unwrap(),
            Some(KeySource::PassphraseFile(PathBuf::from("/etc/p")))
        );
        let command = config("cipher = \"aes-256-gcm\"\npassphrase_command = \"vault read x\"");
        assert_eq!(
            command.key_source_with(None).unwrap(),
            Some(KeySource::PassphraseCommand("vault read x".to_owned()))
        );
        let key_file = config("cipher = \"aes-256-gcm\"\nkey_file = \"/etc/k\"");
        assert_eq!(
            key_file.key_source_with(None).unwrap(),
            Some(KeySource::KeyFile(PathBuf::from("/etc/k")))
        );
        let bare = config("cipher = \"aes-256-gcm\"");
        assert_eq!(
            bare.key_source_with(variable()).unwrap(),
            Some(KeySource::PassphraseEnv)
        );
        let refused = |repo: &RepoConfig, variable: Option<OsString>| {
            format!("{:#}", repo.key_source_with(variable).unwrap_err())
        };
        assert_eq!(
            refused(&bare, None),
            "[repo] cipher = \"aes-256-gcm\" needs the repository's key: set passphrase_file, passphrase_command or key_file in [repo], or TIDEMARK_PASSPHRASE in the environment"
        );
        assert_eq!(
            refused(&bare, Some(OsString::new())),
            "TIDEMARK_PASSPHRASE is empty: set it to the repository's passphrase, or name passphrase_file, passphrase_command or key_file in [repo]"
        );
        assert_eq!(
            refused(&key_file, variable()),
            "TIDEMARK_PASSPHRASE is set and [repo] names key_file too: unset TIDEMARK_PASSPHRASE, or remove key_file from [repo]"
        );
        assert_eq!(
            refused(&plain, variable()),
            "TIDEMARK_PASSPHRASE is set but [repo] cipher = \"none\": add cipher = \"aes-256-gcm\" to [repo] (for a new repository), or unset TIDEMARK_PASSPHRASE"
        );
        // Set but empty is not set, where it would not be the source anyway.
        assert_eq!(plain.key_source_with(Some(OsString::new())).unwrap(), None);
        assert!(
            file.key_source_with(Some(OsString::new()))
                .unwrap()
                .is_some()
        );
    }
}
