//! What `verify` reports: the problems (each an object, what is wrong with it and what to do;
//! any one makes the stanza fail verification), the findings that are not failures (orphans),
//! and what was read. Its JSON is these types serialized; [`render_text`] is the same for people,
//! one line per problem or finding.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::units::ByteSize;

/// Something wrong in the repository: a restore that relies on `object` would fail or be wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object's key (where it should be, when it is missing).
    pub object: String,
    pub problem: String,
    /// What the operator should do about it.
    pub action: String,
}

/// What kind of thing a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A chunk no listed backup refers to.
    OrphanChunk,
    /// A backup directory holding objects but no record.
    UnrecordedBackup,
    /// A backup the retention policy keeps by no rule: the next `expire` removes it.
    ExpiringBackup,
    /// WAL no backup the policy keeps needs: the next `expire` removes it.
    ExpiringWal,
    /// The next `expire` would refuse the policy, and why.
    ExpireRefuses,
}

/// Something worth knowing that is not a failure: an interrupted backup leaves orphans
/// legitimately, and `tidemark expire` collects them; what `expire` would remove under the
/// retention policy is worth knowing too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub object: String,
    pub what: String,
    pub action: String,
}

/// Everything one `verify` run found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub stanza: String,
    pub repository: String,
    /// `full` (every object read and checked) or `fast` (listings and sizes only).
    pub mode: &'static str,
    /// The backup verification was limited to, with `--backup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Objects looked at (read, in full mode) and their stored bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Of the objects read and opened, how many each data key sealed (an encrypted repository),
    /// and how many were not sealed (a plain one).
    pub objects_by_key: BTreeMap<u32, u64>,
    pub unencrypted_objects: u64,
    pub seconds: f64,
    pub problems: Vec<Problem>,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Whether nothing is wrong: findings alone do not fail verification.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Stored bytes read per second.
    pub fn bytes_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The closing line: what was looked at, how much, how fast, and how it ended.
    pub fn summary(&self) -> String {
        let scope = match &self.backup {
            Some(label) => format!("backup {label} of stanza '{}'", self.stanza),
            None => format!("stanza '{}'", self.stanza),
        };
        let verdict = if self.clean() {
            "clean".to_owned()
        } else {
            format!("{} problem(s)", self.problems.len())
        };
        let findings = match self.findings.len() {
            0 => String::new(),
            n => format!(", {n} finding(s) that are not failures"),
        };
        let looked_at = if self.mode == "fast" {
            format!("{} objects listed ({})", self.objects, ByteSize(self.bytes))
        } else {
            format!(
                "{} objects, {} read in {:.1} s ({}/s)",
                self.objects,
                ByteSize(self.bytes),
                self.seconds,
                ByteSize(self.bytes_per_second() as u64)
            )
        };
        format!(
            "verify ({}) of {scope} in {}: {verdict}{findings}; {looked_at}",
            self.mode, self.repository
        )
    }
}

/// One line per problem (`object: problem: action`), then one per finding, then the summary.
pub fn render_text(report: &VerifyReport) -> String {
    let mut text = String::new();
    for p in &report.problems {
        text.push_str(&format!("{}: {}: {}\n", p.object, p.problem, p.action));
    }
    for f in &report.findings {
        text.push_str(&format!("{}: {}: {}\n", f.object, f.what, f.action));
    }
    if !report.objects_by_key.is_empty() {
        let counts: Vec<String> = report
            .objects_by_key
            .iter()
            .map(|(id, n)| format!("{id}: {n}"))
            .collect();
        text.push_str(&format!("objects by data key: {}\n", counts.join(", ")));
    }
    text.push_str(&report.summary());
    text.push('\n');
    text
}
