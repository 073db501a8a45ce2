//! The storage conformance suite against a real S3-compatible server: `s3s-fs` (install it with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`; `.ci/run` does), started per test
//! on a free loopback port with its own directory, signatures checked with its own keys. A
//! missing `s3s-fs` fails every test here.

mod common;
mod storage_suite;

use common::s3::{S3Server, start_server};
use tidemark::storage::S3Storage;

/// A store on a fresh server, its keys under a prefix as a repository's would be. Parts are the
/// smallest S3 takes, so the suite's objects above 5 MiB go up in multipart uploads and those up
/// to it in one PUT: both paths meet every case.
fn s3() -> (S3Storage, S3Server) {
    let server = start_server();
    let store = common::s3::test_bucket(&server, "prod");
    (store, server)
}

// Every case but three that test the server, not Tidemark, and that s3s-fs 0.14.1 fails:
// * its `If-None-Match: *` is a check before the write (`object_path.exists()` in its
//   put_object), not atomic, so concurrent create-only puts can all succeed; AWS S3 and MinIO
//   evaluate the condition atomically. Sequential create-only puts are checked below. (Its
//   checksums are saved after the file, so racing puts of different bytes can leave an object
//   that fails every read; repo/put_gate.rs keeps one process's chunk puts from racing.)
// * it keeps objects as files, so `HEAD` of a key above an object (a directory there) answers
//   500, and such a key cannot hold an object later; the repository never uses such keys.
mod s3s_fs {
    crate::storage_suite::conformance_tests!(@portable super::s3);
}

mod faults_over_s3s_fs {
    crate::storage_suite::fault_tests!(@portable super::s3);
}
