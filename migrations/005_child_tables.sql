-- Child tables: the embedded arrays of properties, reservations and tasks as rows, and
-- the task details (comments and requirements, from their own endpoints).
--
-- Every child row has:
--   a primary key that makes a duplicate impossible: the region, the parent's key and the
--     item's own id where the item has one (a task tag: the tag's id), else the item's
--     position in its array;
--   position     where the item stood in the parent's array (0-based);
--   typed columns for what analysts query, and raw (the item as received);
--   a foreign key to the parent row.
-- A new or changed parent replaces its children as a set, in the parent's transaction
-- (db/children.py): an item that left the array leaves the table. Parents are never
-- deleted, only marked (deleted_at): their children stay, and say so through the join.
-- Items that cannot be stored (not an object, no id where the table needs one) go to
-- rejected_records with entity_type set to the child table's name.

CREATE TABLE breezeway.property_photos (
    region_code    text        NOT NULL,
    property_id    bigint      NOT NULL,
    id             bigint      NOT NULL,
    position       integer     NOT NULL,
    url            text,
    original_url   text,
    caption        text,
    is_default     boolean,
    raw            jsonb       NOT NULL,
    written_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, property_id, id),
    FOREIGN KEY (region_code, property_id) REFERENCES breezeway.properties (region_code, id)
        ON DELETE CASCADE
);

CREATE TABLE breezeway.reservation_guests (
    region_code     text        NOT NULL,
    reservation_id  bigint      NOT NULL,
    position        integer     NOT NULL,
    first_name      text,
    last_name       text,
    email           text,
    phone           text,
    raw             jsonb       NOT NULL,
    written_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, reservation_id, position),
    FOREIGN KEY (region_code, reservation_id) REFERENCES breezeway.reservations (region_code, id)
        ON DELETE CASCADE
);

CREATE TABLE breezeway.task_assignments (
    region_code    text        NOT NULL,
    task_id        bigint      NOT NULL,
    id             bigint      NOT NULL,
    position       integer     NOT NULL,
    assignee_id    bigint,
    assignee_name  text,
    employee_code  text,
    expires_at     timestamptz,
    status         text,
    raw            jsonb       NOT NULL,
    written_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, task_id, id),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);
CREATE INDEX task_assignments_assignee_idx ON breezeway.task_assignments (region_code, assignee_id);

CREATE TABLE breezeway.task_photos (
    region_code  text        NOT NULL,
    task_id      bigint      NOT NULL,
    id           bigint      NOT NULL,
    position     integer     NOT NULL,
    url          text,
    caption      text,
    raw          jsonb       NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, task_id, id),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);

-- A tag's id is the tag's, shared by every task that carries it.
CREATE TABLE breezeway.task_tags (
    region_code  text        NOT NULL,
    task_id      bigint      NOT NULL,
    tag_id       bigint      NOT NULL,
    position     integer     NOT NULL,
    name         text,
    raw          jsonb       NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, task_id, tag_id),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);
CREATE INDEX task_tags_tag_idx ON breezeway.task_tags (region_code, tag_id);

CREATE TABLE breezeway.task_costs (
    region_code  text        NOT NULL,
    task_id      bigint      NOT NULL,
    id           bigint      NOT NULL,
    position     integer     NOT NULL,
    cost         numeric,
    description  text,
    type_code    text,
    created_at   timestamptz,
    raw          jsonb       NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, task_id, id),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);

CREATE TABLE breezeway.task_supplies (
    region_code  text        NOT NULL,
    task_id      bigint      NOT NULL,
    id           bigint      NOT NULL,
    position     integer     NOT NULL,
    supply_id    bigint,
    name         text,
    quantity     numeric,
    unit_cost    numeric,
    total_price  numeric,
    raw          jsonb       NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, task_id, id),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);

-- From GET /task/{id}/comments (the task_details entity).
CREATE TABLE breezeway.task_comments (
    region_code      text        NOT NULL,
    task_id          bigint      NOT NULL,
    id               bigint      NOT NULL,
    position         integer     NOT NULL,
    comment          text,
    created_at       timestamptz,
    created_by_id    bigint,
    created_by_name  text,
    raw              jsonb       NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, task_id, id),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);

-- From GET /task/{id}/requirements: no id, a task's list is replaced as a whole.
CREATE TABLE breezeway.task_requirements (
    region_code        text        NOT NULL,
    task_id            bigint      NOT NULL,
    position           integer     NOT NULL,
    section_name       text,
    action             text[],
    response           text,
    type_requirement   text,
    photo_required     boolean,
    photo_count        integer,
    note               text,
    home_element_name  text,
    raw                jsonb       NOT NULL,
    written_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, task_id, position),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);

-- When a task's details were last fetched, and the task's content (content_hash) then:
-- the task_details fetch policy compares it with the task's current content_hash.
-- gone_at: the details endpoints answered 404 (the task was deleted).
CREATE TABLE breezeway.task_details_fetches (
    region_code   text        NOT NULL,
    task_id       bigint      NOT NULL,
    task_hash     bytea       NOT NULL,
    fetched_at    timestamptz NOT NULL DEFAULT now(),
    gone_at       timestamptz,
    run_id        bigint,
    PRIMARY KEY (region_code, task_id),
    FOREIGN KEY (region_code, task_id) REFERENCES breezeway.tasks (region_code, id)
        ON DELETE CASCADE
);

-- A run counts the child items it rejected apart from its records: records_processed =
-- new + updated + unchanged + rejected (+ duplicates) still holds for the parents, and the
-- run's rows in rejected_records are records_rejected + items_rejected.
ALTER TABLE breezeway.etl_sync_log
    ADD COLUMN items_rejected bigint NOT NULL DEFAULT 0;

-- The read-only role reads the new tables (see 004; a missing role is 004's business).
DO $$
DECLARE
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'breezeway_readonly') THEN
        RETURN;
    END IF;
    FOREACH name IN ARRAY ARRAY['property_photos', 'reservation_guests', 'task_assignments',
                                'task_photos', 'task_tags', 'task_costs', 'task_supplies',
                                'task_comments', 'task_requirements', 'task_details_fetches']
    LOOP
        EXECUTE format('GRANT SELECT ON breezeway.%I TO breezeway_readonly', name);
    END LOOP;
END
$$;
