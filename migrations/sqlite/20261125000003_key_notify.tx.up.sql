-- SQLite serves one instance, which drops changed keys from its own cache;
-- there is no one to notify. This version exists so both dialects list the
-- same migrations.
SELECT 1;
