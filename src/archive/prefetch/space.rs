//! Room for the spool: the fetcher takes free space in `pg_wal`'s file system only while
//! PostgreSQL keeps what it needs there. A segment is fetched ahead only if, with it and every
//! fetch under way written in full, the file system would still have [`reserve`] free; below
//! that, calls fetch their segments themselves, as without prefetch.

use std::io;
use std::path::Path;

/// Free and total bytes of a file system, as an unprivileged process (PostgreSQL's user) may
/// use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeSpace {
    pub available: u64,
    pub total: u64,
}

impl FreeSpace {
    /// The free space of the file system holding `dir`.
    pub fn of(dir: &Path) -> io::Result<FreeSpace> {
        let stat = rustix::fs::statvfs(dir)?;
        Ok(FreeSpace {
            available: stat.f_bavail.saturating_mul(stat.f_frsize),
            total: stat.f_blocks.saturating_mul(stat.f_frsize),
        })
    }
}

/// What prefetching always leaves free: two segments (the one a direct fetch writes beside
/// `%p`, and the first segment of a new timeline at promotion) or a twentieth of the file
/// system, whichever is more, for the segments PostgreSQL keeps until its next restartpoint.
pub fn reserve(total: u64, segment_size: u64) -> u64 {
    segment_size.saturating_mul(2).max(total / 20)
}

/// Whether one more segment may be fetched ahead while `in_flight` fetches are under way.
pub fn room_for_one_more(free: FreeSpace, segment_size: u64, in_flight: u64) -> bool {
    let needed = in_flight
        .saturating_add(1)
        .saturating_mul(segment_size)
        .saturating_add(reserve(free.total, segment_size));
    free.available >= needed
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_fetch_goes_ahead_only_if_the_reserve_stays_free_after_it_and_those_under_way() {
        let segment = 16 * MIB;
        // A large file system: the reserve is a twentieth of it.
        let large = |available| FreeSpace {
            available,
            total: 1000 * MIB,
        };
        assert_eq!(reserve(1000 * MIB, segment), 50 * MIB);
        assert!(room_for_one_more(large(66 * MIB), segment, 0));
        assert!(!room_for_one_more(large(66 * MIB - 1), segment, 0));
        assert!(!room_for_one_more(large(66 * MIB), segment, 1));
        assert!(room_for_one_more(large(82 * MIB), segment, 1));
        // A small one: two segments.
        let small = |available| FreeSpace {
            available,
            total: 100 * MIB,
        };
        assert_eq!(reserve(100 * MIB, segment), 32 * MIB);
        assert!(room_for_one_more(small(48 * MIB), segment, 0));
        assert!(!room_for_one_more(small(47 * MIB), segment, 0));
        // Nothing overflows with absurd sizes.
        assert!(!room_for_one_more(
            small(u64::MAX / 2),
            u64::MAX / 4,
            u64::MAX
        ));
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_within_its_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let free = FreeSpace::of(dir.path()).unwrap();
        assert!(free.total > 0 && free.available <= free.total, "{free:?}");
    }
}
