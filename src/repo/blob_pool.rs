//! A pool of content chunks, each stored once under its name (the hash its owner's identity
//! names — BLAKE3, or SHA-256 in owners made before — or in an encrypted repository its keyed
//! BLAKE3): the chunks of one stanza's backups, or of one source's snapshots.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use super::catalog::{ChunkRef, MAX_CHUNK};
use super::gc::StoredBlob;
use super::{BoundedRead, ChunkHash, Repository, Stanza, layout, object};
use crate::storage::{Cancel, DeferredSyncs, PutOutcome};

/// The chunks under `<owner>/blob/`.
pub struct BlobPool<'r> {
    repo: &'r Repository,
    /// The key prefix the pool lives under: a stanza's name, or `_source/<name>`.
    owner: String,
    /// What names its chunks.
    hash: ChunkHash,
    /// Where the directory fsyncs of chunks stored or found are owed, when the writer makes
    /// them durable once before it reports any (see [`BlobPool::deferring_syncs`]).
    deferred: Option<DeferredSyncs>,
}

impl Stanza<'_> {
    /// The chunks this stanza's backups share.
    pub fn blobs(&self) -> BlobPool<'_> {
        BlobPool::new(self.repository(), self.name(), self.chunk_hash())
    }
}

impl<'r> BlobPool<'r> {
    pub fn new(repo: &'r Repository, owner: &str, hash: ChunkHash) -> BlobPool<'r> {
        BlobPool {
            repo,
            owner: owner.to_owned(),
            hash,
            deferred: None,
        }
    }

    /// This pool, owing the directory fsyncs of the chunks it stores or finds until
    /// [`BlobPool::sync_deferred`] (each chunk's content is still fsynced before its rename):
    /// for a writer that refers to none of them before that, as a backup does before its
    /// record.
    pub fn deferring_syncs(self) -> BlobPool<'r> {
        BlobPool {
            deferred: Some(DeferredSyncs::default()),
            ..self
        }
    }

    /// Makes durable the names of the chunks stored or found since the last call: what a pool
    /// made by [`BlobPool::deferring_syncs`] needs before anything refers to them.
    pub fn sync_deferred(&self) -> anyhow::Result<()> {
        if let Some(deferred) = &self.deferred {
            self.repo
                .storage()
                .sync_deferred(deferred)
                .context("make the stored chunks durable")?;
        }
        Ok(())
    }

    /// What names this pool's chunks.
    pub fn chunk_hash(&self) -> ChunkHash {
        self.hash
    }

    pub fn repository(&self) -> &'r Repository {
        self.repo
    }

    /// The stored size of a blob, or `None` if it is not stored. A blob found is made durable
    /// first, so a backup may reference it: its writer may have been killed before its fsyncs.
    pub fn size(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let key = layout::blob(&self.owner, name);
        let storage = self.repository().storage();
        let meta = match &self.deferred {
            Some(deferred) => storage.head_durable_deferred(&key, deferred)?,
            None => storage.head_durable(&key)?,
        };
        Ok(meta.map(|meta| meta.size))
    }

    /// Stores chunk `bytes` as blob `name` unless it is there; returns the stored size, and
    /// whether this call stored it.
    pub fn put(&self, name: &str, bytes: &[u8]) -> anyhow::Result<(u64, bool)> {
        let key = layout::blob(&self.owner, name);
        let stored = self.repo.codec().encode(&key, bytes)?;
        let storage = self.repository().storage();
        let outcome = match &self.deferred {
            Some(deferred) => storage.put_if_absent_deferred(&key, &stored.parts(), deferred)?,
            None => storage.put_if_absent(&key, &stored.parts())?,
        };
        Ok((stored.len(), outcome == PutOutcome::Created))
    }

    /// Reads a blob and checks it: its object checksums and its name (the hash of its content).
    /// A blob is a chunk of at most [`MAX_CHUNK`] bytes: a larger object, or a header promising
    /// more, is refused before it is read or decompressed further.
    pub fn get(&self, name: &str, out: &mut Vec<u8>) -> anyhow::Result<()> {
        let key = layout::blob(&self.owner, name);
        let location = self.repo.storage().location();
        let stored = match self
            .repo
            .read_at_most(&key, MAX_CHUNK)
            .with_context(|| format!("read blob {key}"))?
        {
            BoundedRead::Object(stored) => self.repo.open_object(&key, stored)?.frame,
            BoundedRead::Missing => bail!("blob {key} does not exist in {location}"),
            BoundedRead::TooLarge { limit } => bail!(
                "blob {key} in {location} is damaged: it is larger than the {limit} bytes any chunk can be stored in"
            ),
        };
        let header = object::ObjectHeader::decode(&stored)
            .with_context(|| format!("blob {key} in {location} is damaged"))?;
        if header.original_len > MAX_CHUNK {
            bail!(
                "blob {key} in {location} is damaged: its header promises {} bytes, more than the {MAX_CHUNK} of any chunk",
                header.original_len
            );
        }
        out.clear();
        object::decode_into(&stored, out)
            .with_context(|| format!("blob {key} in {location} is damaged"))?;
        let actual = self.repo.codec().chunk_name(out, self.hash)?;
        if actual != name {
            bail!(
                "blob {key} in {location} is damaged: its content hashes to {actual}, not the name it is stored under"
            );
        }
        Ok(())
    }

    /// Every stored chunk, by SHA-256. An object under `blob/` that is not named as a chunk is
    /// an error: nothing else belongs there.
    pub fn list(&self) -> anyhow::Result<BTreeMap<String, StoredBlob>> {
        let storage = self.repo.storage();
        let mut blobs = BTreeMap::new();
        for listed in storage.list(&layout::blob_root(&self.owner), &Cancel::never())? {
            let sha256 = listed.key.file_name().to_owned();
            let expected =
                super::gc::is_chunk_name(&sha256).then(|| layout::blob(&self.owner, &sha256));
            if expected.as_ref() != Some(&listed.key) {
                return Err(anyhow::anyhow!(
                    "unexpected object {} in {}: only chunks named by their hash belong under blob/; move it away",
                    listed.key,
                    storage.location()
                ));
            }
            let blob = StoredBlob {
                key: listed.key,
                size: listed.size,
            };
            blobs.insert(sha256, blob);
        }
        Ok(blobs)
    }

    /// Reads chunk `chunk` as [`BlobPool::get`] does, and checks it holds the bytes the record
    /// that names it says.
    pub fn get_chunk(&self, chunk: &ChunkRef, out: &mut Vec<u8>) -> anyhow::Result<()> {
        self.get(&chunk.name, out)?;
        if out.len() as u64 != chunk.size {
            bail!(
                "chunk {} holds {} bytes, not the {} its record says",
                chunk.name,
                out.len(),
                chunk.size
            );
        }
        Ok(())
    }

    /// Names chunk `bytes` by its content and stores it unless the pool has it: what a backup
    /// or snapshot does with each chunk it cuts.
    pub fn store(&self, bytes: &[u8]) -> anyhow::Result<StoredChunk> {
        let name = self.repo.codec().chunk_name(bytes, self.hash)?;
        let _turn = self.repo.blob_puts().turn(&name);
        let (stored_size, new) = match self.size(&name) {
            Ok(Some(stored_size)) => Ok((stored_size, false)),
            // `new` is false when another process stored the same content a moment earlier.
            Ok(None) => self.put(&name, bytes),
            Err(e) => Err(e),
        }
        .with_context(|| format!("store chunk {name}"))?;
        Ok(StoredChunk {
            name,
            stored_size,
            new,
        })
    }
}

/// A chunk [`BlobPool::store`] stored or found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChunk {
    pub name: String,
    /// Its stored size (header and compressed content).
    pub stored_size: u64,
    /// Whether this call stored it; otherwise the pool had it already.
    pub new: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::test_repository;
    use crate::storage::MemoryStorage;

    fn repository() -> Repository {
        test_repository(Box::new(MemoryStorage::new()))
    }

    /// A stanza as `stanza-create` made it before chunks were named by BLAKE3: no `chunk_hash`.
    fn stanza_of_before(repo: &Repository) {
        let identity = crate::repo::test_stanza_identity("old", ChunkHash::Sha256);
        assert_eq!(identity.chunk_hash, None);
        repo.create_stanza(&identity).unwrap();
    }

    #[test]
    fn a_new_stanza_names_chunks_by_blake3_and_one_made_before_keeps_sha256() {
        use sha2::Digest;
        let repo = repository();
        stanza_of_before(&repo);
        let content = b"a chunk of a file".repeat(1000);
        let new = repo.open_stanza("main").unwrap();
        let stored = new.blobs().store(&content).unwrap();
        assert_eq!(stored.name, blake3::hash(&content).to_hex().as_str());
        let old = repo.open_stanza("old").unwrap();
        let kept = old.blobs().store(&content).unwrap();
        let sha256: String = sha2::Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(kept.name, sha256);
        // Each reads its chunk back, checked against the name under its own hash.
        let mut out = Vec::new();
        new.blobs().get(&stored.name, &mut out).unwrap();
        old.blobs().get(&kept.name, &mut out).unwrap();
        assert!(out == content);
        // A chunk put under the other hash's name is damage, in either pool.
        old.blobs().put(&stored.name, &content).unwrap();
        let error = format!("{:#}", old.blobs().get(&stored.name, &mut out).unwrap_err());
        assert!(error.contains(&format!("hashes to {sha256}")), "{error}");
    }

    #[test]
    fn a_stanza_naming_an_unknown_chunk_hash_is_refused() {
        let repo = repository();
        let mut identity = repo.open_stanza("main").unwrap().identity().clone();
        identity.chunk_hash = Some("md5".into());
        let error = crate::repo::StanzaIdentity::from_json(&identity.to_json()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "it records chunk_hash \"md5\", which this Tidemark does not know; upgrade Tidemark"
        );
    }

    #[test]
    fn a_blob_larger_than_any_chunk_is_refused_before_it_is_read_or_decompressed() {
        let repo = repository();
        let stanza = repo.open_stanza("main").unwrap();
        let mut out = Vec::new();
        let missing = "00".repeat(32);
        let error = stanza.blobs().get(&missing, &mut out).unwrap_err();
        let location = repo.storage().location();
        assert_eq!(
            error.to_string(),
            format!("blob main/blob/00/{missing} does not exist in {location}")
        );

        // Stored as it is, a chunk of one more byte than any chunk holds.
        let big = vec![1u8; MAX_CHUNK as usize + 1];
        let sha256 = "11".repeat(32);
        stanza.blobs().put(&sha256, &big).unwrap();
        let error = format!("{:#}", stanza.blobs().get(&sha256, &mut out).unwrap_err());
        assert!(
            error.contains("is damaged: its header promises 16777217 bytes, more than the 16777216 of any chunk"),
            "{error}"
        );
        // Larger still than any stored chunk can be: not read past the limit.
        let huge = vec![2u8; MAX_CHUNK as usize * 2];
        let sha256 = "22".repeat(32);
        let object = object::encode(crate::repo::Compression::None, 0, &huge).unwrap();
        let key = layout::blob("main", &sha256);
        repo.storage()
            .put_if_absent(&key, &[&object.header_bytes(), &object.body])
            .unwrap();
        let error = format!("{:#}", stanza.blobs().get(&sha256, &mut out).unwrap_err());
        assert!(
            error.contains(&format!(
                "is damaged: it is larger than the {} bytes any chunk can be stored in",
                object::max_stored_len(MAX_CHUNK)
            )),
            "{error}"
        );
    }

    /// The storage operations it costs `threads` threads to store one chunk at once.
    fn operations_to_store_one_chunk(threads: usize) -> u64 {
        use crate::storage::faulty::{FaultPlan, FaultyStorage};
        use std::sync::Arc;
        let faulty = Arc::new(FaultyStorage::new(MemoryStorage::new(), FaultPlan::none()));
        let repo = test_repository(Box::new(Arc::clone(&faulty)));
        let stanza = repo.open_stanza("main").unwrap();
        let start = faulty.counts().operations;
        // Every operation slowed, so that without a turn all threads would find the chunk
        // missing and send it.
        faulty.set_plan(FaultPlan::none().with_delays(1.0, std::time::Duration::from_millis(20)));
        let chunk = vec![7u8; 4096];
        let stored: Vec<StoredChunk> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| stanza.blobs().store(&chunk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert_eq!(stored.iter().filter(|c| c.new).count(), 1);
        faulty.counts().operations - start
    }

    #[test]
    fn a_chunk_cut_by_many_threads_at_once_is_sent_once() {
        // One thread's store (a look, a put) plus a look for each other thread: what eight
        // stores one after another cost.
        let alone = operations_to_store_one_chunk(1);
        let together = operations_to_store_one_chunk(8);
        assert_eq!(
            together,
            alone + 7 * (alone - 1),
            "one put and a look per other thread"
        );
    }
}
