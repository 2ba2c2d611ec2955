//! Cron schedules, with a controllable clock: catch-up after downtime, overlap, daylight
//! saving, and several schedulers firing each tick once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use longshore_jobs::EnqueueRequest;
use longshore_jobs::admin::JobFilter;
use longshore_jobs::schedule::{CatchUp, Overlap, ScheduleDef, Source};
use longshore_jobs::{Job, JobState, Store};
use longshore_workers::Scheduler;

use crate::support::{TestDb, client, registry};

crate::per_backend!(
    crate::support::db =>
    each_catch_up_policy_decides_after_downtime,
    overlap_skip_waits_for_the_previous_job,
    daylight_saving_days_fire_once_per_local_time,
    three_schedulers_fire_each_tick_once,
);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn def(id: &str, cron: &str, timezone: &str, catch_up: CatchUp) -> ScheduleDef {
    ScheduleDef {
        id: id.to_owned(),
        cron: cron.to_owned(),
        timezone: timezone.to_owned(),
        job: EnqueueRequest {
            kind: "noop".to_owned(),
            queue: Some(format!("q-{id}")),
            ..EnqueueRequest::default()
        },
        catch_up,
        catch_up_window: Duration::from_secs(600),
        catch_up_cap: 5,
        overlap: Overlap::Allow,
        enabled: true,
    }
}

/// Stores `def` as if created at `created`.
async fn create(store: &Store, def: ScheduleDef, created: DateTime<Utc>) {
    let schedule = def.into_schedule(Source::Api, created, None).unwrap();
    store.put_schedule(&schedule).await.unwrap();
}

/// The jobs of a schedule, oldest tick first.
async fn fires(store: &Store, id: &str) -> Vec<Job> {
    let filter = JobFilter {
        tag: Some(format!("schedule:{id}")),
        ..JobFilter::default()
    };
    let mut jobs = store.list_jobs(&filter, None, 1000).await.unwrap();
    jobs.sort_by_key(|j| j.run_at);
    jobs
}

async fn each_catch_up_policy_decides_after_downtime(db: TestDb) {
    let scheduler = Scheduler::new(client(&db, registry()), Duration::from_secs(1));
    // Created just before 10:00; every scheduler was down until 10:30:30.
    let created = at("2026-11-24T09:59:59Z");
    let now = at("2026-11-24T10:30:30Z");
    for (id, policy) in [
        ("skip", CatchUp::Skip),
        ("latest", CatchUp::Latest),
        ("all", CatchUp::All),
    ] {
        create(&db.store, def(id, "0 * * * * *", "UTC", policy), created).await;
    }
    let report = scheduler.tick(now).await.unwrap();
    assert_eq!(
        fires(&db.store, "skip").await.len(),
        0,
        "skip back-fills nothing"
    );
    let latest = fires(&db.store, "latest").await;
    assert_eq!(latest.len(), 1, "latest fires once");
    assert_eq!(latest[0].run_at, at("2026-11-24T10:30:00Z"));
    let all: Vec<DateTime<Utc>> = fires(&db.store, "all")
        .await
        .iter()
        .map(|j| j.run_at)
        .collect();
    assert_eq!(
        all,
        ["10:21", "10:22", "10:23", "10:24", "10:25"].map(|m| at(&format!("2026-11-24T{m}:00Z"))),
        "all: the missed ticks within the window, oldest first, up to the cap"
    );
    assert_eq!(report.fired, 6);
    assert_eq!(report.missed, 31 + 30 + 26);
    for id in ["skip", "latest", "all"] {
        let s = db.store.schedule(id).await.unwrap().unwrap();
        assert_eq!(
            s.next_fire_at,
            Some(at("2026-11-24T10:31:00Z")),
            "{id} moves on"
        );
    }
    // The drop is on the event stream. On Postgres a reader sees events only below the oldest
    // transaction still open on the server, which other tests running at once may hold open
    // for a moment: wait for the horizon to pass them.
    let count = |events: &[longshore_jobs::Event], kind: &str| {
        events.iter().filter(|e| e.event_type == kind).count()
    };
    let events = crate::support::eventually(Duration::from_secs(10), "the events", || async {
        let events = db
            .store
            .events_after(longshore_jobs::EventId(0), 1000)
            .await
            .unwrap();
        (count(&events, "schedule.missed") >= 3 && count(&events, "schedule.fired") >= 6)
            .then_some(events)
    })
    .await;
    let missed: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "schedule.missed")
        .collect();
    assert_eq!(missed.len(), 3);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "schedule.fired")
            .count(),
        6
    );
    // Looking again at the same moment changes nothing.
    assert_eq!(scheduler.tick(now).await.unwrap().fired, 0);
    // An on-time tick fires under every policy.
    scheduler
        .tick(at("2026-11-24T10:31:00.200Z"))
        .await
        .unwrap();
    for id in ["skip", "latest", "all"] {
        let last = fires(&db.store, id).await.pop().unwrap();
        assert_eq!(last.run_at, at("2026-11-24T10:31:00Z"), "{id}");
    }
}

async fn overlap_skip_waits_for_the_previous_job(db: TestDb) {
    let scheduler = Scheduler::new(client(&db, registry()), Duration::from_secs(1));
    let mut d = def("nightly", "* * * * * *", "UTC", CatchUp::Skip);
    d.overlap = Overlap::Skip;
    create(&db.store, d, at("2026-11-24T10:00:00Z")).await;
    scheduler
        .tick(at("2026-11-24T10:00:01.100Z"))
        .await
        .unwrap();
    let first = fires(&db.store, "nightly").await;
    assert_eq!(first.len(), 1);
    // A worker is running the job: the next tick is skipped.
    let worker = longshore_jobs::WorkerId("q-nightly@test:1:abcd".to_owned());
    let claimed = db
        .store
        .claim("q-nightly", &worker, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, first[0].id);
    let report = scheduler
        .tick(at("2026-11-24T10:00:02.100Z"))
        .await
        .unwrap();
    assert_eq!((report.fired, report.skipped), (0, 1));
    assert_eq!(fires(&db.store, "nightly").await.len(), 1);
    // Once it is finished, ticks fire again.
    let done = longshore_jobs::Completion {
        lease: longshore_jobs::Lease {
            job: first[0].id,
            attempt: claimed[0].attempt,
            worker: worker.clone(),
        },
        queue: "q-nightly".to_owned(),
        outcome: longshore_jobs::Outcome::Completed { result: None },
    };
    assert_eq!(db.store.complete(&[done]).await.unwrap(), [first[0].id]);
    let report = scheduler
        .tick(at("2026-11-24T10:00:03.100Z"))
        .await
        .unwrap();
    assert_eq!(report.fired, 1);
    // Below the horizon once other tests' open transactions end (see the catch-up test).
    crate::support::eventually(Duration::from_secs(10), "schedule.skipped", || async {
        let events = db
            .store
            .events_after(longshore_jobs::EventId(0), 1000)
            .await
            .unwrap();
        events
            .iter()
            .any(|e| e.event_type == "schedule.skipped")
            .then_some(())
    })
    .await;
    let s = db.store.schedule("nightly").await.unwrap().unwrap();
    assert_eq!((s.counts.fired, s.counts.skipped), (2, 1));
}

async fn daylight_saving_days_fire_once_per_local_time(db: TestDb) {
    let scheduler = Scheduler::new(client(&db, registry()), Duration::from_secs(1));
    let mut spring = def("spring", "0 30 2 * * *", "Europe/Berlin", CatchUp::All);
    spring.catch_up_window = Duration::from_secs(7 * 24 * 3600);
    create(&db.store, spring, at("2026-03-27T12:00:00Z")).await;
    let mut autumn = def("autumn", "0 30 2 * * *", "Europe/Berlin", CatchUp::All);
    autumn.catch_up_window = Duration::from_secs(7 * 24 * 3600);
    create(&db.store, autumn, at("2026-10-23T12:00:00Z")).await;
    // Look once a day, as a process that runs through both transitions would.
    for day in 28..=30 {
        scheduler
            .tick(at(&format!("2026-03-{day}T12:00:00Z")))
            .await
            .unwrap();
    }
    // Only the autumn schedule from here on.
    assert!(db.store.delete_schedule("spring").await.unwrap());
    for day in 24..=26 {
        scheduler
            .tick(at(&format!("2026-10-{day}T12:00:00Z")))
            .await
            .unwrap();
    }
    let spring: Vec<_> = fires(&db.store, "spring")
        .await
        .iter()
        .map(|j| j.run_at)
        .collect();
    assert_eq!(
        spring,
        [
            at("2026-03-28T01:30:00Z"), // 02:30 CET
            at("2026-03-29T01:00:00Z"), // 02:30 does not exist: once, when the gap ends
            at("2026-03-30T00:30:00Z"), // 02:30 CEST
        ]
    );
    let autumn: Vec<_> = fires(&db.store, "autumn")
        .await
        .iter()
        .map(|j| j.run_at)
        .collect();
    assert_eq!(
        autumn,
        [
            at("2026-10-24T00:30:00Z"), // 02:30 CEST
            at("2026-10-25T00:30:00Z"), // 02:30 happens twice: once
            at("2026-10-26T01:30:00Z"), // 02:30 CET
        ]
    );
}

async fn three_schedulers_fire_each_tick_once(db: TestDb) {
    // Three schedulers (on Postgres, each with its own connections, as three processes
    // have), one reading a clock 2 s ahead, look at a one-second schedule for 60 s.
    let mut schedulers = Vec::new();
    for _ in 0..3 {
        let store = if db.is_postgres() {
            db.second_store().await
        } else {
            db.store.clone()
        };
        let client = longshore_jobs::Client::new(store, std::sync::Arc::new(registry()));
        schedulers.push(Scheduler::new(client, Duration::from_secs(1)));
    }
    let start = at("2026-11-24T10:00:00Z");
    create(
        &db.store,
        def("every-second", "* * * * * *", "UTC", CatchUp::Skip),
        start,
    )
    .await;
    for step in 1..=240 {
        let now = start + chrono::Duration::milliseconds(step * 250);
        let skewed = now + chrono::Duration::seconds(2);
        let (a, b, c) = tokio::join!(
            schedulers[0].tick(now),
            schedulers[1].tick(skewed),
            schedulers[2].tick(now)
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
    }
    let ticks: Vec<DateTime<Utc>> = fires(&db.store, "every-second")
        .await
        .iter()
        .map(|j| j.run_at)
        .collect();
    // Up to 10:01:00 as the plain clocks see it, and 2 s beyond through the skewed one.
    let expected: Vec<DateTime<Utc>> = (1..=62)
        .map(|s| start + chrono::Duration::seconds(s))
        .collect();
    assert_eq!(ticks, expected, "one job per tick, no gap, no duplicate");
    let available = fires(&db.store, "every-second").await;
    assert!(
        available
            .iter()
            .all(|j| j.state == JobState::Available || j.state == JobState::Scheduled)
    );
}
