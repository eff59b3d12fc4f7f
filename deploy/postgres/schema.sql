-- s3-signing-proxy's tables in the platform's database. Idempotent: run it again on upgrade.
--
-- `spec` is one [[integration]] / [[client]] table of the proxy's TOML config as JSON, with the
-- same keys, without the row's key (`name`, `access_key_id`). Secrets may be inline
-- ("secret_access_key"), or named by `_env` / `_file` as in the file.
CREATE TABLE IF NOT EXISTS s3sp_integrations (
    name text PRIMARY KEY,
    spec jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS s3sp_clients (
    access_key_id text PRIMARY KEY,
    spec jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change is announced on s3sp_changes as `table:key`; each proxy replica LISTENs and
-- reads that row again. An update also moves updated_at, the version the proxy reports.
CREATE OR REPLACE FUNCTION s3sp_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- TG_ARGV[0] names the key column. A renamed key announces the old one too: it is gone.
CREATE OR REPLACE FUNCTION s3sp_announce() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_key text;
    new_key text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_key := to_jsonb(OLD) ->> TG_ARGV[0];
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_key := to_jsonb(NEW) ->> TG_ARGV[0];
        PERFORM pg_notify('s3sp_changes', TG_TABLE_NAME || ':' || new_key);
    END IF;
    IF old_key IS DISTINCT FROM new_key AND old_key IS NOT NULL THEN
        PERFORM pg_notify('s3sp_changes', TG_TABLE_NAME || ':' || old_key);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS s3sp_integrations_touch ON s3sp_integrations;
CREATE TRIGGER s3sp_integrations_touch BEFORE UPDATE ON s3sp_integrations
    FOR EACH ROW EXECUTE FUNCTION s3sp_touch();
DROP TRIGGER IF EXISTS s3sp_clients_touch ON s3sp_clients;
CREATE TRIGGER s3sp_clients_touch BEFORE UPDATE ON s3sp_clients
    FOR EACH ROW EXECUTE FUNCTION s3sp_touch();

DROP TRIGGER IF EXISTS s3sp_integrations_announce ON s3sp_integrations;
CREATE TRIGGER s3sp_integrations_announce AFTER INSERT OR UPDATE OR DELETE ON s3sp_integrations
    FOR EACH ROW EXECUTE FUNCTION s3sp_announce('name');
DROP TRIGGER IF EXISTS s3sp_clients_announce ON s3sp_clients;
CREATE TRIGGER s3sp_clients_announce AFTER INSERT OR UPDATE OR DELETE ON s3sp_clients
    FOR EACH ROW EXECUTE FUNCTION s3sp_announce('access_key_id');
