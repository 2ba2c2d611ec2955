//! PostgreSQL crashes (`pg_ctl stop -m immediate`) and restarts under a steady enqueue load,
//! with an API process and a second worker process: no acknowledged job is lost, a refused
//! enqueue stored nothing, no job stays running, jobs run twice only as far as the jobs in
//! flight allow, and the API answers within its deadline throughout.

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
async fn a_postgres_crash_under_load_loses_no_acknowledged_job() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("crash").await;
    let db = TestDb::at(&url).await;
    let config = db.path("longshore.toml");
    std::fs::write(&config, "").unwrap();
    let (_serve, base) = db.serve(&config, &["--queues", "default=20"]);
    let _worker = db.spawn(
        "worker",
        &[&["worker", "--queues", "default=20"], FAST].concat(),
    );
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
    tokio::time::sleep(Duration::from_secs(7)).await;
    cluster.crash();
    let crashed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_server();
    let restarted = Instant::now();
    let answers = load.await.unwrap();
    stop_probe.cancel();
    let (slowest_read, read_statuses) = reads.await.unwrap();
    println!(
        "postgres crash: reads of /api/v1/queues meanwhile: longest {:.2} s, statuses {read_statuses:?}",
        slowest_read.as_secs_f64()
    );
    let report = verify(&url, &answers, &marker, Duration::from_secs(90)).await;
    let first_after = answers
        .iter()
        .filter(|a| a.status == 201)
        .map(|a| a.sent + a.took)
        .filter(|done| *done > restarted.duration_since(crashed) + Duration::from_secs(7))
        .min();
    report.print("postgres crash");
    println!(
        "postgres crash: down {:.1} s; first job stored {:?} after the restart",
        restarted.duration_since(crashed).as_secs_f64(),
        first_after.map(|d| d.saturating_sub(Duration::from_secs(10)))
    );
    assert_eq!(report.lost, 0, "acknowledged jobs lost: {report:?}");
    assert_eq!(
        report.refused_but_stored, 0,
        "a 503 stored its job: {report:?}"
    );
    assert_eq!(report.stuck_running, 0, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert!(report.other.is_empty(), "{report:?}");
    // The crash hit the load: enqueues were refused, or waited for the database to come
    // back (a crash shorter than the database timeout may refuse none, which is the best
    // outcome, not a sign the test missed it).
    let waited = answers
        .iter()
        .filter(|a| a.took > Duration::from_secs(1))
        .count();
    assert!(
        report.refused + report.unconfirmed > 0 || waited > 0,
        "the crash was noticed: {waited} answers waited; {report:?}"
    );
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
    // A job runs again only when an attempt of it was lost, or its claim forgotten by the crash.
    assert_eq!(
        report.reran_without_loss, 0,
        "jobs ran again with no attempt lost: {report:?}"
    );
}
