//! `tidemark check`: is everything in place to archive? The configuration loads, the repository
//! answers and takes, refuses a second time, returns and deletes a probe object, the stanza
//! exists, in an encrypted repository the key opens the stanza's keyring, and the data
//! directory (when configured) holds the stanza's cluster.

use tidemark::config::ConfigChoice;
use tidemark::datadir;
use tidemark::program::{self, Finished};
use tidemark::repo::layout;
use tidemark::storage::probe::probe;

pub fn check(choice: &ConfigChoice) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let name = &selected.stanza_name;
    program::print_stdout(&format!(
        "ok: config file {} (stanza '{name}')\n",
        selected.config_path.display()
    ))?;
    let repo = selected.config.open_repository()?;
    let location = repo.storage().location();
    probe(repo.storage(), &layout::check_probe())?;
    program::print_stdout(&format!(
        "ok: repository {location} answers; a probe object was written, refused a second time (create-only), read back exactly, deleted, and then not found\n"
    ))?;
    let stanza = repo.open_stanza(name)?;
    let identity = stanza.identity();
    let described = format!(
        "system identifier {}, PostgreSQL {}, {} MiB WAL segments",
        identity.system_id,
        identity.pg_version,
        identity.segment_size >> 20
    );
    program::print_stdout(&format!("ok: stanza '{name}' exists for {described}\n"))?;
    if let Some(key_id) = stanza.check_keys()? {
        program::print_stdout(&format!(
            "ok: the repository's key opens keyring {}; new objects are sealed with data key {key_id}\n",
            identity.repository.as_deref().unwrap_or_default()
        ))?;
    }
    if let Some(pgdata) = &selected.stanza.pgdata {
        let cluster = datadir::read_identity(pgdata)?;
        let same = (
            cluster.system_id,
            cluster.version.number(),
            cluster.segment_size.bytes(),
        ) == (
            identity.system_id,
            identity.pg_version,
            identity.segment_size,
        );
        if !same {
            anyhow::bail!(
                "the cluster in {} (system identifier {}, PostgreSQL {}, {} MiB WAL segments) is not the one stanza '{name}' serves ({described}): fix pgdata, or use another stanza for this cluster",
                pgdata.display(),
                cluster.system_id,
                cluster.version.number(),
                cluster.segment_size.bytes() >> 20
            );
        }
        program::print_stdout(&format!(
            "ok: data directory {} holds that cluster\n",
            pgdata.display()
        ))?;
    }
    Ok(Finished::Success)
}
