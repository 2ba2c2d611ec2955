-- Cron schedules; see the Postgres migration for the design.

CREATE TABLE schedules (
    id                TEXT    PRIMARY KEY,
    cron              TEXT    NOT NULL,
    timezone          TEXT    NOT NULL,
    template          TEXT    NOT NULL,
    catch_up          TEXT    NOT NULL CHECK (catch_up IN ('skip', 'latest', 'all')),
    catch_up_window_s INTEGER NOT NULL,
    catch_up_cap      INTEGER NOT NULL,
    overlap           TEXT    NOT NULL CHECK (overlap IN ('allow', 'skip')),
    enabled           INTEGER NOT NULL DEFAULT 1,
    source            TEXT    NOT NULL CHECK (source IN ('config', 'api')),
    last_fire_at      INTEGER,
    last_job_id       BLOB,
    next_fire_at      INTEGER,
    fired_count       INTEGER NOT NULL DEFAULT 0,
    skipped_count     INTEGER NOT NULL DEFAULT 0,
    missed_count      INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX schedules_due_idx ON schedules (next_fire_at) WHERE enabled;
