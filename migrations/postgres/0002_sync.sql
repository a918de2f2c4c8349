-- Sync engine state: per-connector checkpoint, status and work lease; ambiguous-match
-- candidates on waiting events; a clock that orders identity changes against ingest.

-- When a waiting event's deciding rule found several accounts: their ids (JSON array).
ALTER TABLE timeline_events ADD COLUMN match_candidates JSONB;

CREATE TABLE connector_state (
    connector            TEXT    PRIMARY KEY,
    -- The plugin's opaque position; committed with the page it follows.
    checkpoint           TEXT,
    state                TEXT    NOT NULL DEFAULT 'idle'
        CHECK (state IN ('idle', 'running', 'backing_off', 'stopped', 'disabled')),
    -- A digest of the connector's config: a change lifts a 'stopped' state.
    config_fingerprint   TEXT,
    events_ingested      BIGINT NOT NULL DEFAULT 0,
    pages_committed      BIGINT NOT NULL DEFAULT 0,
    newest_event_at_us   BIGINT,
    last_attempt_at_us   BIGINT,
    last_success_at_us   BIGINT,
    last_error_at_us     BIGINT,
    last_error_kind      TEXT,
    last_error_message   TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    next_run_at_us       BIGINT,
    sync_requested_at_us BIGINT,
    -- The node running this connector's sync now, and until when; the token grows on
    -- every acquisition so a node that lost its lease cannot commit.
    lease_holder         TEXT,
    lease_token          BIGINT NOT NULL DEFAULT 0,
    lease_expires_at_us  BIGINT
);

CREATE TABLE identity_clock (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO identity_clock (id, generation) VALUES (1, 0);
