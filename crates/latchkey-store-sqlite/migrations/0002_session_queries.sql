-- Indexes for the session list, the audit filters and garbage collection.

-- Garbage collection finds sessions past their absolute end or long revoked.
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
-- `latchkey audit --user` and `--kind`, newest first.
CREATE INDEX audit_events_user_idx ON audit_events (user_id, id);
CREATE INDEX audit_events_kind_idx ON audit_events (kind, id);
