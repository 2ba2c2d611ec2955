-- The control plane's tables: API tokens (hashed), the audit log, idempotency keys of
-- mutating requests, bulk operations with their progress, and small settings.

CREATE TABLE api_tokens (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL,
    -- The first characters of the plain token, shown in listings; the token itself is never
    -- stored, only its SHA-256.
    prefix       text        NOT NULL,
    hash         text        NOT NULL UNIQUE,
    scopes       jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE audit_log (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    action     text        NOT NULL,
    targets    jsonb       NOT NULL DEFAULT '[]',
    detail     jsonb,
    request_id text
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE TABLE idempotency_keys (
    actor        text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       integer,
    response     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

CREATE TABLE operations (
    id          uuid        PRIMARY KEY,
    action      text        NOT NULL,
    selector    jsonb       NOT NULL,
    state       text        NOT NULL,
    total       bigint      NOT NULL DEFAULT 0,
    done        bigint      NOT NULL DEFAULT 0,
    skipped     bigint      NOT NULL DEFAULT 0,
    actor       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    error       text
);

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Filters of the jobs list.
CREATE INDEX jobs_queue_id_idx ON jobs (queue, id);
CREATE INDEX jobs_kind_id_idx ON jobs (kind, id);
CREATE INDEX jobs_running_queue_idx ON jobs (queue) WHERE state = 'running';
