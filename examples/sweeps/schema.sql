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
