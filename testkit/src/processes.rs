//! Finding the processes Tidemark starts beside a server (its work-ahead workers and
//! prefetchers) by their arguments in /proc, so a test or a stopping cluster can see them and
//! wait for them without Tidemark's library. Only processes whose arguments name a given `pg_wal`
//! are ever matched, so nothing else on the machine is touched.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The flag that makes `tidemark-archive` a work-ahead worker for the `pg_wal` after it.
pub const WORK_AHEAD_WORKER: &str = "--work-ahead-worker";

/// The flag that makes `tidemark-restore` a prefetcher for the `pg_wal` after it.
pub const PREFETCHER: &str = "--prefetcher";

/// Every process with its arguments; one that ends while being looked at is left out.
pub fn processes() -> Vec<(i32, Vec<Vec<u8>>)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        found.push((pid, args));
    }
    found
}

/// Whether `args` hold `flag` followed by `value`.
pub fn has_flag(args: &[Vec<u8>], flag: &str, value: &Path) -> bool {
    let value = value.as_os_str().as_encoded_bytes();
    args.windows(2)
        .any(|pair| pair[0] == flag.as_bytes() && pair[1] == value)
}

/// The process ID of the Tidemark helper started with `flag` ([`WORK_AHEAD_WORKER`],
/// [`PREFETCHER`]) for `pg_wal`, if one runs.
pub fn helper_pid(flag: &str, pg_wal: &Path) -> Option<i32> {
    processes()
        .into_iter()
        .find(|(_, args)| has_flag(args, flag, pg_wal))
        .map(|(pid, _)| pid)
}

/// Waits, at most `patience`, until no helper of `pg_wal` runs any more (they leave soon after
/// their server stops), so its directory can be removed or restored into at once. Returns
/// whether they all left.
pub fn wait_for_helpers_to_leave(pg_wal: &Path, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    let running = || {
        [WORK_AHEAD_WORKER, PREFETCHER]
            .iter()
            .any(|flag| helper_pid(flag, pg_wal).is_some())
    };
    while running() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn a_helper_is_found_by_its_flag_and_pg_wal_and_waited_for_until_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("pg_wal");
        // A stand-in with a helper's arguments: `sh -c CODE NAME ARGS...` keeps ARGS in its
        // command line while it sleeps.
        let mut helper = Command::new("sh")
            .args(["-c", "sleep 60", "tidemark-restore", PREFETCHER])
            .arg(&pg_wal)
            .stdin(Stdio::null())
            .spawn()
            .expect("run sh");
        // Until `sh` has exec'd, its command line is still this test's: wait for it, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        while helper_pid(PREFETCHER, &pg_wal).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(helper_pid(PREFETCHER, &pg_wal), Some(helper.id() as i32));
        assert_eq!(helper_pid(WORK_AHEAD_WORKER, &pg_wal), None);
        assert_eq!(helper_pid(PREFETCHER, &dir.path().join("other")), None);
        assert!(!wait_for_helpers_to_leave(&pg_wal, Duration::ZERO));
        helper.kill().unwrap();
        helper.wait().unwrap();
        assert!(wait_for_helpers_to_leave(&pg_wal, Duration::from_secs(30)));
    }
}
