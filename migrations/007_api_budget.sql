-- The API's minute across processes and restarts: before sending requests of a
-- credential, a process reserves a few of them here (api/budget.py). Every other
-- process (a `run` command beside the daemon, the daemon restarted after a kill)
-- counts the reservations it did not make against the credential's rolling minute
-- until counts_until. Rows are deleted a minute after they stop counting.
CREATE TABLE breezeway.api_request_reservations (
    id            bigserial   PRIMARY KEY,
    -- the credential's fingerprint (api/tokens.py credential_fingerprint), never a secret
    credential    text        NOT NULL,
    -- host:pid:nonce of the reserving process
    owner         text        NOT NULL,
    reserved_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    counts_until  timestamptz NOT NULL,
    requests      integer     NOT NULL CHECK (requests >= 0)
);
CREATE INDEX api_request_reservations_credential_idx
    ON breezeway.api_request_reservations (credential, counts_until);
