-- Tenants and users come from the identity provider's JWTs; rows are created
-- on first use. A user id (the JWT sub) is unique only within its tenant.
CREATE TABLE tenants (
    id         text        PRIMARY KEY,
    created_at timestamptz NOT NULL
);

CREATE TABLE users (
    tenant_id  text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Ids are UUIDv7, so ordering by id is ordering by creation time; every
-- listing index ends in id to serve keyset pagination newest first.
CREATE TABLE api_keys (
    id               uuid        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    user_id          text        NOT NULL,
    name             text        NOT NULL,
    key_hash         text        NOT NULL,
    start            text        NOT NULL,
    permission_scope jsonb       NOT NULL,
    enabled          boolean     NOT NULL,
    expires_at       timestamptz,
    last_used_at     timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT api_keys_tenant_id_name_key UNIQUE (tenant_id, name),
    CONSTRAINT api_keys_tenant_id_fkey FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT api_keys_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX api_keys_tenant_id_id_idx ON api_keys (tenant_id, id);
CREATE INDEX api_keys_tenant_id_user_id_id_idx ON api_keys (tenant_id, user_id, id);
CREATE INDEX api_keys_tenant_id_enabled_id_idx ON api_keys (tenant_id, enabled, id);
CREATE INDEX api_keys_expires_at_idx ON api_keys (expires_at);

-- No foreign key: the history outlives the tenants, users and keys it names.
CREATE TABLE audit_events (
    id          uuid        PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    tenant_id   text        NOT NULL DEFAULT '',
    actor_type  text        NOT NULL DEFAULT '',
    actor_id    text        NOT NULL DEFAULT '',
    action      text        NOT NULL DEFAULT '',
    target_type text        NOT NULL DEFAULT '',
    target_id   text        NOT NULL DEFAULT '',
    outcome     text        NOT NULL DEFAULT '',
    reason      text        NOT NULL DEFAULT '',
    ip          text        NOT NULL DEFAULT '',
    user_agent  text        NOT NULL DEFAULT '',
    request_id  text        NOT NULL DEFAULT '',
    trace_id    text        NOT NULL DEFAULT '',
    details     jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_tenant_id_occurred_at_idx ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_tenant_id_id_idx ON audit_events (tenant_id, id);
CREATE INDEX audit_events_tenant_id_action_id_idx ON audit_events (tenant_id, action, id);
