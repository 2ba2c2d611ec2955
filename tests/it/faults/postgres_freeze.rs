//! PostgreSQL freezes (every server process stopped with SIGSTOP for 15 s: connections stay
//! open and nothing answers, as with a stalled disk) under a steady enqueue load: the API
//! answers within its deadline throughout, a refused enqueue stored nothing, no acknowledged
//! job is lost, no job stays running, and a worker told to stop during the freeze still
//! exits within its grace periods.

use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::load::{probe, steady, verify};
use crate::support::{FAST, TestDb, eventually};

/// The most jobs the two processes hold at once: concurrency 20 each, and as many again as
/// the `auto` prefetch may claim ahead (three times the concurrency at the most).
const IN_FLIGHT: usize = 2 * 20 * (1 + longshore_workers::Prefetch::MAX_FACTOR as usize);
/// The most attempts the processes can hold when the database goes away: those running,
/// and those finished whose outcomes wait to be stored (outcomes are stored in batches,
/// apart from the worker slots: on a loaded machine a batch's commit takes a while, and the
/// load goes on meanwhile). Bounded by the running ones and a second of the 300/s load.
const HELD: usize = IN_FLIGHT + 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_freeze_under_load_answers_on_time_and_loses_no_acknowledged_job() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("freeze").await;
    let db = TestDb::at(&url).await;
    let config = db.path("longshore.toml");
    std::fs::write(&config, "").unwrap();
    let (_serve, base) = db.serve(&config, &["--queues", "default=20"]);
    let worker_args = [
        &[
            "worker",
            "--queues",
            "default=20",
            "--shutdown-grace",
            "2s",
            "--cancel-grace",
            "1s",
        ],
        FAST,
    ]
    .concat();
    let mut worker = db.spawn("worker", &worker_args);
    eventually(Duration::from_secs(20), "serve answers", || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let marker = db.path("starts");
    let stop_probe = tokio_util::sync::CancellationToken::new();
    let reads = probe(&base, "/api/v1/queues", stop_probe.clone());
    let load = {
        let (base, marker) = (base.clone(), marker.clone());
        tokio::spawn(async move { steady(&base, 10_000, 300, &marker).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.freeze();
    let frozen = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    worker.signal(libc::SIGTERM);
    let asked = Instant::now();
    let status = worker.wait_for_exit(Duration::from_secs(15));
    let exit_took = asked.elapsed();
    let remaining = Duration::from_secs(15).saturating_sub(frozen.elapsed());
    tokio::time::sleep(remaining).await;
    cluster.thaw();
    let thawed = Instant::now();
    let answers = load.await.unwrap();
    stop_probe.cancel();
    let (slowest_read, read_statuses) = reads.await.unwrap();
    println!(
        "postgres freeze: reads of /api/v1/queues meanwhile: longest {:.2} s, statuses {read_statuses:?}",
        slowest_read.as_secs_f64()
    );
    let report = verify(&url, &answers, &marker, Duration::from_secs(90)).await;
    report.print("postgres freeze");
    let recovered = answers
        .iter()
        .filter(|a| {
            a.status == 201 && a.sent > thawed.duration_since(frozen) + Duration::from_secs(5)
        })
        .map(|a| a.sent + a.took)
        .min();
    println!(
        "postgres freeze: frozen {:.1} s; a worker told to stop during it exited in {:.1} s \
         ({status}); enqueues stored again {:?} after the thaw",
        thawed.duration_since(frozen).as_secs_f64(),
        exit_took.as_secs_f64(),
        recovered
            .map(|at| at.saturating_sub(Duration::from_secs(5) + thawed.duration_since(frozen))),
    );
    assert_eq!(report.lost, 0, "acknowledged jobs lost: {report:?}");
    assert_eq!(
        report.refused_but_stored, 0,
        "a 503 stored its job: {report:?}"
    );
    assert_eq!(report.stuck_running, 0, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert!(report.other.is_empty(), "{report:?}");
    assert!(report.refused > 0, "the freeze was noticed: {report:?}");
    assert!(
        slowest_read < Duration::from_millis(6500),
        "a read took {slowest_read:?}, longer than the 5 s database timeout allows"
    );
    assert!(
        read_statuses.keys().all(|s| matches!(s, 200 | 503 | 504)),
        "reads answered 200, 503 or 504: {read_statuses:?}"
    );
    assert!(
        report.longest_answer < Duration::from_millis(6500),
        "an answer took longer than the 5 s database timeout allows: {report:?}"
    );
    assert!(
        report.ran_twice <= HELD,
        "{} jobs ran twice, more than the {HELD} the processes can hold",
        report.ran_twice
    );
    // A job runs again only when an attempt of it was lost.
    assert_eq!(
        report.reran_without_loss, 0,
        "jobs ran again with no attempt lost: {report:?}"
    );
    // 2 s of grace, 1 s of cancel grace, half a second for outcomes, a second to store them
    // (the database does not answer), a second for the runtime.
    assert!(
        exit_took < Duration::from_millis(7000),
        "the worker took {exit_took:?} to stop during the freeze; log:\n{}",
        worker.log_text()
    );
}
