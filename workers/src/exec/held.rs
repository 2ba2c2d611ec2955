//! The attempts this process holds a lease for, from the claim until their outcome is stored.
//!
//! An attempt is keyed by (job id, attempt number): the same job can come back to this process
//! under a new attempt while an old attempt's handler is still winding down (its lease was
//! taken while the process was frozen), and the two must never share a stop signal. The
//! heartbeat renews exactly these attempts, no others: an attempt whose outcome was lost (the
//! completer gave up, or a database crash forgot an acknowledged commit) is forgotten here, so
//! its lease runs out and the rescuer gives it back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use longshore_jobs::{ClaimedJob, JobId, Lease, WorkerId};
use tokio_util::sync::CancellationToken;

/// One attempt of one job.
pub type AttemptKey = (JobId, i32);

/// Why a running handler was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An operator cancelled it.
    Cancelled = 1,
    /// The process is shutting down and the grace period is over.
    Shutdown = 2,
    /// Another process took the lease (this one stopped renewing it in time): the attempt's
    /// outcome would be refused, and another attempt may already run.
    LeaseLost = 3,
}

/// A running handler's stop signal.
#[derive(Clone, Debug)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<AtomicU8>,
}

impl StopSignal {
    fn new() -> Self {
        StopSignal {
            token: CancellationToken::new(),
            reason: Arc::new(AtomicU8::new(0)),
        }
    }

    /// The token the handler sees as `JobContext::cancel`.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why the handler was asked to stop, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        match self.reason.load(Ordering::SeqCst) {
            1 => Some(StopReason::Cancelled),
            2 => Some(StopReason::Shutdown),
            3 => Some(StopReason::LeaseLost),
            _ => None,
        }
    }

    fn stop(&self, reason: StopReason) {
        let _ = self
            .reason
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }
}

#[derive(Debug)]
struct Entry {
    worker: WorkerId,
    /// Set while the handler runs.
    signal: Option<StopSignal>,
    /// The lease was taken by another process; nothing of this attempt counts any more.
    lost: bool,
}

/// The attempts this process holds. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct HeldAttempts {
    attempts: Arc<Mutex<HashMap<AttemptKey, Entry>>>,
}

impl HeldAttempts {
    /// Records freshly claimed jobs of `worker`.
    pub fn hold(&self, worker: &WorkerId, jobs: &[ClaimedJob]) {
        let mut attempts = self.lock();
        for job in jobs {
            attempts.insert(
                (job.id, job.attempt),
                Entry {
                    worker: worker.clone(),
                    signal: None,
                    lost: false,
                },
            );
        }
    }

    /// Marks an attempt's handler as started. The returned guard ends the running phase when
    /// it drops (even if the handler panics); the attempt stays held until [`Self::forget`].
    /// `None` when the attempt is no longer held (its lease was lost before it started).
    pub fn start(&self, key: AttemptKey) -> Option<Running> {
        let signal = StopSignal::new();
        let mut attempts = self.lock();
        let entry = attempts.get_mut(&key).filter(|e| !e.lost)?;
        entry.signal = Some(signal.clone());
        Some(Running {
            held: self.clone(),
            key,
            signal,
        })
    }

    /// Whether the attempt is held and its lease was not lost.
    pub fn holds(&self, key: AttemptKey) -> bool {
        self.lock().get(&key).is_some_and(|e| !e.lost)
    }

    /// Stops holding attempts: their outcome is stored (or given up), or they were handed back.
    pub fn forget(&self, keys: impl IntoIterator<Item = AttemptKey>) {
        let mut attempts = self.lock();
        for key in keys {
            attempts.remove(&key);
        }
    }

    /// The attempts whose leases the heartbeat renews: every held one not known to be lost.
    pub fn leases(&self) -> Vec<Lease> {
        self.lock()
            .iter()
            .filter(|(_, e)| !e.lost)
            .map(|(&(job, attempt), e)| Lease {
                job,
                attempt,
                worker: e.worker.clone(),
            })
            .collect()
    }

    /// Records that another process took these attempts' leases: running handlers are asked
    /// to stop, and nothing of these attempts is renewed or reported. Returns the attempts
    /// whose handler was running or about to run (the ones worth a warning).
    pub fn lose(&self, keys: &[AttemptKey]) -> Vec<AttemptKey> {
        let mut attempts = self.lock();
        let mut stopped = Vec::new();
        for key in keys {
            if let Some(entry) = attempts.get_mut(key)
                && !entry.lost
            {
                entry.lost = true;
                match &entry.signal {
                    Some(signal) if !signal.token.is_cancelled() => {
                        signal.stop(StopReason::LeaseLost);
                        stopped.push(*key);
                    }
                    Some(_) => {}
                    None => stopped.push(*key),
                }
            }
        }
        stopped
    }

    /// Asks the running handler of job `id` to stop; false when none runs here.
    pub fn stop(&self, id: JobId, reason: StopReason) -> bool {
        let attempts = self.lock();
        let mut stopped = false;
        for ((job, _), entry) in attempts.iter() {
            if *job == id
                && !entry.lost
                && let Some(signal) = &entry.signal
            {
                signal.stop(reason);
                stopped = true;
            }
        }
        stopped
    }

    /// Asks every running handler to stop.
    pub fn stop_all(&self, reason: StopReason) {
        for entry in self.lock().values() {
            if let Some(signal) = &entry.signal {
                signal.stop(reason);
            }
        }
    }

    /// The attempts whose handler runs now.
    pub fn running(&self) -> Vec<AttemptKey> {
        let mut keys: Vec<AttemptKey> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.signal.is_some())
            .map(|(key, _)| *key)
            .collect();
        keys.sort();
        keys
    }

    /// How many attempts are held (claimed, running, or waiting for their outcome to be stored).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no attempt is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<AttemptKey, Entry>> {
        self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handler that runs now; dropping it ends the running phase.
#[derive(Debug)]
pub struct Running {
    held: HeldAttempts,
    key: AttemptKey,
    signal: StopSignal,
}

impl Running {
    /// The handler's stop signal.
    pub fn signal(&self) -> &StopSignal {
        &self.signal
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(entry) = self.held.lock().get_mut(&self.key) {
            entry.signal = None;
        }
    }
}

/// Forgets an attempt when dropped, unless disarmed: an attempt whose outcome never reaches
/// the completer (its task was dropped) must not be renewed forever.
pub(crate) struct ForgetOnDrop {
    held: HeldAttempts,
    key: Option<AttemptKey>,
}

impl ForgetOnDrop {
    pub(crate) fn new(held: HeldAttempts, key: AttemptKey) -> Self {
        ForgetOnDrop {
            held,
            key: Some(key),
        }
    }

    /// The outcome is with the completer, which forgets the attempt once it is stored.
    pub(crate) fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.held.forget([key]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(id: JobId, attempt: i32) -> ClaimedJob {
        ClaimedJob {
            id,
            queue: "default".into(),
            kind: "noop".into(),
            args: serde_json::json!({}),
            priority: 0,
            attempt,
            max_attempts: 3,
            created_at: chrono::Utc::now(),
            run_at: chrono::Utc::now(),
            timeout_ms: None,
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn the_first_reason_wins() {
        let held = HeldAttempts::default();
        let worker = WorkerId("w".to_owned());
        let id = JobId::new();
        held.hold(&worker, &[claimed(id, 1)]);
        let job = held.start((id, 1)).expect("held");
        assert!(held.stop(id, StopReason::Cancelled));
        held.stop_all(StopReason::Shutdown);
        assert!(job.signal().token().is_cancelled());
        assert_eq!(job.signal().reason(), Some(StopReason::Cancelled));
        drop(job);
        assert!(!held.stop(id, StopReason::Cancelled), "no handler runs");
        assert_eq!(held.len(), 1, "held until the outcome is stored");
        held.forget([(id, 1)]);
        assert!(held.is_empty());
    }

    #[test]
    fn two_attempts_of_one_job_have_their_own_signals() {
        let held = HeldAttempts::default();
        let worker = WorkerId("w".to_owned());
        let id = JobId::new();
        held.hold(&worker, &[claimed(id, 1)]);
        let first = held.start((id, 1)).expect("held");
        held.hold(&worker, &[claimed(id, 2)]);
        let second = held.start((id, 2)).expect("held");
        assert_eq!(held.lose(&[(id, 1)]), vec![(id, 1)]);
        assert_eq!(first.signal().reason(), Some(StopReason::LeaseLost));
        assert!(!second.signal().token().is_cancelled());
        let renewed: Vec<i32> = held.leases().iter().map(|h| h.attempt).collect();
        assert_eq!(renewed, vec![2], "a lost attempt is not renewed");
        drop(first);
        held.stop_all(StopReason::Shutdown);
        assert_eq!(second.signal().reason(), Some(StopReason::Shutdown));
    }

    #[test]
    fn an_attempt_lost_before_it_starts_never_starts() {
        let held = HeldAttempts::default();
        let worker = WorkerId("w".to_owned());
        let id = JobId::new();
        held.hold(&worker, &[claimed(id, 1)]);
        assert_eq!(held.lose(&[(id, 1)]), vec![(id, 1)]);
        assert!(held.start((id, 1)).is_none());
        assert!(!held.holds((id, 1)));
    }

    #[test]
    fn an_outcome_that_never_reaches_the_completer_is_forgotten() {
        let held = HeldAttempts::default();
        let worker = WorkerId("w".to_owned());
        let id = JobId::new();
        held.hold(&worker, &[claimed(id, 1)]);
        drop(ForgetOnDrop::new(held.clone(), (id, 1)));
        assert!(held.leases().is_empty());
        held.hold(&worker, &[claimed(id, 2)]);
        ForgetOnDrop::new(held.clone(), (id, 2)).disarm();
        assert_eq!(held.leases().len(), 1);
    }
}
