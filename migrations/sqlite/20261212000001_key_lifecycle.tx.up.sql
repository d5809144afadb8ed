-- SQLite twin of the Postgres migration of the same name (see it for why).
-- SQLite serves one instance and has no change feed to update.
ALTER TABLE api_keys ADD COLUMN previous_key_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN previous_expires_at TIMESTAMP;
ALTER TABLE api_keys ADD COLUMN rotated_at TIMESTAMP;
ALTER TABLE api_keys ADD COLUMN external_id TEXT;
ALTER TABLE api_keys ADD COLUMN meta TEXT;
ALTER TABLE api_keys ADD COLUMN rate_limit INTEGER;
ALTER TABLE api_keys ADD COLUMN rate_limit_window_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN credits_remaining INTEGER;
ALTER TABLE api_keys ADD COLUMN credits_refill_amount INTEGER;
ALTER TABLE api_keys ADD COLUMN credits_refill_interval_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN credits_refilled_at TIMESTAMP;
ALTER TABLE api_keys ADD COLUMN rate_limit_set_by TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN rate_limit_set_by_admin BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE api_keys ADD COLUMN credits_set_by TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN credits_set_by_admin BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX api_keys_previous_key_hash_idx ON api_keys (previous_key_hash) WHERE previous_key_hash <> '';
CREATE INDEX api_keys_tenant_id_external_id_id_idx ON api_keys (tenant_id, external_id, id) WHERE external_id IS NOT NULL;

CREATE TABLE key_usage (
    key_id         TEXT      NOT NULL,
    hour           TIMESTAMP NOT NULL,
    tenant_id      TEXT      NOT NULL,
    allowed        INTEGER   NOT NULL DEFAULT 0,
    denied         INTEGER   NOT NULL DEFAULT 0,
    rate_limited   INTEGER   NOT NULL DEFAULT 0,
    usage_exceeded INTEGER   NOT NULL DEFAULT 0,
    refused        INTEGER   NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour)
);

CREATE INDEX key_usage_hour_idx ON key_usage (hour);
