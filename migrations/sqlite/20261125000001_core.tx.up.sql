-- SQLite twin of the Postgres schema. Times are declared TIMESTAMP so the
-- driver scans them into time.Time; bun writes them as UTC text
-- ('2006-01-02 15:04:05.999999+00:00'), which sorts in time order, so the
-- same comparisons work as on Postgres. Uuids and JSON are TEXT.
CREATE TABLE tenants (
    id         TEXT      NOT NULL PRIMARY KEY,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE users (
    tenant_id  TEXT      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         TEXT      NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE api_keys (
    id               TEXT      NOT NULL PRIMARY KEY,
    tenant_id        TEXT      NOT NULL,
    user_id          TEXT      NOT NULL,
    name             TEXT      NOT NULL,
    key_hash         TEXT      NOT NULL,
    start            TEXT      NOT NULL,
    permission_scope TEXT      NOT NULL,
    enabled          BOOLEAN   NOT NULL,
    expires_at       TIMESTAMP,
    last_used_at     TIMESTAMP,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
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

CREATE TABLE audit_events (
    id          TEXT      NOT NULL PRIMARY KEY,
    occurred_at TIMESTAMP NOT NULL,
    tenant_id   TEXT      NOT NULL DEFAULT '',
    actor_type  TEXT      NOT NULL DEFAULT '',
    actor_id    TEXT      NOT NULL DEFAULT '',
    action      TEXT      NOT NULL DEFAULT '',
    target_type TEXT      NOT NULL DEFAULT '',
    target_id   TEXT      NOT NULL DEFAULT '',
    outcome     TEXT      NOT NULL DEFAULT '',
    reason      TEXT      NOT NULL DEFAULT '',
    ip          TEXT      NOT NULL DEFAULT '',
    user_agent  TEXT      NOT NULL DEFAULT '',
    request_id  TEXT      NOT NULL DEFAULT '',
    trace_id    TEXT      NOT NULL DEFAULT '',
    details     TEXT      NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_tenant_id_occurred_at_idx ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_tenant_id_id_idx ON audit_events (tenant_id, id);
CREATE INDEX audit_events_tenant_id_action_id_idx ON audit_events (tenant_id, action, id);
