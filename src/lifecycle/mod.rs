//! Whole-repository operations over stanzas: the report of what a stanza holds (`tidemark
//! info`) and retention (`tidemark expire`). Built on `repo`, `planning` and `archive`; it knows
//! nothing of the command line.
//!
//! * `expire/` — applies the retention policy and collects garbage;
//! * `report.rs` — what the report holds, collected from the repository (and the data directory,
//!   for the archive lag); serialized as it is for JSON;
//! * `report_text.rs` — the same report as text for people.

pub mod expire;
pub mod report;
pub mod report_text;

pub use report::{StanzaInfo, collect};
pub use report_text::render_text;
