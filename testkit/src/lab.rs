//! A lab for the whole cycle: Tidemark's binaries copied where PostgreSQL's user can run them,
//! a configuration file and a repository in a shared temporary directory, and the commands
//! PostgreSQL is given to archive and restore through them.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, bail};

use crate::owner::{SharedTempDir, give_to_owner, owner_command, write_owned_file};
use crate::servers::postgres::PgBinaries;

/// Where the three Tidemark programs come from.
#[derive(Clone, Debug)]
pub struct TidemarkBinaries {
    pub tidemark: PathBuf,
    pub archive: PathBuf,
    pub restore: PathBuf,
}

impl TidemarkBinaries {
    /// The running `tidemark` executable in all three roles: it acts as `tidemark-archive` or
    /// `tidemark-restore` when called by those names.
    pub fn current_exe() -> anyhow::Result<TidemarkBinaries> {
        let exe = std::env::current_exe().context("find the running tidemark executable")?;
        Ok(TidemarkBinaries {
            tidemark: exe.clone(),
            archive: exe.clone(),
            restore: exe,
        })
    }
}

/// A temporary world for one scenario; everything in it is removed on drop.
pub struct Lab {
    pub pg: PgBinaries,
    /// Dropped last: clusters living in it must be stopped first.
    pub tmp: SharedTempDir,
    pub bin_dir: PathBuf,
    pub config_path: PathBuf,
    pub repo_path: PathBuf,
    pub stanza: String,
}

impl Lab {
    /// Creates the temporary directory and copies the binaries into it; its clusters are the
    /// default PostgreSQL ([`PgBinaries::locate`]).
    pub fn new(prefix: &str, binaries: &TidemarkBinaries) -> anyhow::Result<Lab> {
        Self::with_pg(prefix, binaries, PgBinaries::locate()?)
    }

    /// A lab whose clusters are PostgreSQL `major` ([`PgBinaries::for_major`]).
    pub fn for_major(prefix: &str, binaries: &TidemarkBinaries, major: u32) -> anyhow::Result<Lab> {
        Self::with_pg(prefix, binaries, PgBinaries::for_major(major)?)
    }

    /// A lab whose clusters run the programs `pg`.
    pub fn with_pg(
        prefix: &str,
        binaries: &TidemarkBinaries,
        pg: PgBinaries,
    ) -> anyhow::Result<Lab> {
        let tmp = SharedTempDir::new(prefix)?;
        let bin_dir = tmp.subdir("bin")?;
        for (source, name) in [
            (&binaries.tidemark, "tidemark"),
            (&binaries.archive, "tidemark-archive"),
            (&binaries.restore, "tidemark-restore"),
        ] {
            // Copied, not linked: root's home, where cargo builds, is closed to other users.
            let target = bin_dir.join(name);
            fs::copy(source, &target)
                .with_context(|| format!("copy {} to {}", source.display(), target.display()))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
        }
        let repo_path = tmp.path().join("repo");
        let config_path = tmp.path().join("tidemark.toml");
        Ok(Lab {
            pg,
            bin_dir,
            config_path,
            repo_path,
            stanza: "main".to_owned(),
            tmp,
        })
    }

    /// Writes the configuration file: the repository, and the stanza for `pgdata`.
    /// `repo_extra` is appended to the `[repo]` section as is.
    pub fn write_config(&self, pgdata: &Path, repo_extra: &str) -> anyhow::Result<()> {
        self.write_config_with_conninfo(pgdata, repo_extra, None)
    }

    /// Like [`Lab::write_config`], with the stanza's `conninfo` for backups.
    pub fn write_config_with_conninfo(
        &self,
        pgdata: &Path,
        repo_extra: &str,
        conninfo: Option<&str>,
    ) -> anyhow::Result<()> {
        let conninfo_line = conninfo
            .map(|c| {
                format!(
                    "conninfo = \"{}\"\n",
                    c.replace('\\', "\\\\").replace('"', "\\\"")
                )
            })
            .unwrap_or_default();
        let text = format!(
            "[repo]\npath = \"{}\"\n{repo_extra}\n[stanza.{}]\npgdata = \"{}\"\n{conninfo_line}",
            self.repo_path.display(),
            self.stanza,
            pgdata.display()
        );
        fs::write(&self.config_path, text)
            .with_context(|| format!("write {}", self.config_path.display()))?;
        give_to_owner(&self.config_path)
    }

    /// Writes the configuration file with `repo_section` as the whole `[repo]` section (a
    /// bucket's, say) and the stanza for `pgdata` reached through `conninfo`. The lines may hold
    /// keys, so the file is readable by its owner only, as Tidemark demands then.
    pub fn write_config_with_repo_section(
        &self,
        pgdata: &Path,
        repo_section: &str,
        conninfo: &str,
    ) -> anyhow::Result<()> {
        let text = format!(
            "[repo]\n{repo_section}\n[stanza.{}]\npgdata = \"{}\"\nconninfo = \"{conninfo}\"\n",
            self.stanza,
            pgdata.display()
        );
        write_owned_file(&self.config_path, &text, 0o600)
    }

    /// `archive_command` for postgresql.conf.
    pub fn archive_command(&self) -> String {
        self.command_line("tidemark-archive", "%p")
    }

    /// `restore_command` for postgresql.conf.
    pub fn restore_command(&self) -> String {
        self.command_line("tidemark-restore", "%f %p")
    }

    /// The lab's `program` with its configuration and stanza, then `placeholders`.
    fn command_line(&self, program: &str, placeholders: &str) -> String {
        format!(
            "{} --config {} --stanza {} {placeholders}",
            self.bin_dir.join(program).display(),
            self.config_path.display(),
            self.stanza
        )
    }

    /// Runs one of the lab's Tidemark programs as the cluster owner, as PostgreSQL would.
    pub fn run(&self, program: &str, args: &[&OsStr]) -> anyhow::Result<Output> {
        owner_command(&self.bin_dir.join(program), self.tmp.path())
            .args(args)
            .env_remove("TIDEMARK_CONFIG")
            .env_remove("TIDEMARK_STANZA")
            .output()
            .with_context(|| format!("run {program}"))
    }

    /// Runs `tidemark --config <lab config> <args>` and fails unless it succeeds.
    pub fn tidemark(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full: Vec<&OsStr> = vec!["--config".as_ref(), self.config_path.as_os_str()];
        full.extend(args.iter().map(|a| OsStr::new(*a)));
        let output = self.run("tidemark", &full)?;
        if !output.status.success() {
            bail!(
                "tidemark {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
