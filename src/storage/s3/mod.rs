//! An S3 (or S3-compatible: MinIO, s3s) bucket as an object store, with `aws-sdk-s3` configured
//! explicitly: the endpoint, region and keys given, nothing probed. Puts are create-only
//! (`If-None-Match: *`, so a second writer gets 412 and the first object stays) and carry a
//! CRC-32C the server checks; reads are ranged and streamed. An object up to the part size goes
//! up in one PUT, read whole into memory first; a larger one in a multipart upload (see
//! `s3/multipart.rs`), which is aborted whenever it does not complete, so a failed put leaves
//! neither an object nor stored parts. The SDK retries throttling, 5xx answers, timeouts and
//! resets with backoff and jitter, a bounded number of times, each retry logged; what still
//! fails is a `Transient` error the caller may retry.
//!
//! The files, each importing only those listed before it:
//! * `errors.rs` — what a failed request means: its status, and the [`StorageError`] it becomes;
//! * `aws_profile.rs` — keys from a named profile of the AWS shared files;
//! * `credentials.rs` — the one source of the keys, turned into the SDK's provider;
//! * `retry_log.rs` — a WARN line for each retry the SDK makes;
//! * `transport.rs` — the HTTP client under the SDK, which acknowledges what it reads at once;
//! * `bucket.rs` — the settings, the client built from them, and key naming under the prefix;
//! * `multipart.rs` — uploads of objects larger than one part;
//! * `store.rs` — [`S3Storage`]'s [`Storage`] operations.
//!
//! [`StorageError`]: crate::storage::StorageError
//! [`Storage`]: crate::storage::Storage

mod aws_profile;
mod bucket;
mod credentials;
mod errors;
mod multipart;
mod retry_log;
mod store;
mod transport;

pub use bucket::{S3Settings, S3Storage};
pub use credentials::S3Credentials;
pub use errors::{classify_in as request_failure, no_such_bucket, status_of};
pub use multipart::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
