//! The configuration file: TOML, found by `--config`, else `TIDEMARK_CONFIG`, else
//! `/etc/tidemark/tidemark.toml`. Every key is known; an unknown key is refused by name, so a
//! typo never silently falls back to a default.
//!
//! config/ sits above every other module: it describes the repository's backend and
//! `storage::open` builds it. The files, each importing only those listed before it:
//! * `schema.rs` — the sections and keys, as serde types;
//! * `retention.rs` — `[retention]` and `[stanza.NAME.retention]` checked, and made a policy;
//! * `check.rs` — what the types cannot say, one line per mistake;
//! * `keys.rs` — the `[repo]` cipher and the one source of its key;
//! * `azure_keys.rs` — `[repo]` of type "azure": names as Azure takes them, one source of access;
//! * `load.rs` — which file, reading it, and TOML errors made one line;
//! * `stanza.rs` — which file and which `[stanza.NAME]` in it a command works on (`--config`,
//!   `--stanza`);
//! * `backend.rs` — the `[repo]` section as a backend description, and the repository;
//! * `sources.rs` — `[source.NAME]`, checked when a command uses the source.

mod azure_keys;
mod backend;
mod check;
mod keys;
mod load;
mod retention;
mod s3_keys;
mod schema;
mod sources;
mod stanza;

pub use load::{DEFAULT_CONFIG_PATH, config_path};
pub use schema::{
    ArchiveConfig, Cipher, Config, CredentialSource, DEFAULT_PREFETCH, RepoConfig, RepoType,
    RestoreConfig, RetentionConfig, StanzaConfig,
};
pub use sources::{
    AzureTableSettings, BucketListing, BucketSettings, RedisSettings, SOURCE_TYPES, SourceKind,
    SourceSettings, TableChoice, TableSigning, is_table_name,
};
pub use stanza::{ConfigChoice, Selected};

#[cfg(test)]
mod tests;
