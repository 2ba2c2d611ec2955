//! Built-in maintenance runs as jobs fired by a built-in schedule, visible in the API like
//! any other work.

use std::time::Duration;

use longshore_jobs::admin::JobFilter;
use longshore_jobs::{EnqueueRequest, JobState};
use serde_json::json;

use crate::support::{TestDb, cli, eventually, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_as_scheduled_jobs_shown_by_the_api() {
    let db = TestDb::sqlite().await;
    let config = db.path("longshore.toml");
    std::fs::write(
        &config,
        "[pool.retention]\ncompleted = \"3s\"\nschedule = \"* * * * * *\"\n",
    )
    .unwrap();
    // Not even `default`: maintenance has a queue of its own in every worker.
    let (_serve, base) = db.serve(&config, &["--queues", "mail=2"]);
    let job = db
        .client()
        .enqueue(EnqueueRequest {
            queue: Some("mail".to_owned()),
            ..EnqueueRequest::new("noop", json!({}))
        })
        .await
        .unwrap();
    // The finished job is deleted once past its retention, by a prune job whose result
    // says what it deleted.
    let prunes = JobFilter {
        kind: Some("longshore.prune".to_owned()),
        states: vec![JobState::Completed],
        ..JobFilter::default()
    };
    eventually(
        Duration::from_secs(60),
        "the finished job is pruned",
        || async { db.store.job(job.id).await.unwrap().is_none().then_some(()) },
    )
    .await;
    let pruner = eventually(Duration::from_secs(5), "the prune job shows", || async {
        let done = db.store.list_jobs(&prunes, None, 100).await.unwrap();
        done.into_iter().find(|j| {
            j.result
                .as_ref()
                .is_some_and(|r| r["jobs"].as_u64() >= Some(1))
        })
    })
    .await;
    assert_eq!(pruner.queue, "longshore", "maintenance has its own queue");
    // The schedule is in the API, declared by the config, firing.
    let schedule = ok(&cli(
        &base,
        None,
        &["schedules", "get", "longshore:prune", "-o", "json"],
    ));
    let schedule: serde_json::Value = serde_json::from_str(&schedule).unwrap();
    assert_eq!(schedule["source"], "config");
    assert_eq!(schedule["cron"], "* * * * * *");
    assert!(schedule["fired_count"].as_i64().unwrap() >= 1, "{schedule}");
}
