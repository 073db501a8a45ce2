//! Carrying out a snapshot's plan: objects to read are read by `concurrency` threads at once,
//! each cutting its object's body into chunks as it arrives and queueing them to the sink's
//! store workers, so a read never waits for a store's fsyncs unless every store worker is busy
//! and the queue full (which holds a fast bucket to the repository's pace with a bounded amount
//! of memory). An
//! object whose read breaks off is read again from the start, a bounded number of times. Every
//! header recorded comes from the read that gave the bytes, never from the listing, so an object
//! replaced between the listing and its read is recorded as it was read.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use super::client::{BucketClient, Listed};
use super::diff::Step;
use super::manifest::ObjectEntry;
use crate::sources::cutter::{CutBuffer, CutError};
use crate::sources::sink::{QueuedChunk, SnapshotSink};

/// Reads of one object in all before the snapshot fails.
const READ_ATTEMPTS: u32 = 4;

/// What carrying out the plan gave.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The snapshot's objects, by key.
    pub entries: BTreeMap<String, ObjectEntry>,
    /// Objects the previous snapshot lacked.
    pub added: u64,
    /// Objects whose content or headers changed since the previous snapshot.
    pub changed: u64,
    pub fetched: u64,
    pub fetched_bytes: u64,
    pub changed_while_read: u64,
    /// Listed objects gone by the time they were read.
    pub vanished: Vec<String>,
}

/// One object's outcome.
enum Outcome {
    Entry {
        entry: Box<ObjectEntry>,
        /// The chunks of a read object, queued to be stored: the entry's, once stored.
        queued: Option<Vec<QueuedChunk>>,
        previous: Option<Box<ObjectEntry>>,
        fetched_bytes: Option<u64>,
        changed_while_read: bool,
    },
    Vanished(String),
}

/// Carries out `steps` with `concurrency` threads, storing what is read into `sink`.
pub fn carry_out(
    client: &BucketClient,
    sink: &SnapshotSink<'_>,
    steps: Vec<Step>,
    concurrency: usize,
) -> anyhow::Result<Fetched> {
    let mut fetched = Fetched::default();
    let mut work = Vec::new();
    for step in steps {
        match step {
            Step::Keep(entry) => {
                fetched.entries.insert(entry.key.clone(), entry);
            }
            other => work.push(other),
        }
    }
    let queue = Mutex::new(work.into_iter());
    let outcomes = Mutex::new(Vec::new());
    let failed = AtomicBool::new(false);
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| scope.spawn(|| work_through(client, sink, &queue, &outcomes, &failed)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a fetch worker does not panic"))
            .collect()
    });
    for result in results {
        result?;
    }
    for mut outcome in outcomes.into_inner().expect("no worker panicked") {
        if let Outcome::Entry { entry, queued, .. } = &mut outcome
            && let Some(queued) = queued.take()
        {
            entry.chunks = sink.stored_chunks(queued)?;
        }
        fetched.add(outcome);
    }
    Ok(fetched)
}

impl Fetched {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Vanished(key) => self.vanished.push(key),
            Outcome::Entry {
                entry,
                previous,
                fetched_bytes,
                changed_while_read,
                ..
            } => {
                if let Some(bytes) = fetched_bytes {
                    self.fetched += 1;
                    self.fetched_bytes += bytes;
                }
                self.changed_while_read += u64::from(changed_while_read);
                match previous {
                    None => self.added += 1,
                    Some(previous) if !same_object(&previous, &entry) => self.changed += 1,
                    Some(_) => {}
                }
                self.entries.insert(entry.key.clone(), *entry);
            }
        }
    }
}

/// Whether two entries hold the same content with the same headers (times aside).
fn same_object(a: &ObjectEntry, b: &ObjectEntry) -> bool {
    a.size == b.size && a.chunks == b.chunks && a.headers == b.headers
}

/// One worker: steps off the queue until it is empty or any worker failed.
fn work_through(
    client: &BucketClient,
    sink: &SnapshotSink<'_>,
    queue: &Mutex<std::vec::IntoIter<Step>>,
    outcomes: &Mutex<Vec<Outcome>>,
    failed: &AtomicBool,
) -> anyhow::Result<()> {
    let mut reader = ObjectReader {
        client,
        sink,
        buffer: CutBuffer::default(),
    };
    while !failed.load(Ordering::Relaxed) {
        let Some(step) = queue.lock().expect("no worker panics holding it").next() else {
            return Ok(());
        };
        let outcome = match step {
            Step::Refresh { listed, previous } => reader.refresh(listed, previous),
            Step::Fetch { listed, previous } => reader.fetch(&listed, previous),
            Step::Keep(_) => unreachable!("kept entries are not queued"),
        };
        match outcome {
            Ok(outcome) => outcomes
                .lock()
                .expect("no worker panics holding it")
                .push(outcome),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// One worker's reads: its client, where chunks go, and the buffer it cuts them in.
struct ObjectReader<'r, 's> {
    client: &'r BucketClient,
    sink: &'r SnapshotSink<'s>,
    buffer: CutBuffer,
}

/// One read of an object.
enum Read {
    /// Its chunks are queued to be stored; the entry's own list is empty until they are.
    Whole {
        entry: Box<ObjectEntry>,
        queued: Vec<QueuedChunk>,
        changed_while_read: bool,
    },
    /// Deleted since it was listed.
    Gone,
    /// The body broke off or was not the length announced (why, naming the object): worth
    /// reading again.
    BrokeOff(String),
}

impl ObjectReader<'_, '_> {
    /// Reads the headers of an object whose content is known; read whole if it changed meanwhile.
    fn refresh(&mut self, listed: Listed, previous: ObjectEntry) -> anyhow::Result<Outcome> {
        let version = listed.version_id.as_deref();
        let Some((etag, mut headers, tag_count)) = self.client.head(&listed.key, version)? else {
            return Ok(Outcome::Vanished(listed.key));
        };
        if etag != listed.etag {
            return self.fetch(&listed, Some(previous));
        }
        if tag_count > 0 {
            headers.tags = self.client.tags(&listed.key, version)?;
        }
        let entry = Box::new(ObjectEntry {
            last_modified: listed.last_modified,
            version_id: listed.version_id,
            headers,
            ..previous.clone()
        });
        Ok(Outcome::Entry {
            entry,
            queued: None,
            previous: Some(Box::new(previous)),
            fetched_bytes: None,
            changed_while_read: false,
        })
    }

    /// Reads an object whole and stores its content, trying again when the read breaks off.
    fn fetch(&mut self, listed: &Listed, previous: Option<ObjectEntry>) -> anyhow::Result<Outcome> {
        let mut attempt = 1;
        loop {
            match self.read_once(listed)? {
                Read::Gone => return Ok(Outcome::Vanished(listed.key.clone())),
                Read::Whole {
                    entry,
                    queued,
                    changed_while_read,
                } => {
                    return Ok(Outcome::Entry {
                        fetched_bytes: Some(entry.size),
                        entry,
                        queued: Some(queued),
                        previous: previous.map(Box::new),
                        changed_while_read,
                    });
                }
                Read::BrokeOff(reason) if attempt < READ_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(
                        "{reason}; reading it again, attempt {attempt} of {READ_ATTEMPTS}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)));
                }
                Read::BrokeOff(reason) => {
                    anyhow::bail!("{reason}; it was read {READ_ATTEMPTS} times, each broke off")
                }
            }
        }
    }

    fn read_once(&mut self, listed: &Listed) -> anyhow::Result<Read> {
        // The SDK has retried the request itself; a failure left is the snapshot's.
        // Listed by versions, the read is of the version listed, whatever came since.
        let version = listed.version_id.as_deref();
        let Some(fetched) = self.client.get(&listed.key, version)? else {
            return Ok(Read::Gone);
        };
        let mut queued = Vec::new();
        let mut body = std::io::Read::take(fetched.body, fetched.size + 1);
        let sink = self.sink;
        let read = self.buffer.cut_reader(&mut body, |chunk| {
            queued.push(sink.queue_chunk(chunk)?);
            Ok(())
        });
        match read {
            Ok(length) if length == fetched.size => {}
            Ok(length) => {
                return Ok(Read::BrokeOff(format!(
                    "read {:?} from {}: it gave {length} bytes where it announced {}",
                    listed.key,
                    self.client.location(),
                    fetched.size
                )));
            }
            Err(CutError::Read(e)) => return Ok(Read::BrokeOff(format!("{e}"))),
            Err(CutError::Chunk(e)) => {
                return Err(e).with_context(|| format!("store {:?}", listed.key));
            }
        }
        let mut headers = fetched.headers;
        if fetched.tag_count > 0 {
            headers.tags = self.client.tags(&listed.key, version)?;
        }
        // The listing's time is kept (to the millisecond, as the next listing will show it) only
        // when this read is of the object listed; otherwise the read's own.
        let as_listed = listed
            .etag
            .as_ref()
            .is_none_or(|etag| Some(etag) == fetched.etag.as_ref())
            && listed.modified_secs == fetched.modified_secs
            && listed.size == fetched.size;
        let entry = Box::new(ObjectEntry {
            key: listed.key.clone(),
            size: fetched.size,
            etag: fetched.etag,
            version_id: listed.version_id.clone(),
            last_modified: if as_listed {
                listed.last_modified.clone()
            } else {
                fetched.last_modified
            },
            headers,
            chunks: Vec::new(),
        });
        Ok(Read::Whole {
            entry,
            queued,
            changed_while_read: !as_listed,
        })
    }
}
