-- Key lifecycle: rotation with a grace period, per-key rate limits and
-- usage credits, the platform's own id and metadata, and usage history.

-- A rotated key keeps its previous token's hash until the grace period
-- ends (previous_expires_at), so authentication finds the key by either
-- hash; '' means none. Credits are NULL for a key without them; spends
-- change credits_remaining and credits_refilled_at alone. Who set a rate
-- limit or credits is kept as for the expiry, so an admin's setting sticks.
ALTER TABLE api_keys
    ADD COLUMN previous_key_hash          text    NOT NULL DEFAULT '',
    ADD COLUMN previous_expires_at        timestamptz,
    ADD COLUMN rotated_at                 timestamptz,
    ADD COLUMN external_id                text,
    ADD COLUMN meta                       text,
    ADD COLUMN rate_limit                 bigint,
    ADD COLUMN rate_limit_window_ms       bigint,
    ADD COLUMN credits_remaining          bigint,
    ADD COLUMN credits_refill_amount      bigint,
    ADD COLUMN credits_refill_interval_ms bigint,
    ADD COLUMN credits_refilled_at        timestamptz,
    ADD COLUMN rate_limit_set_by          text    NOT NULL DEFAULT '',
    ADD COLUMN rate_limit_set_by_admin    boolean NOT NULL DEFAULT false,
    ADD COLUMN credits_set_by             text    NOT NULL DEFAULT '',
    ADD COLUMN credits_set_by_admin       boolean NOT NULL DEFAULT false;

CREATE INDEX api_keys_previous_key_hash_idx ON api_keys (previous_key_hash) WHERE previous_key_hash <> '';
CREATE INDEX api_keys_tenant_id_external_id_id_idx ON api_keys (tenant_id, external_id, id) WHERE external_id IS NOT NULL;

-- Usage history: one row per key and hour, counts added in batches. No
-- foreign key: the history outlives the key, until the usage retention.
CREATE TABLE key_usage (
    key_id         uuid        NOT NULL,
    hour           timestamptz NOT NULL,
    tenant_id      text        NOT NULL,
    allowed        bigint      NOT NULL DEFAULT 0,
    denied         bigint      NOT NULL DEFAULT 0,
    rate_limited   bigint      NOT NULL DEFAULT 0,
    usage_exceeded bigint      NOT NULL DEFAULT 0,
    refused        bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour)
);

CREATE INDEX key_usage_hour_idx ON key_usage (hour);

-- The change feed now also tells of the new settings, of rotations and of
-- top-ups (updated_at moves with every management change). Spending
-- credits changes only credits_remaining and credits_refilled_at, which it
-- leaves out: spends would otherwise empty every instance's key cache.
CREATE OR REPLACE FUNCTION keygate_notify_key_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
    n int;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT array_agg(o.id::text) INTO ids FROM old_rows o;
    ELSE
        SELECT array_agg(o.id::text) INTO ids
        FROM old_rows o JOIN new_rows nw ON nw.id = o.id
        WHERE (o.enabled, o.expires_at, o.permission_scope, o.name, o.tenant_id, o.user_id, o.key_hash,
               o.previous_key_hash, o.previous_expires_at, o.external_id, o.meta, o.rate_limit, o.rate_limit_window_ms,
               o.credits_refill_amount, o.credits_refill_interval_ms, o.credits_remaining IS NULL, o.updated_at)
            IS DISTINCT FROM (nw.enabled, nw.expires_at, nw.permission_scope, nw.name, nw.tenant_id, nw.user_id, nw.key_hash,
               nw.previous_key_hash, nw.previous_expires_at, nw.external_id, nw.meta, nw.rate_limit, nw.rate_limit_window_ms,
               nw.credits_refill_amount, nw.credits_refill_interval_ms, nw.credits_remaining IS NULL, nw.updated_at);
    END IF;
    n := coalesce(array_length(ids, 1), 0);
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF n > 1000 THEN
        PERFORM pg_notify('keygate_key_changes', '{"all":true}');
        RETURN NULL;
    END IF;
    FOR i IN 0 .. (n - 1) / 100 LOOP
        PERFORM pg_notify('keygate_key_changes', json_build_object('ids', ids[i * 100 + 1 : i * 100 + 100])::text);
    END LOOP;
    RETURN NULL;
END;
$$;
