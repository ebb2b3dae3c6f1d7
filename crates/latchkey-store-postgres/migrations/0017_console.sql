-- The operator's console (SPEC §15).
-- The admin user who acted through the console, beside whom it acted on.
ALTER TABLE audit_events ADD COLUMN actor_id TEXT;
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, id) WHERE actor_id IS NOT NULL;
-- Activity counted per minute by each instance, added up here: the
-- overview's charts read at most a day of minutes, whatever the size of the
-- sessions and audit tables.
CREATE TABLE activity (
    minute BIGINT NOT NULL,
    series TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    CONSTRAINT activity_pk PRIMARY KEY (minute, series)
);
-- Users found by the start of their name or address, in byte order
-- whatever the database's collation.
CREATE INDEX users_username_prefix_idx ON users ((username COLLATE "C")) WHERE deleted_at IS NULL;
CREATE INDEX users_email_key_prefix_idx ON users ((email_key COLLATE "C")) WHERE deleted_at IS NULL AND email_key IS NOT NULL;
-- Live sessions counted without reading the ended ones.
CREATE INDEX sessions_live_idx ON sessions (expires_at) WHERE revoked_at IS NULL;
