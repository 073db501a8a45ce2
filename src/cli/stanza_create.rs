//! `tidemark stanza-create`: bind a stanza to the cluster in its data directory.

use tidemark::config::ConfigChoice;
use tidemark::datadir;
use tidemark::program::{self, Finished};
use tidemark::repo::stanza::STANZA_FORMAT;
use tidemark::repo::{ChunkHash, StanzaCreated, StanzaIdentity};

pub fn stanza_create(choice: &ConfigChoice) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let name = &selected.stanza_name;
    let pgdata = selected.required("pgdata", "\"/path/to/data\"", |s| s.pgdata.as_ref())?;
    let cluster = datadir::read_identity(pgdata)?;
    let identity = StanzaIdentity {
        format: STANZA_FORMAT,
        stanza: name.clone(),
        system_id: cluster.system_id,
        pg_version: cluster.version.number(),
        segment_size: cluster.segment_size.bytes(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cipher: None,
        repository: None,
        chunk_hash: ChunkHash::NEW.identity_field(),
    };
    let repo = selected.config.open_repository()?;
    let described = format!(
        "system identifier {}, PostgreSQL {}, {} MiB WAL segments",
        identity.system_id,
        identity.pg_version,
        identity.segment_size >> 20
    );
    let message = match repo.create_stanza(&identity)? {
        StanzaCreated::Created => format!(
            "stanza '{name}' created in {} for {described}\n",
            repo.storage().location()
        ),
        StanzaCreated::AlreadyExisted => format!(
            "stanza '{name}' already exists in {} for this cluster ({described}); nothing changed\n",
            repo.storage().location()
        ),
    };
    program::print_stdout(&message)?;
    Ok(Finished::Success)
}
