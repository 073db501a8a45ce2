//! The storage conformance suite against the backends that need no server: the local directory,
//! the in-memory store, and the fault-injecting wrapper with faults off (it must be exactly the
//! store it wraps) and on (callers that retry must still get the invariants).

mod storage_suite;

use tempfile::TempDir;
use tidemark::storage::{LocalDirectory, MemoryStorage};

/// A local directory store under a fresh temporary directory, in a root it has to create.
fn local_directory() -> (LocalDirectory, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (LocalDirectory::new(dir.path().join("repo")), dir)
}

fn memory() -> (MemoryStorage, ()) {
    (MemoryStorage::new(), ())
}

mod local_directory {
    crate::storage_suite::conformance_tests!(super::local_directory);
}

mod memory {
    crate::storage_suite::conformance_tests!(super::memory);
}

mod faulty_without_faults {
    crate::storage_suite::conformance_tests!(crate::storage_suite::inside_faulty_storage(
        super::local_directory
    ));
}

mod faults_over_local_directory {
    crate::storage_suite::fault_tests!(super::local_directory);
}

mod faults_over_memory {
    crate::storage_suite::fault_tests!(super::memory);
}
