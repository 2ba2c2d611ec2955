-- Webhook endpoints: who subscribed to which kinds of pushes and events, with the state of
-- each endpoint's circuit breaker. The secrets are encrypted by the process (see
-- longshore_jobs::secret) before they reach this table.
CREATE TABLE webhook_endpoints (
    id                   uuid        PRIMARY KEY,
    url                  text        NOT NULL,
    kinds                jsonb       NOT NULL,
    enabled              boolean     NOT NULL DEFAULT true,
    rate_limit           integer,
    ordered              boolean     NOT NULL DEFAULT false,
    secret               text        NOT NULL,
    previous_secret      text,
    previous_until       timestamptz,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    failing_since        timestamptz,
    breaker_until        timestamptz,
    disabled_reason      text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

-- Every delivery attempt: the endpoint's delivery log.
CREATE TABLE webhook_attempts (
    id          bigserial   PRIMARY KEY,
    endpoint_id uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    job_id      uuid        NOT NULL,
    message_id  text        NOT NULL,
    event_type  text        NOT NULL,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL,
    status      integer,
    latency_ms  integer     NOT NULL,
    error       text,
    response    text
);
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id);
