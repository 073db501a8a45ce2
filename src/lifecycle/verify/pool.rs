//! The bounded pool `verify` reads objects with: a fixed number of threads, each taking the next
//! job until none is left, so at most that many reads (and, for S3, requests) are in flight and
//! each object is decoded by the thread that read it, with no copy between threads.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `check` on every job on `threads` threads (at least one) and returns the results in the
/// jobs' order.
pub fn run_all<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    check: impl Fn(&J) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(index) else {
                return done;
            };
            done.push((index, check(job)));
        }
    };
    let threads = threads.clamp(1, jobs.len().max(1));
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a verify reader does not panic"))
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_is_checked_once_and_results_keep_the_jobs_order() {
        let jobs: Vec<u64> = (0..1000).collect();
        for threads in [1, 3, 16] {
            let results = run_all(&jobs, threads, |n| n * 2);
            assert_eq!(results, jobs.iter().map(|n| n * 2).collect::<Vec<_>>());
        }
        assert!(run_all(&[] as &[u64], 4, |n| *n).is_empty());
    }
}
