-- The revocation feed: every session that stops being usable is announced
-- on the channel `latchkey_revocations` (payload: the session id) when the
-- change commits, whoever makes it: a server instance, the command line, or
-- SQL by hand. Server instances listen, and may then keep sessions they
-- have looked up in memory instead of reading them for every access token.

CREATE FUNCTION latchkey_announce_session() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('latchkey_revocations', OLD.id);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('latchkey_revocations', NEW.id);
    RETURN NEW;
END
$$;

-- Revoked (the usual way), or its end brought forward.
CREATE TRIGGER sessions_revoked_announce
    AFTER UPDATE ON sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL
          AND (NEW.revoked_at IS NOT NULL OR NEW.expires_at < OLD.expires_at))
    EXECUTE FUNCTION latchkey_announce_session();

-- Deleted before its end without having been revoked (by hand, or an idle
-- session collected as garbage).
CREATE TRIGGER sessions_deleted_announce
    AFTER DELETE ON sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > EXTRACT(EPOCH FROM now()))
    EXECUTE FUNCTION latchkey_announce_session();

-- A user disabled: every session of theirs not yet revoked.
CREATE FUNCTION latchkey_announce_user_sessions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_revocations', s.id)
        FROM sessions s WHERE s.user_id = NEW.id AND s.revoked_at IS NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_disabled_announce
    AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (NEW.disabled AND NOT OLD.disabled)
    EXECUTE FUNCTION latchkey_announce_user_sessions();
