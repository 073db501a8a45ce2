//! pgbench against a throwaway cluster, run as its owner: the noise beside a recorded workload,
//! or tables to fill a backup.

use std::ffi::OsStr;
use std::process::{Child, Stdio};

use crate::lab::Lab;
use crate::owner::owner_command;
use crate::servers::postgres::ThrowawayCluster;

/// Starts pgbench with `args` against `cluster`, as its owner, in the background (output
/// discarded, errors kept for [`wait_ok`]).
pub fn pgbench(lab: &Lab, cluster: &ThrowawayCluster, args: &[&str]) -> Child {
    let port = cluster.port().to_string();
    owner_command(&lab.pg.path("pgbench"), lab.tmp.path())
        .args(args)
        .args([OsStr::new("-h"), cluster.socket_dir().as_os_str()])
        .args(["-p", &port, "-U", "postgres", "postgres"])
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
