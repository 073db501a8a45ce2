//! The repository's keys as a running process sees them: opened at first use (no I/O and no key
//! derivation before), followed as they change — a writer looks for a newer generation at most
//! once a minute, a reader meeting an unknown key id looks at once — and changed by the key
//! operations, each one create-only put of the next generation.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use super::kdf::{KdfCost, SlotKdf};
use super::keyring::Keyring;
use super::source::{KeySource, Secret};
use super::store;
use crate::storage::{PutOutcome, Storage};

/// How often a writer looks for a newer keyring generation: a rotation reaches a long-lived
/// worker within this.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How long after a data key stops being current it may be retired: far beyond
/// [`REFRESH_INTERVAL`], so no writer still seals with it.
pub const RETIRE_GRACE: Duration = Duration::from_secs(10 * 60);

/// The repository's keys, opened lazily (no I/O and no KDF until first needed). Send + Sync.
pub struct RepoKeys {
    storage: Arc<dyn Storage>,
    source: KeySource,
    cost: KdfCost,
    refresh_interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    keyring: Option<Arc<Keyring>>,
    /// When a writer last looked for a newer generation (or the keyring was loaded).
    checked_at: Option<Instant>,
    /// The slot keys this process derived, by slot: a reload after a rotation derives nothing
    /// and runs no `passphrase_command` again.
    slot_keys: Vec<(SlotKdf, Zeroizing<[u8; 32]>)>,
}

/// What a key operation did: the keyring now in force, and what could not be cleaned up.
#[derive(Debug)]
pub struct KeyChange {
    pub keyring: Arc<Keyring>,
    /// Older generations that could not be deleted, one line each.
    pub warnings: Vec<String>,
}

impl RepoKeys {
    pub fn new(storage: Arc<dyn Storage>, source: KeySource) -> RepoKeys {
        RepoKeys {
            storage,
            source,
            cost: KdfCost::DEFAULT,
            refresh_interval: REFRESH_INTERVAL,
            state: Mutex::new(State::default()),
        }
    }

    /// These keys with new passphrase slots costing `cost` (tests use a cheap one; what a slot
    /// cost is stored in it, so any cost opens).
    pub fn with_kdf_cost(self, cost: KdfCost) -> RepoKeys {
        RepoKeys { cost, ..self }
    }

    /// These keys with writers looking for a newer generation every `interval`.
    pub fn with_refresh_interval(self, interval: Duration) -> RepoKeys {
        RepoKeys {
            refresh_interval: interval,
            ..self
        }
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // The state is replaced whole or not at all, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// For sealing: opens at first use; afterwards, at most once a minute, checks for a newer
    /// keyring generation (one listing of `_keys/`) and reloads, so a long-lived worker follows a rotation.
    pub fn for_writing(&self) -> anyhow::Result<Arc<Keyring>> {
        let mut state = self.state();
        let Some(keyring) = state.keyring.clone() else {
            return self.load(&mut state);
        };
        if state
            .checked_at
            .is_some_and(|at| at.elapsed() < self.refresh_interval)
        {
            return Ok(keyring);
        }
        // A listing, not a HEAD of the next generation: that one may already be deleted, when a
        // later operation finished in the meantime.
        let newest = store::generations(self.storage.as_ref())?.last().copied();
        if newest > Some(keyring.generation()) {
            return self.load(&mut state);
        }
        state.checked_at = Some(Instant::now());
        Ok(keyring)
    }

    /// For opening an object sealed with `key_id`: opens at first use; reloads once if the id
    /// is unknown; an error (one line, no secrets) if still unknown or retired.
    pub fn for_reading(&self, key_id: u32) -> anyhow::Result<Arc<Keyring>> {
        let mut state = self.state();
        let keyring = match state.keyring.clone() {
            Some(keyring) if keyring.data_key(key_id).is_some() => return Ok(keyring),
            // Known as retired: no newer generation brings a retired key back.
            Some(keyring) if keyring.is_retired(key_id) => keyring,
            _ => self.load(&mut state)?,
        };
        if keyring.data_key(key_id).is_some() {
            return Ok(keyring);
        }
        let (repository, generation) = (keyring.repository_id(), keyring.generation());
        if keyring.is_retired(key_id) {
            bail!(
                "data key {key_id} was retired from repository {repository}'s keyring (generation {generation}): an object sealed with it cannot be opened; it should not exist, run `tidemark verify`"
            );
        }
        bail!(
            "repository {repository}'s keyring (generation {generation}) has no data key {key_id}: the object was not sealed in this repository (planted, or copied from another one)"
        )
    }

    /// The newest keyring, read now (what `tidemark key` commands start from).
    pub fn open_newest(&self) -> anyhow::Result<Arc<Keyring>> {
        self.load(&mut self.state())
    }

    /// stanza-create: creates generation 1 (new repository id, KEK, name key, data key 1) if no
    /// keyring exists, else opens it. Create-only put; a lost race re-reads the winner's.
    pub fn create_or_open(&self) -> anyhow::Result<Arc<Keyring>> {
        let mut state = self.state();
        match store::read_newest(self.storage.as_ref())? {
            Some(_) => self.load(&mut state),
            None => self.create(&mut state),
        }
    }

    /// Records that stanza `name` lives in this encrypted repository (`_keys/stanzas/<name>`,
    /// empty, create-only), so `key retire` can scan every stanza without a root listing.
    pub fn register_stanza(&self, name: &str) -> anyhow::Result<()> {
        store::register_stanza(self.storage.as_ref(), name)
    }

    pub fn registered_stanzas(&self) -> anyhow::Result<Vec<String>> {
        store::registered_stanzas(self.storage.as_ref())
    }

    /// `tidemark key rotate`: a new data key, current from now on.
    pub fn rotate(&self) -> anyhow::Result<KeyChange> {
        let keyring = self.open_newest()?;
        self.commit(keyring.rotated(Utc::now()), "rotating")
    }

    /// `tidemark key change-passphrase`: one slot for `new` in place of every slot. The data
    /// keys do not change, so nothing else is rewritten.
    pub fn change_secret(&self, new: &Secret) -> anyhow::Result<KeyChange> {
        let keyring = self.open_newest()?;
        let kdf = SlotKdf::for_secret(new, self.cost);
        let slot_key = kdf.slot_key(new)?;
        let next = keyring.with_only_slot(kdf.clone(), &slot_key, Utc::now());
        let change = self.commit(next, "changing the passphrase")?;
        self.state().slot_keys.push((kdf, slot_key));
        Ok(change)
    }

    /// `tidemark key retire ID`: data key `id` removed, once it is neither current nor
    /// superseded less than [`RETIRE_GRACE`] before `now`, and `still_used` (the scan of every
    /// object) finds nothing sealed with it.
    pub fn retire(
        &self,
        id: u32,
        now: DateTime<Utc>,
        still_used: impl FnOnce(&Keyring) -> anyhow::Result<()>,
    ) -> anyhow::Result<KeyChange> {
        let keyring = self.open_newest()?;
        let next = keyring.without_key(id, now)?;
        // Objects that still use the key are the lasting reason, so they are named first; the
        // grace period after its rotation passes by itself.
        still_used(&keyring)?;
        check_grace(&keyring, id, now)?;
        self.commit(next, "retiring")
    }

    /// Reads the newest keyring and opens it, keeping it for the next callers.
    fn load(&self, state: &mut State) -> anyhow::Result<Arc<Keyring>> {
        let document = store::read_newest(self.storage.as_ref())?.with_context(|| {
            format!(
                "the repository in {} has no keyring (_keys/keyring.*): create it with `tidemark stanza-create`",
                self.storage.location()
            )
        })?;
        let keyring = match &state.keyring {
            None => self.open(state, document)?,
            Some(known) if known.repository_id() == document.repository => {
                known.reopen(document)?
            }
            Some(known) => bail!(
                "the keyring in {} is now repository {}'s, not {}'s: the repository was replaced under this process; restart it",
                self.storage.location(),
                document.repository,
                known.repository_id()
            ),
        };
        Ok(self.keep(state, keyring))
    }

    fn keep(&self, state: &mut State, keyring: Keyring) -> Arc<Keyring> {
        let keyring = Arc::new(keyring);
        state.keyring = Some(Arc::clone(&keyring));
        state.checked_at = Some(Instant::now());
        keyring
    }

    /// Opens `document` with the configured secret, read (and derived) only for a slot this
    /// process has no key for yet.
    fn open(
        &self,
        state: &mut State,
        document: super::document::KeyringDocument,
    ) -> anyhow::Result<Keyring> {
        let mut secret: Option<Secret> = None;
        let slot_keys = &mut state.slot_keys;
        Keyring::open(
            document,
            |kdf| {
                if let Some((_, key)) = slot_keys.iter().find(|(known, _)| known == kdf) {
                    return Ok(Some(key.clone()));
                }
                let secret = match &mut secret {
                    Some(secret) => secret,
                    None => secret.insert(self.source.read()?),
                };
                if !kdf.takes(secret) {
                    return Ok(None);
                }
                let key = kdf.slot_key(secret)?;
                slot_keys.push((kdf.clone(), key.clone()));
                Ok(Some(key))
            },
            &self.source.describe(),
        )
    }

    /// A new repository's keyring, stored create-only; if another process stored one first,
    /// that one, opened.
    pub(super) fn create(&self, state: &mut State) -> anyhow::Result<Arc<Keyring>> {
        let secret = self.source.read()?;
        let kdf = SlotKdf::for_secret(&secret, self.cost);
        let slot_key = kdf.slot_key(&secret)?;
        drop(secret);
        let keyring = Keyring::create(kdf.clone(), &slot_key, Utc::now());
        state.slot_keys.push((kdf, slot_key));
        match store::put(self.storage.as_ref(), keyring.document())? {
            PutOutcome::Created => Ok(self.keep(state, keyring)),
            PutOutcome::AlreadyExists => self.load(state),
        }
    }

    /// Stores `next` create-only as the generation after the one it was made from, then deletes
    /// the older generations (best effort). Losing the race to another key operation writes
    /// nothing.
    pub(super) fn commit(&self, next: Keyring, doing: &str) -> anyhow::Result<KeyChange> {
        let generation = next.generation();
        match store::put(self.storage.as_ref(), next.document())? {
            PutOutcome::Created => {}
            PutOutcome::AlreadyExists => bail!(
                "the keyring changed while {doing} (generation {generation} was written by another process); nothing written: run again"
            ),
        }
        let warnings = store::delete_older(self.storage.as_ref(), generation);
        let keyring = self.keep(&mut self.state(), next);
        Ok(KeyChange { keyring, warnings })
    }
}

/// Refuses to retire key `id` of `keyring` within [`RETIRE_GRACE`] of it being superseded.
fn check_grace(keyring: &Keyring, id: u32, now: DateTime<Utc>) -> anyhow::Result<()> {
    let superseded = keyring
        .document()
        .keys
        .iter()
        .find(|k| k.id == id)
        .and_then(|k| k.superseded.as_deref())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let grace = chrono::Duration::from_std(RETIRE_GRACE).expect("ten minutes");
    match superseded {
        Some(at) if now - at >= grace => Ok(()),
        _ => bail!(
            "data key {id} stopped being current less than {} minutes ago: a running writer may still seal with it; retire it later; nothing changed",
            RETIRE_GRACE.as_secs() / 60
        ),
    }
}
