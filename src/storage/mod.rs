//! A dumb object store: put an object under a key unless one is already there, read it whole, in
//! a range or as a stream, look at its size, list keys under a prefix, delete. Backends know
//! nothing of WAL, backups or the repository's layout.
//!
//! The promises every backend keeps, which the conformance tests in
//! `tests/storage_suite/` check for each of them:
//! * a put returns only once the object is durable, and a reader never sees a partly written
//!   object under its key, whatever fails or is cancelled on the way;
//! * a put never replaces an object: the first one stays, later puts report `AlreadyExists`,
//!   and only once the object that was there is durable (its writer may have died before its
//!   own fsyncs), so that `AlreadyExists` promises what `Created` does;
//! * errors say whether the object is missing (`is_not_found`) and whether trying again may help
//!   (`is_retryable`), so callers branch on the error, never on its text.
//!
//! Backends: [`LocalDirectory`] (the default), [`S3Storage`] (everything S3 is in `s3/`),
//! [`AzureStorage`] (an Azure Blob Storage container; everything Azure is in `azure/`),
//! [`MemoryStorage`] and the test wrapper [`FaultyStorage`], which injects the failures object
//! stores really have. [`open`] builds the one a [`BackendSettings`] describes; `config/`, above
//! this module, makes that description from the configuration file. Every file written to be
//! durable is written through [`durable`], the one crash-safe file module.

pub mod azure;
pub mod deferred;
pub mod durable;
pub mod faulty;
pub mod local;
pub mod memory;
mod open;
pub mod probe;
pub mod s3;
mod tls;

use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

pub use azure::{AzureCredentials, AzureSettings, AzureStorage};
pub use deferred::DeferredSyncs;
pub use faulty::{Cut, FaultCounts, FaultPlan, FaultyStorage};
pub use local::LocalDirectory;
pub use memory::MemoryStorage;
pub use open::{BackendSettings, OpenError, open};
pub use s3::{S3Credentials, S3Settings, S3Storage};

/// How much a streaming operation moves between two looks at its [`Cancel`] token.
pub(crate) const CHUNK: usize = 256 * 1024;

/// What [`Storage::get_reader`] answers: a stream of an object's bytes, or why there is none.
pub type ObjectReading = Result<Box<dyn Read + Send>, StorageError>;

/// What a put answers: whether it stored the object or found one already there, or why it
/// could do neither.
pub type PutResult = Result<PutOutcome, StorageError>;

/// A relative, `/`-separated object key. Components are non-empty, use only `[A-Za-z0-9._-]`,
/// and never start with `.` (backends keep such names for their own temporary files).
///
/// Keys are ordered as byte strings, which is the order `list` returns and the order object
/// stores list in.
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

    /// Whether this key is `prefix` itself or lies under it. Prefixes match whole components:
    /// `a/b` covers `a/b` and `a/b/c`, never `a/bc`.
    pub fn is_under(&self, prefix: &ObjectKey) -> bool {
        match self.0.strip_prefix(&prefix.0) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object is now durable under its key.
    Created,
    /// An object was already there; it was left untouched.
    AlreadyExists,
}

/// What `head` knows about an object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// When the object was stored, where the backend records it.
    pub modified: Option<SystemTime>,
}

/// A key found by `list`, with the size of its object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: ObjectKey,
    pub size: u64,
}

/// Which bytes of an object a read wants: `length` bytes from `offset`, or all from `offset`.
/// A range reaching past the end is cut at the end; one starting at or past the end is empty,
/// not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub length: Option<u64>,
}

impl ByteRange {
    /// The whole object.
    pub const ALL: ByteRange = ByteRange {
        offset: 0,
        length: None,
    };

    /// `length` bytes from `offset`.
    pub fn new(offset: u64, length: u64) -> ByteRange {
        ByteRange {
            offset,
            length: Some(length),
        }
    }

    /// Everything from `offset` on.
    pub fn starting_at(offset: u64) -> ByteRange {
        ByteRange {
            offset,
            length: None,
        }
    }

    /// The `(start, end)` byte positions this range covers in an object of `size` bytes.
    pub fn within(&self, size: u64) -> (u64, u64) {
        let start = self.offset.min(size);
        let end = match self.length {
            Some(length) => start.saturating_add(length).min(size),
            None => size,
        };
        (start, end)
    }
}

/// A cheap, clonable token that asks long operations to stop. Streaming puts and reads and
/// listings look at it between chunks and then fail with [`StorageError::Cancelled`]; a put
/// stopped that way leaves no object behind.
#[derive(Clone, Debug)]
pub struct Cancel(Option<Arc<AtomicBool>>);

impl Cancel {
    /// A token that is not cancelled yet.
    pub fn new() -> Cancel {
        Cancel(Some(Arc::new(AtomicBool::new(false))))
    }

    /// A token that is never cancelled, for callers with nothing to stop them; it allocates
    /// nothing.
    pub fn never() -> Cancel {
        Cancel(None)
    }

    /// Asks every operation holding this token (or a clone of it) to stop. A no-op on a
    /// [`Cancel::never`] token.
    pub fn cancel(&self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Release);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// `Err(Cancelled)` if the token was cancelled; `doing` is only built then.
    pub fn check(&self, doing: impl FnOnce() -> String) -> Result<(), StorageError> {
        if self.is_cancelled() {
            Err(StorageError::Cancelled { doing: doing() })
        } else {
            Ok(())
        }
    }
}

impl Default for Cancel {
    fn default() -> Cancel {
        Cancel::new()
    }
}

/// A failed storage operation. Callers branch with [`is_not_found`](StorageError::is_not_found)
/// and [`is_retryable`](StorageError::is_retryable); every variant carries what was being done.
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
        cause: io::Error,
    },
    /// A failure that says nothing about the object and may pass: throttling, a 5xx answer, a
    /// timeout, a reset connection. The operation may or may not have taken effect.
    #[error("{doing}: {reason} (a transient failure; trying again may succeed)")]
    Transient { doing: String, reason: String },
    /// The caller's [`Cancel`] token stopped the operation.
    #[error("{doing}: cancelled")]
    Cancelled { doing: String },
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// Whether the same operation may succeed if tried again. A missing object, a refused
    /// permission, a cancellation or a disk error stays what it is; a transient failure, and an
    /// I/O error of the kinds networks and network file systems produce, may pass.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Transient { .. } => true,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                ErrorKind::Interrupted
                    | ErrorKind::TimedOut
                    | ErrorKind::WouldBlock
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
            ),
            StorageError::NotFound { .. }
            | StorageError::PermissionDenied { .. }
            | StorageError::Cancelled { .. } => false,
        }
    }

    /// Whether the store refused access: the `PermissionDenied` variant, or an I/O error of
    /// that kind (an S3 403).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            StorageError::PermissionDenied { .. } => true,
            StorageError::Io { source, .. } => source.kind() == ErrorKind::PermissionDenied,
            _ => false,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self, StorageError::Cancelled { .. })
    }

    /// The storage error behind an I/O error met while `doing` something. Readers this module
    /// hands out, and bodies the fault-injecting wrapper feeds to backends, carry a
    /// `StorageError` inside their `io::Error`s (a `Read` can return nothing else); it comes
    /// back out here unchanged, so a transient failure in the middle of a stream stays
    /// retryable. Any other error is classified by its kind.
    pub fn from_io(doing: impl Into<String>, error: io::Error) -> StorageError {
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<StorageError>())
        {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<StorageError>().expect("checked above");
        }
        let doing = doing.into();
        if error.kind() == ErrorKind::PermissionDenied {
            StorageError::PermissionDenied {
                doing,
                uid: rustix::process::geteuid().as_raw(),
                cause: error,
            }
        } else {
            StorageError::Io {
                doing,
                source: error,
            }
        }
    }

    /// This error inside an `io::Error`, for a `Read` to return; [`StorageError::from_io`]
    /// takes it out again. The kind is chosen so generic I/O code does the right thing: a
    /// transient failure becomes `TimedOut`, never `Interrupted`, which `read_to_end` and
    /// `io::copy` would silently retry forever.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            StorageError::NotFound { .. } => ErrorKind::NotFound,
            StorageError::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            StorageError::Transient { .. } => ErrorKind::TimedOut,
            StorageError::Cancelled { .. } => ErrorKind::Other,
            StorageError::Io { source, .. } => match source.kind() {
                ErrorKind::Interrupted => ErrorKind::Other,
                kind => kind,
            },
        };
        io::Error::new(kind, self)
    }
}

/// An object store.
///
/// Keys name objects in a tree: no key may be a component-prefix of another key in the same
/// store (`a/b` and `a/b/c`). The local directory cannot hold both, and the in-memory backend
/// refuses them too so tests catch such layouts; object stores may accept them. The repository
/// never uses such keys.
pub trait Storage: Send + Sync {
    /// The size (and what else is cheap to know) of the object under `key`, or `None` if there
    /// is none.
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError>;

    /// What [`head`](Storage::head) says, after making the object, when there is one, as
    /// durable as a put that created it: what a caller that reuses an object it did not write
    /// (a backup chunk another backup stored) calls before it relies on it. Stores where a
    /// visible object is durable (S3) need do nothing more than `head`.
    fn head_durable(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        self.head(key)
    }

    /// [`head_durable`](Storage::head_durable), except that a store which makes a name durable
    /// by fsyncing its directory (a local directory) may owe that fsync in `deferred` until
    /// [`sync_deferred`](Storage::sync_deferred): for a writer that reports nothing it found or
    /// stored before it calls that. The object's content is durable when this returns.
    fn head_durable_deferred(
        &self,
        key: &ObjectKey,
        deferred: &DeferredSyncs,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        let _ = deferred;
        self.head_durable(key)
    }

    /// [`put_if_absent`](Storage::put_if_absent), with the directory fsyncs owed in `deferred`
    /// as in [`head_durable_deferred`](Storage::head_durable_deferred).
    fn put_if_absent_deferred(
        &self,
        key: &ObjectKey,
        parts: &[&[u8]],
        deferred: &DeferredSyncs,
    ) -> PutResult {
        let _ = deferred;
        self.put_if_absent(key, parts)
    }

    /// Makes durable every name owed in `deferred`: after it, what the deferred puts and heads
    /// said is as durable as what the plain ones say.
    fn sync_deferred(&self, deferred: &DeferredSyncs) -> Result<(), StorageError> {
        let _ = deferred;
        Ok(())
    }

    /// A stream of the bytes of `range` of the object under `key`; `NotFound` if there is none.
    /// The reader holds no more than a chunk in memory; its errors carry a [`StorageError`]
    /// that [`StorageError::from_io`] recovers, and it fails with `Cancelled` once `cancel` is.
    fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading;

    /// Reads a whole object.
    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StorageError> {
        read_all(self, key, ByteRange::ALL)
    }

    /// Reads `length` bytes from `offset` (fewer at the end of the object, none past it).
    fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StorageError> {
        read_all(self, key, ByteRange::new(offset, length))
    }

    /// Stores the `length` bytes `body` yields under `key` unless an object is already there.
    /// Returns only when the object is durable, whether this put wrote it (`Created`) or found
    /// it (`AlreadyExists`); never replaces an existing object.
    ///
    /// The body is read in chunks and never held whole. If it yields fewer or more than
    /// `length` bytes, fails, or `cancel` is cancelled, nothing is stored and the error says
    /// so (a failing body's `StorageError`, if it carries one, is returned as it is). When the
    /// key is taken the body may have been read in full, in part or not at all.
    ///
    /// Backends implement [`put_body_if_absent`](Storage::put_body_if_absent), which takes the
    /// same three things as one [`PutBody`]; this spelling is for callers.
    fn put_if_absent_from(
        &self,
        key: &ObjectKey,
        body: &mut dyn Read,
        length: u64,
        cancel: &Cancel,
    ) -> PutResult {
        let body = PutBody {
            reader: body,
            length,
            cancel,
        };
        self.put_body_if_absent(key, body)
    }

    /// [`put_if_absent_from`](Storage::put_if_absent_from), with its body, length and cancel
    /// token as the one [`PutBody`] they are: what each backend implements.
    fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult;

    /// Stores the concatenation of `parts` under `key` unless an object is already there: the
    /// simple path for objects already in memory, with the guarantees of
    /// [`put_if_absent_from`](Storage::put_if_absent_from).
    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> PutResult {
        let length = parts.iter().map(|p| p.len() as u64).sum();
        self.put_if_absent_from(key, &mut PartsReader::new(parts), length, &Cancel::never())
    }

    /// Every object whose key is `prefix` or lies under it (whole components: `a/b` never
    /// matches `a/bc`), sorted by key. A prefix with no objects under it is an empty list, not
    /// an error.
    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError>;

    /// The names one level under `prefix`, sorted, each once: of the objects directly under it
    /// and of the next component of every deeper key (S3's common prefixes under a `/`
    /// delimiter), so a caller finds what a prefix holds without listing everything below it.
    /// A directory store may also name a directory its deletes emptied: callers look for the
    /// objects they need under a name. This default lists everything under `prefix`; backends
    /// that can list one level do.
    fn list_children(
        &self,
        prefix: &ObjectKey,
        cancel: &Cancel,
    ) -> Result<Vec<String>, StorageError> {
        let below = prefix.as_str().len() + 1;
        let mut names: Vec<String> = self
            .list(prefix, cancel)?
            .iter()
            .filter_map(|listed| {
                let rest = listed.key.as_str().get(below..)?;
                rest.split('/').next().map(str::to_owned)
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Deletes the object under `key`. Deleting a key with no object is `Ok`: a delete that
    /// took effect but whose answer was lost can be retried, as on object stores.
    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// Deletes the objects under `keys`, each as [`delete`](Storage::delete) does; when it
    /// returns `Ok`, every one of those deletes is durable. Backends that can batch (one fsync
    /// per directory, one request per thousand keys) do.
    fn delete_all(&self, keys: &[ObjectKey]) -> Result<(), StorageError> {
        keys.iter().try_for_each(|key| self.delete(key))
    }

    /// Where the objects are, for messages ("/var/lib/tidemark").
    fn location(&self) -> String;

    /// Checks, without writing, that the place the objects go answers: the bucket exists and
    /// the keys are accepted, or the directory is one. Start-up checks call it first, so that a
    /// missing bucket is named as such rather than surfacing as a failed put.
    fn check_reachable(&self) -> Result<(), StorageError>;
}

/// Reads `range` of an object into memory through [`Storage::get_reader`].
fn read_all<S: Storage + ?Sized>(
    storage: &S,
    key: &ObjectKey,
    range: ByteRange,
) -> Result<Vec<u8>, StorageError> {
    let mut reader = storage.get_reader(key, range, &Cancel::never())?;
    let mut bytes = Vec::with_capacity(range.length.unwrap_or(0).min(CHUNK as u64) as usize);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| StorageError::from_io(format!("read {key} from {}", storage.location()), e))?;
    Ok(bytes)
}

/// Shared stores: what a test keeps a handle on while a repository owns a `Box` of a clone.
/// Every method forwards, so the inner backend's own versions of the provided methods are used
/// (all but `put_if_absent_from`, which only bundles its arguments for `put_body_if_absent`).
impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        (**self).head(key)
    }

    fn head_durable(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        (**self).head_durable(key)
    }

    fn head_durable_deferred(
        &self,
        key: &ObjectKey,
        deferred: &DeferredSyncs,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        (**self).head_durable_deferred(key, deferred)
    }

    fn put_if_absent_deferred(
        &self,
        key: &ObjectKey,
        parts: &[&[u8]],
        deferred: &DeferredSyncs,
    ) -> PutResult {
        (**self).put_if_absent_deferred(key, parts, deferred)
    }

    fn sync_deferred(&self, deferred: &DeferredSyncs) -> Result<(), StorageError> {
        (**self).sync_deferred(deferred)
    }

    fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading {
        (**self).get_reader(key, range, cancel)
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StorageError> {
        (**self).get(key)
    }

    fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StorageError> {
        (**self).get_range(key, offset, length)
    }

    fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        (**self).put_body_if_absent(key, body)
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> PutResult {
        (**self).put_if_absent(key, parts)
    }

    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError> {
        (**self).list(prefix, cancel)
    }

    fn list_children(
        &self,
        prefix: &ObjectKey,
        cancel: &Cancel,
    ) -> Result<Vec<String>, StorageError> {
        (**self).list_children(prefix, cancel)
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        (**self).delete(key)
    }

    fn delete_all(&self, keys: &[ObjectKey]) -> Result<(), StorageError> {
        (**self).delete_all(keys)
    }

    fn location(&self) -> String {
        (**self).location()
    }

    fn check_reachable(&self) -> Result<(), StorageError> {
        (**self).check_reachable()
    }
}

/// What a streamed put stores: the reader its bytes come from, how many it must yield, and the
/// token that stops it between chunks. The three always travel together, from the caller through
/// wrappers to the backend that copies them.
pub struct PutBody<'a> {
    pub reader: &'a mut dyn Read,
    pub length: u64,
    pub cancel: &'a Cancel,
}

impl PutBody<'_> {
    /// Reads the body in chunks of at most [`CHUNK`] bytes, handing each to `write`, and checks
    /// that it holds exactly `length` bytes and that `cancel` is not cancelled between chunks.
    /// Backends use it so a short, long, failing or cancelled body is refused the same way by
    /// each.
    pub(crate) fn copy(
        self,
        doing: &dyn Fn() -> String,
        mut write: impl FnMut(&[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let PutBody {
            reader: body,
            length,
            cancel,
        } = self;
        let mut buffer = vec![0; length.saturating_add(1).min(CHUNK as u64) as usize];
        let mut copied: u64 = 0;
        loop {
            cancel.check(doing)?;
            // One byte more than announced is read on purpose: it shows the body is too long.
            let want = (length - copied).saturating_add(1).min(buffer.len() as u64) as usize;
            let read = match body.read(&mut buffer[..want]) {
                Ok(read) => read,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(StorageError::from_io(
                        format!("{}: read the body", doing()),
                        e,
                    ));
                }
            };
            if read == 0 {
                break;
            }
            if copied + read as u64 > length {
                return Err(StorageError::Io {
                    doing: doing(),
                    source: io::Error::new(
                        ErrorKind::InvalidInput,
                        format!("the body is longer than the {length} bytes announced"),
                    ),
                });
            }
            write(&buffer[..read])?;
            copied += read as u64;
        }
        if copied < length {
            return Err(StorageError::Io {
                doing: doing(),
                source: io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("the body ended after {copied} of the {length} bytes announced"),
                ),
            });
        }
        Ok(())
    }

    /// The whole body, read (and checked as [`PutBody::copy`] checks it) before anything is
    /// sent, so a body that fails, is cut short or is cancelled leaves no object: what a backend
    /// that puts small objects in one request sends.
    pub(crate) fn read_whole(self, doing: &dyn Fn() -> String) -> Result<Vec<u8>, StorageError> {
        let cancel = self.cancel;
        let mut bytes = Vec::with_capacity(self.length as usize);
        self.copy(doing, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        cancel.check(doing)?;
        Ok(bytes)
    }
}

/// An error and its causes on one line, each cause once (an HTTP client's errors repeat
/// their sources' text).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// The names of the children of `base` (a prefix ending in `/`) among the keys and common
/// prefixes `found` of a one-level listing, sorted, each once, without a trailing `/`.
pub(crate) fn child_names<'a>(base: &str, found: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = found
        .filter_map(|key| key.strip_prefix(base))
        .map(|name| name.trim_end_matches('/'))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A reader that fails with `Cancelled` once its token is cancelled: what backends wrap their
/// streams in so a long read stops between chunks.
pub(crate) struct CancellableReader<R> {
    pub(crate) inner: R,
    pub(crate) cancel: Cancel,
    /// What the read is, for the error ("read a/b from /repo").
    pub(crate) doing: String,
}

impl<R: Read> Read for CancellableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel
            .check(|| self.doing.clone())
            .map_err(StorageError::into_io)?;
        let want = buf.len().min(CHUNK);
        self.inner.read(&mut buf[..want])
    }
}

/// The concatenation of byte slices, as a reader.
pub(crate) struct PartsReader<'a> {
    parts: &'a [&'a [u8]],
    index: usize,
    offset: usize,
}

impl<'a> PartsReader<'a> {
    pub(crate) fn new(parts: &'a [&'a [u8]]) -> PartsReader<'a> {
        PartsReader {
            parts,
            index: 0,
            offset: 0,
        }
    }
}

impl Read for PartsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(part) = self.parts.get(self.index) {
            let rest = &part[self.offset..];
            if rest.is_empty() {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.offset += n;
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key `text` names, for tests of every backend in this module.
    pub(super) fn key(text: &str) -> ObjectKey {
        ObjectKey::new(text).unwrap()
    }

    /// Checks that `store`, holding an object at `a/b/c`, refuses one at a prefix of its key
    /// (`a/b`) and one under it (`a/b/c/d`), saying which, as every backend must.
    pub(super) fn refuses_keys_that_are_prefixes(store: &dyn Storage) {
        let err = store.put_if_absent(&key("a/b"), &[b"2"]).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains("prefix of other objects' keys"),
            "{err}"
        );
        let err = store.put_if_absent(&key("a/b/c/d"), &[b"3"]).unwrap_err();
        assert!(err.to_string().contains("is a prefix of this key"), "{err}");
    }

    #[test]
    fn keys_cannot_escape_the_root_or_collide_with_temporary_files() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "../x",
            "a/./b",
            "a/.hidden",
            "a/b c",
            "a/b\\c",
        ] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert!(key("a/b").is_under(&key("a/b")));
        assert!(key("a/b/c").is_under(&key("a/b")));
        assert!(!key("a/bc").is_under(&key("a/b")));
        assert!(!key("a/bc/d").is_under(&key("a/b")));
        assert!(!key("a").is_under(&key("a/b")));
    }

    #[test]
    fn ranges_are_cut_at_the_end_of_the_object() {
        assert_eq!(ByteRange::ALL.within(10), (0, 10));
        assert_eq!(ByteRange::new(2, 3).within(10), (2, 5));
        assert_eq!(ByteRange::new(8, 5).within(10), (8, 10));
        assert_eq!(ByteRange::new(12, 5).within(10), (10, 10));
        assert_eq!(ByteRange::starting_at(4).within(10), (4, 10));
        assert_eq!(ByteRange::new(u64::MAX, u64::MAX).within(10), (10, 10));
    }

    #[test]
    fn errors_say_whether_to_retry() {
        let io = |kind| StorageError::Io {
            doing: "read x".into(),
            source: io::Error::from(kind),
        };
        assert!(
            StorageError::Transient {
                doing: "put x".into(),
                reason: "503 SlowDown".into()
            }
            .is_retryable()
        );
        assert!(io(ErrorKind::TimedOut).is_retryable());
        assert!(io(ErrorKind::Interrupted).is_retryable());
        assert!(io(ErrorKind::ConnectionReset).is_retryable());
        assert!(!io(ErrorKind::Other).is_retryable());
        assert!(!io(ErrorKind::StorageFull).is_retryable());
        let missing = StorageError::NotFound {
            key: key("a"),
            location: "here".into(),
        };
        assert!(missing.is_not_found() && !missing.is_retryable());
        assert!(
            !StorageError::Cancelled {
                doing: "put x".into()
            }
            .is_retryable()
        );
        let denied = StorageError::from_io("write x", io::Error::from(ErrorKind::PermissionDenied));
        assert!(matches!(denied, StorageError::PermissionDenied { .. }));
        assert!(!denied.is_retryable());
    }

    #[test]
    fn a_storage_error_survives_a_trip_through_io_error() {
        let original = StorageError::Transient {
            doing: "get a".into(),
            reason: "connection reset".into(),
        };
        let io = original.into_io();
        assert_eq!(io.kind(), ErrorKind::TimedOut, "never Interrupted");
        let back = StorageError::from_io("read the body", io);
        assert!(back.is_retryable());
        assert_eq!(
            back.to_string(),
            "get a: connection reset (a transient failure; trying again may succeed)"
        );
    }

    #[test]
    fn a_body_must_hold_exactly_the_announced_length() {
        let copy = |body: &[u8], length| {
            let mut out = Vec::new();
            let body = PutBody {
                reader: &mut { body },
                length,
                cancel: &Cancel::never(),
            };
            body.copy(&|| "put k".to_owned(), |chunk| {
                out.extend_from_slice(chunk);
                Ok(())
            })
            .map(|()| out)
        };
        assert_eq!(copy(b"abc", 3).unwrap(), b"abc");
        assert_eq!(copy(b"", 0).unwrap(), b"");
        let short = copy(b"ab", 3).unwrap_err();
        assert_eq!(
            short.to_string(),
            "put k: the body ended after 2 of the 3 bytes announced"
        );
        assert!(!short.is_retryable());
        let long = copy(b"abcd", 3).unwrap_err();
        assert_eq!(
            long.to_string(),
            "put k: the body is longer than the 3 bytes announced"
        );
    }

    #[test]
    fn parts_read_as_their_concatenation() {
        let parts: [&[u8]; 4] = [b"ab", b"", b"cde", b"f"];
        let mut reader = PartsReader::new(&parts);
        let mut out = Vec::new();
        let mut buf = [0; 2];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"abcdef");
    }

    #[test]
    fn cancelling_a_clone_cancels_the_token() {
        let cancel = Cancel::new();
        let clone = cancel.clone();
        assert!(cancel.check(|| "x".into()).is_ok());
        clone.cancel();
        assert!(cancel.check(|| "list a".into()).unwrap_err().is_cancelled());
        let never = Cancel::never();
        never.cancel();
        assert!(!never.is_cancelled());
    }
}
