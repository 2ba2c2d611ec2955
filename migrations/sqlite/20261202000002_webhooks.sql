-- Webhook endpoints: who subscribed to which kinds of pushes and events, with the state of
-- each endpoint's circuit breaker. The secrets are encrypted by the process (see
-- longshore_jobs::secret) before they reach this table.
CREATE TABLE webhook_endpoints (
    id                   BLOB    PRIMARY KEY,
    url                  TEXT    NOT NULL,
    kinds                TEXT    NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    rate_limit           INTEGER,
    ordered              INTEGER NOT NULL DEFAULT 0,
    secret               TEXT    NOT NULL,
    previous_secret      TEXT,
    previous_until       INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since        INTEGER,
    breaker_until        INTEGER,
    disabled_reason      TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- Every delivery attempt: the endpoint's delivery log.
CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id BLOB    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    job_id      BLOB    NOT NULL,
    message_id  TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    response    TEXT
);
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id);
