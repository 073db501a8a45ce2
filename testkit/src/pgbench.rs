//! pgbench in the background beside a recorded workload, as the tests run it (see
//! [`ThrowawayCluster::run_pgbench`] to run it to the end).

use std::process::{Child, Stdio};

use crate::servers::postgres::ThrowawayCluster;

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
