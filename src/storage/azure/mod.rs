//! An Azure Blob Storage container (or Azurite's) as an object store, through a small REST
//! client of Tidemark's own on hyper: Shared Key signing, a SAS token, or a managed identity's
//! token, nothing probed. Puts are create-only (`If-None-Match: *`: a second writer gets 409 or
//! 412 and the first blob stays) and their bytes are checked by the service: a blob up to the
//! block size goes up in one Put Blob with its `Content-MD5`, a larger one in blocks (Put Block,
//! each with its `x-ms-content-crc64`) committed by a create-only Put Block List that records the
//! whole blob's MD5. A whole-blob read checks the bytes against that MD5 at its end. Every
//! request is retried on throttling, 5xx answers, timeouts and resets, with backoff and jitter,
//! a bounded number of times, each retry logged; what still fails is a `Transient` error.
//!
//! Why not a crate: `azure_storage_blob` 1.0 takes only Entra ID tokens and SAS URLs, no
//! Shared Key, so it cannot reach Azurite or an account by its key (azure-sdk-for-rust #2789,
//! #2975). `object_store`'s Azure client has Shared Key, SAS, managed identity and create-only
//! Put Blob, but its block uploads commit without a condition (a racing writer's Put Block List
//! replaces the first blob) and it sends no content checksum on any put, nor can one be added
//! (the headers are signed inside it). Both are promises of the storage trait.
//!
//! The files, each importing only those listed before it:
//! * `credentials.rs` — the one source of access: account key, SAS token or managed identity;
//! * `signing.rs` — the Shared Key signature of a request;
//! * `xml.rs` — the text of elements in the service's XML answers;
//! * `errors.rs` — what a failed request means: the [`StorageError`] it becomes, with the fix;
//! * `transport.rs` — one HTTP exchange, over TLS with the system's roots, within time limits;
//! * `identity.rs` — a managed identity's tokens from the instance metadata service;
//! * `http.rs` — sending a request: authorization, retries with backoff, each logged;
//! * `container.rs` — the settings, the client built from them, and key naming under the prefix;
//! * `listing.rs` — List Blobs, its XML answer read;
//! * `blocks.rs` — block uploads of blobs larger than one block;
//! * `store.rs` — [`AzureStorage`]'s [`Storage`] operations.
//!
//! [`StorageError`]: crate::storage::StorageError
//! [`Storage`]: crate::storage::Storage

mod blocks;
mod container;
mod credentials;
mod errors;
mod http;
mod identity;
mod listing;
mod signing;
mod store;
mod transport;
mod xml;

pub use blocks::{DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
pub use container::{AzureSettings, AzureStorage, DEFAULT_REQUEST_TIMEOUT};
pub use credentials::AzureCredentials;
