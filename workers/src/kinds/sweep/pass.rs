//! One pass of a sweep, step by step: start (the definition, the older pass to wait for, the
//! target, where to resume), take the next page of candidates within the budget, act on it
//! and checkpoint, and finish (where the next pass starts, the counts on the event stream).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use longshore_jobs::admin::{ArgsMatch, JobFilter};
use longshore_jobs::sweep::{SweepAction, SweepDef, SweepProgress};
use longshore_jobs::target::Target;
use longshore_jobs::{JobContext, JobError, JobId, JobResult, JobState, Kind, Store, event};

use super::query::{Candidate, act_on_page, bounded, child, page};
use super::{Sweep, SweepArgs};

/// A pass in progress.
pub(super) struct Pass<'a> {
    job: &'a JobContext,
    def: SweepDef,
    target: Target,
    dry_run: bool,
    cutoff: DateTime<Utc>,
    started: Instant,
    progress: SweepProgress,
}

/// The error of an attempt whose lease was lost (its pass was rescued): the new attempt
/// owns the pass now and goes on from the checkpoint.
fn lease_lost() -> JobError {
    JobError::retry("this attempt lost its lease; the rescued pass goes on from the checkpoint")
}

fn retry(error: impl std::fmt::Display) -> JobError {
    JobError::retry(error.to_string())
}

impl<'a> Pass<'a> {
    /// Reads the definition, waits (snoozes) while an older pass of the same sweep runs, and
    /// resumes from this pass's checkpoint, or a new pass from where a budget stopped the last.
    pub(super) async fn start(
        sweep: &Sweep,
        job: &'a JobContext,
        args: &SweepArgs,
    ) -> Result<Pass<'a>, JobError> {
        let store = job.client.store();
        let stored = store.sweep(&args.sweep).await.map_err(retry)?;
        let stored = stored
            .ok_or_else(|| JobError::fatal(format!("no sweep {:?} is declared", args.sweep)))?;
        let def = stored.def;
        if !args.dry_run
            && let Some(other) = older_pass_running(store, &def.name, job.id).await?
        {
            tracing::info!(sweep = %def.name, %other, "another pass is running; waiting for it");
            return Err(JobError::snooze(Duration::from_secs(10)));
        }
        let target = sweep.target(&def.target).await?;
        let checkpoint: Option<SweepProgress> = store
            .job_progress(job.id)
            .await
            .map_err(retry)?
            .and_then(|p| serde_json::from_value(p).ok());
        let mut progress = match checkpoint {
            Some(progress) => progress,
            None if args.dry_run => SweepProgress::default(),
            None => SweepProgress {
                last_key: stored.resume_after.clone(),
                resumed_from: stored.resume_after,
                ..SweepProgress::default()
            },
        };
        progress.dry_run = args.dry_run;
        let cutoff = chrono::Duration::from_std(def.retention)
            .ok()
            .and_then(|retention| Utc::now().checked_sub_signed(retention))
            .ok_or_else(|| {
                JobError::fatal(format!("sweep {}: the retention is too long", def.name))
            })?;
        Ok(Pass {
            job,
            def,
            target,
            dry_run: args.dry_run,
            cutoff,
            started: Instant::now(),
            progress,
        })
    }

    fn time_left(&self) -> Duration {
        self.def.max_time.saturating_sub(self.started.elapsed())
    }

    /// The next page of candidates, or `None` when the pass is done: no candidate left, or a
    /// budget (`max_time`, `max_rows`) reached.
    pub(super) async fn next_page(&mut self) -> Result<Option<Vec<Candidate>>, JobError> {
        if self.job.cancel.is_cancelled() {
            return Err(JobError::retry(
                "stopped; the next attempt resumes from the checkpoint",
            ));
        }
        let time_left = self.time_left();
        if time_left.is_zero() {
            self.progress.stopped_by = Some("max_time".to_owned());
            return Ok(None);
        }
        let rows_left = self
            .def
            .max_rows
            .map_or(u64::MAX, |max| max.saturating_sub(self.progress.matched));
        if rows_left == 0 {
            self.progress.stopped_by = Some("max_rows".to_owned());
            return Ok(None);
        }
        let limit = u64::from(self.def.batch).min(rows_left);
        let after = self.progress.last_key.as_deref();
        let query = page(
            &self.target,
            &self.def.query,
            self.cutoff,
            after,
            limit,
            time_left,
        );
        let candidates = bounded(&self.def, "candidate query", time_left, query).await?;
        if candidates.is_empty() {
            self.progress.complete = true;
            return Ok(None);
        }
        self.progress.matched += candidates.len() as u64;
        Ok(Some(candidates))
    }

    /// Acts on a page (a dry run only counts) and checkpoints after it.
    pub(super) async fn act_on(&mut self, page: Vec<Candidate>) -> Result<(), JobError> {
        let last = page.last().map(|c| c.key.clone());
        self.progress.pages += 1;
        match self.def.action.clone() {
            _ if self.dry_run => self.progress.last_key = last,
            SweepAction::Statement { sql } => {
                let keys: Vec<String> = page.into_iter().map(|c| c.key).collect();
                let time_left = self.time_left();
                let query = act_on_page(&self.target, &sql, &keys, time_left);
                self.progress.acted +=
                    bounded(&self.def, "action statement", time_left, query).await?;
                self.progress.last_key = last;
                // The statement ran on the target; the checkpoint follows it (a crash in
                // between repeats it on what is left).
                let saved = self.job.save_progress(&self.checkpoint()).await;
                if !saved.map_err(retry)? {
                    return Err(lease_lost());
                }
            }
            SweepAction::FanOut { kind, queue } => {
                let mut children = Vec::with_capacity(page.len());
                for candidate in page {
                    let request = child(&self.def, &kind, queue.as_deref(), self.job.id, candidate);
                    match self.job.client.prepare(request) {
                        Ok(job) => children.push(job),
                        Err(error) => {
                            self.progress.refused += 1;
                            tracing::warn!(sweep = %self.def.name, %error, "a child job was refused");
                        }
                    }
                }
                self.progress.acted += children.len() as u64;
                self.progress.last_key = last;
                // The children and the checkpoint commit together: a crash makes a page's
                // children exactly once.
                let stored = self
                    .job
                    .enqueue_with_progress(children, &self.checkpoint())
                    .await;
                if stored.map_err(retry)?.is_none() {
                    return Err(lease_lost());
                }
            }
        }
        Ok(())
    }

    fn checkpoint(&self) -> serde_json::Value {
        serde_json::json!(self.progress)
    }

    /// Waits the sweep's pause between pages, within the time left.
    pub(super) async fn pause(&self) {
        if !self.def.pause.is_zero() {
            tokio::time::sleep(self.def.pause.min(self.time_left())).await;
        }
    }

    /// Puts the pass's counts on the event stream (best effort: the job's progress and
    /// result hold them durably).
    pub(super) async fn report(&self, what: &str) {
        let mut data = self.checkpoint();
        data["sweep"] = serde_json::json!(self.def.name);
        let store = self.job.client.store();
        let written = store.write_event(what, Some(&self.job.queue), Some(self.job.id), data);
        if let Err(error) = written.await {
            tracing::warn!(sweep = %self.def.name, %error, "cannot write the sweep's event");
        }
    }

    /// Rows matched and acted on so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.progress.matched, self.progress.acted)
    }

    /// Records where the next pass starts (after this one's last key when a budget stopped
    /// it, else from the beginning) and reports the counts.
    pub(super) async fn finish(self) -> JobResult {
        if !self.dry_run {
            let stopped = self.progress.stopped_by.is_some();
            let resume_after = stopped.then(|| self.progress.last_key.clone()).flatten();
            let store = self.job.client.store();
            store
                .set_sweep_resume(&self.def.name, resume_after.as_deref())
                .await
                .map_err(JobError::retry)?;
        }
        self.report(event::SWEEP_FINISHED).await;
        Ok(serde_json::to_value(&self.progress).unwrap_or_default())
    }
}

/// The older pass of this sweep that is running now, if any: two passes at once would race
/// over the same keys, so the younger one waits (dry runs change nothing and never wait, nor
/// are waited for).
async fn older_pass_running(
    store: &Store,
    sweep: &str,
    me: JobId,
) -> Result<Option<JobId>, JobError> {
    let running = JobFilter {
        kind: Some(Sweep::NAME.to_owned()),
        states: vec![JobState::Running],
        args: vec![ArgsMatch {
            path: vec!["sweep".to_owned()],
            value: sweep.to_owned(),
        }],
        ..JobFilter::default()
    };
    let passes = store
        .list_jobs(&running, None, 20)
        .await
        .map_err(JobError::retry)?;
    Ok(passes
        .iter()
        .find(|j| j.id < me && j.args["dry_run"] != true)
        .map(|j| j.id))
}
