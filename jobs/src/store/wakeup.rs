//! Wake-ups: a new available job wakes idle workers within milliseconds.
//!
//! In-process, a per-queue [`Notify`] wakes the worker at once. On Postgres other processes
//! hear of it by `NOTIFY`: a lone enqueue carries its own in its insert, delivered when it
//! commits; the other signals are sent after their commit, coalesced (`store/pg/notify.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Notify, broadcast, mpsc};

use crate::id::JobId;

/// A signal between processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// A job of this queue became available, or got a new time to run: look again.
    JobAvailable(String),
    /// An operator asked this running job to stop.
    CancelRequested(JobId),
    /// A schedule was created, changed or deleted: its next tick may be sooner.
    SchedulesChanged,
    /// A webhook endpoint was created, changed or deleted.
    EndpointsChanged,
}

/// The wake-up hub of one process.
#[derive(Clone, Default)]
pub struct Wakeups {
    inner: Arc<Inner>,
}

struct Inner {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    cancels: broadcast::Sender<JobId>,
    schedules: Arc<Notify>,
    endpoints: Arc<Notify>,
    remote: OnceLock<mpsc::UnboundedSender<Signal>>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            queues: Mutex::new(HashMap::new()),
            cancels: broadcast::channel(1024).0,
            schedules: Arc::default(),
            endpoints: Arc::default(),
            remote: OnceLock::new(),
        }
    }
}

impl Wakeups {
    /// The notifier a worker of `queue` waits on.
    pub fn queue(&self, queue: &str) -> Arc<Notify> {
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.entry(queue.to_owned()).or_default().clone()
    }

    /// Says that a job is available on `queue`, here and in other processes.
    pub fn job_available(&self, queue: &str) {
        self.wake_local(queue);
        self.send_remote(Signal::JobAvailable(queue.to_owned()));
    }

    /// Says that jobs were stored on `queue`, here: their insert told other processes.
    pub(crate) fn jobs_stored(&self, queue: &str) {
        self.wake_local(queue);
    }

    /// Says that a running job should stop, here and in other processes.
    pub fn cancel_requested(&self, id: JobId) {
        let _ = self.inner.cancels.send(id);
        self.send_remote(Signal::CancelRequested(id));
    }

    /// Says that the schedules changed, here and in other processes.
    pub fn schedules_changed(&self) {
        self.inner.schedules.notify_one();
        self.send_remote(Signal::SchedulesChanged);
    }

    /// What the scheduler waits on between ticks.
    pub fn schedules(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.schedules)
    }

    /// Says that the webhook endpoints changed, here and in other processes.
    pub fn endpoints_changed(&self) {
        self.inner.endpoints.notify_one();
        self.send_remote(Signal::EndpointsChanged);
    }

    /// What the webhook relay waits on while no endpoint is enabled.
    pub fn endpoints(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.endpoints)
    }

    /// Cancel requests, as they arrive.
    pub fn subscribe_cancels(&self) -> broadcast::Receiver<JobId> {
        self.inner.cancels.subscribe()
    }

    /// Wakes every local worker, the scheduler and the relay: after a lost connection,
    /// signals may have been missed.
    pub fn wake_all(&self) {
        let queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        for notify in queues.values() {
            notify.notify_one();
        }
        self.inner.schedules.notify_one();
        self.inner.endpoints.notify_one();
    }

    /// Delivers a signal that came from another process.
    pub(crate) fn deliver(&self, signal: Signal) {
        match signal {
            Signal::JobAvailable(queue) => self.wake_local(&queue),
            Signal::CancelRequested(id) => {
                let _ = self.inner.cancels.send(id);
            }
            Signal::SchedulesChanged => self.inner.schedules.notify_one(),
            Signal::EndpointsChanged => self.inner.endpoints.notify_one(),
        }
    }

    /// Routes signals to other processes through `sender`.
    pub(crate) fn set_remote(&self, sender: mpsc::UnboundedSender<Signal>) {
        let _ = self.inner.remote.set(sender);
    }

    fn wake_local(&self, queue: &str) {
        let queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = queues.get(queue) {
            notify.notify_one();
        }
    }

    fn send_remote(&self, signal: Signal) {
        if let Some(remote) = self.inner.remote.get() {
            let _ = remote.send(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wakeup_before_the_wait_is_not_lost() {
        let hub = Wakeups::default();
        let notify = hub.queue("mail");
        hub.job_available("mail");
        tokio::time::timeout(Duration::from_secs(1), notify.notified())
            .await
            .expect("stored permit wakes the waiter");
    }
}
