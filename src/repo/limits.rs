//! The largest original size each kind of stored object may have. Readers refuse an object that
//! is larger than any such file can be stored as, or whose header promises more, before reading
//! or decompressing the rest: a damaged or hostile repository cannot make Tidemark allocate
//! without bound (a zstd frame of a few MiB can decompress to many GiB).

/// A lock record: a few hundred bytes of JSON.
pub const LOCK: u64 = 64 << 10;
/// One segment's WAL index entry: a few hundred bytes of JSON, more with many restore points.
pub const WAL_INDEX_ENTRY: u64 = 1 << 20;
/// A pack of the index entries of one WAL directory (at most 4096 segments of 1 MiB).
pub const WAL_INDEX_PACK: u64 = 64 << 20;
/// A backup's record (`backup.json`), which lists every file of the backup.
pub const BACKUP_RECORD: u64 = 1 << 30;
/// PostgreSQL's backup manifest, one line per file of the cluster.
pub const BACKUP_MANIFEST: u64 = 1 << 30;
/// A stanza's identity (`stanza.json`): a few hundred bytes of JSON.
pub const STANZA_IDENTITY: u64 = 1 << 20;
/// A history or backup history file: `tidemark-archive` refuses to store larger ones.
pub const HISTORY_FILE: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::WalFileName;
    use crate::repo::object;
    use crate::repo::{Compression, PutOnce, Repository, layout, test_repository};
    use crate::storage::ObjectKey;
    use crate::storage::memory::MemoryStorage;

    fn repository() -> Repository {
        test_repository(Box::new(MemoryStorage::new()))
    }

    fn store(repo: &Repository, key: &ObjectKey, bytes: &[u8]) {
        repo.storage().put_if_absent(key, &[bytes]).unwrap();
    }

    /// A valid object of `len` zero bytes: zstd stores it in a few hundred bytes.
    fn zeros_object(len: usize) -> Vec<u8> {
        let encoded = object::encode(Compression::Zstd, 1, &vec![0; len]).unwrap();
        [&encoded.header_bytes()[..], &encoded.body].concat()
    }

    #[test]
    fn an_object_whose_header_promises_more_than_its_kind_holds_is_refused_undecompressed() {
        let repo = repository();
        let stanza = repo.open_stanza("main").unwrap();
        let key = layout::lock("main", "backup", 1);
        let bomb = zeros_object(LOCK as usize + 1);
        assert!(bomb.len() < 1024, "{} bytes", bomb.len());
        store(&repo, &key, &bomb);
        let error = stanza.get_checked_object(&key, LOCK).unwrap_err();
        assert!(
            format!("{error:#}").contains("its header promises 65537 bytes, more than the 65536"),
            "{error:#}"
        );
    }

    #[test]
    fn an_object_larger_than_its_kind_can_be_stored_in_is_refused() {
        let repo = repository();
        let stanza = repo.open_stanza("main").unwrap();
        let key = layout::lock("main", "backup", 1);
        let oversized = vec![0u8; object::max_stored_len(LOCK) as usize + 1];
        store(&repo, &key, &oversized);
        let error = stanza.get_checked_object(&key, LOCK).unwrap_err();
        assert!(
            format!("{error:#}").contains("is larger than the 131632 bytes"),
            "{error:#}"
        );
    }

    #[test]
    fn an_archived_segment_promising_more_than_a_segment_is_refused() {
        let repo = repository();
        let stanza = repo.open_stanza("main").unwrap();
        let name = WalFileName::parse("000000010000000000000001").unwrap();
        store(&repo, &stanza.wal_key(name), &zeros_object((16 << 20) + 1));
        let error = stanza.get_wal(name).unwrap_err();
        assert!(
            format!("{error:#}").contains("its header promises 16777217 bytes"),
            "{error:#}"
        );
        let history = WalFileName::parse("00000002.history").unwrap();
        store(
            &repo,
            &stanza.wal_key(history),
            &zeros_object(HISTORY_FILE as usize + 1),
        );
        assert!(stanza.get_wal(history).is_err());
    }

    #[test]
    fn an_oversized_stanza_identity_is_refused() {
        let repo = test_repository(Box::new(MemoryStorage::new()));
        let key = layout::stanza_identity("other");
        store(
            &repo,
            &key,
            &vec![b' '; object::max_stored_len(STANZA_IDENTITY) as usize + 1],
        );
        let error = repo.open_stanza("other").err().expect("refused");
        assert!(format!("{error:#}").contains("larger than"), "{error:#}");
    }

    #[test]
    fn a_put_once_finding_a_larger_object_finds_other_content() {
        let repo = repository();
        let stanza = repo.open_stanza("main").unwrap();
        let key = layout::lock("main", "backup", 1);
        store(&repo, &key, &zeros_object(1 << 20));
        assert_eq!(stanza.put_once(&key, b"{}").unwrap(), PutOnce::Different);
        let small = layout::lock("main", "backup", 2);
        stanza.put_once(&small, b"{}").unwrap();
        assert_eq!(stanza.put_once(&small, b"{}").unwrap(), PutOnce::Identical);
        assert_eq!(stanza.put_once(&small, b"[]").unwrap(), PutOnce::Different);
    }
}
