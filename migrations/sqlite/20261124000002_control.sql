-- The control plane's tables: API tokens (hashed), the audit log, idempotency keys of
-- mutating requests, bulk operations with their progress, and small settings.

CREATE TABLE api_tokens (
    id           BLOB    PRIMARY KEY,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    targets    TEXT    NOT NULL DEFAULT '[]',
    detail     TEXT,
    request_id TEXT
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE TABLE idempotency_keys (
    actor        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER,
    response     TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

CREATE TABLE operations (
    id          BLOB    PRIMARY KEY,
    action      TEXT    NOT NULL,
    selector    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    total       INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    actor       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    error       TEXT
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE INDEX jobs_queue_id_idx ON jobs (queue, id);
CREATE INDEX jobs_kind_id_idx ON jobs (kind, id);
CREATE INDEX jobs_running_queue_idx ON jobs (queue) WHERE state = 'running';
