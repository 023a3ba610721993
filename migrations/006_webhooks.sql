-- Webhook events: each event Breezeway pushed that the receiver accepted, committed
-- before the receiver answered 2xx (durable before acknowledged), then applied by
-- the event worker in order of arrival (id). An event with processed_at NULL is
-- pending: a restart applies it. The body is kept as received (bytea: any bytes,
-- NUL characters included) because a task event is applied from its payload.
--
-- outcome, once processed:
--   applied    the record was written through the loader (or a property refreshed)
--   unchanged  nothing to write: same content, or not newer than the stored row
--   coalesced  a later pending event of the same record was applied instead
--   deleted    task-deleted, confirmed by GET /task/{id} answering 404
--   kept       task-deleted, but the API still has the task (it was stored instead)
--   rejected   the payload failed validation (reason says why); nothing written
--   failed     applying it failed (reason); the next poll repairs the record
CREATE TABLE breezeway.webhook_events (
    id            bigserial   PRIMARY KEY,
    region_code   text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('task', 'property-status')),
    entity_id     bigint      NOT NULL,
    event_name    text        NOT NULL,
    -- the record's last-updated time as the event says it (NULL when absent or unreadable)
    updated_at    timestamptz,
    body          bytea       NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    processed_at  timestamptz,
    outcome       text        CHECK (outcome IN ('applied', 'unchanged', 'coalesced', 'deleted',
                                                 'kept', 'rejected', 'failed')),
    reason        text,
    CHECK ((processed_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX webhook_events_pending_idx
    ON breezeway.webhook_events (id) WHERE processed_at IS NULL;
CREATE INDEX webhook_events_region_idx
    ON breezeway.webhook_events (region_code, received_at DESC);
