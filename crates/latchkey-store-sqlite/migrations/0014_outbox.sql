-- The durable outbox (SPEC §14). Every change that someone may need to hear
-- of writes its event here, by the triggers below, in the transaction that
-- makes the change: whoever makes it (a server instance, the command line,
-- SQL by hand), there is never a change without its event nor an event
-- without its change. The delivery engine fans each event out into
-- `deliveries` (one per webhook that wants it, one per back-channel logout)
-- and drains those.

CREATE TABLE outbox (
    seq           INTEGER NOT NULL CONSTRAINT outbox_pk PRIMARY KEY AUTOINCREMENT,
    -- The `webhook-id`: the same for every delivery and retry of the event.
    id            TEXT    NOT NULL CONSTRAINT outbox_id_key UNIQUE,
    type          TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    -- The event's `data`, JSON.
    data          TEXT    NOT NULL,
    -- Set when fanned out into deliveries.
    dispatched_at INTEGER
);
CREATE INDEX outbox_waiting_idx ON outbox (seq) WHERE dispatched_at IS NULL;
CREATE INDEX outbox_dispatched_idx ON outbox (dispatched_at) WHERE dispatched_at IS NOT NULL;

CREATE TABLE webhooks (
    id         TEXT    NOT NULL CONSTRAINT webhooks_pk PRIMARY KEY,
    url        TEXT    NOT NULL,
    -- The event types it wants, separated by single spaces.
    events     TEXT    NOT NULL,
    -- The signing secret's bytes, sealed like keys when LATCHKEY_MASTER_KEY is set.
    secret     BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id              INTEGER NOT NULL CONSTRAINT deliveries_pk PRIMARY KEY AUTOINCREMENT,
    event_seq       INTEGER NOT NULL CONSTRAINT deliveries_event_fk REFERENCES outbox (seq) ON DELETE CASCADE,
    -- 'webhook' or 'backchannel'.
    channel         TEXT    NOT NULL,
    webhook_id      TEXT    CONSTRAINT deliveries_webhook_fk REFERENCES webhooks (id) ON DELETE CASCADE,
    client_id       TEXT,
    url             TEXT    NOT NULL,
    -- 'pending' (not tried yet), 'failed' (the last attempt failed), 'delivered'.
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When it is next due; NULL once delivered or given up. A claimed
    -- delivery's is pushed past its lease, so an instance that dies holding
    -- it leaves it to another.
    next_attempt_at INTEGER,
    created_at      INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_webhook_idx ON deliveries (webhook_id, id) WHERE webhook_id IS NOT NULL;
CREATE INDEX deliveries_event_idx ON deliveries (event_seq);
-- A failed attempt postpones the other deliveries waiting for its URL.
CREATE INDEX deliveries_url_idx ON deliveries (url) WHERE next_attempt_at IS NOT NULL;

ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;

CREATE TRIGGER sessions_started_event AFTER INSERT ON sessions
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'session.started', NEW.created_at,
        json_object('user_id', NEW.user_id, 'session_id', NEW.id, 'client_id', NEW.client_id,
            'ip', NEW.ip, 'user_agent', NEW.user_agent, 'auth_method', NEW.auth_method,
            'new_device', json(CASE WHEN EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = NEW.user_id
                AND s.user_agent = NEW.user_agent AND s.id <> NEW.id) THEN 'false' ELSE 'true' END)));
END;

CREATE TRIGGER sessions_ended_event AFTER UPDATE OF revoked_at ON sessions
WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    INSERT INTO outbox (id, type, at, data)
    SELECT 'msg_' || lower(hex(randomblob(16))), 'session.reuse_detected', NEW.revoked_at,
        json_object('user_id', NEW.user_id, 'session_id', NEW.id, 'client_id', NEW.client_id)
    WHERE NEW.revoked_reason = 'reuse_detected';
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'session.ended', NEW.revoked_at,
        json_object('user_id', NEW.user_id, 'session_id', NEW.id, 'client_id', NEW.client_id,
            'reason', NEW.revoked_reason));
END;

CREATE TRIGGER users_created_event AFTER INSERT ON users
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'user.created', NEW.created_at,
        json_object('user_id', NEW.id, 'username', NEW.username));
END;

CREATE TRIGGER users_updated_event AFTER UPDATE OF username, disabled ON users
WHEN NEW.deleted_at IS NULL AND (NEW.username <> OLD.username OR NEW.disabled <> OLD.disabled)
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'user.updated', unixepoch(),
        json_object('user_id', NEW.id, 'username', NEW.username,
            'disabled', json(CASE WHEN NEW.disabled THEN 'true' ELSE 'false' END)));
END;

CREATE TRIGGER users_deleted_event AFTER UPDATE OF deleted_at ON users
WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'user.deleted', NEW.deleted_at,
        json_object('user_id', NEW.id));
END;

CREATE TRIGGER users_password_event AFTER UPDATE OF password_hash ON users
WHEN NEW.deleted_at IS NULL AND NEW.password_hash <> OLD.password_hash
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'password.changed', unixepoch(),
        json_object('user_id', NEW.id));
END;

CREATE TRIGGER totp_confirmed_event AFTER UPDATE OF confirmed_at ON totp_factors
WHEN OLD.confirmed_at IS NULL AND NEW.confirmed_at IS NOT NULL
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'factor.added', NEW.confirmed_at,
        json_object('user_id', NEW.user_id, 'factor', 'totp'));
END;

CREATE TRIGGER totp_removed_event AFTER DELETE ON totp_factors
WHEN OLD.confirmed_at IS NOT NULL
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'factor.removed', unixepoch(),
        json_object('user_id', OLD.user_id, 'factor', 'totp'));
END;

CREATE TRIGGER passkeys_added_event AFTER INSERT ON passkeys
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'factor.added', NEW.created_at,
        json_object('user_id', NEW.user_id, 'factor', 'passkey', 'passkey_id', NEW.id, 'name', NEW.name));
END;

CREATE TRIGGER passkeys_removed_event AFTER DELETE ON passkeys
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'factor.removed', unixepoch(),
        json_object('user_id', OLD.user_id, 'factor', 'passkey', 'passkey_id', OLD.id));
END;

CREATE TRIGGER audit_login_event AFTER INSERT ON audit_events
WHEN NEW.kind IN ('login_failed', 'throttled')
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))),
        CASE NEW.kind WHEN 'login_failed' THEN 'login.failed' ELSE 'login.throttled' END, NEW.at,
        json_object('user_id', NEW.user_id, 'client_id', NEW.client_id, 'ip', NEW.ip,
            'user_agent', NEW.user_agent, 'detail', NEW.detail));
END;
