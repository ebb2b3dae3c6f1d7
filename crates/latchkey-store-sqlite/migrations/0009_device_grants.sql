-- Device authorizations (RFC 8628): by the keyed hashes of the device code
-- and of the user code; the person's answer; the device's polling pace.
CREATE TABLE device_grants (
    device_hash BLOB PRIMARY KEY,
    user_hash BLOB NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    interval_secs INTEGER NOT NULL,
    last_polled_at INTEGER,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    user_id TEXT,
    auth_time INTEGER,
    session_id TEXT
);
CREATE INDEX device_grants_expiry_idx ON device_grants (expires_at);
