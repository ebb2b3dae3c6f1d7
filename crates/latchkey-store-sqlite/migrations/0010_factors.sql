-- Second factors: a user's authenticator app (its secret sealed like the
-- signing keys), its recovery codes by keyed hash, and password sign-ins
-- waiting for their second step, by the keyed hash of their token.
CREATE TABLE totp_factors (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE REFERENCES users (id),
    secret BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step INTEGER NOT NULL
);
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id),
    hash BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, hash)
);
CREATE TABLE mfa_challenges (
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT,
    scope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mfa_challenges_expiry_idx ON mfa_challenges (expires_at);
