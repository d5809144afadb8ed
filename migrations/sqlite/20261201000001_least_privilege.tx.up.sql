-- SQLite twin of the Postgres migration of the same name (see it for why).
ALTER TABLE api_keys ADD COLUMN disabled_by TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN disabled_by_admin BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE api_keys ADD COLUMN expires_at_set_by TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN expires_at_set_by_admin BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE scope_ceilings (
    tenant_id        TEXT      NOT NULL,
    user_id          TEXT      NOT NULL,
    permission_scope TEXT      NOT NULL,
    updated_by       TEXT      NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    CONSTRAINT scope_ceilings_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE mcp_servers ADD COLUMN headers_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE mcp_servers ADD COLUMN headers_sealed TEXT NOT NULL DEFAULT '';
