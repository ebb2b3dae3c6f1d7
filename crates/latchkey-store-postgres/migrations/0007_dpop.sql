-- DPoP (RFC 9449): the key a public client's session is bound to, and the
-- proofs seen (by key and jti) until they are too old to be accepted.
ALTER TABLE sessions ADD COLUMN dpop_jkt TEXT;

CREATE TABLE dpop_proofs (
    id         TEXT    NOT NULL CONSTRAINT dpop_proofs_pk PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expires_idx ON dpop_proofs (expires_at);
