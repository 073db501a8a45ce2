//! pgbench in the background beside a recorded workload, as the tests run it (see
//! [`ThrowawayCluster::run_pgbench`] to run it to the end).

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::servers::postgres::ThrowawayCluster;
use crate::steps::PATIENCE;

/// Starts pgbench with `args` against `cluster`, as its owner, in the background (output
/// discarded, errors kept for [`wait_ok`]).
pub fn pgbench(cluster: &ThrowawayCluster, args: &[&str]) -> Child {
    cluster
        .pgbench_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgbench")
}

/// Waits for a pgbench started by [`pgbench`] and fails the test unless it succeeded.
pub fn wait_ok(child: Child) {
    let output = child.wait_with_output().expect("wait for pgbench");
    assert!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `work` while pgbench commits beside it from before it starts until after it ends,
/// however long it takes: `start` begins one short rate-limited run of `clients` clients, and is
/// called again each time a run ends. `work` starts once the first run's clients are connected.
pub fn throughout<T: Send>(
    cluster: &ThrowawayCluster,
    clients: u32,
    start: impl Fn() -> Child,
    work: impl FnOnce() -> T + Send,
) -> T {
    let mut running = start();
    cluster
        .wait_for(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'",
            &clients.to_string(),
            PATIENCE,
        )
        .expect("pgbench connects");
    std::thread::scope(|scope| {
        let working = scope.spawn(work);
        while !working.is_finished() {
            if running.try_wait().expect("poll pgbench").is_some() {
                wait_ok(running);
                running = start();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        wait_ok(running);
        working.join().expect("the work beside pgbench panicked")
    })
}
