-- Cron schedules. Every process may run the scheduler: a fire is a job whose unique key is
-- (schedule, fire time), so each tick yields one job however many processes see it, and
-- next_fire_at only moves forward by compare-and-set.

CREATE TABLE schedules (
    id                text        PRIMARY KEY,
    cron              text        NOT NULL,
    timezone          text        NOT NULL,
    template          jsonb       NOT NULL,
    catch_up          text        NOT NULL,
    catch_up_window_s bigint      NOT NULL,
    catch_up_cap      integer     NOT NULL,
    overlap           text        NOT NULL,
    enabled           boolean     NOT NULL DEFAULT true,
    source            text        NOT NULL,
    last_fire_at      timestamptz,
    last_job_id       uuid,
    next_fire_at      timestamptz,
    -- Ticks by outcome, for the schedule's metrics.
    fired_count       bigint      NOT NULL DEFAULT 0,
    skipped_count     bigint      NOT NULL DEFAULT 0,
    missed_count      bigint      NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_catch_up_check CHECK (catch_up IN ('skip', 'latest', 'all')),
    CONSTRAINT schedules_overlap_check CHECK (overlap IN ('allow', 'skip')),
    CONSTRAINT schedules_source_check CHECK (source IN ('config', 'api'))
);
CREATE INDEX schedules_due_idx ON schedules (next_fire_at) WHERE enabled;
