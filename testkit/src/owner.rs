//! Running programs as the cluster owner: PostgreSQL refuses to run as root, so when we are root
//! every server program runs as the `postgres` OS user through `runuser`, and the files and
//! directories it uses are handed to that user. Also the temporary directory that user shares.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The OS user that owns clusters when we run as root.
const OWNER_WHEN_ROOT: &str = "postgres";

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid/gid of the `postgres` user, looked up once.
fn owner_ids() -> Result<(u32, u32)> {
    static IDS: OnceLock<std::result::Result<(u32, u32), String>> = OnceLock::new();
    IDS.get_or_init(|| {
        let lookup = |flag: &str| -> std::result::Result<u32, String> {
            let output = Command::new("id")
                .args([flag, OWNER_WHEN_ROOT])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("run `id {flag} {OWNER_WHEN_ROOT}`: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "`id {flag} {OWNER_WHEN_ROOT}` failed ({}): {}; PostgreSQL refuses to run \
                     as root, so the `{OWNER_WHEN_ROOT}` user must exist",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            let text = String::from_utf8_lossy(&output.stdout);
            text.trim().parse().map_err(|e| {
                format!("parse output of `id {flag} {OWNER_WHEN_ROOT}` ({text:?}): {e}")
            })
        };
        Ok((lookup("-u")?, lookup("-g")?))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Returns a `Command` that runs `program` as the cluster owner with `cwd` as its
/// working directory (which the owner must be able to enter).
pub fn owner_command(program: &Path, cwd: &Path) -> Command {
    let mut command = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", OWNER_WHEN_ROOT, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // A developer's PGHOST, PGPORT, PGOPTIONS, PGDATA... must not redirect or alter
    // what we run; every call passes its target explicitly.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    command.current_dir(cwd).stdin(Stdio::null());
    command
}

/// Runs `program args` as the cluster owner in `cwd` and returns its stdout; fails,
/// with the exit status and stderr, if it exits non-zero.
pub fn run_as_owner(program: &Path, args: &[&OsStr], cwd: &Path) -> Result<String> {
    let shown = || {
        let mut s = program.display().to_string();
        for arg in args {
            s.push(' ');
            s.push_str(&arg.to_string_lossy());
        }
        s
    };
    let output = owner_command(program, cwd)
        .args(args)
        .output()
        .with_context(|| format!("spawn `{}`", shown()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Some programs (pg_ctl) report failures on stdout only.
        let detail = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        bail!("`{}` failed ({}): {}", shown(), output.status, detail);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Chowns `path` (not recursively, not following a symlink) to the cluster owner;
/// does nothing when not root, since then we already are the owner.
pub fn give_to_owner(path: &Path) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let (uid, gid) = owner_ids()?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {} to {OWNER_WHEN_ROOT}", path.display()))
}

/// Writes `text` to `path` with `mode` (0600 when it holds a secret), owned by the cluster
/// owner.
pub fn write_owned_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("set mode {mode:o} on {}", path.display()))?;
    give_to_owner(path)
}

pub fn give_to_owner_recursively(path: &Path) -> Result<()> {
    give_to_owner(path)?;
    let meta = fs::symlink_metadata(path).with_context(|| format!("inspect {}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("list {}", path.display()))? {
            let entry = entry.with_context(|| format!("list {}", path.display()))?;
            give_to_owner_recursively(&entry.path())?;
        }
    }
    Ok(())
}

pub(crate) fn make_owned_dir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir(path).with_context(|| format!("create directory {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("set mode {mode:o} on {}", path.display()))?;
    give_to_owner(path)
}

/// A temporary directory that the cluster owner can read, write and enter; deleted
/// on drop unless `TIDEMARK_KEEP_TMP` is set.
#[derive(Debug)]
pub struct SharedTempDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl SharedTempDir {
    /// Creates the directory under `/tmp`, whose short path keeps socket paths under
    /// the ~107-byte limit.
    pub fn new(prefix: &str) -> Result<SharedTempDir> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .context("create temporary directory in /tmp")?;
        let path = dir.path().to_path_buf();
        // tempfile makes it 0700 for us; the owner (maybe another user) must get in.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("set mode 755 on {}", path.display()))?;
        give_to_owner(&path)?;
        Ok(SharedTempDir {
            dir: Some(dir),
            path,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates subdirectory `name` (mode 0755) owned by the cluster owner and returns
    /// its path.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        make_owned_dir(&path, 0o755)?;
        Ok(path)
    }
}

impl Drop for SharedTempDir {
    fn drop(&mut self) {
        if std::env::var_os("TIDEMARK_KEEP_TMP").is_some()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("TIDEMARK_KEEP_TMP is set: keeping {}", kept.display());
        }
    }
}
