//! Tidemark's S3 client acknowledges what it reads at once (`TCP_QUICKACK` after each read), so
//! a server that does not set `TCP_NODELAY` (`s3s-fs`) never holds an object's body back for the
//! 40 ms of the kernel's delayed acknowledgement. Checked by its effect, counted by the kernel:
//! in a network namespace of the test's own (root only), where nothing else runs, the
//! namespace's delayed-ACK timer count (`TcpExt: DelayedACKs` of `/proc/thread-self/net/netstat`)
//! barely moves while `tidemark source backup` reads 300 small objects, and moves by about one
//! per object while the SDK's own client (the test's) reads the same objects — which shows the
//! count can tell the two apart.

mod common;

use std::fs;
use std::process::Command;

use common::bucket::{NewObject, TestClient, noise};
use common::bucket_setup::BucketSetup;
use common::s3::start_server;

/// Small objects: each body fits in one segment, so each would wait once.
const OBJECTS: usize = 300;

/// The namespace's count of delayed acknowledgements sent when their timer fired.
fn delayed_acks() -> u64 {
    let netstat = fs::read_to_string("/proc/thread-self/net/netstat").unwrap();
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let column = names
            .split_whitespace()
            .position(|name| name == "DelayedACKs")
            .expect("TcpExt has DelayedACKs");
        return values
            .split_whitespace()
            .nth(column)
            .unwrap()
            .parse()
            .unwrap();
    }
    panic!("no TcpExt line in /proc/thread-self/net/netstat");
}

/// Moves this thread (and what it starts from now on) into a new network namespace with its
/// loopback up.
fn enter_own_network() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test makes a network namespace, which needs root: run it as root (CI does)"
    );
    // SAFETY: unshare(2) changes only this thread's namespace; no memory is involved.
    let made = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        made,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip (Debian's iproute2)");
    assert!(up.success(), "ip link set lo up: {up}");
}

#[test]
fn a_snapshot_does_not_wait_for_delayed_acknowledgements() {
    enter_own_network();
    let server = start_server();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    let objects = (0..OBJECTS)
        .map(|i| NewObject {
            key: format!("folder-{}/object-{i}.bin", i % 10),
            content: noise(1024 + (i * 97) % 30_000, i as u64),
            content_type: None,
            metadata: Default::default(),
        })
        .collect();
    client.put_all("src", objects);

    let before = delayed_acks();
    let held = client.held("src");
    let by_sdk_client = delayed_acks() - before;
    assert_eq!(held.len(), OBJECTS);

    let setup = BucketSetup::new(&server.endpoint, "");
    let before = delayed_acks();
    let said = setup.ok(&["source", "backup", "uploads"]);
    let by_tidemark = delayed_acks() - before;
    assert!(said.contains(&format!("{OBJECTS} objects")), "{said}");

    assert!(
        by_sdk_client >= OBJECTS as u64 / 2,
        "the SDK's own client reading {OBJECTS} objects fired only {by_sdk_client} delayed \
         acknowledgements: the count no longer shows the wait this test is about"
    );
    assert!(
        by_tidemark <= OBJECTS as u64 / 20,
        "a snapshot of {OBJECTS} objects fired {by_tidemark} delayed acknowledgements (the \
         SDK's own client: {by_sdk_client}): Tidemark's reads waited for them"
    );
}
