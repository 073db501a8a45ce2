//! Where an Azure store's access comes from: the storage account's key (from a file of mode
//! 0600 or `AZURE_STORAGE_KEY`, read by `config/`), a SAS token (from a file), or the managed
//! identity of the Azure machine it runs on. Exactly one is named; nothing is probed.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The one source of an Azure store's access.
#[derive(Clone)]
pub enum AzureCredentials {
    /// The storage account's key, decoded: requests are signed with it (Shared Key).
    AccountKey(Zeroizing<Vec<u8>>),
    /// A shared access signature, the query string that grants access (`sv=…&sig=…`), appended
    /// to every request's URL.
    Sas(Zeroizing<String>),
    /// An Entra ID token for the machine's managed identity, from the instance metadata
    /// service; `client_id` picks a user-assigned identity.
    ManagedIdentity { client_id: Option<String> },
}

impl AzureCredentials {
    /// The account key as the portal and `az storage account keys list` show it (base64); one
    /// trailing newline is dropped. The error says what is wrong, for the caller to prefix
    /// with where the key came from.
    pub fn account_key(text: &str) -> Result<AzureCredentials, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty: write the storage account's key in it".to_owned());
        }
        match STANDARD.decode(text) {
            Ok(key) if !key.is_empty() => Ok(AzureCredentials::AccountKey(Zeroizing::new(key))),
            _ => Err(
                "is not a storage account key (base64, as `az storage account keys list` prints it)"
                    .to_owned(),
            ),
        }
    }

    /// A SAS token as the portal or `az storage container generate-sas` print it, with or
    /// without its leading `?`.
    pub fn sas(text: &str) -> Result<AzureCredentials, String> {
        let token = text.trim().trim_start_matches('?');
        if token.is_empty() {
            return Err("is empty: write the SAS token in it".to_owned());
        }
        if !token.split('&').any(|pair| pair.starts_with("sig=")) {
            return Err(
                "holds no SAS token (no sig=…): write the token `az storage container generate-sas` prints"
                    .to_owned(),
            );
        }
        Ok(AzureCredentials::Sas(Zeroizing::new(token.to_owned())))
    }
}

/// Never shows a secret.
impl fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureCredentials::AccountKey(_) => f.write_str("AccountKey(..)"),
            AzureCredentials::Sas(_) => f.write_str("Sas(..)"),
            AzureCredentials::ManagedIdentity { client_id } => {
                write!(f, "ManagedIdentity {{ client_id: {client_id:?} }}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tokens_are_read_as_azure_prints_them() {
        let key = AzureCredentials::account_key("AAEC\n").unwrap();
        assert!(matches!(&key, AzureCredentials::AccountKey(k) if k[..] == [0, 1, 2]));
        assert_eq!(format!("{key:?}"), "AccountKey(..)");
        assert!(
            AzureCredentials::account_key("not base64!")
                .unwrap_err()
                .starts_with("is not a storage account key")
        );
        assert!(AzureCredentials::account_key(" \n").is_err());
        let sas = AzureCredentials::sas("?sv=2022-11-02&sp=racwdl&sig=abc%3D\n").unwrap();
        assert!(
            matches!(&sas, AzureCredentials::Sas(t) if t.as_str() == "sv=2022-11-02&sp=racwdl&sig=abc%3D")
        );
        assert_eq!(format!("{sas:?}"), "Sas(..)");
        assert!(AzureCredentials::sas("sv=2022-11-02").is_err());
    }
}
