-- Alert history: one row per alert about a region and entity (or a region, for
-- token alerts), whether or not it was mailed. The alerts module reads it for
-- the quiet period (was the same kind of alert about the same pair mailed
-- recently?) and for recoveries (is the pair's latest failure newer than its
-- latest recovery?). alerts.log holds the full text; this table holds the facts.

CREATE TABLE breezeway.alert_history (
    id            bigserial   PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    kind          text        NOT NULL
                  CHECK (kind IN ('failure', 'warning', 'recovered', 'stuck', 'token')),
    region_code   text        NOT NULL,
    -- '' for alerts about a whole region (token failures)
    entity_type   text        NOT NULL DEFAULT '',
    run_id        bigint,
    error_kind    text,
    subject       text        NOT NULL,
    -- sent: mailed (alone or in a batch digest); quiet: the same alert was mailed
    -- within the quiet period; folded: waiting for its batch's digest; off: no
    -- SMTP configured; failed: the mail server refused or could not be reached
    mail_status   text        NOT NULL
                  CHECK (mail_status IN ('sent', 'quiet', 'folded', 'off', 'failed')),
    mailed_at     timestamptz
);
CREATE INDEX alert_history_pair_idx
    ON breezeway.alert_history (region_code, entity_type, kind, created_at DESC);
CREATE INDEX alert_history_mailed_idx
    ON breezeway.alert_history (region_code, entity_type, kind, mailed_at DESC)
    WHERE mailed_at IS NOT NULL;

-- The size of each pair's latest complete full listing, for the "listing shrank"
-- warning: a full listing under warn_shrink_ratio of the previous one is stored
-- anyway (records missing from it get deleted_at) but said.
CREATE TABLE breezeway.alert_listing_sizes (
    region_code   text        NOT NULL,
    entity_type   text        NOT NULL,
    listing_size  bigint      NOT NULL,
    run_id        bigint,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, entity_type)
);
