-- The operator's console (SPEC §15): users with the admin role.
ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
