-- Figures that stay cheap however large the tables grow (SPEC §9, §15).

-- Counts kept beside the rows they count, by triggers, so that no reader
-- counts rows: the users not deleted.
CREATE TABLE tallies (
    name TEXT    NOT NULL CONSTRAINT tallies_pk PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO tallies (name, n) SELECT 'users', count(*) FROM users WHERE deleted_at IS NULL;
CREATE TRIGGER users_tally_insert AFTER INSERT ON users WHEN NEW.deleted_at IS NULL
BEGIN
    UPDATE tallies SET n = n + 1 WHERE name = 'users';
END;
CREATE TRIGGER users_tally_delete AFTER DELETE ON users WHEN OLD.deleted_at IS NULL
BEGIN
    UPDATE tallies SET n = n - 1 WHERE name = 'users';
END;
CREATE TRIGGER users_tally_update AFTER UPDATE OF deleted_at ON users
    WHEN (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
BEGIN
    UPDATE tallies SET n = n + CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE -1 END
        WHERE name = 'users';
END;

-- Sessions not revoked, by the hour their absolute lifetime ends: the live
-- sessions are the hours still to come, plus those of the current hour
-- whose end has not passed (an index range of one hour).
CREATE TABLE session_expiries (
    hour INTEGER NOT NULL CONSTRAINT session_expiries_pk PRIMARY KEY,
    n    INTEGER NOT NULL
);
INSERT INTO session_expiries (hour, n)
    SELECT expires_at / 3600, count(*) FROM sessions WHERE revoked_at IS NULL GROUP BY expires_at / 3600;
CREATE TRIGGER sessions_expiry_insert AFTER INSERT ON sessions WHEN NEW.revoked_at IS NULL
BEGIN
    INSERT INTO session_expiries (hour, n) VALUES (NEW.expires_at / 3600, 1)
        ON CONFLICT (hour) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER sessions_expiry_delete AFTER DELETE ON sessions WHEN OLD.revoked_at IS NULL
BEGIN
    UPDATE session_expiries SET n = n - 1 WHERE hour = OLD.expires_at / 3600;
END;
CREATE TRIGGER sessions_expiry_update AFTER UPDATE OF revoked_at, expires_at ON sessions
BEGIN
    UPDATE session_expiries SET n = n - 1
        WHERE OLD.revoked_at IS NULL AND hour = OLD.expires_at / 3600;
    INSERT INTO session_expiries (hour, n) SELECT NEW.expires_at / 3600, 1 WHERE NEW.revoked_at IS NULL
        ON CONFLICT (hour) DO UPDATE SET n = n + 1;
END;

-- Every change that can end a session or alter what its access tokens
-- answer for, in commit order, whichever process made it (the server, the
-- command line, another instance on the file): an instance that caches
-- sessions reads past its last sequence number before trusting the cache.
CREATE TABLE session_changes (
    seq        INTEGER NOT NULL CONSTRAINT session_changes_pk PRIMARY KEY AUTOINCREMENT,
    session_id TEXT,
    user_id    TEXT
);
-- A session marked as past its absolute end was already over for everyone
-- (its `expires_at` says so), so garbage collection logs nothing.
CREATE TRIGGER sessions_changed_update AFTER UPDATE OF revoked_at, expires_at, user_id ON sessions
    WHEN NOT (NEW.revoked_reason IS 'absolute_expired' AND NEW.expires_at = OLD.expires_at
              AND NEW.user_id = OLD.user_id)
BEGIN
    INSERT INTO session_changes (session_id) VALUES (NEW.id);
END;
CREATE TRIGGER sessions_changed_delete AFTER DELETE ON sessions WHEN OLD.revoked_at IS NULL
BEGIN
    INSERT INTO session_changes (session_id) VALUES (OLD.id);
END;
CREATE TRIGGER users_changed_update AFTER UPDATE ON users
BEGIN
    INSERT INTO session_changes (user_id) VALUES (NEW.id);
END;
CREATE TRIGGER users_changed_delete AFTER DELETE ON users
BEGIN
    INSERT INTO session_changes (user_id) VALUES (OLD.id);
END;

-- Live sessions by their last use (their newest token's issue): garbage
-- collection reads only those that may have gone idle.
CREATE INDEX sessions_idle_idx ON sessions (last_used_at, id) WHERE revoked_at IS NULL;
