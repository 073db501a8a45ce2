//! Timeline history files (`NNNNNNNN.history`, `timeline.c`): for each ancestor timeline, where
//! it ended and why the new one was started.

use super::lsn::{Lsn, TimelineId};

/// One line of a history file: `parent` ran until `switch_point`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent: TimelineId,
    pub switch_point: Lsn,
    pub reason: String,
}

/// The parsed content of the history file of `timeline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineHistory {
    pub timeline: TimelineId,
    pub entries: Vec<HistoryEntry>,
}

/// Why a file is not a valid history file.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("it is not text (invalid UTF-8 at byte {0})")]
    NotText(usize),
    #[error("line {line} is not 'timeline<TAB>LSN<TAB>reason': {text:?}")]
    BadLine { line: usize, text: String },
    #[error("line {line}: timeline {found} must be above the previous line's timeline {previous}")]
    NotIncreasing {
        line: usize,
        found: TimelineId,
        previous: TimelineId,
    },
    #[error(
        "line {line}: timeline {found} is not an ancestor of timeline {file}, whose history this is"
    )]
    NotAncestor {
        line: usize,
        found: TimelineId,
        file: TimelineId,
    },
    #[error("it names no parent timeline")]
    Empty,
}

impl TimelineHistory {
    /// Parses `content` as `readTimeLineHistory` does: blank lines and `#` comments are skipped,
    /// each other line starts with a timeline and an LSN separated by white space, and the rest
    /// of the line is the reason.
    pub fn parse(timeline: TimelineId, content: &[u8]) -> Result<TimelineHistory, HistoryError> {
        let text =
            std::str::from_utf8(content).map_err(|e| HistoryError::NotText(e.valid_up_to()))?;
        let mut entries: Vec<HistoryEntry> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let bad = || HistoryError::BadLine {
                line,
                text: raw.to_owned(),
            };
            let mut fields = trimmed.splitn(3, ['\t', ' ']);
            let parent = fields
                .next()
                .and_then(|f| f.parse::<u32>().ok())
                .map(TimelineId)
                .ok_or_else(bad)?;
            let switch_point = fields
                .next()
                .and_then(|f| f.parse::<Lsn>().ok())
                .ok_or_else(bad)?;
            let reason = fields.next().unwrap_or("").trim().to_owned();
            if let Some(previous) = entries.last().map(|e| e.parent)
                && parent <= previous
            {
                return Err(HistoryError::NotIncreasing {
                    line,
                    found: parent,
                    previous,
                });
            }
            if parent >= timeline {
                return Err(HistoryError::NotAncestor {
                    line,
                    found: parent,
                    file: timeline,
                });
            }
            entries.push(HistoryEntry {
                parent,
                switch_point,
                reason,
            });
        }
        if entries.is_empty() {
            return Err(HistoryError::Empty);
        }
        Ok(TimelineHistory { timeline, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_history_file_with_the_blank_lines_time_targets_leave() {
        let content = b"1\t0/9120CB8\tbefore 2026-11-21 13:46:36.619257+00\n\n\n2\t0/A0000A0\tno recovery target specified\n";
        let history = TimelineHistory::parse(TimelineId(3), content).unwrap();
        assert_eq!(
            history.entries,
            vec![
                HistoryEntry {
                    parent: TimelineId(1),
                    switch_point: Lsn(0x9120CB8),
                    reason: "before 2026-11-21 13:46:36.619257+00".into(),
                },
                HistoryEntry {
                    parent: TimelineId(2),
                    switch_point: Lsn(0xA0000A0),
                    reason: "no recovery target specified".into(),
                },
            ]
        );
    }

    #[test]
    fn refuses_what_postgresql_would_refuse() {
        let cases: [(&[u8], HistoryError); 5] = [
            (b"", HistoryError::Empty),
            (b"# only a comment\n", HistoryError::Empty),
            (
                b"1\tnot-an-lsn\tx\n",
                HistoryError::BadLine {
                    line: 1,
                    text: "1\tnot-an-lsn\tx".into(),
                },
            ),
            (
                b"2\t0/1\tx\n1\t0/2\ty\n",
                HistoryError::NotIncreasing {
                    line: 2,
                    found: TimelineId(1),
                    previous: TimelineId(2),
                },
            ),
            (
                b"1\t0/1\tx\n3\t0/2\ty\n",
                HistoryError::NotAncestor {
                    line: 2,
                    found: TimelineId(3),
                    file: TimelineId(3),
                },
            ),
        ];
        for (content, expected) in cases {
            assert_eq!(
                TimelineHistory::parse(TimelineId(3), content),
                Err(expected)
            );
        }
        assert_eq!(
            TimelineHistory::parse(TimelineId(2), &[0x31, 0xFF]),
            Err(HistoryError::NotText(1))
        );
    }
}
