-- Latchkey schema, PostgreSQL. Never edit an applied migration: add a new one.
-- Times are Unix seconds. Tokens and secrets are stored only as keyed hashes.

CREATE TABLE users (
    id            TEXT    NOT NULL CONSTRAINT users_pk PRIMARY KEY,
    username      TEXT    NOT NULL CONSTRAINT users_username_key UNIQUE,
    -- Argon2id PHC string; the password itself is never stored.
    password_hash TEXT    NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE clients (
    id          TEXT   NOT NULL CONSTRAINT clients_pk PRIMARY KEY,
    name        TEXT   NOT NULL,
    -- Keyed hash of the client secret; NULL for a public client.
    secret_hash BYTEA,
    scope       TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A session is the family of refresh tokens started by one login. Revoking
-- it kills every token in it and, through the `sid` check, its access tokens.
CREATE TABLE sessions (
    id             TEXT   NOT NULL CONSTRAINT sessions_pk PRIMARY KEY,
    user_id        TEXT   NOT NULL CONSTRAINT sessions_user_fk REFERENCES users (id),
    client_id      TEXT            CONSTRAINT sessions_client_fk REFERENCES clients (id),
    scope          TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    last_used_at   BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT,
    ip             TEXT   NOT NULL,
    user_agent     TEXT   NOT NULL
);
-- The per-user cap walks a user's sessions oldest first.
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at);
-- Garbage collection finds sessions past their absolute end or long revoked.
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE refresh_tokens (
    -- HMAC-SHA-256 of the token under a server-side key.
    hash        BYTEA  NOT NULL CONSTRAINT refresh_tokens_pk PRIMARY KEY,
    session_id  TEXT   NOT NULL CONSTRAINT refresh_tokens_session_fk REFERENCES sessions (id) ON DELETE CASCADE,
    parent_hash BYTEA,
    scope       TEXT   NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    -- Set once, when the token is rotated; a used token is kept so that its
    -- reuse is detected for as long as the session could be refreshed.
    used_at     BIGINT,
    access_jti  TEXT   NOT NULL,
    ip          TEXT   NOT NULL,
    user_agent  TEXT   NOT NULL,
    CONSTRAINT refresh_tokens_hash_len CHECK (octet_length(hash) = 32)
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid          TEXT   NOT NULL CONSTRAINT signing_keys_pk PRIMARY KEY,
    alg          TEXT   NOT NULL,
    -- PKCS#8, sealed with AES-256-GCM under LATCHKEY_MASTER_KEY when set.
    private_blob BYTEA  NOT NULL,
    public_jwk   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);

-- Server-side secrets (the refresh-token hashing key), sealed like keys.
CREATE TABLE secrets (
    name  TEXT  NOT NULL CONSTRAINT secrets_pk PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE audit_events (
    id         BIGSERIAL NOT NULL CONSTRAINT audit_events_pk PRIMARY KEY,
    at         BIGINT    NOT NULL,
    kind       TEXT      NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    client_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT      NOT NULL
);
CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_user_idx ON audit_events (user_id, id);
CREATE INDEX audit_events_kind_idx ON audit_events (kind, id);
