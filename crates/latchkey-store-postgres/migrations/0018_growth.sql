-- Figures that stay cheap however large the tables grow (SPEC §9, §15).

-- Counts kept beside the rows they count, by triggers, so that no reader
-- counts rows: the users not deleted.
CREATE TABLE tallies (
    name TEXT   NOT NULL CONSTRAINT tallies_pk PRIMARY KEY,
    n    BIGINT NOT NULL
);
INSERT INTO tallies (name, n) SELECT 'users', count(*) FROM users WHERE deleted_at IS NULL;

CREATE FUNCTION latchkey_tally_users() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta BIGINT := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.deleted_at IS NULL THEN
        delta := delta - 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.deleted_at IS NULL THEN
        delta := delta + 1;
    END IF;
    IF delta <> 0 THEN
        UPDATE tallies SET n = n + delta WHERE name = 'users';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_tally
    AFTER INSERT OR DELETE OR UPDATE OF deleted_at ON users
    FOR EACH ROW EXECUTE FUNCTION latchkey_tally_users();

-- Sessions not revoked, by the hour their absolute lifetime ends: the live
-- sessions are the hours still to come, plus those of the current hour
-- whose end has not passed (an index range of one hour).
CREATE TABLE session_expiries (
    hour BIGINT NOT NULL CONSTRAINT session_expiries_pk PRIMARY KEY,
    n    BIGINT NOT NULL
);
INSERT INTO session_expiries (hour, n)
    SELECT expires_at / 3600, count(*) FROM sessions WHERE revoked_at IS NULL GROUP BY expires_at / 3600;

CREATE FUNCTION latchkey_tally_session_expiries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.revoked_at IS NULL THEN
        UPDATE session_expiries SET n = n - 1 WHERE hour = OLD.expires_at / 3600;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.revoked_at IS NULL THEN
        INSERT INTO session_expiries (hour, n) VALUES (NEW.expires_at / 3600, 1)
            ON CONFLICT (hour) DO UPDATE SET n = session_expiries.n + 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_expiry_tally
    AFTER INSERT OR DELETE OR UPDATE OF revoked_at, expires_at ON sessions
    FOR EACH ROW EXECUTE FUNCTION latchkey_tally_session_expiries();

-- Live sessions by their last use (their newest token's issue): garbage
-- collection reads only those that may have gone idle.
CREATE INDEX sessions_idle_idx ON sessions (last_used_at, id) WHERE revoked_at IS NULL;
