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

CREATE OR REPLACE FUNCTION s3sp_announce() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_key text;
BEGIN
    IF TG_TABLE_NAME = 's3sp_integrations' THEN
        row_key := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
    ELSE
        row_key := CASE WHEN TG_OP = 'DELETE' THEN OLD.access_key_id ELSE NEW.access_key_id END;
    END IF;
    PERFORM pg_notify('s3sp_changes', TG_TABLE_NAME || ':' || row_key);
    -- A renamed key: the old one is gone.
    IF TG_OP = 'UPDATE' THEN
        IF TG_TABLE_NAME = 's3sp_integrations' AND OLD.name <> NEW.name THEN
            PERFORM pg_notify('s3sp_changes', TG_TABLE_NAME || ':' || OLD.name);
        ELSIF TG_TABLE_NAME = 's3sp_clients' AND OLD.access_key_id <> NEW.access_key_id THEN
            PERFORM pg_notify('s3sp_changes', TG_TABLE_NAME || ':' || OLD.access_key_id);
        END IF;
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
    FOR EACH ROW EXECUTE FUNCTION s3sp_announce();
DROP TRIGGER IF EXISTS s3sp_clients_announce ON s3sp_clients;
CREATE TRIGGER s3sp_clients_announce AFTER INSERT OR UPDATE OR DELETE ON s3sp_clients
    FOR EACH ROW EXECUTE FUNCTION s3sp_announce();
