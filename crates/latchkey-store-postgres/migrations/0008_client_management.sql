-- Managing clients after they are registered: disabling one, removing it
-- (kept for the sessions and audit events that name it, never found
-- again), and refusing its own access tokens issued before a secret
-- rotation or a scope change.
ALTER TABLE clients ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN removed_at BIGINT;
ALTER TABLE clients ADD COLUMN tokens_valid_after BIGINT NOT NULL DEFAULT 0;
-- Revoking a client's sessions finds them by client.
CREATE INDEX sessions_client_idx ON sessions (client_id) WHERE client_id IS NOT NULL;
