//! The jobs running in this process, so that a cancel request or a shutdown can reach them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use longshore_jobs::JobId;
use tokio_util::sync::CancellationToken;

/// Why a running job was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An operator cancelled it.
    Cancelled = 1,
    /// The process is shutting down and the grace period is over.
    Shutdown = 2,
}

/// A running job's stop signal.
#[derive(Clone, Debug)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<AtomicU8>,
}

impl StopSignal {
    /// The token the handler sees as `JobContext::cancel`.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why the job was asked to stop, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        match self.reason.load(Ordering::SeqCst) {
            1 => Some(StopReason::Cancelled),
            2 => Some(StopReason::Shutdown),
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

/// Running jobs by id. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct RunningJobs {
    jobs: Arc<Mutex<HashMap<JobId, StopSignal>>>,
}

impl RunningJobs {
    /// Registers a job that starts now. It is forgotten when the returned guard drops, even
    /// if its handler panics.
    pub fn start(&self, id: JobId) -> Running {
        let signal = StopSignal {
            token: CancellationToken::new(),
            reason: Arc::new(AtomicU8::new(0)),
        };
        self.lock().insert(id, signal.clone());
        Running {
            jobs: self.clone(),
            id,
            signal,
        }
    }

    /// Asks one job to stop; false when it does not run here.
    pub fn stop(&self, id: JobId, reason: StopReason) -> bool {
        match self.lock().get(&id) {
            Some(signal) => {
                signal.stop(reason);
                true
            }
            None => false,
        }
    }

    /// Asks every running job to stop.
    pub fn stop_all(&self, reason: StopReason) {
        for signal in self.lock().values() {
            signal.stop(reason);
        }
    }

    /// How many jobs run now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no job runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, StopSignal>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A job registered as running; dropping it forgets the job.
#[derive(Debug)]
pub struct Running {
    jobs: RunningJobs,
    id: JobId,
    signal: StopSignal,
}

impl Running {
    /// The job's stop signal.
    pub fn signal(&self) -> &StopSignal {
        &self.signal
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins() {
        let running = RunningJobs::default();
        let id = JobId::new();
        let job = running.start(id);
        assert!(running.stop(id, StopReason::Cancelled));
        running.stop_all(StopReason::Shutdown);
        assert!(job.signal().token().is_cancelled());
        assert_eq!(job.signal().reason(), Some(StopReason::Cancelled));
        drop(job);
        assert!(!running.stop(id, StopReason::Cancelled));
        assert!(running.is_empty());
    }
}
