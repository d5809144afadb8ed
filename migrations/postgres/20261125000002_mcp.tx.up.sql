-- A tenant's upstream MCP servers. user_id records who registered the server
-- (the owner the management policy checks); it has no foreign key to users,
-- so offboarding that person does not take the tenant's upstream with them.
-- headers holds the upstream's credentials: the API never returns it.
CREATE TABLE mcp_servers (
    id             uuid        PRIMARY KEY,
    tenant_id      text        NOT NULL,
    user_id        text        NOT NULL,
    name           text        NOT NULL,
    url            text        NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '{}',
    enabled        boolean     NOT NULL,
    timeout_ms     integer     NOT NULL,
    last_synced_at timestamptz,
    sync_error     text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT mcp_servers_tenant_id_name_key UNIQUE (tenant_id, name),
    CONSTRAINT mcp_servers_tenant_id_fkey FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE
);

CREATE INDEX mcp_servers_tenant_id_id_idx ON mcp_servers (tenant_id, id);
CREATE INDEX mcp_servers_tenant_id_user_id_id_idx ON mcp_servers (tenant_id, user_id, id);

-- Each server's catalog as of its last successful sync. The exposed name
-- (<server>__<tool>) is derived from the server's current name when read, so
-- renaming a server needs no rewrite here. tenant_id is the server's, kept
-- here so a tenant's catalog is read without a scan of every tool.
CREATE TABLE mcp_tools (
    server_id     uuid  NOT NULL,
    tenant_id     text  NOT NULL,
    name          text  NOT NULL,
    title         text  NOT NULL DEFAULT '',
    description   text  NOT NULL DEFAULT '',
    input_schema  jsonb NOT NULL,
    output_schema jsonb,
    annotations   jsonb,
    CONSTRAINT mcp_tools_server_id_name_key PRIMARY KEY (server_id, name),
    CONSTRAINT mcp_tools_server_id_fkey FOREIGN KEY (server_id)
        REFERENCES mcp_servers (id) ON DELETE CASCADE
);

CREATE INDEX mcp_tools_tenant_id_idx ON mcp_tools (tenant_id);
