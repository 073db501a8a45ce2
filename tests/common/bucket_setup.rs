//! A repository and a configuration naming the bucket source `uploads` (bucket `src` of the
//! test's `s3s-fs`), plain or encrypted, with Tidemark run on it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;

use super::configured::Configured;
use super::s3::{ACCESS_KEY, SECRET_KEY};

/// A repository and a configuration naming source `uploads`: bucket `src` on `endpoint`.
pub struct BucketSetup {
    pub dir: tempfile::TempDir,
    tidemark: Configured,
}

impl std::ops::Deref for BucketSetup {
    type Target = Configured;

    fn deref(&self) -> &Configured {
        &self.tidemark
    }
}

impl BucketSetup {
    pub fn new(endpoint: &str, extra: &str) -> BucketSetup {
        let dir = tempfile::Builder::new()
            .prefix("tm-bucket-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("tidemark.toml");
        let text = format!(
            "[repo]\npath = \"{}\"\n\n[source.uploads]\ntype = \"bucket\"\nbucket = \"src\"\nendpoint = \"{endpoint}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n{extra}",
            dir.path().join("repo").display()
        );
        fs::write(&config, text).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
        BucketSetup {
            dir,
            tidemark: Configured { config },
        }
    }

    /// An encrypted repository instead: `[repo]` with a key file.
    pub fn encrypted(endpoint: &str) -> BucketSetup {
        let setup = BucketSetup::new(endpoint, "");
        let key_path = setup.dir.path().join("repo.key");
        let key: String = (0..32u32)
            .map(|i| format!("{:02x}", (i * 53 + 7) % 256))
            .collect();
        fs::write(&key_path, format!("{key}\n")).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        let text = fs::read_to_string(&setup.config).unwrap().replacen(
            "\n\n[source.uploads]",
            &format!(
                "\ncipher = \"aes-256-gcm\"\nkey_file = \"{}\"\n\n[source.uploads]",
                key_path.display()
            ),
            1,
        );
        fs::write(&setup.config, text).unwrap();
        setup
    }

    /// The source's snapshots, as `source list --output json` shows them.
    pub fn snapshots(&self) -> Vec<Value> {
        let listed = self.json(&["source", "list", "uploads", "--output", "json"]);
        listed.as_array().unwrap().clone()
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
}
