-- Sessions in the order they were created, even within one second: the
-- per-user session cap revokes the oldest, and `created_at` is whole seconds.
-- Logins of one user take this number one after another (they lock the
-- user's row), so it orders them as they happened.
ALTER TABLE sessions ADD COLUMN created_seq BIGINT GENERATED ALWAYS AS IDENTITY;
