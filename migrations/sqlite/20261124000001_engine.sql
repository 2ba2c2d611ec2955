-- The engine's tables on SQLite. Times are integer microseconds since the Unix epoch; ids are
-- 16-byte UUIDs; JSON is text. The states are the same list as on Postgres.

CREATE TABLE jobs (
    id                  BLOB    PRIMARY KEY,
    queue               TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    args                TEXT    NOT NULL,
    priority            INTEGER NOT NULL DEFAULT 0,
    state               TEXT    NOT NULL,
    attempt             INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    run_at              INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    attempted_at        INTEGER,
    finished_at         INTEGER,
    locked_by           TEXT,
    lease_expires_at    INTEGER,
    cancel_requested_at INTEGER,
    unique_key          TEXT,
    unique_slot         TEXT,
    unique_scope        TEXT,
    tags                TEXT    NOT NULL DEFAULT '[]',
    metadata            TEXT    NOT NULL DEFAULT '{}',
    progress            TEXT,
    result              TEXT,
    last_error          TEXT,
    timeout_ms          INTEGER,
    CHECK (state IN ('scheduled', 'available', 'running', 'retryable', 'completed', 'cancelled', 'discarded')),
    CHECK (max_attempts > 0 AND attempt >= 0)
) WITHOUT ROWID;

CREATE INDEX jobs_claim_idx ON jobs (queue, priority, run_at, id)
    WHERE state IN ('available', 'scheduled', 'retryable');
CREATE UNIQUE INDEX jobs_unique_slot_idx ON jobs (unique_slot) WHERE unique_slot IS NOT NULL;
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_locked_by_idx ON jobs (locked_by) WHERE state = 'running';
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_state_idx ON jobs (state, id);

CREATE TABLE job_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker      TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    error_chain TEXT
);
CREATE INDEX job_attempts_job_idx ON job_attempts (job_id, id);

-- SQLite has one writer, so ids handed out in order are committed in order.
-- AUTOINCREMENT keeps ids monotonic even after the newest events are pruned.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    job_id  BLOB,
    queue   TEXT,
    kind    TEXT,
    state   TEXT,
    attempt INTEGER,
    data    TEXT
);
CREATE INDEX events_job_idx ON events (job_id, id) WHERE job_id IS NOT NULL;
CREATE INDEX events_at_idx ON events (at);

CREATE TABLE queues (
    name        TEXT    PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE workers (
    id           TEXT    PRIMARY KEY,
    queue        TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    kinds        TEXT    NOT NULL DEFAULT '[]',
    started_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    stopped_at   INTEGER
);
CREATE INDEX workers_last_seen_idx ON workers (last_seen_at);
