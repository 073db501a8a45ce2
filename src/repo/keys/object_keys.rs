//! The keyring as the repository's codec asks for keys: [`RepoKeys`] is its [`ObjectKeys`].

use zeroize::Zeroizing;

use super::repo_keys::RepoKeys;
use crate::repo::codec::ObjectKeys;
use crate::repo::crypto::DataKey;

impl ObjectKeys for RepoKeys {
    fn sealing_key(&self) -> anyhow::Result<DataKey> {
        Ok(self.for_writing()?.current().clone())
    }

    fn opening_key(&self, id: u32) -> anyhow::Result<DataKey> {
        let keyring = self.for_reading(id)?;
        Ok(keyring
            .data_key(id)
            .expect("for_reading answers with a keyring that holds the key")
            .clone())
    }

    fn chunk_name_key(&self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        Ok(Zeroizing::new(*self.for_writing()?.chunk_name_key()))
    }

    fn enroll_stanza(&self, stanza: &str) -> anyhow::Result<String> {
        let id = self.open_or_create_keyring()?;
        self.register_stanza(stanza)?;
        Ok(id)
    }

    fn repository_id(&self) -> anyhow::Result<String> {
        Ok(self.for_writing()?.repository_id().to_owned())
    }

    fn open_or_create_keyring(&self) -> anyhow::Result<String> {
        Ok(self.create_or_open()?.repository_id().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::codec::Codec;
    use crate::repo::keys::KeySource;
    use crate::repo::keys::kdf::tests::CHEAP;
    use crate::repo::{Compression, Repository, StanzaIdentity, WriteSettings, stanza};
    use crate::storage::{MemoryStorage, ObjectKey, Storage};

    fn repository(storage: &Arc<dyn Storage>, passphrase: &str) -> Repository {
        let keys = RepoKeys::new(
            Arc::clone(storage),
            KeySource::PassphraseCommand(format!("printf %s '{passphrase}'")),
        )
        .with_kdf_cost(CHEAP);
        Repository::with_codec(
            Box::new(Arc::clone(storage)),
            Codec::encrypted(
                WriteSettings {
                    compression: Compression::Zstd,
                    zstd_level: 1,
                },
                Arc::new(keys),
            ),
        )
    }

    #[test]
    fn objects_sealed_under_the_keyring_open_in_another_process_and_after_a_rotation() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let writer = repository(&storage, "one");
        let identity = StanzaIdentity {
            format: stanza::STANZA_FORMAT,
            stanza: "main".to_owned(),
            system_id: 7,
            pg_version: 15,
            segment_size: 16 << 20,
            created: "2026-12-06T00:00:00Z".to_owned(),
            cipher: None,
            repository: None,
            chunk_hash: None,
        };
        writer.create_stanza(&identity).unwrap();
        let stanza = writer.open_stanza("main").unwrap();
        let first = ObjectKey::new("main/walindex/a").unwrap();
        stanza.put_new_object(&first, b"entry a").unwrap();

        let admin = RepoKeys::new(
            Arc::clone(&storage),
            KeySource::PassphraseCommand("printf %s one".to_owned()),
        );
        assert_eq!(admin.registered_stanzas().unwrap(), vec!["main"]);
        admin.rotate().unwrap();

        let reader = repository(&storage, "one");
        let usage = reader.objects_by_key(&["main".to_owned()]).unwrap();
        assert_eq!(usage.by_key.get(&1), Some(&1));
        let stanza = reader.open_stanza("main").unwrap();
        let second = ObjectKey::new("main/walindex/b").unwrap();
        stanza.put_new_object(&second, b"entry b").unwrap();
        let usage = reader.objects_by_key(&["main".to_owned()]).unwrap();
        assert_eq!(usage.by_key.get(&2), Some(&1));
    }
}
