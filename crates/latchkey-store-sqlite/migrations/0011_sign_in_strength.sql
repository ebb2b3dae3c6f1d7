-- How and when a session's user authenticated (SPEC §12): its tokens' amr,
-- acr and auth_time. Sessions, codes and device grants from before this
-- were all password sign-ins; a session's auth_time was its start.
ALTER TABLE sessions ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET auth_time = created_at;
ALTER TABLE sessions ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE authorization_codes ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE device_grants ADD COLUMN auth_method TEXT;
UPDATE device_grants SET auth_method = 'pwd' WHERE status = 'approved';
