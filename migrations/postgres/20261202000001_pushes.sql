-- The push log: each push a user's gateway must receive, kept for the push retention.
-- Positions order pushes by the transaction that wrote them, as event ids do (see the events
-- table): the high bits are the writing transaction's id, the low 20 bits a sequence, and a
-- reader only reads below the oldest transaction still running, so a push committed late is
-- never skipped by a gateway that resumes from a later position.
CREATE SEQUENCE pushes_seq;
CREATE TABLE pushes (
    position bigint      PRIMARY KEY
        DEFAULT ((pg_current_xact_id()::text::bigint << 20) | (nextval('pushes_seq') & 1048575)),
    event_id text        NOT NULL UNIQUE,
    user_id  text        NOT NULL,
    kind     text        NOT NULL,
    payload  jsonb       NOT NULL,
    at       timestamptz NOT NULL
);
CREATE INDEX pushes_at_idx ON pushes (at);
