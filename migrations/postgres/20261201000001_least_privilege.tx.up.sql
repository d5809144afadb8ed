-- Who last disabled a key and who set its expiry, so the management policy
-- can keep an admin's decision from being undone by the key's owner. Empty
-- user ids mean "nobody recorded" (keys made before this migration).
ALTER TABLE api_keys
    ADD COLUMN disabled_by             text    NOT NULL DEFAULT '',
    ADD COLUMN disabled_by_admin       boolean NOT NULL DEFAULT false,
    ADD COLUMN expires_at_set_by       text    NOT NULL DEFAULT '',
    ADD COLUMN expires_at_set_by_admin boolean NOT NULL DEFAULT false;

-- A user's scope ceiling: the permission scope an admin lets every key of
-- that user stay within. No row: the user is unrestricted. It goes with the
-- user when the user is offboarded.
CREATE TABLE scope_ceilings (
    tenant_id        text        NOT NULL,
    user_id          text        NOT NULL,
    permission_scope jsonb       NOT NULL,
    updated_by       text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    CONSTRAINT scope_ceilings_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Upstream headers at rest: AES-256-GCM under the key named by
-- headers_key_id (base64 of nonce and ciphertext in headers_sealed). Rows
-- written before this migration keep their plain headers until keygate
-- seals them at start or `keygate secrets rotate` runs.
ALTER TABLE mcp_servers
    ADD COLUMN headers_key_id text NOT NULL DEFAULT '',
    ADD COLUMN headers_sealed text NOT NULL DEFAULT '';
