//! Wake-ups across processes on Postgres, one channel per schema (`longshore_{schema}`), each
//! payload naming the store that sent it so that its own listener skips it. A lone enqueue (an
//! insert after a quiet spell, `store/inserter.rs`) carries its `NOTIFY` in its insert
//! statement (`jobs.rs`), delivered when it commits, with no round trip after; a stream's
//! wake-ups and every other signal (retries, resumes, cancels, schedule changes) go out here,
//! coalesced, after their commit. A `LISTEN`er reconnects and wakes every local worker after
//! a gap.
//!
//! Why not every insert: a transaction that notifies holds, from its commit's start to its
//! end, a lock that every other notifying commit waits for, and each notification reaches
//! every listener. A process's inserts are one transaction at a time, so a lone enqueue
//! waits for no one; a stream of commits, notifying each, cost W3 about 5 % against one
//! coalesced statement every 2 ms.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::id::JobId;
use crate::store::{Signal, Wakeups};

/// Starts the tasks that carry wake-ups between processes: one sends coalesced `NOTIFY`s, one
/// `LISTEN`s. The channel is per schema, so schemas sharing a server do not wake each other.
///
/// The `NOTIFY`s go out on `quick`, a pool whose commits do not wait for the WAL flush: a
/// transaction that notifies holds a lock every other notifying commit waits for, and is
/// flushed like a write, so on the enqueue pool each would cost a flush of its own beside
/// the enqueues' (it halved W3 on Postgres). A notification is delivered at commit either
/// way; one lost to a server crash is lost with the listeners' connections, which wake every
/// worker when they reconnect.
pub(super) async fn start_relay(
    pool: &PgPool,
    quick: &PgPool,
    wakeups: &Wakeups,
    origin: &str,
) -> Result<CancellationToken, StoreError> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(pool)
        .await
        .map_err(StoreError::Connect)?;
    let channel = format!("longshore_{schema}");
    let origin = origin.to_owned();
    let stop = CancellationToken::new();
    let (tx, rx) = mpsc::unbounded_channel();
    wakeups.set_remote(tx);
    tokio::spawn(stop.clone().run_until_cancelled_owned(send_loop(
        quick.clone(),
        channel.clone(),
        origin.clone(),
        rx,
    )));
    tokio::spawn(stop.clone().run_until_cancelled_owned(listen_loop(
        pool.clone(),
        channel,
        origin,
        wakeups.clone(),
    )));
    Ok(stop)
}

/// The least time between two `NOTIFY` statements of one process.
const SPACING: Duration = Duration::from_millis(2);

/// Sends signals as `NOTIFY`s, each distinct signal once per round trip however many arrived.
async fn send_loop(
    pool: PgPool,
    channel: String,
    origin: String,
    mut rx: mpsc::UnboundedReceiver<Signal>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        batch.sort_by_key(signal_payload_key);
        batch.dedup();
        let payloads: Vec<String> = batch
            .drain(..)
            .map(|signal| encode(&origin, &signal))
            .collect();
        let sent = sqlx::query::<Postgres>("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(&channel)
            .bind(&payloads)
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot send wake-up notifications; other processes will poll");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // What arrives meanwhile goes out as one: a burst of enqueues costs a NOTIFY every
        // SPACING, not one per batch, and a lone enqueue is not held back at all.
        tokio::time::sleep(SPACING).await;
    }
}

/// The origin of the wake-ups of jobs enqueued in a caller's own transaction: no store has
/// it, so every process's listener, this one's included, wakes its workers at the commit.
pub(crate) const IN_TRANSACTION: &str = "transaction";

/// A new origin, one per store.
pub(super) fn new_origin() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn signal_payload_key(signal: &Signal) -> String {
    encode("", signal)
}

fn encode(origin: &str, signal: &Signal) -> String {
    match signal {
        Signal::JobAvailable(queue) => format!("{origin} q {queue}"),
        Signal::CancelRequested(id) => format!("{origin} c {id}"),
        Signal::SchedulesChanged => format!("{origin} s *"),
        Signal::EndpointsChanged => format!("{origin} e *"),
    }
}

fn decode(payload: &str) -> Option<(&str, Signal)> {
    let mut parts = payload.splitn(3, ' ');
    let origin = parts.next()?;
    let tag = parts.next()?;
    let body = parts.next()?;
    let signal = match tag {
        "q" => Signal::JobAvailable(body.to_owned()),
        "c" => Signal::CancelRequested(body.parse::<JobId>().ok()?),
        "s" => Signal::SchedulesChanged,
        "e" => Signal::EndpointsChanged,
        _ => return None,
    };
    Some((origin, signal))
}

/// Listens for other processes' signals; reconnects with backoff, and wakes every local
/// worker after a reconnect because signals sent meanwhile are lost.
async fn listen_loop(pool: PgPool, channel: String, origin: String, wakeups: Wakeups) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for wake-ups; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(error) = listener.listen(&channel).await {
            tracing::warn!(%error, "cannot listen for wake-ups; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        wakeups.wake_all();
        loop {
            match listener.recv().await {
                Ok(notification) => match decode(notification.payload()) {
                    Some((from, _)) if from == origin => {}
                    Some((_, signal)) => wakeups.deliver(signal),
                    None => {
                        tracing::debug!(payload = notification.payload(), "ignored notification")
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "wake-up listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_through_payloads() {
        let id = JobId::new();
        for signal in [
            Signal::JobAvailable("mail.high".into()),
            Signal::CancelRequested(id),
            Signal::SchedulesChanged,
            Signal::EndpointsChanged,
        ] {
            let payload = encode("me", &signal);
            assert_eq!(decode(&payload), Some(("me", signal)));
        }
        assert_eq!(decode("garbage"), None);
    }
}
