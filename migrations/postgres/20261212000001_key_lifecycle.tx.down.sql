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
        WHERE (o.enabled, o.expires_at, o.permission_scope, o.name, o.tenant_id, o.user_id, o.key_hash)
            IS DISTINCT FROM (nw.enabled, nw.expires_at, nw.permission_scope, nw.name, nw.tenant_id, nw.user_id, nw.key_hash);
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

DROP TABLE key_usage;
DROP INDEX api_keys_tenant_id_external_id_id_idx;
DROP INDEX api_keys_previous_key_hash_idx;
ALTER TABLE api_keys
    DROP COLUMN credits_set_by_admin,
    DROP COLUMN credits_set_by,
    DROP COLUMN rate_limit_set_by_admin,
    DROP COLUMN rate_limit_set_by,
    DROP COLUMN credits_refilled_at,
    DROP COLUMN credits_refill_interval_ms,
    DROP COLUMN credits_refill_amount,
    DROP COLUMN credits_remaining,
    DROP COLUMN rate_limit_window_ms,
    DROP COLUMN rate_limit,
    DROP COLUMN meta,
    DROP COLUMN external_id,
    DROP COLUMN rotated_at,
    DROP COLUMN previous_expires_at,
    DROP COLUMN previous_key_hash;
