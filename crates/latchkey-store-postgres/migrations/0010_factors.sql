-- Second factors: a user's authenticator app (its secret sealed like the
-- signing keys), its recovery codes by keyed hash, and password sign-ins
-- waiting for their second step, by the keyed hash of their token.
CREATE TABLE totp_factors (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE REFERENCES users (id),
    secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL
);
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id),
    hash BYTEA NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, hash)
);
CREATE TABLE mfa_challenges (
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX mfa_challenges_expiry_idx ON mfa_challenges (expires_at);
