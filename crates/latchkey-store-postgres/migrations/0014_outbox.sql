-- The durable outbox (SPEC §14). Every change that someone may need to hear
-- of writes its event here, by the triggers below, in the transaction that
-- makes the change: whoever makes it (a server instance, the command line,
-- SQL by hand), there is never a change without its event nor an event
-- without its change. The delivery engine fans each event out into
-- `deliveries` (one per webhook that wants it, one per back-channel logout)
-- and drains those.

CREATE TABLE outbox (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY CONSTRAINT outbox_pk PRIMARY KEY,
    -- The `webhook-id`: the same for every delivery and retry of the event.
    id            TEXT   NOT NULL CONSTRAINT outbox_id_key UNIQUE,
    type          TEXT   NOT NULL,
    at            BIGINT NOT NULL,
    -- The event's `data`, JSON.
    data          TEXT   NOT NULL,
    -- Set when fanned out into deliveries.
    dispatched_at BIGINT
);
CREATE INDEX outbox_waiting_idx ON outbox (seq) WHERE dispatched_at IS NULL;
CREATE INDEX outbox_dispatched_idx ON outbox (dispatched_at) WHERE dispatched_at IS NOT NULL;

CREATE TABLE webhooks (
    id         TEXT   NOT NULL CONSTRAINT webhooks_pk PRIMARY KEY,
    url        TEXT   NOT NULL,
    -- The event types it wants, separated by single spaces.
    events     TEXT   NOT NULL,
    -- The signing secret's bytes, sealed like keys when LATCHKEY_MASTER_KEY is set.
    secret     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY CONSTRAINT deliveries_pk PRIMARY KEY,
    event_seq       BIGINT NOT NULL CONSTRAINT deliveries_event_fk REFERENCES outbox (seq) ON DELETE CASCADE,
    -- 'webhook' or 'backchannel'.
    channel         TEXT   NOT NULL,
    webhook_id      TEXT   CONSTRAINT deliveries_webhook_fk REFERENCES webhooks (id) ON DELETE CASCADE,
    client_id       TEXT,
    url             TEXT   NOT NULL,
    -- 'pending' (not tried yet), 'failed' (the last attempt failed), 'delivered'.
    status          TEXT   NOT NULL DEFAULT 'pending',
    attempts        INT    NOT NULL DEFAULT 0,
    -- When it is next due; NULL once delivered or given up. A claimed
    -- delivery's is pushed past its lease, so an instance that dies holding
    -- it leaves it to another.
    next_attempt_at BIGINT,
    created_at      BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_webhook_idx ON deliveries (webhook_id, id) WHERE webhook_id IS NOT NULL;
CREATE INDEX deliveries_event_idx ON deliveries (event_seq);
-- A failed attempt postpones the other deliveries waiting for its URL.
CREATE INDEX deliveries_url_idx ON deliveries (url) WHERE next_attempt_at IS NOT NULL;

ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;

-- Each trigger inserts its event itself (a PL/pgSQL INSERT, json built as
-- text): about half the cost of calling a shared function per event.
CREATE FUNCTION latchkey_now() RETURNS BIGINT
LANGUAGE sql AS $$ SELECT EXTRACT(EPOCH FROM now())::BIGINT $$;

CREATE FUNCTION latchkey_session_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'session.started', NEW.created_at, json_build_object(
            'user_id', NEW.user_id, 'session_id', NEW.id, 'client_id', NEW.client_id,
            'ip', NEW.ip, 'user_agent', NEW.user_agent, 'auth_method', NEW.auth_method,
            'new_device', NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = NEW.user_id
                AND s.user_agent = NEW.user_agent AND s.id <> NEW.id))::text);
        RETURN NEW;
    END IF;
    IF NEW.revoked_reason = 'reuse_detected' THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'session.reuse_detected', NEW.revoked_at, json_build_object(
            'user_id', NEW.user_id, 'session_id', NEW.id, 'client_id', NEW.client_id)::text);
    END IF;
    INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'session.ended', NEW.revoked_at, json_build_object(
        'user_id', NEW.user_id, 'session_id', NEW.id, 'client_id', NEW.client_id,
        'reason', NEW.revoked_reason)::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER sessions_started_event AFTER INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION latchkey_session_events();
CREATE TRIGGER sessions_ended_event AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION latchkey_session_events();

CREATE FUNCTION latchkey_user_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'user.created', NEW.created_at,
            json_build_object('user_id', NEW.id, 'username', NEW.username)::text);
        RETURN NEW;
    END IF;
    IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'user.deleted', NEW.deleted_at, json_build_object('user_id', NEW.id)::text);
        RETURN NEW;
    END IF;
    IF NEW.deleted_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    IF NEW.username <> OLD.username OR NEW.disabled <> OLD.disabled THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'user.updated', latchkey_now(), json_build_object(
            'user_id', NEW.id, 'username', NEW.username, 'disabled', NEW.disabled)::text);
    END IF;
    IF NEW.password_hash <> OLD.password_hash THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'password.changed', latchkey_now(), json_build_object('user_id', NEW.id)::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_events AFTER INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION latchkey_user_events();

CREATE FUNCTION latchkey_factor_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'totp_factors' THEN
        IF TG_OP = 'UPDATE' THEN
            IF OLD.confirmed_at IS NULL AND NEW.confirmed_at IS NOT NULL THEN
                INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'factor.added', NEW.confirmed_at,
                    json_build_object('user_id', NEW.user_id, 'factor', 'totp')::text);
            END IF;
            RETURN NEW;
        END IF;
        IF OLD.confirmed_at IS NOT NULL THEN
            INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'factor.removed', latchkey_now(),
                json_build_object('user_id', OLD.user_id, 'factor', 'totp')::text);
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'factor.added', NEW.created_at, json_build_object(
            'user_id', NEW.user_id, 'factor', 'passkey', 'passkey_id', NEW.id, 'name', NEW.name)::text);
        RETURN NEW;
    END IF;
    INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'factor.removed', latchkey_now(), json_build_object(
        'user_id', OLD.user_id, 'factor', 'passkey', 'passkey_id', OLD.id)::text);
    RETURN OLD;
END
$$;

CREATE TRIGGER totp_factor_events AFTER UPDATE OF confirmed_at OR DELETE ON totp_factors
    FOR EACH ROW EXECUTE FUNCTION latchkey_factor_events();
CREATE TRIGGER passkey_factor_events AFTER INSERT OR DELETE ON passkeys
    FOR EACH ROW EXECUTE FUNCTION latchkey_factor_events();

CREATE FUNCTION latchkey_login_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''),
        CASE NEW.kind WHEN 'login_failed' THEN 'login.failed' ELSE 'login.throttled' END, NEW.at,
        json_build_object('user_id', NEW.user_id, 'client_id', NEW.client_id, 'ip', NEW.ip,
            'user_agent', NEW.user_agent, 'detail', NEW.detail)::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_login_events AFTER INSERT ON audit_events
    FOR EACH ROW WHEN (NEW.kind IN ('login_failed', 'throttled'))
    EXECUTE FUNCTION latchkey_login_events();
