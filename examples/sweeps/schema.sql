-- The schema the guest sweep works on: a game service's accounts, guests among them, whose
-- dependants fall away by cascade; a guest with a seat in any game is kept.

CREATE TABLE accounts (
    id         bigserial   PRIMARY KEY,
    kind       text        NOT NULL,          -- 'guest' or 'registered'
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE seats (
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    game_id    bigint NOT NULL
);
CREATE TABLE sessions (
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    token      text   NOT NULL
);
CREATE TABLE identities (
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    provider   text   NOT NULL
);
CREATE TABLE stats (
    account_id bigint  NOT NULL REFERENCES accounts ON DELETE CASCADE,
    games      integer NOT NULL DEFAULT 0
);
CREATE INDEX seats_account_idx ON seats (account_id);
CREATE INDEX accounts_guest_idx ON accounts (id) WHERE kind = 'guest';

-- The runtime records the container sweep works on: one per game, with its operation log.
-- A record is eligible when it is stopped and its last operation is older than the TTL.
CREATE TABLE runtimes (
    game_id bigint PRIMARY KEY,
    status  text   NOT NULL                       -- 'running', 'stopped' or 'removed'
);
CREATE TABLE runtime_operations (
    id        bigserial   PRIMARY KEY,
    game_id   bigint      NOT NULL REFERENCES runtimes ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    operation text        NOT NULL,               -- 'start', 'stop', 'remove'
    outcome   text        NOT NULL,
    detail    text
);
CREATE INDEX runtime_operations_game_idx ON runtime_operations (game_id, at);
CREATE INDEX runtimes_stopped_idx ON runtimes (game_id) WHERE status = 'stopped';
