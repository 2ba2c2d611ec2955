-- The schema the lifecycle cascades work on: a game service's accounts with their sessions
-- and sign-in identities. Deleting a user revokes both; blocking one revokes the sessions
-- and marks the account; a guest who registers becomes a registered account.

CREATE TABLE accounts (
    id           bigint      PRIMARY KEY,
    kind         text        NOT NULL DEFAULT 'guest',   -- 'guest' or 'registered'
    blocked_at   timestamptz,
    blocked_why  text,
    converted_at timestamptz
);
CREATE TABLE sessions (
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    token      text   NOT NULL,
    revoked_at timestamptz
);
CREATE TABLE identities (
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    provider   text   NOT NULL
);
CREATE INDEX sessions_account_idx ON sessions (account_id);
CREATE INDEX identities_account_idx ON identities (account_id);
