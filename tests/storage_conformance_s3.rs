//! The storage conformance suite against a real S3-compatible server: `s3s-fs` (install it with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`; `.ci/run` does), started per test
//! on a free loopback port with its own directory, signatures checked with its own keys. A
//! missing `s3s-fs` fails every test here.

mod common;
mod storage_suite;

use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, start_server};
use tidemark::storage::{S3Credentials, S3Settings, S3Storage};

/// A store on a fresh server, its keys under a prefix as a repository's would be.
fn s3() -> (S3Storage, S3Server) {
    let server = start_server();
    let store = S3Storage::new(S3Settings {
        bucket: BUCKET.to_owned(),
        prefix: "prod".to_owned(),
        endpoint: Some(server.endpoint.clone()),
        region: "us-east-1".to_owned(),
        path_style: true,
        credentials: S3Credentials::keys(
            ACCESS_KEY.to_owned(),
            SECRET_KEY.to_owned(),
            None,
            "test",
        ),
        storage_class: None,
        sse: None,
    })
    .unwrap();
    (store, server)
}

// Every case but three that test the server, not Tidemark, and that s3s-fs 0.14.1 fails:
// * its `If-None-Match: *` is a check before the write (`object_path.exists()` in its
//   put_object), not atomic, so concurrent create-only puts can all succeed; AWS S3 and MinIO
//   evaluate the condition atomically. Sequential create-only puts are checked below.
// * it keeps objects as files, so `HEAD` of a key above an object (a directory there) answers
//   500, and such a key cannot hold an object later; the repository never uses such keys.
mod s3s_fs {
    crate::storage_suite::conformance_tests!(@each super::s3;
        put_then_get_round_trips,
        empty_objects_are_objects,
        a_missing_key_has_no_head_and_reads_are_not_found,
        ranged_gets_at_the_start_middle_and_end_and_past_it,
        puts_are_create_only_and_keep_the_first_object,
        list_prefixes_match_whole_components,
        list_is_sorted_by_key_bytes_with_sizes,
        list_of_an_unknown_prefix_is_empty,
        delete_then_get_is_not_found,
        deleting_a_missing_key_is_ok,
        streaming_put_and_get_of_a_large_object,
        a_streaming_put_needs_exactly_the_announced_length,
        a_body_that_fails_part_way_leaves_nothing,
        cancelling_a_streaming_put_leaves_no_object,
        cancelling_a_streaming_read_stops_it,
        a_cancelled_list_fails,
    );
}

mod faults_over_s3s_fs {
    crate::storage_suite::fault_tests!(@each super::s3;
        retried_puts_store_every_object_exactly_once,
        a_retry_after_a_write_that_took_effect_finds_the_same_bytes,
        reads_under_faults_never_yield_other_bytes,
        retried_deletes_and_lists_converge,
    );
}
