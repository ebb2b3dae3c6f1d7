-- End reasons take SPEC §14's names (the stored names before it, for the
-- same reasons, were ip_binding, user_revoked and admin). Sessions that
-- ended by expiry were not marked before; garbage collection marks them.
UPDATE sessions SET revoked_reason = 'ip_changed' WHERE revoked_reason = 'ip_binding';
UPDATE sessions SET revoked_reason = 'revoked' WHERE revoked_reason = 'user_revoked';
UPDATE sessions SET revoked_reason = 'revoked_by_admin' WHERE revoked_reason = 'admin';
