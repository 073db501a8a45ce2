//! The older timeline's copy of each segment where a timeline switch the restore crosses falls
//! inside (`planning::planner`'s switches say why PostgreSQL needs it): fetched from the
//! repository and verified exactly as `restore_command` verifies a segment, then made durable
//! in the restored `pg_wal` under its own name, marked archived. PostgreSQL replays the segment
//! from the newer timeline's copy, through `restore_command` as always; it opens this one only to
//! read back a transaction prepared before the switch.

use std::path::Path;

use anyhow::{Context, bail};

use crate::archive::{GetOutcome, get_wal_file};
use crate::pg::{SegmentName, WalFileName};
use crate::planning::planner::{CopySource, SwitchSegment};
use crate::repo::Stanza;
use crate::storage::durable;

/// Puts each of `copies` that is archived (whole, or as the `.partial` a promoted standby
/// archives) into `pgdata/pg_wal`, verified, fsynced with its directory, and marked archived. A
/// copy the plan found missing is left to the caller to warn about.
pub(super) fn place(
    stanza: &Stanza<'_>,
    copies: &[&SwitchSegment],
    pgdata: &Path,
) -> anyhow::Result<()> {
    let pg_wal = pgdata.join("pg_wal");
    for copy in copies {
        let archived = match copy.source {
            CopySource::Archived => WalFileName::Segment(copy.segment),
            CopySource::Partial => WalFileName::Partial(copy.segment),
            CopySource::Missing => continue,
        };
        let destination = pg_wal.join(copy.segment.to_string());
        let fetched =
            get_wal_file(stanza, &archived.to_string(), &destination).with_context(|| {
                format!(
                    "read {archived} from the repository into {}",
                    pg_wal.display()
                )
            })?;
        if matches!(fetched, GetOutcome::NotArchived) {
            bail!(
                "read {archived} from the repository: it was archived when the restore was planned and is gone now (did an expire run?); restore again"
            );
        }
        durable::make_durable(&destination, pgdata)
            .with_context(|| format!("fsync {}", destination.display()))?;
        mark_archived(&pg_wal, copy.segment, pgdata)?;
    }
    Ok(())
}

/// Writes `archive_status/<segment>.done`, as PostgreSQL does for a segment it restored from
/// the archive and kept. Without it, the first checkpoint to retire the copy after promotion
/// would find no status and queue it for archiving: a copy from a `.partial` (nothing after the
/// switch) would then be pushed as the whole segment, and refused, for ever, stalling the
/// restored cluster's archiving.
fn mark_archived(pg_wal: &Path, segment: SegmentName, pgdata: &Path) -> anyhow::Result<()> {
    let status_dir = pg_wal.join("archive_status");
    let done = status_dir.join(format!("{segment}.done"));
    durable::create_dir_all(&status_dir, 0o700, pgdata)
        .and_then(|()| durable::write_replacing(&done, b"", 0o600, pgdata))
        .with_context(|| format!("write {}", done.display()))
}
