-- The live sessions per hour of their end, kept once per statement rather
-- than once per row. A row trigger updated the same hour's row once for each
-- session a statement changed; within one transaction every such update is a
-- new version of that row, reached by walking all the versions before it, so
-- a statement that revoked a client's million sessions (or a seeder's
-- insert) took time quadratic in its rows. A statement trigger reads the
-- statement's rows (its transition tables) and adds one sum per hour, the
-- hours in order, so that concurrent statements lock them in one order.
--
-- Transition tables cannot be given to an UPDATE trigger with a column list:
-- the UPDATE trigger fires for every update of sessions, and for those that
-- change neither `revoked_at` nor `expires_at` (a rotation's `last_used_at`)
-- its sums are all zero and it writes nothing.

DROP TRIGGER sessions_expiry_tally ON sessions;
DROP FUNCTION latchkey_tally_session_expiries();

CREATE FUNCTION latchkey_tally_session_expiries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO session_expiries (hour, n)
            SELECT expires_at / 3600, count(*) FROM new_rows WHERE revoked_at IS NULL
            GROUP BY 1 ORDER BY 1
            ON CONFLICT (hour) DO UPDATE SET n = session_expiries.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO session_expiries (hour, n)
            SELECT expires_at / 3600, -count(*) FROM old_rows WHERE revoked_at IS NULL
            GROUP BY 1 ORDER BY 1
            ON CONFLICT (hour) DO UPDATE SET n = session_expiries.n + excluded.n;
    ELSE
        INSERT INTO session_expiries (hour, n)
            SELECT hour, sum(n) FROM (
                SELECT expires_at / 3600 AS hour, -1 AS n FROM old_rows WHERE revoked_at IS NULL
                UNION ALL
                SELECT expires_at / 3600, 1 FROM new_rows WHERE revoked_at IS NULL
            ) AS changes
            GROUP BY hour HAVING sum(n) <> 0 ORDER BY hour
            ON CONFLICT (hour) DO UPDATE SET n = session_expiries.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_expiry_tally_insert
    AFTER INSERT ON sessions REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_tally_session_expiries();
CREATE TRIGGER sessions_expiry_tally_update
    AFTER UPDATE ON sessions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_tally_session_expiries();
CREATE TRIGGER sessions_expiry_tally_delete
    AFTER DELETE ON sessions REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_tally_session_expiries();

-- The users not deleted, likewise: a statement that deletes many users (the
-- pruning of deleted accounts) adds one sum.
DROP TRIGGER users_tally ON users;
DROP FUNCTION latchkey_tally_users();

CREATE FUNCTION latchkey_tally_users() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO delta FROM new_rows WHERE deleted_at IS NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT -count(*) INTO delta FROM old_rows WHERE deleted_at IS NULL;
    ELSE
        SELECT (SELECT count(*) FROM new_rows WHERE deleted_at IS NULL)
             - (SELECT count(*) FROM old_rows WHERE deleted_at IS NULL) INTO delta;
    END IF;
    IF delta <> 0 THEN
        UPDATE tallies SET n = n + delta WHERE name = 'users';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_tally_insert
    AFTER INSERT ON users REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_tally_users();
CREATE TRIGGER users_tally_update
    AFTER UPDATE ON users REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_tally_users();
CREATE TRIGGER users_tally_delete
    AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_tally_users();
