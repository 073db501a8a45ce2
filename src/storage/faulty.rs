//! A fault-injecting wrapper around any [`Storage`], for tests: it makes a chosen share of
//! operations fail the ways object stores do, so tests can show that callers which retry still
//! end with exactly the repository's invariants.
//!
//! A failing operation fails with a retryable [`StorageError::Transient`] at one of these points,
//! chosen at random among those the [`FaultPlan`] enables and the operation has:
//! * **before** it reaches the inner store: nothing happened;
//! * **after** it took effect: a put is durable, a delete done, but the caller sees an error, as
//!   when an answer is lost on the way back;
//! * **cut** in the middle of a stream: a read returns a truncated body ([`Cut::Truncate`]) or
//!   fails part-way ([`Cut::Fail`]); a put's body fails part-way as it is fed to the inner
//!   store, which must then store nothing.
//!
//! Operations may also be delayed, to shuffle concurrent callers. Randomness comes from a seeded
//! generator, so a single-threaded test sees the same faults on every run; [`FaultCounts`] says
//! what was injected so tests can check their faults really happened.
//!
//! Whole programs can be put under faults too: with `TIDEMARK_FAULT_INJECTION` set (see
//! [`plan_from_environment`]), every command wraps its repository in this wrapper, so a test can
//! watch PostgreSQL's own retries of `archive_command` deal with failing pushes.

use std::io::{self, Read};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{
    ByteRange, Cancel, DeferredSyncs, ListedObject, ObjectKey, ObjectMeta, ObjectReading,
    PartsReader, PutBody, PutResult, Storage, StorageError,
};

/// How a failing stream is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// A read ends early without an error, as a broken transfer that nobody noticed would: only
    /// a caller that checks lengths or checksums can tell.
    Truncate,
    /// A read fails part-way with a transient error.
    Fail,
}

/// Which faults to inject, how often, and the seed that makes them repeatable.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// The share of operations that fail, from 0.0 (none) to 1.0 (all).
    pub failure_share: f64,
    /// Failures may strike before the inner operation.
    pub before_effect: bool,
    /// Failures may strike after the inner operation took effect.
    pub after_effect: bool,
    /// Failures may cut streams: reads as given, puts' bodies always by failing.
    pub cut: Option<Cut>,
    /// The share of operations delayed by a random time up to `max_delay`.
    pub delay_share: f64,
    pub max_delay: Duration,
    pub seed: u64,
}

impl FaultPlan {
    /// No faults, no delays: the wrapper behaves as the store it wraps.
    pub fn none() -> FaultPlan {
        FaultPlan {
            failure_share: 0.0,
            before_effect: false,
            after_effect: false,
            cut: None,
            delay_share: 0.0,
            max_delay: Duration::ZERO,
            seed: 0,
        }
    }

    /// `share` of operations fail, before or after taking effect; nothing is cut or delayed.
    pub fn failing(share: f64, seed: u64) -> FaultPlan {
        FaultPlan {
            failure_share: share,
            before_effect: true,
            after_effect: true,
            seed,
            ..FaultPlan::none()
        }
    }

    /// This plan, with failures also cutting streams.
    pub fn with_cut(self, cut: Cut) -> FaultPlan {
        FaultPlan {
            cut: Some(cut),
            ..self
        }
    }

    /// This plan, with `share` of operations delayed by up to `max`.
    pub fn with_delays(self, share: f64, max: Duration) -> FaultPlan {
        FaultPlan {
            delay_share: share,
            max_delay: max,
            ..self
        }
    }
}

/// The environment variable that puts a whole program's repository under faults.
pub const FAULT_INJECTION_VARIABLE: &str = "TIDEMARK_FAULT_INJECTION";

/// The plan `TIDEMARK_FAULT_INJECTION` asks for, if it is set: `share=S` fails that share of
/// operations (0 to 1) before or after they take effect, cutting streams part-way too;
/// `,seed=N` fixes the faults, which otherwise differ from process to process (a retry that
/// met the same faults as the call before it would fail forever).
pub fn plan_from_environment() -> Result<Option<FaultPlan>, String> {
    match std::env::var_os(FAULT_INJECTION_VARIABLE) {
        None => Ok(None),
        Some(value) => parse_fault_plan(&value).map(Some),
    }
}

/// A fault plan as `TIDEMARK_FAULT_INJECTION` gives it.
fn parse_fault_plan(value: &std::ffi::OsStr) -> Result<FaultPlan, String> {
    let bad = |why: &str| {
        format!(
            "{FAULT_INJECTION_VARIABLE}={} is not a fault plan: {why}; use share=0.2 or share=0.2,seed=7, or unset it",
            value.to_string_lossy()
        )
    };
    let text = value.to_str().ok_or_else(|| bad("it is not UTF-8"))?;
    let mut share = None;
    let mut seed = None;
    for setting in text.split(',') {
        match setting.split_once('=') {
            Some(("share", s)) => {
                share = Some(
                    s.parse::<f64>()
                        .ok()
                        .filter(|s| (0.0..=1.0).contains(s))
                        .ok_or_else(|| bad("share must be a number from 0 to 1"))?,
                )
            }
            Some(("seed", s)) => {
                seed = Some(
                    s.parse::<u64>()
                        .map_err(|_| bad("seed must be a whole number"))?,
                )
            }
            _ => return Err(bad(&format!("'{setting}' is neither share=S nor seed=N"))),
        }
    }
    let share = share.ok_or_else(|| bad("share=S is missing"))?;
    let seed = seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    Ok(FaultPlan::failing(share, seed).with_cut(Cut::Fail))
}

/// What the wrapper did, counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Operations the wrapper saw.
    pub operations: u64,
    /// Operations failed before reaching the inner store.
    pub failed_before: u64,
    /// Operations failed after the inner store carried them out.
    pub failed_after: u64,
    /// Reads that ended early without an error.
    pub reads_truncated: u64,
    /// Reads that failed part-way.
    pub reads_cut: u64,
    /// Puts whose body failed part-way and which the inner store therefore refused.
    pub writes_cut: u64,
    /// Operations delayed.
    pub delayed: u64,
}

impl FaultCounts {
    /// Every failure injected, of any kind (delays are no failures).
    pub fn failures(&self) -> u64 {
        self.failed_before
            + self.failed_after
            + self.reads_truncated
            + self.reads_cut
            + self.writes_cut
    }
}

/// Where one operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Before,
    After,
    Cut,
}

/// What a kind of operation can suffer.
#[derive(Clone, Copy)]
enum Operation {
    /// head, list, delete: before or after.
    Plain,
    /// Streaming reads and all puts: also cut.
    Stream,
}

struct State {
    plan: FaultPlan,
    rng: fastrand::Rng,
    counts: FaultCounts,
}

/// A [`Storage`] that injects faults into the operations it passes to `inner`.
pub struct FaultyStorage<S> {
    inner: S,
    state: Mutex<State>,
}

impl<S: Storage> FaultyStorage<S> {
    pub fn new(inner: S, plan: FaultPlan) -> FaultyStorage<S> {
        FaultyStorage {
            inner,
            state: Mutex::new(State {
                rng: fastrand::Rng::with_seed(plan.seed),
                plan,
                counts: FaultCounts::default(),
            }),
        }
    }

    /// The wrapped store, to look at the truth without faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Replaces the plan and restarts the random sequence from its seed; counts go on.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut state = self.state();
        state.rng = fastrand::Rng::with_seed(plan.seed);
        state.plan = plan;
    }

    pub fn counts(&self) -> FaultCounts {
        self.state().counts
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an operation, sleeps if it is to be delayed, and says where it fails.
    fn decide(&self, operation: Operation) -> Fault {
        let (delay, fault) = {
            let mut state = self.state();
            let State { plan, rng, counts } = &mut *state;
            counts.operations += 1;
            let delay = (plan.delay_share > 0.0 && rng.f64() < plan.delay_share).then(|| {
                counts.delayed += 1;
                let max = plan.max_delay.as_micros().min(u64::MAX as u128) as u64;
                Duration::from_micros(rng.u64(0..=max))
            });
            let mut choices = Vec::with_capacity(3);
            if plan.before_effect {
                choices.push(Fault::Before);
            }
            if plan.after_effect {
                choices.push(Fault::After);
            }
            if plan.cut.is_some() && matches!(operation, Operation::Stream) {
                choices.push(Fault::Cut);
            }
            let fault = if !choices.is_empty()
                && plan.failure_share > 0.0
                && rng.f64() < plan.failure_share
            {
                choices[rng.usize(..choices.len())]
            } else {
                Fault::None
            };
            (delay, fault)
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        fault
    }

    fn count(&self, bump: impl FnOnce(&mut FaultCounts)) {
        bump(&mut self.state().counts);
    }

    fn random_below(&self, end: u64) -> u64 {
        self.state().rng.u64(..end)
    }

    fn injected(&self, doing: String, fault: Fault) -> StorageError {
        let reason = match fault {
            Fault::Before => "injected fault before the operation",
            Fault::After => "injected fault after the operation took effect",
            Fault::Cut | Fault::None => "injected fault in the middle of the stream",
        };
        StorageError::Transient {
            doing,
            reason: reason.to_owned(),
        }
    }

    /// A plain (not streamed) operation under the plan, said as "VERB KEY in LOCATION".
    fn plain<T>(
        &self,
        verb: &str,
        key: &ObjectKey,
        operation: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let fault = self.decide(Operation::Plain);
        self.around(
            fault,
            || format!("{verb} {key} in {}", self.location()),
            operation,
        )
    }

    /// Runs `operation` on the inner store with `fault` injected around it.
    fn around<T>(
        &self,
        fault: Fault,
        doing: impl FnOnce() -> String,
        operation: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match fault {
            Fault::Before => {
                self.count(|c| c.failed_before += 1);
                Err(self.injected(doing(), fault))
            }
            Fault::After => {
                operation()?;
                self.count(|c| c.failed_after += 1);
                Err(self.injected(doing(), fault))
            }
            Fault::None | Fault::Cut => operation(),
        }
    }

    /// A put whose body fails after a random share of its `length` bytes. Counted only if the
    /// inner store met the failure and refused the put, as it must; an inner store that
    /// answered without reading that far (the key was taken) had no fault to suffer.
    fn put_cut(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        let mut cut = CutBody {
            inner: body.reader,
            remaining: self.random_below(body.length.max(1)),
            fired: false,
            doing: format!("put {key} in {}", self.location()),
        };
        let cut_body = PutBody {
            reader: &mut cut,
            ..body
        };
        let result = self.inner.put_body_if_absent(key, cut_body);
        if cut.fired && result.is_err() {
            self.count(|c| c.writes_cut += 1);
        }
        result
    }
}

impl<S: Storage> FaultyStorage<S> {
    /// A put of `parts` with a fault injected around `put` (the inner store's), or cut midway.
    fn put_parts(
        &self,
        key: &ObjectKey,
        parts: &[&[u8]],
        put: impl FnOnce() -> PutResult,
    ) -> PutResult {
        let fault = self.decide(Operation::Stream);
        if fault == Fault::Cut {
            let length = parts.iter().map(|p| p.len() as u64).sum();
            let body = PutBody {
                reader: &mut PartsReader::new(parts),
                length,
                cancel: &Cancel::never(),
            };
            return self.put_cut(key, body);
        }
        self.around(fault, || format!("put {key} in {}", self.location()), put)
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        self.plain("head", key, || self.inner.head(key))
    }

    fn head_durable(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        self.plain("head", key, || self.inner.head_durable(key))
    }

    fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading {
        let doing = || format!("read {key} from {}", self.location());
        let fault = self.decide(Operation::Stream);
        if fault != Fault::Cut {
            return self.around(fault, doing, || self.inner.get_reader(key, range, cancel));
        }
        // A cut needs to know how long the stream would be, to cut inside it.
        let Some(meta) = self.inner.head(key)? else {
            return self.inner.get_reader(key, range, cancel);
        };
        let (start, end) = range.within(meta.size);
        if start == end {
            // Nothing to cut: fail the read outright instead.
            self.count(|c| c.failed_before += 1);
            return Err(self.injected(doing(), Fault::Before));
        }
        let cut = self
            .state()
            .plan
            .cut
            .expect("a cut is only chosen with a cut mode");
        let reader = self.inner.get_reader(key, range, cancel)?;
        match cut {
            Cut::Truncate => self.count(|c| c.reads_truncated += 1),
            Cut::Fail => self.count(|c| c.reads_cut += 1),
        }
        Ok(Box::new(CutReader {
            inner: reader,
            remaining: self.random_below(end - start),
            cut,
            doing: doing(),
        }))
    }

    fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        let fault = self.decide(Operation::Stream);
        if fault == Fault::Cut {
            return self.put_cut(key, body);
        }
        self.around(
            fault,
            || format!("put {key} in {}", self.location()),
            || self.inner.put_body_if_absent(key, body),
        )
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> PutResult {
        self.put_parts(key, parts, || self.inner.put_if_absent(key, parts))
    }

    fn head_durable_deferred(
        &self,
        key: &ObjectKey,
        deferred: &DeferredSyncs,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        self.plain("head", key, || {
            self.inner.head_durable_deferred(key, deferred)
        })
    }

    fn put_if_absent_deferred(
        &self,
        key: &ObjectKey,
        parts: &[&[u8]],
        deferred: &DeferredSyncs,
    ) -> PutResult {
        self.put_parts(key, parts, || {
            self.inner.put_if_absent_deferred(key, parts, deferred)
        })
    }

    fn sync_deferred(&self, deferred: &DeferredSyncs) -> Result<(), StorageError> {
        self.inner.sync_deferred(deferred)
    }

    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError> {
        self.plain("list", prefix, || self.inner.list(prefix, cancel))
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.plain("delete", key, || self.inner.delete(key))
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn check_reachable(&self) -> Result<(), StorageError> {
        self.inner.check_reachable()
    }
}

/// A read that ends, or fails, after `remaining` more bytes.
struct CutReader {
    inner: Box<dyn Read + Send>,
    remaining: u64,
    cut: Cut,
    doing: String,
}

impl Read for CutReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 && !buf.is_empty() {
            return match self.cut {
                Cut::Truncate => Ok(0),
                Cut::Fail => Err(StorageError::Transient {
                    doing: self.doing.clone(),
                    reason: "injected fault in the middle of the stream".to_owned(),
                }
                .into_io()),
            };
        }
        read_at_most(&mut *self.inner, buf, &mut self.remaining)
    }
}

/// Reads from `inner` into `buf`, but no more than `remaining` bytes, which it counts down.
fn read_at_most(inner: &mut dyn Read, buf: &mut [u8], remaining: &mut u64) -> io::Result<usize> {
    let want = buf.len().min((*remaining).min(usize::MAX as u64) as usize);
    let read = inner.read(&mut buf[..want])?;
    *remaining -= read as u64;
    Ok(read)
}

/// A put's body that fails after `remaining` more bytes, as a connection reset mid-upload.
struct CutBody<'a> {
    inner: &'a mut dyn Read,
    remaining: u64,
    fired: bool,
    doing: String,
}

impl Read for CutBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 && !buf.is_empty() {
            self.fired = true;
            return Err(StorageError::Transient {
                doing: self.doing.clone(),
                reason: "injected fault in the middle of the stream".to_owned(),
            }
            .into_io());
        }
        read_at_most(&mut *self.inner, buf, &mut self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::key;
    use crate::storage::{MemoryStorage, PutOutcome};

    fn only(plan: FaultPlan) -> FaultyStorage<MemoryStorage> {
        FaultyStorage::new(MemoryStorage::new(), plan)
    }

    /// Every operation fails, before its effect, after it, or (both true) either.
    fn failing_always(before_effect: bool, after_effect: bool) -> FaultPlan {
        FaultPlan {
            failure_share: 1.0,
            before_effect,
            after_effect,
            ..FaultPlan::none()
        }
    }

    /// Every operation that can be cut is, as `cut` says, where `seed` puts the cut.
    fn cutting_always(cut: Cut, seed: u64) -> FaultPlan {
        FaultPlan {
            failure_share: 1.0,
            cut: Some(cut),
            seed,
            ..FaultPlan::none()
        }
    }

    #[test]
    fn the_environment_names_a_share_and_maybe_a_seed() {
        let plan = parse_fault_plan("share=0.2,seed=7".as_ref()).unwrap();
        assert_eq!(
            plan,
            FaultPlan::failing(0.2, 7).with_cut(Cut::Fail),
            "{plan:?}"
        );
        let unseeded = parse_fault_plan("share=1".as_ref()).unwrap();
        assert_eq!(unseeded.failure_share, 1.0);
        for (bad, why) in [
            ("", "'' is neither share=S nor seed=N"),
            ("share=1.5", "share must be a number from 0 to 1"),
            ("share=x", "share must be a number from 0 to 1"),
            ("share=0.2,seed=-1", "seed must be a whole number"),
            ("seed=3", "share=S is missing"),
            ("share=0.2,rate=3", "'rate=3' is neither share=S nor seed=N"),
        ] {
            let error = parse_fault_plan(bad.as_ref()).unwrap_err();
            assert!(
                error.starts_with(&format!(
                    "TIDEMARK_FAULT_INJECTION={bad} is not a fault plan: {why};"
                )),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn without_faults_it_is_the_store_it_wraps() {
        let store = only(FaultPlan::none());
        let k = key("a/b");
        assert_eq!(
            store.put_if_absent(&k, &[b"xy"]).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(store.get(&k).unwrap(), b"xy");
        assert_eq!(store.inner().get(&k).unwrap(), b"xy");
        assert_eq!(store.location(), store.inner().location());
        let counts = store.counts();
        assert_eq!(counts.operations, 2);
        assert_eq!(counts.failures(), 0);
    }

    #[test]
    fn a_fault_before_the_operation_leaves_nothing() {
        let store = only(failing_always(true, false));
        let k = key("a/b");
        let err = store.put_if_absent(&k, &[b"xy"]).unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(
            err.to_string(),
            format!(
                "put a/b in {}: injected fault before the operation (a transient failure; trying again may succeed)",
                store.location()
            )
        );
        assert_eq!(store.inner().head(&k).unwrap(), None);
        assert_eq!(store.counts().failed_before, 1);
    }

    #[test]
    fn a_fault_after_the_operation_leaves_its_effect() {
        let store = only(failing_always(false, true));
        let k = key("a/b");
        assert!(
            store
                .put_if_absent(&k, &[b"xy"])
                .unwrap_err()
                .is_retryable()
        );
        assert_eq!(store.inner().get(&k).unwrap(), b"xy");
        assert!(store.delete(&k).unwrap_err().is_retryable());
        assert_eq!(store.inner().head(&k).unwrap(), None);
        assert_eq!(store.counts().failed_after, 2);
    }

    #[test]
    fn cut_reads_truncate_or_fail_part_way() {
        let store = only(FaultPlan::none());
        let k = key("a/b");
        let bytes: Vec<u8> = (0..=255).collect();
        store.put_if_absent(&k, &[&bytes]).unwrap();
        store.set_plan(cutting_always(Cut::Truncate, 7));
        let truncated = store.get(&k).unwrap();
        assert!(truncated.len() < bytes.len());
        assert_eq!(truncated, bytes[..truncated.len()]);
        store.set_plan(cutting_always(Cut::Fail, 7));
        assert!(store.get(&k).unwrap_err().is_retryable());
        assert!(store.get_range(&k, 10, 20).unwrap_err().is_retryable());
        let counts = store.counts();
        assert_eq!((counts.reads_truncated, counts.reads_cut), (1, 2));
    }

    #[test]
    fn a_cut_put_is_refused_by_the_inner_store() {
        let store = only(cutting_always(Cut::Fail, 3));
        let k = key("a/b");
        let bytes = vec![5; 1000];
        let err = store.put_if_absent(&k, &[&bytes]).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let err = store
            .put_if_absent_from(&k, &mut &bytes[..], 1000, &Cancel::never())
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(store.inner().head(&k).unwrap(), None);
        assert_eq!(store.counts().writes_cut, 2);
    }

    #[test]
    fn the_same_seed_injects_the_same_faults() {
        let run = || {
            let store = only(FaultPlan::failing(0.5, 42));
            (0..200)
                .map(|n| {
                    store
                        .put_if_absent(&key(&format!("k/{n}")), &[b"x"])
                        .is_ok()
                })
                .collect::<Vec<bool>>()
        };
        let first = run();
        assert_eq!(first, run());
        let failed = first.iter().filter(|ok| !**ok).count();
        assert!((60..140).contains(&failed), "about half fail: {failed}");
    }

    #[test]
    fn delays_are_counted() {
        let store = only(FaultPlan::none().with_delays(1.0, Duration::from_micros(50)));
        for _ in 0..3 {
            store.head(&key("a")).unwrap();
        }
        assert_eq!(store.counts().delayed, 3);
        assert_eq!(store.counts().failures(), 0);
    }
}
