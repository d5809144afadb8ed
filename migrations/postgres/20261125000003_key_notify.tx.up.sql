-- Every instance caches keys; a change must reach all of them at once. After
-- each statement that changes or deletes keys (cascades from tenants and
-- users included), tell the channel keygate_key_changes which key ids
-- changed. Only fields that matter for authentication count: last_used_at
-- alone changes nothing. Payloads name ids, never hashes, and stay under
-- Postgres' 8000-byte limit; past 1000 keys one "all" message asks every
-- instance to empty its cache instead.
CREATE FUNCTION keygate_notify_key_changes() RETURNS trigger
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

CREATE TRIGGER api_keys_notify_update
    AFTER UPDATE ON api_keys
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_notify_key_changes();

CREATE TRIGGER api_keys_notify_delete
    AFTER DELETE ON api_keys
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_notify_key_changes();
