-- Accounts people can recover (SPEC §13): e-mail addresses, the links mailed
-- to them, and the devices users sign in from.

ALTER TABLE users ADD COLUMN email TEXT;
-- The address lower-cased (by the server): unique among live users.
ALTER TABLE users ADD COLUMN email_key TEXT;
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX users_email_key ON users (email_key) WHERE deleted_at IS NULL;

-- Links mailed to users: stored by the SHA-256 of their token, deleted when
-- used, and voided with their purpose (the triggers below).
CREATE TABLE account_links (
    hash       BLOB    NOT NULL CONSTRAINT account_links_pk PRIMARY KEY,
    -- 'verify_email', 'reset_password' or 'not_me'.
    purpose    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    -- The address a verification link verifies.
    email      TEXT,
    -- The session a not-me link ends.
    session_id TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX account_links_user_idx ON account_links (user_id, purpose);
CREATE INDEX account_links_expiry_idx ON account_links (expires_at);

-- Devices users signed in from: a browser by the hash of its device cookie,
-- another client by the hash of its client id and user agent.
CREATE TABLE known_devices (
    user_id      TEXT    NOT NULL REFERENCES users (id),
    device       BLOB    NOT NULL,
    last_seen_at INTEGER NOT NULL,
    CONSTRAINT known_devices_pk PRIMARY KEY (user_id, device)
) WITHOUT ROWID;
CREATE INDEX known_devices_seen_idx ON known_devices (last_seen_at);

-- A new password voids every reset link of the user.
CREATE TRIGGER users_password_links AFTER UPDATE OF password_hash ON users
WHEN NEW.password_hash <> OLD.password_hash
BEGIN
    DELETE FROM account_links WHERE user_id = NEW.id AND purpose = 'reset_password';
END;

-- A new address voids the verification links of the old one, is an update
-- of the user, and is told to the old address if that one was verified.
CREATE TRIGGER users_email_event AFTER UPDATE OF email_key ON users
WHEN NEW.deleted_at IS NULL AND NEW.email_key IS NOT OLD.email_key
BEGIN
    DELETE FROM account_links WHERE user_id = NEW.id AND purpose = 'verify_email';
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'user.updated', unixepoch(),
        json_object('user_id', NEW.id, 'username', NEW.username,
            'disabled', json(CASE WHEN NEW.disabled THEN 'true' ELSE 'false' END),
            'email', NEW.email));
    INSERT INTO outbox (id, type, at, data) SELECT
        'msg_' || lower(hex(randomblob(16))), 'mail.email_changed', unixepoch(),
        json_object('user_id', NEW.id, 'username', NEW.username, 'email', OLD.email)
    WHERE OLD.email IS NOT NULL AND OLD.email_verified;
END;

CREATE TRIGGER users_verified_event AFTER UPDATE OF email_verified ON users
WHEN NEW.deleted_at IS NULL AND NEW.email_verified AND NOT OLD.email_verified
BEGIN
    INSERT INTO outbox (id, type, at, data) VALUES (
        'msg_' || lower(hex(randomblob(16))), 'user.updated', unixepoch(),
        json_object('user_id', NEW.id, 'username', NEW.username,
            'disabled', json(CASE WHEN NEW.disabled THEN 'true' ELSE 'false' END),
            'email', NEW.email, 'email_verified', json('true')));
END;
