-- Refresh tokens in issue order: the table becomes an ordinary (rowid)
-- table with a unique index on the hash. A rotation then updates the
-- presented token where it was appended (near the other recent tokens)
-- and adds one small entry to the hash index, instead of rewriting two
-- random leaves of a table clustered by the hash: fewer pages written per
-- commit. Same columns, same constraints.
CREATE TABLE refresh_tokens_by_issue (
    -- HMAC-SHA-256 of the token under a server-side key.
    hash        BLOB    NOT NULL CONSTRAINT refresh_tokens_pk UNIQUE,
    session_id  TEXT    NOT NULL CONSTRAINT refresh_tokens_session_fk REFERENCES sessions (id) ON DELETE CASCADE,
    parent_hash BLOB,
    scope       TEXT    NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    -- Set once, when the token is rotated; a used token is kept so that its
    -- reuse is detected for as long as the session could be refreshed.
    used_at     INTEGER,
    access_jti  TEXT    NOT NULL,
    ip          TEXT    NOT NULL,
    user_agent  TEXT    NOT NULL
);
INSERT INTO refresh_tokens_by_issue
    (hash, session_id, parent_hash, scope, issued_at, expires_at, used_at, access_jti, ip, user_agent)
    SELECT hash, session_id, parent_hash, scope, issued_at, expires_at, used_at, access_jti, ip, user_agent
    FROM refresh_tokens ORDER BY issued_at;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_by_issue RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
