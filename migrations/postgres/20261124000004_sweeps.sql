-- Sweeps, declared in the config file (reconciled at start) or through the API (admins).
-- The definition is the JSON of a SweepDef; its targets stay in the config file, so the API
-- can only point a sweep at a database an operator declared.

CREATE TABLE sweeps (
    name       text        PRIMARY KEY,
    definition jsonb       NOT NULL,
    source     text        NOT NULL,
    -- Where the next pass starts, after a pass stopped by its budget (NULL: at the start).
    resume_after text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sweeps_source_check CHECK (source IN ('config', 'api'))
);
