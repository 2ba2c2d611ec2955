-- Sweeps; see the Postgres migration for the design.

CREATE TABLE sweeps (
    name       TEXT    PRIMARY KEY,
    definition TEXT    NOT NULL,
    source     TEXT    NOT NULL CHECK (source IN ('config', 'api')),
    resume_after TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
