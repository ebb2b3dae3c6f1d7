-- Key rotation: a key is published before it signs, and leaves the JWKS
-- only after every token it signed has expired.
ALTER TABLE signing_keys ADD COLUMN activates_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN retires_at INTEGER;
