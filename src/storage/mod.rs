//! A dumb object store: put an object under a key unless one is already there, read it, list
//! keys. Backends know nothing of WAL, backups or the repository's layout.
//!
//! The one promise every backend keeps: `put_if_absent` returns only once the object is durable,
//! and a reader never sees a partly written object under its key.

pub mod local;

use std::fmt;

pub use local::LocalDirectory;

/// A relative, `/`-separated object key. Components are non-empty, use only `[A-Za-z0-9._-]`,
/// and never start with `.` (backends keep such names for their own temporary files).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// Why a string is not an object key.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a valid object key")]
pub struct InvalidKey(String);

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<ObjectKey, InvalidKey> {
        let key = key.into();
        let valid_component = |c: &str| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        };
        if key.split('/').all(valid_component) {
            Ok(ObjectKey(key))
        } else {
            Err(InvalidKey(key))
        }
    }

    /// This key with `name` appended as a further component.
    pub fn join(&self, name: &str) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::new(format!("{}/{name}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `put_if_absent` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object is now durable under its key.
    Created,
    /// An object was already there; it was left untouched and nothing was written.
    AlreadyExists,
}

/// A key found by `list`, with the size of its object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: ObjectKey,
    pub size: u64,
}

/// A failed storage operation. Callers branch on `NotFound`; the rest carry what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{key} does not exist in {location}")]
    NotFound { key: ObjectKey, location: String },
    #[error(
        "{doing}: permission denied; the repository must be readable and writable by the user running this command (uid {uid})"
    )]
    PermissionDenied {
        doing: String,
        uid: u32,
        /// Kept for callers that want it; not shown, the message already says it.
        cause: std::io::Error,
    },
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// An object store.
pub trait Storage: Send + Sync {
    /// Stores the concatenation of `parts` under `key` unless an object is already there.
    /// Returns only when the object is durable; never replaces an existing object.
    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> Result<PutOutcome, StorageError>;

    /// Reads a whole object.
    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StorageError>;

    /// The size of the object under `key`, or `None` if there is none.
    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, StorageError>;

    /// Reads the first `length` bytes of an object (fewer if it is shorter).
    fn get_prefix(&self, key: &ObjectKey, length: usize) -> Result<Vec<u8>, StorageError>;

    /// Lists every object whose key starts with the components of `prefix`, sorted by key.
    /// A prefix with no objects under it is an empty list, not an error.
    fn list(&self, prefix: &ObjectKey) -> Result<Vec<ListedObject>, StorageError>;

    /// Where the objects are, for messages ("/var/lib/tidemark").
    fn location(&self) -> String;
}
