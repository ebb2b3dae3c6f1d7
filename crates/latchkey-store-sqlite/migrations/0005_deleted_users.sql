-- A deleted user: gone from every lookup and renamed (freeing the name), but
-- kept while revoked sessions still point to it, so that the revocation feed
-- keeps announcing them; garbage collection removes it with the last one.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
CREATE INDEX users_deleted_idx ON users (deleted_at) WHERE deleted_at IS NOT NULL;
