//! A repository of its own that the binaries use directly as the current user (not through
//! `runuser`), so that a signal, a tracer or an injected fault reaches the Tidemark process
//! itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The stanza every direct repository has.
pub const STANZA: &str = "main";

/// Runs one of the lab's binaries directly as the current user (not through `runuser`), so
/// that a kill reaches the Tidemark process itself.
pub fn direct(bin_dir: &Path, program: &str) -> Command {
    let mut command = Command::new(bin_dir.join(program));
    command
        .env_remove("TIDEMARK_CONFIG")
        .env_remove("TIDEMARK_STANZA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A run's status and output, for failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {:?}; stderr: {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A fresh repository of its own (with its configuration file) whose stanza is created, all
/// owned by the current user, who can therefore push to it directly.
pub struct DirectRepo {
    /// The directory holding the configuration file and the repository.
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The repository root.
    pub path: PathBuf,
}

impl DirectRepo {
    pub fn create(bin_dir: &Path, pgdata: &Path, dir: PathBuf) -> DirectRepo {
        fs::create_dir(&dir).unwrap();
        let path = dir.join("repo");
        let config = dir.join("tidemark.toml");
        fs::write(
            &config,
            format!(
                "[repo]\npath = \"{}\"\n\n[stanza.{STANZA}]\npgdata = \"{}\"\n",
                path.display(),
                pgdata.display()
            ),
        )
        .unwrap();
        let output = direct(bin_dir, "tidemark")
            .arg("--config")
            .arg(&config)
            .arg("stanza-create")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "stanza-create: {}",
            describe(&output)
        );
        DirectRepo { dir, config, path }
    }

    pub fn push(&self, bin_dir: &Path, segment: &Path) -> Command {
        let mut command = direct(bin_dir, "tidemark-archive");
        command
            .arg("--config")
            .arg(&self.config)
            .args(["--stanza", STANZA])
            .arg(segment);
        command
    }

    /// Where the object of segment `name` lives.
    pub fn object_path(&self, name: &str) -> PathBuf {
        self.path
            .join(STANZA)
            .join("wal")
            .join(&name[..16])
            .join(name)
    }

    /// Restores `name` into a new file beside the repository and returns its bytes, or how the
    /// restore failed.
    pub fn restore(&self, bin_dir: &Path, name: &str, attempt: &str) -> Result<Vec<u8>, String> {
        let dest = self.dir.join(format!("restored-{attempt}"));
        let output = direct(bin_dir, "tidemark-restore")
            .arg("--config")
            .arg(&self.config)
            .args(["--stanza", STANZA, name])
            .arg(&dest)
            .output()
            .unwrap();
        if !output.status.success() {
            assert!(
                !dest.exists(),
                "a failed restore created {}",
                dest.display()
            );
            return Err(describe(&output));
        }
        let bytes = fs::read(&dest).unwrap();
        fs::remove_file(&dest).unwrap();
        Ok(bytes)
    }

    /// Every file under `<repo>/main/wal`: (objects, temporary files named `.…`).
    pub fn wal_files(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let (mut objects, mut temps) = (Vec::new(), Vec::new());
        let mut pending = vec![self.path.join(STANZA).join("wal")];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry.unwrap();
                let path = entry.path();
                if entry.file_type().unwrap().is_dir() {
                    pending.push(path);
                } else if entry.file_name().to_string_lossy().starts_with('.') {
                    temps.push(path);
                } else {
                    objects.push(path);
                }
            }
        }
        (objects, temps)
    }
}
