-- A read-only role for analysts: breezeway_readonly (NOLOGIN; give people LOGIN roles
-- that are members of it: CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE breezeway_readonly).
--
-- It reads the six entity tables, the run history (etl_sync_log), the cursors and the
-- rejected records. It does not read api_tokens: an access token there is a valid API
-- credential for 24 hours. Nor the alert tables (operational bookkeeping, not data), nor
-- anything created later: grants are per table, no default privilege gives a future table
-- to this role, and api_tokens is revoked explicitly in case a DBA once granted
-- "SELECT ON ALL TABLES".
--
-- Roles belong to the whole PostgreSQL cluster: the role may exist already (another
-- database's migration, or a DBA). Creating it needs CREATEROLE; without it this
-- migration says so (NOTICE) and grants nothing, so that the daemon still starts as a
-- plain owner of its database. A DBA then creates the role and runs
-- `breezeway-daemon grant-readonly` (which applies the same grants, to any role).

DO $$
DECLARE
    readable text[] := ARRAY['properties', 'reservations', 'tasks', 'people', 'supplies', 'tags',
                             'etl_sync_log', 'sync_cursors', 'rejected_records'];
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'breezeway_readonly') THEN
        BEGIN
            CREATE ROLE breezeway_readonly NOLOGIN;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role breezeway_readonly not created (%); a DBA can create it '
                    'and run: breezeway-daemon grant-readonly', SQLERRM;
                RETURN;
            -- created meanwhile by a migration of another database of the cluster
            WHEN duplicate_object OR unique_violation THEN
                NULL;
        END;
    END IF;
    GRANT USAGE ON SCHEMA breezeway TO breezeway_readonly;
    FOREACH name IN ARRAY readable LOOP
        EXECUTE format('GRANT SELECT ON breezeway.%I TO breezeway_readonly', name);
    END LOOP;
    REVOKE ALL ON breezeway.api_tokens FROM breezeway_readonly;
    REVOKE ALL ON breezeway.api_tokens FROM PUBLIC;
END
$$;
