-- The initial schema: six entity tables, the run history, tokens, cursors and
-- rejected records. Times are timestamptz (UTC); no varchar(n) or numeric(p,s)
-- on anything whose size the API decides.

CREATE SCHEMA IF NOT EXISTS breezeway;

-- Every entity table has the same bookkeeping columns:
--   raw           the whole record as received (NUL characters removed)
--   content_hash  hash of raw; an unchanged record is not rewritten
--   first_seen_at first time the record was stored
--   changed_at    last time its content changed
--   synced_at     last time the record was received
--   deleted_at    set when the record is known to be gone; cleared if it returns
--   last_run_id   the etl_sync_log run that last wrote its content

CREATE TABLE breezeway.properties (
    region_code                     text        NOT NULL,
    id                              bigint      NOT NULL,
    company_id                      bigint,
    name                            text,
    status                          text,
    address1                        text,
    address2                        text,
    building                        text,
    city                            text,
    state                           text,
    zipcode                         text,
    country                         text,
    display                         text,
    latitude                        double precision,
    longitude                       double precision,
    bedrooms                        numeric,
    bathrooms                       numeric,
    living_area                     numeric,
    year_built                      bigint,
    reference_company_id            text,
    reference_external_property_id  text,
    reference_property_id           text,
    raw                             jsonb       NOT NULL,
    content_hash                    bytea       NOT NULL,
    first_seen_at                   timestamptz NOT NULL DEFAULT now(),
    changed_at                      timestamptz NOT NULL DEFAULT now(),
    synced_at                       timestamptz NOT NULL DEFAULT now(),
    deleted_at                      timestamptz,
    last_run_id                     bigint,
    PRIMARY KEY (region_code, id)
);

CREATE TABLE breezeway.reservations (
    region_code               text        NOT NULL,
    id                        bigint      NOT NULL,
    property_id               bigint      NOT NULL,
    status                    text,
    checkin_date              date,
    checkin_time              text,
    checkout_date             date,
    checkout_time             text,
    adults                    bigint,
    children                  bigint,
    pets                      bigint,
    source                    text,
    type_stay                 text,
    reference_reservation_id  text,
    reference_property_id     text,
    created_at                timestamptz,
    updated_at                timestamptz,
    raw                       jsonb       NOT NULL,
    content_hash              bytea       NOT NULL,
    first_seen_at             timestamptz NOT NULL DEFAULT now(),
    changed_at                timestamptz NOT NULL DEFAULT now(),
    synced_at                 timestamptz NOT NULL DEFAULT now(),
    deleted_at                timestamptz,
    last_run_id               bigint,
    PRIMARY KEY (region_code, id),
    FOREIGN KEY (region_code, property_id) REFERENCES breezeway.properties (region_code, id)
);
CREATE INDEX reservations_property_idx ON breezeway.reservations (region_code, property_id);
CREATE INDEX reservations_checkout_idx ON breezeway.reservations (region_code, checkout_date);

CREATE TABLE breezeway.tasks (
    region_code            text        NOT NULL,
    id                     bigint      NOT NULL,
    property_id            bigint      NOT NULL,
    reference_property_id  text,
    name                   text,
    type_department        text,
    type_priority          text,
    status_code            text,
    status_stage           text,
    scheduled_date         date,
    scheduled_time         text,
    paused                 boolean,
    created_at             timestamptz,
    updated_at             timestamptz,
    started_at             timestamptz,
    finished_at            timestamptz,
    -- no foreign key: a task may link an old reservation that no listing returns
    linked_reservation_id  bigint,
    template_id            bigint,
    parent_task_id         bigint,
    total_cost             numeric,
    total_time             text,
    rate_paid              text,
    billable               boolean,
    raw                    jsonb       NOT NULL,
    content_hash           bytea       NOT NULL,
    first_seen_at          timestamptz NOT NULL DEFAULT now(),
    changed_at             timestamptz NOT NULL DEFAULT now(),
    synced_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    last_run_id            bigint,
    PRIMARY KEY (region_code, id),
    FOREIGN KEY (region_code, property_id) REFERENCES breezeway.properties (region_code, id)
);
CREATE INDEX tasks_property_idx ON breezeway.tasks (region_code, property_id);
CREATE INDEX tasks_scheduled_idx ON breezeway.tasks (region_code, scheduled_date);

CREATE TABLE breezeway.people (
    region_code     text        NOT NULL,
    id              bigint      NOT NULL,
    first_name      text,
    last_name       text,
    active          boolean,
    employee_code   text,
    raw             jsonb       NOT NULL,
    content_hash    bytea       NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    changed_at      timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    last_run_id     bigint,
    PRIMARY KEY (region_code, id)
);

CREATE TABLE breezeway.supplies (
    region_code         text        NOT NULL,
    id                  bigint      NOT NULL,
    company_id          bigint,
    name                text,
    description         text,
    size                text,
    internal_id         text,
    unit_cost           numeric,
    stock_count         numeric,
    low_stock_alert     boolean,
    low_stock_count     numeric,
    supply_category_id  bigint,
    stock_status        text,
    created_at          timestamptz,
    updated_at          timestamptz,
    raw                 jsonb       NOT NULL,
    content_hash        bytea       NOT NULL,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    changed_at          timestamptz NOT NULL DEFAULT now(),
    synced_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    last_run_id         bigint,
    PRIMARY KEY (region_code, id)
);

CREATE TABLE breezeway.tags (
    region_code     text        NOT NULL,
    tag_type        text        NOT NULL CHECK (tag_type IN ('task', 'property', 'reservation')),
    id              bigint      NOT NULL,
    name            text,
    company_id      bigint,
    description     text,
    raw             jsonb       NOT NULL,
    content_hash    bytea       NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    changed_at      timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    last_run_id     bigint,
    PRIMARY KEY (region_code, tag_type, id)
);

-- One row per run, kept as history (the retention job deletes old finished rows).
CREATE TABLE breezeway.etl_sync_log (
    id                        bigserial   PRIMARY KEY,
    region_code               text        NOT NULL,
    entity_type               text        NOT NULL,
    sync_status               text        NOT NULL CHECK (sync_status IN ('running', 'success', 'failed')),
    sync_mode                 text        NOT NULL DEFAULT 'incremental',
    trigger                   text        NOT NULL DEFAULT 'manual',
    sync_started_at           timestamptz NOT NULL DEFAULT now(),
    sync_completed_at         timestamptz,
    -- carried from the previous run of the pair; a success sets its own completion time
    last_successful_sync_at   timestamptz,
    records_processed         bigint      NOT NULL DEFAULT 0,
    records_new               bigint      NOT NULL DEFAULT 0,
    records_updated           bigint      NOT NULL DEFAULT 0,
    records_unchanged         bigint      NOT NULL DEFAULT 0,
    records_deleted           bigint      NOT NULL DEFAULT 0,
    records_rejected          bigint      NOT NULL DEFAULT 0,
    api_calls_made            bigint      NOT NULL DEFAULT 0,
    error_message             text,
    owner_host                text,
    owner_pid                 integer,
    heartbeat_at              timestamptz,
    cursor_from               timestamptz,
    cursor_to                 timestamptz
);
CREATE INDEX etl_sync_log_pair_idx ON breezeway.etl_sync_log (region_code, entity_type, sync_started_at DESC);
CREATE INDEX etl_sync_log_started_idx ON breezeway.etl_sync_log (sync_started_at);
-- At most one running run per region and entity (the advisory lock's invariant, kept by the database too).
CREATE UNIQUE INDEX etl_sync_log_one_running ON breezeway.etl_sync_log (region_code, entity_type)
    WHERE sync_status = 'running';

-- One row per region. Client secrets live in configuration, never here.
CREATE TABLE breezeway.api_tokens (
    region_code               text        PRIMARY KEY,
    access_token              text,
    refresh_token             text,
    token_expires_at          timestamptz,
    refresh_expires_at        timestamptz,
    last_refreshed_at         timestamptz,
    token_generation_count    integer     NOT NULL DEFAULT 0,
    last_error                text,
    last_error_at             timestamptz,
    -- a hash of the credential the tokens belong to: a changed secret drops them
    credential_fingerprint    text
);

-- Where the next incremental run of a pair starts. Moves only after a run committed all it covers.
CREATE TABLE breezeway.sync_cursors (
    region_code     text        NOT NULL,
    entity_type     text        NOT NULL,
    cursor_at       timestamptz NOT NULL,
    run_id          bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, entity_type)
);

-- Records that could not be stored, with the reason. The rest of their batch was stored.
CREATE TABLE breezeway.rejected_records (
    id              bigserial   PRIMARY KEY,
    region_code     text        NOT NULL,
    entity_type     text        NOT NULL,
    record_id       text,
    reason          text        NOT NULL,
    raw             jsonb,
    run_id          bigint,
    rejected_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_records_pair_idx ON breezeway.rejected_records (region_code, entity_type, rejected_at DESC);
