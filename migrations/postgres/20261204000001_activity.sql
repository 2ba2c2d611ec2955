-- Active users: when each user was last seen (in a lifecycle event, a push, or a gateway's
-- activity report). The gauge of distinct users over a trailing window is the number of rows
-- seen since its start: exact, the same on every replica, and it survives restarts. Rows
-- older than the longest window are pruned.
CREATE TABLE user_activity (
    user_id      text NOT NULL PRIMARY KEY,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX user_activity_seen_idx ON user_activity (last_seen_at);
