//! The storage conformance suite against Azure Blob Storage as Azurite emulates it (installed by
//! `.ci/fetch-azurite`; `.ci/run` does), started per test on free loopback ports with its own
//! workspace, requests signed with the development account's key. A missing Azurite fails
//! every test here.

mod common;
mod storage_suite;

use common::azure::{AzuriteServer, start_azurite, test_container};
use tidemark::storage::AzureStorage;

/// A store on a fresh server, its keys under a prefix as a repository's would be. Blocks are the
/// smallest taken (1 MiB), so the suite's objects above it go up in blocks and the rest in one
/// Put Blob: both paths meet every case.
fn azure() -> (AzureStorage, AzuriteServer) {
    let server = start_azurite();
    let store = test_container(&server, "prod");
    (store, server)
}

mod azurite {
    crate::storage_suite::conformance_tests!(super::azure);
}

mod faults_over_azurite {
    crate::storage_suite::fault_tests!(super::azure);
}
