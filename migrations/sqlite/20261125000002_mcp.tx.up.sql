-- SQLite twin of the Postgres schema (see 20261125000001_core for how types
-- map). user_id has no foreign key to users, so offboarding the person who
-- registered a server does not take the tenant's upstream with them.
CREATE TABLE mcp_servers (
    id             TEXT      NOT NULL PRIMARY KEY,
    tenant_id      TEXT      NOT NULL,
    user_id        TEXT      NOT NULL,
    name           TEXT      NOT NULL,
    url            TEXT      NOT NULL,
    headers        TEXT      NOT NULL DEFAULT '{}',
    enabled        BOOLEAN   NOT NULL,
    timeout_ms     INTEGER   NOT NULL,
    last_synced_at TIMESTAMP,
    sync_error     TEXT      NOT NULL DEFAULT '',
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    CONSTRAINT mcp_servers_tenant_id_name_key UNIQUE (tenant_id, name),
    CONSTRAINT mcp_servers_tenant_id_fkey FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE
);

CREATE INDEX mcp_servers_tenant_id_id_idx ON mcp_servers (tenant_id, id);
CREATE INDEX mcp_servers_tenant_id_user_id_id_idx ON mcp_servers (tenant_id, user_id, id);

CREATE TABLE mcp_tools (
    server_id     TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    title         TEXT NOT NULL DEFAULT '',
    description   TEXT NOT NULL DEFAULT '',
    input_schema  TEXT NOT NULL,
    output_schema TEXT,
    annotations   TEXT,
    CONSTRAINT mcp_tools_server_id_name_key PRIMARY KEY (server_id, name),
    CONSTRAINT mcp_tools_server_id_fkey FOREIGN KEY (server_id)
        REFERENCES mcp_servers (id) ON DELETE CASCADE
);

CREATE INDEX mcp_tools_tenant_id_idx ON mcp_tools (tenant_id);
