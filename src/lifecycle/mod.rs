//! Whole-repository operations over stanzas: the report of what a stanza holds (`tidemark
//! info`), retention (`tidemark expire`) and verification (`tidemark verify`). Built on `repo`, `planning` and `archive`; it knows
//! nothing of the command line.
//!
//! * `expire/` — applies the retention policy and collects garbage;
//! * `report.rs` — what the report holds, collected from the repository (and the data directory,
//!   for the archive lag); serialized as it is for JSON;
//! * `report_text.rs` — the same report as text for people;
//! * `report_sources.rs` — the sources beside the stanza in that report;
//! * `verify/` — every object read and checked, and what they say together: chunk sets, file
//!   CRCs, WAL continuity, history files, orphans.

pub mod expire;
pub mod report;
pub mod report_sources;
pub mod report_text;
pub mod verify;

pub use report::{StanzaInfo, collect};
pub use report_text::render_text;
