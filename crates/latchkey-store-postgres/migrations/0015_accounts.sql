-- Accounts people can recover (SPEC §13): e-mail addresses, the links mailed
-- to them, and the devices users sign in from.

ALTER TABLE users ADD COLUMN email TEXT;
-- The address lower-cased (by the server): unique among live users.
ALTER TABLE users ADD COLUMN email_key TEXT;
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX users_email_key ON users (email_key) WHERE deleted_at IS NULL;

-- Links mailed to users: stored by the SHA-256 of their token, deleted when
-- used, and voided with their purpose (the trigger below).
CREATE TABLE account_links (
    hash       BYTEA  PRIMARY KEY,
    -- 'verify_email', 'reset_password' or 'not_me'.
    purpose    TEXT   NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES users (id),
    -- The address a verification link verifies.
    email      TEXT,
    -- The session a not-me link ends.
    session_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX account_links_user_idx ON account_links (user_id, purpose);
CREATE INDEX account_links_expiry_idx ON account_links (expires_at);

-- Devices users signed in from: a browser by the hash of its device cookie,
-- another client by the hash of its client id and user agent.
CREATE TABLE known_devices (
    user_id      TEXT   NOT NULL REFERENCES users (id),
    device       BYTEA  NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device)
);
CREATE INDEX known_devices_seen_idx ON known_devices (last_seen_at);

-- A new password voids every reset link of the user; a new address voids
-- the verification links of the old one, is an update of the user, and is
-- told to the old address if that one was verified.
CREATE FUNCTION latchkey_account_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    IF NEW.password_hash <> OLD.password_hash THEN
        DELETE FROM account_links WHERE user_id = NEW.id AND purpose = 'reset_password';
    END IF;
    IF NEW.email_key IS DISTINCT FROM OLD.email_key THEN
        DELETE FROM account_links WHERE user_id = NEW.id AND purpose = 'verify_email';
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'user.updated', latchkey_now(), json_build_object(
            'user_id', NEW.id, 'username', NEW.username, 'disabled', NEW.disabled, 'email', NEW.email)::text);
        IF OLD.email IS NOT NULL AND OLD.email_verified THEN
            INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'mail.email_changed', latchkey_now(), json_build_object(
                'user_id', NEW.id, 'username', NEW.username, 'email', OLD.email)::text);
        END IF;
    ELSIF NEW.email_verified AND NOT OLD.email_verified THEN
        INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), 'user.updated', latchkey_now(), json_build_object(
            'user_id', NEW.id, 'username', NEW.username, 'disabled', NEW.disabled, 'email', NEW.email,
            'email_verified', TRUE)::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_account_events AFTER UPDATE OF password_hash, email_key, email_verified ON users
    FOR EACH ROW EXECUTE FUNCTION latchkey_account_events();
