//! One writer at a time per blob within this process: a chunk that two threads cut at once is
//! stored by one, and found by the other.
//!
//! Storage's create-only put settles such a race on its own where the condition is atomic
//! (a local directory's link, AWS S3, MinIO). The turn keeps the second upload from being sent
//! at all, and keeps stores whose `If-None-Match: *` is a check before the write (s3s-fs) from
//! ending with one writer's bytes beside the other's checksums: in an encrypted repository the
//! two writers' bytes differ, each sealed under its own nonce.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The blob names being stored by this process now.
#[derive(Default)]
pub struct PutGate {
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// The right to store one name, held until dropped.
pub struct PutTurn<'g> {
    gate: &'g PutGate,
    name: String,
}

impl PutGate {
    /// Waits while another thread of this process stores `name`, then holds it. The wait is as
    /// long as that thread's put, which storage bounds.
    pub fn turn(&self, name: &str) -> PutTurn<'_> {
        let mut busy = self.lock();
        while busy.contains(name) {
            busy = self
                .freed
                .wait(busy)
                .unwrap_or_else(PoisonError::into_inner);
        }
        busy.insert(name.to_owned());
        PutTurn {
            gate: self,
            name: name.to_owned(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PutTurn<'_> {
    fn drop(&mut self) {
        self.gate.lock().remove(&self.name);
        self.gate.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_name_has_one_holder_at_a_time_and_other_names_pass() {
        let gate = PutGate::default();
        let holders = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let _turn = gate.turn("a");
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Another name is never held up by "a".
                        drop(gate.turn("b"));
                        holders.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(gate.lock().is_empty());
    }
}
