//! Tidemark run directly (as the current user) with a configuration file of a test's own: its
//! output when it succeeds, its one error line when it refuses (exit 1), its JSON. The
//! environment's credentials for Redis, S3 and Azure are removed, so only the file speaks.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use super::direct::{describe, direct};

/// The `tidemark` binary with `--config FILE`.
pub struct Configured {
    pub config: PathBuf,
}

impl Configured {
    pub fn run(&self, args: &[&str]) -> Output {
        let bin = super::binaries().tidemark;
        direct(bin.parent().unwrap(), "tidemark")
            .env_remove("REDISCLI_AUTH")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AZURE_STORAGE_KEY")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// The standard output of `args`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    /// The one line `args` fails with (exit 1).
    pub fn refused(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        stderr.trim_end().to_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}
