ALTER TABLE mcp_servers DROP COLUMN headers_sealed, DROP COLUMN headers_key_id;
DROP TABLE scope_ceilings;
ALTER TABLE api_keys
    DROP COLUMN expires_at_set_by_admin,
    DROP COLUMN expires_at_set_by,
    DROP COLUMN disabled_by_admin,
    DROP COLUMN disabled_by;
