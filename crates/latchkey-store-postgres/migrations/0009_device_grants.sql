-- Device authorizations (RFC 8628): by the keyed hashes of the device code
-- and of the user code; the person's answer; the device's polling pace.
CREATE TABLE device_grants (
    device_hash BYTEA PRIMARY KEY,
    user_hash BYTEA NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    interval_secs BIGINT NOT NULL,
    last_polled_at BIGINT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    user_id TEXT,
    auth_time BIGINT,
    session_id TEXT
);
CREATE INDEX device_grants_expiry_idx ON device_grants (expires_at);
