ALTER TABLE mcp_servers DROP COLUMN headers_sealed;
ALTER TABLE mcp_servers DROP COLUMN headers_key_id;
DROP TABLE scope_ceilings;
ALTER TABLE api_keys DROP COLUMN expires_at_set_by_admin;
ALTER TABLE api_keys DROP COLUMN expires_at_set_by;
ALTER TABLE api_keys DROP COLUMN disabled_by_admin;
ALTER TABLE api_keys DROP COLUMN disabled_by;
