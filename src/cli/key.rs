//! `tidemark key list|rotate|change-passphrase|retire`: the keys of an encrypted repository.
//! Never prints key material; a new secret never comes from the command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use super::info::OutputFormat;
use super::tty_prompt::ask_new_passphrase;
use tidemark::config::{ConfigChoice, Selected};
use tidemark::program::{self, Finished};
use tidemark::repo::keys::{
    KeyChange, KeySource, Keyring, MAX_PASSPHRASE_LEN, RepoKeys, Secret, parse_key_file,
    passphrase, read_secret_file,
};
use tidemark::storage::{self, Storage};

/// The environment variable `change-passphrase` takes the new passphrase from.
pub const NEW_PASSPHRASE_VARIABLE: &str = "TIDEMARK_NEW_PASSPHRASE";

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// List the repository's data keys: ids, when each was created and superseded, which is current, which are retired
    ///
    /// Never prints key material. The repository id is the one each stanza's stanza.json names.
    #[command(verbatim_doc_comment)]
    List {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Add a new data key and make it current: new objects are sealed with it, old ones stay readable
    ///
    /// Writes the next keyring generation (one small object); no object is rewritten. Running
    /// archivers and restores take the new key within a minute; each new process at once.
    #[command(verbatim_doc_comment)]
    Rotate,
    /// Replace the passphrase (or key file) that opens the keyring; no data is rewritten
    ///
    /// The new passphrase comes from --new-passphrase-file, else TIDEMARK_NEW_PASSPHRASE, else
    /// it is asked for twice on the terminal; for a repository opened by a key file, the new
    /// key comes from --new-key-file. Writes the next keyring generation with one slot for the
    /// new secret, then deletes the older generations: the old secret no longer opens it. Then
    /// put the new secret where [repo] takes it from on every host (running processes go on).
    #[command(verbatim_doc_comment)]
    ChangePassphrase {
        /// File holding the new passphrase (mode 0600; one trailing newline is dropped)
        #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
        new_passphrase_file: Option<PathBuf>,
        /// File holding the new key: 64 hex digits, as `openssl rand -hex 32` prints (mode 0600)
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
    /// Remove a data key that nothing uses any more
    ///
    /// Refused while it is current, within 10 minutes of another key becoming current (a
    /// running writer may still seal with it), or while any object of any stanza of the
    /// repository names it: every object's header is read to know (96 bytes each), and the
    /// refusal says how many objects and the first one. Expire those first, or keep the key.
    /// Then writes the next keyring generation without the key: nothing it sealed can be
    /// opened any more.
    #[command(verbatim_doc_comment)]
    Retire {
        /// The data key's id, as `tidemark key list` shows it
        #[arg(value_name = "ID")]
        id: u32,
    },
}

pub fn run_key(choice: &ConfigChoice, command: KeyCommand) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let keys = repository_keys(&selected)?;
    match command {
        KeyCommand::List { output } => list(&keys, output),
        KeyCommand::Rotate => {
            let change = keys.rotate()?;
            report(&change)?;
            program::print_stdout(&format!(
                "data key {} is now current (keyring generation {})\n",
                change.keyring.current().id(),
                change.keyring.generation()
            ))?;
            Ok(Finished::Success)
        }
        KeyCommand::Retire { id } => retire(&selected, &keys, id),
        KeyCommand::ChangePassphrase {
            new_passphrase_file,
            new_key_file,
        } => {
            let new = new_secret(
                keys.source(),
                new_passphrase_file.as_deref(),
                new_key_file.as_deref(),
            )?;
            let change = keys.change_secret(&new)?;
            report(&change)?;
            program::print_stdout(&format!(
                "repository {}'s keyring (generation {}) now opens with the new {} only: put it where [repo] takes it from on every host\n",
                change.keyring.repository_id(),
                change.keyring.generation(),
                match new {
                    Secret::Key(_) => "key",
                    Secret::Passphrase(_) => "passphrase",
                }
            ))?;
            Ok(Finished::Success)
        }
    }
}

/// `tidemark key retire ID`: the usage scan runs between reading the keyring and writing its
/// next generation, so a key operation meanwhile makes the put lose and nothing is written.
fn retire(selected: &Selected, keys: &RepoKeys, id: u32) -> anyhow::Result<Finished> {
    let repo = selected.config.open_repository()?;
    let change = keys.retire(id, chrono::Utc::now(), |_| {
        let stanzas = keys.registered_stanzas()?;
        let usage = repo
            .objects_by_key(&stanzas)
            .with_context(|| format!("read which data key each object names, to retire key {id}"))?;
        if let (Some(count), Some(first)) = (usage.by_key.get(&id), usage.first.get(&id)) {
            let objects = if *count == 1 { "object" } else { "objects" };
            bail!(
                "key {id} still encrypts {count} {objects} (first: {first}): expire them first; nothing changed"
            );
        }
        Ok(())
    })?;
    report(&change)?;
    program::print_stdout(&format!(
        "data key {id} is retired (keyring generation {})\n",
        change.keyring.generation()
    ))?;
    Ok(Finished::Success)
}

/// The keys of the configured repository; refused for an unencrypted one.
fn repository_keys(selected: &Selected) -> anyhow::Result<RepoKeys> {
    let source = selected.config.repo.key_source()?.with_context(|| {
        format!(
            "config file {} has [repo] cipher = \"none\": `tidemark key` works on an encrypted repository only",
            selected.config_path.display()
        )
    })?;
    let storage: Arc<dyn Storage> = Arc::from(storage::open(selected.config.repo.backend()?)?);
    Ok(RepoKeys::new(storage, source))
}

/// Logs what the operation could not clean up.
fn report(change: &KeyChange) -> anyhow::Result<()> {
    for warning in &change.warnings {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// The new secret: `--new-key-file`, else `--new-passphrase-file`, else
/// `TIDEMARK_NEW_PASSPHRASE`, else the terminal — never an argument.
fn new_secret(
    source: &KeySource,
    passphrase_file: Option<&Path>,
    key_file: Option<&Path>,
) -> anyhow::Result<Secret> {
    if let Some(path) = key_file {
        let bytes = read_secret_file(path, "--new-key-file", 4096)?;
        return parse_key_file(&bytes)
            .map(Secret::Key)
            .with_context(|| format!("--new-key-file {}", path.display()));
    }
    if let Some(path) = passphrase_file {
        let bytes = read_secret_file(path, "--new-passphrase-file", MAX_PASSPHRASE_LEN)?;
        return passphrase(bytes, &format!("--new-passphrase-file {}", path.display()));
    }
    if let Some(value) = std::env::var_os(NEW_PASSPHRASE_VARIABLE) {
        let bytes = Zeroizing::new(value.into_encoded_bytes());
        if bytes.len() > MAX_PASSPHRASE_LEN {
            bail!(
                "{NEW_PASSPHRASE_VARIABLE} is longer than {MAX_PASSPHRASE_LEN} bytes: set it to the passphrase alone"
            );
        }
        return passphrase(bytes, NEW_PASSPHRASE_VARIABLE);
    }
    if let KeySource::KeyFile(path) = source {
        bail!(
            "this repository is opened by key_file {}: give the new key with --new-key-file FILE (64 hex digits, mode 0600)",
            path.display()
        );
    }
    Ok(Secret::Passphrase(ask_new_passphrase()?))
}

/// `tidemark key list`.
fn list(keys: &RepoKeys, format: OutputFormat) -> anyhow::Result<Finished> {
    let keyring = keys.open_newest()?;
    let text = match format {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&list_json(&keyring))?),
        OutputFormat::Text => list_text(&keyring),
    };
    program::print_stdout(&text)?;
    Ok(Finished::Success)
}

fn list_json(keyring: &Keyring) -> serde_json::Value {
    let document = keyring.document();
    serde_json::json!({
        "repository": keyring.repository_id(),
        "generation": keyring.generation(),
        "current": document.current,
        "keys": document.keys.iter().map(|k| serde_json::json!({
            "id": k.id,
            "created": k.created,
            "superseded": k.superseded,
        })).collect::<Vec<_>>(),
        "retired": document.retired.iter().map(|r| r.id).collect::<Vec<_>>(),
    })
}

fn list_text(keyring: &Keyring) -> String {
    let document = keyring.document();
    let mut text = format!(
        "repository {} (keyring generation {})\n",
        keyring.repository_id(),
        keyring.generation()
    );
    for key in &document.keys {
        let state = match &key.superseded {
            None => "current".to_owned(),
            Some(at) => format!("superseded {at}"),
        };
        text.push_str(&format!(
            "data key {}: created {}, {state}\n",
            key.id, key.created
        ));
    }
    for retired in &document.retired {
        text.push_str(&format!(
            "data key {}: retired {}\n",
            retired.id, retired.retired
        ));
    }
    text
}
