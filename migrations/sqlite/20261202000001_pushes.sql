-- The push log: each push a user's gateway must receive, kept for the push retention.
-- One writer hands out positions in commit order; AUTOINCREMENT keeps them increasing even
-- after the newest pushes are pruned.
CREATE TABLE pushes (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT    NOT NULL UNIQUE,
    user_id  TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    payload  TEXT    NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX pushes_at_idx ON pushes (at);
