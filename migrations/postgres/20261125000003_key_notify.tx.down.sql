DROP TRIGGER IF EXISTS api_keys_notify_delete ON api_keys;
DROP TRIGGER IF EXISTS api_keys_notify_update ON api_keys;
DROP FUNCTION IF EXISTS keygate_notify_key_changes();
