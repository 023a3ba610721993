-- Storage settings of the entity tables, for the loader's two common cases.
--
-- Unchanged records (most of every full listing) only get synced_at moved (and
-- deleted_at cleared). With free room on the page, PostgreSQL makes that a HOT
-- update: the new row version stays on its page and no index is written. The
-- loader updates every unchanged row of a batch in one statement, and a page's
-- dead versions can only be pruned between statements, so a page needs room for
-- a second version of each of its rows: fillfactor 50. The table is about twice
-- as large; in exchange a re-listing costs a fraction of the rewrite it would be.
--
-- New and changed records: their raw jsonb (1-2 kB for a task) is compressed
-- inline, and pglz takes a third of the server's time of a COPY; lz4 compresses
-- about as well here at a fraction of the cost. Servers built without lz4 keep
-- pglz. Neither setting rewrites existing rows: they apply to pages and values
-- written from now on.

ALTER TABLE breezeway.properties   SET (fillfactor = 50);
ALTER TABLE breezeway.reservations SET (fillfactor = 50);
ALTER TABLE breezeway.tasks        SET (fillfactor = 50);
ALTER TABLE breezeway.people       SET (fillfactor = 50);
ALTER TABLE breezeway.supplies     SET (fillfactor = 50);
ALTER TABLE breezeway.tags         SET (fillfactor = 50);

DO $$
DECLARE
    entity text;
BEGIN
    FOREACH entity IN ARRAY ARRAY['properties', 'reservations', 'tasks', 'people', 'supplies', 'tags']
    LOOP
        EXECUTE format('ALTER TABLE breezeway.%I ALTER COLUMN raw SET COMPRESSION lz4', entity);
    END LOOP;
EXCEPTION
    -- built without lz4 (feature_not_supported), or a server without the syntax
    WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
        RAISE NOTICE 'lz4 is not available: raw keeps the default compression (%)', SQLERRM;
END
$$;
