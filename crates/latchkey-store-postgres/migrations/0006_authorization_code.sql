-- The authorization code flow (SPEC §10): redirect URIs and first-party
-- trust of clients, single-use codes (stored as keyed hashes), and the
-- scopes each user has consented to per client.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN first_party BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE authorization_codes (
    hash           BYTEA  NOT NULL CONSTRAINT authorization_codes_pk PRIMARY KEY,
    client_id      TEXT   NOT NULL,
    user_id        TEXT   NOT NULL,
    redirect_uri   TEXT   NOT NULL,
    code_challenge TEXT   NOT NULL,
    scope          TEXT   NOT NULL,
    nonce          TEXT,
    auth_time      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    -- Set once, with the session the redemption started.
    used_at        BIGINT,
    session_id     TEXT,
    CONSTRAINT authorization_codes_hash_len CHECK (octet_length(hash) = 32)
);
CREATE INDEX authorization_codes_expires_idx ON authorization_codes (expires_at);

CREATE TABLE consents (
    user_id    TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    scope      TEXT   NOT NULL,
    granted_at BIGINT NOT NULL,
    CONSTRAINT consents_pk PRIMARY KEY (user_id, client_id)
);
