//! `[repo]` of type "azure": the account, container and prefix as Azure names them, and the one
//! source of access — `account_key_file` or `sas_token_file` (files of mode 0600),
//! `use_managed_identity = true`, else `AZURE_STORAGE_KEY` — checked, then read.

use std::path::Path;

use anyhow::{anyhow, bail};

use super::keys::check_absolute;
use super::schema::RepoConfig;
use crate::repo::keys::read_secret_file;
use crate::storage::azure::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::storage::{AzureCredentials, ObjectKey};

/// The environment variable an account key may come from, as the Azure CLI names it.
pub const ACCOUNT_KEY_VARIABLE: &str = "AZURE_STORAGE_KEY";

/// The longest key or token file read: an account key is 88 characters, a SAS token a few
/// hundred.
const SECRET_FILE_LIMIT: usize = 8192;

impl RepoConfig {
    /// What the file alone can say is wrong with a `type = "azure"` section.
    pub(super) fn check_azure_settings(&self) -> anyhow::Result<()> {
        let Some(account) = self.account.as_deref() else {
            bail!(
                "[repo] type = \"azure\" needs account = \"NAME\" (the storage account; Azurite's is \"devstoreaccount1\")"
            );
        };
        if !(3..=24).contains(&account.len())
            || !account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            bail!(
                "repo.account '{account}' is not a storage account name: 3 to 24 lowercase letters and digits"
            );
        }
        let Some(container) = self.container.as_deref() else {
            bail!("[repo] type = \"azure\" needs container = \"NAME\"");
        };
        if !is_container_name(container) {
            bail!(
                "repo.container '{container}' is not a container name: 3 to 63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
            );
        }
        if let Some(prefix) = &self.prefix
            && ObjectKey::new(prefix.as_str()).is_err()
        {
            bail!(
                "repo.prefix '{prefix}' must be names of letters, digits, '.', '_' and '-' joined by '/' (none empty or starting with '.')"
            );
        }
        if let Some(size) = self.multipart_part_size
            && !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size.0)
        {
            bail!(
                "repo.multipart_part_size {size} is out of range: Azure takes blocks of \"1MiB\" to \"4000MiB\""
            );
        }
        self.check_azure_access()
    }

    /// Absolute files, a client id only with a managed identity, and at most one source.
    fn check_azure_access(&self) -> anyhow::Result<()> {
        for (key, path) in [
            ("account_key_file", &self.account_key_file),
            ("sas_token_file", &self.sas_token_file),
        ] {
            if let Some(path) = path {
                check_absolute(key, path)?;
            }
        }
        if self.managed_identity_client_id.is_some() && !self.use_managed_identity {
            bail!(
                "repo.managed_identity_client_id applies with use_managed_identity = true only: add it, or remove managed_identity_client_id"
            );
        }
        let sources: Vec<&str> = [
            ("account_key_file", self.account_key_file.is_some()),
            ("sas_token_file", self.sas_token_file.is_some()),
            ("use_managed_identity", self.use_managed_identity),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if sources.len() > 1 {
            bail!(
                "[repo] names more than one source of Azure access ({}): keep one and remove the rest",
                sources.join(", ")
            );
        }
        Ok(())
    }

    /// The access the section names, read now (a key file others can read is refused), else
    /// the account key in `AZURE_STORAGE_KEY`.
    pub(super) fn azure_credentials(&self) -> anyhow::Result<AzureCredentials> {
        if let Some(path) = &self.account_key_file {
            let text = read_text(path, "repo.account_key_file")?;
            return AzureCredentials::account_key(&text)
                .map_err(|e| anyhow!("repo.account_key_file {} {e}", path.display()));
        }
        if let Some(path) = &self.sas_token_file {
            let text = read_text(path, "repo.sas_token_file")?;
            return AzureCredentials::sas(&text)
                .map_err(|e| anyhow!("repo.sas_token_file {} {e}", path.display()));
        }
        if self.use_managed_identity {
            return Ok(AzureCredentials::ManagedIdentity {
                client_id: self.managed_identity_client_id.clone(),
            });
        }
        match std::env::var(ACCOUNT_KEY_VARIABLE) {
            Ok(key) if !key.is_empty() => AzureCredentials::account_key(&key)
                .map_err(|e| anyhow!("{ACCOUNT_KEY_VARIABLE} {e}")),
            _ => bail!(
                "no Azure credentials: in [repo] set account_key_file (a file of mode 0600 holding the account key), sas_token_file or use_managed_identity = true; or set {ACCOUNT_KEY_VARIABLE}"
            ),
        }
    }
}

/// A secret file's text, by the secret-file rule (mode 0600 or stricter, ours or root's).
fn read_text(path: &Path, what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let bytes = read_secret_file(path, what, SECRET_FILE_LIMIT)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow!("{what} {} is not text: name the right file", path.display()))?;
    Ok(zeroize::Zeroizing::new(text.to_owned()))
}

/// Azure's rule for container names.
fn is_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_azures_rule() {
        for good in ["pg-archive", "abc", "a1b2-c3"] {
            assert!(is_container_name(good), "{good}");
        }
        for bad in [
            "ab",
            "Archive",
            "-pg",
            "pg-",
            "pg--archive",
            "pg_archive",
            &"a".repeat(64),
        ] {
            assert!(!is_container_name(bad), "{bad}");
        }
    }
}
