-- The engine's tables: jobs, their attempts, the event outbox, queues and workers.
-- Job states are one list shared by SQL, the API, events and the dashboard.

CREATE TABLE jobs (
    id                  uuid        PRIMARY KEY,
    queue               text        NOT NULL,
    kind                text        NOT NULL,
    args                jsonb       NOT NULL,
    priority            smallint    NOT NULL DEFAULT 0,
    state               text        NOT NULL,
    attempt             integer     NOT NULL DEFAULT 0,
    max_attempts        integer     NOT NULL,
    run_at              timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    attempted_at        timestamptz,
    finished_at         timestamptz,
    locked_by           text,
    lease_expires_at    timestamptz,
    cancel_requested_at timestamptz,
    -- unique_key is what the enqueuer asked for; unique_slot is the value the unique index
    -- enforces, released when a job with scope 'active' reaches a terminal state.
    unique_key          text,
    unique_slot         text,
    unique_scope        text,
    tags                jsonb       NOT NULL DEFAULT '[]',
    metadata            jsonb       NOT NULL DEFAULT '{}',
    progress            jsonb,
    result              jsonb,
    last_error          text,
    timeout_ms          bigint,
    CONSTRAINT jobs_state_check CHECK (state IN
        ('scheduled', 'available', 'running', 'retryable', 'completed', 'cancelled', 'discarded')),
    CONSTRAINT jobs_attempts_check CHECK (max_attempts > 0 AND attempt >= 0)
);

-- The claim reads this index in order: queue, then priority, then run_at.
CREATE INDEX jobs_claim_idx ON jobs (queue, priority, run_at, id)
    WHERE state IN ('available', 'scheduled', 'retryable');
CREATE UNIQUE INDEX jobs_unique_slot_idx ON jobs (unique_slot) WHERE unique_slot IS NOT NULL;
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_locked_by_idx ON jobs (locked_by) WHERE state = 'running';
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_state_idx ON jobs (state, id);

CREATE TABLE job_attempts (
    id          bigserial   PRIMARY KEY,
    job_id      uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    worker      text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome     text        NOT NULL,
    error       text,
    error_chain jsonb
);
CREATE INDEX job_attempts_job_idx ON job_attempts (job_id, id);

-- Event ids order events by the transaction that wrote them: the high bits are the writing
-- transaction's id, the low 20 bits come from a sequence. A reader only reads ids below the
-- oldest transaction still running (see store::pg::events), so an event committed late is
-- never skipped.
CREATE SEQUENCE events_seq;
CREATE TABLE events (
    id       bigint      PRIMARY KEY
        DEFAULT ((pg_current_xact_id()::text::bigint << 20) | (nextval('events_seq') & 1048575)),
    at       timestamptz NOT NULL DEFAULT now(),
    type     text        NOT NULL,
    job_id   uuid,
    queue    text,
    kind     text,
    state    text,
    attempt  integer,
    data     jsonb
);
CREATE INDEX events_job_idx ON events (job_id, id) WHERE job_id IS NOT NULL;
CREATE INDEX events_at_idx ON events (at);

CREATE TABLE queues (
    name        text        PRIMARY KEY,
    paused      boolean     NOT NULL DEFAULT false,
    concurrency integer,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workers (
    id           text        PRIMARY KEY,
    queue        text        NOT NULL,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    concurrency  integer     NOT NULL,
    kinds        jsonb       NOT NULL DEFAULT '[]',
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
CREATE INDEX workers_last_seen_idx ON workers (last_seen_at);
