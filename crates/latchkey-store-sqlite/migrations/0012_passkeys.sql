-- Passkeys (SPEC §12): each credential by its id, with the library's
-- record of it (public key, counter) as JSON, and the signature counter
-- beside it so that a use is recorded only over a smaller one. WebAuthn
-- ceremonies waiting for their answer, by the SHA-256 of their challenge,
-- so that any instance finishes what another started, once.
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    credential_id BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL,
    credential TEXT NOT NULL,
    counter INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);
CREATE TABLE webauthn_challenges (
    hash BLOB PRIMARY KEY,
    user_id TEXT,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX webauthn_challenges_expiry_idx ON webauthn_challenges (expires_at);
