-- Sync engine state: per-connector checkpoint, status and work lease; ambiguous-match
-- candidates on waiting events; a clock that orders identity changes against ingest.

-- When a waiting event's deciding rule found several accounts: their ids (JSON array).
ALTER TABLE timeline_events ADD COLUMN match_candidates TEXT;

CREATE TABLE connector_state (
    connector            TEXT    PRIMARY KEY,
    -- The plugin's opaque position; committed with the page it follows.
    checkpoint           TEXT,
    state                TEXT    NOT NULL DEFAULT 'idle'
        CHECK (state IN ('idle', 'running', 'backing_off', 'stopped', 'disabled')),
    -- A digest of the connector's config: a change lifts a 'stopped' state.
    config_fingerprint   TEXT,
    events_ingested      INTEGER NOT NULL DEFAULT 0,
    pages_committed      INTEGER NOT NULL DEFAULT 0,
    newest_event_at_us   INTEGER,
    last_attempt_at_us   INTEGER,
    last_success_at_us   INTEGER,
    last_error_at_us     INTEGER,
    last_error_kind      TEXT,
    last_error_message   TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_run_at_us       INTEGER,
    sync_requested_at_us INTEGER,
    -- The node running this connector's sync now, and until when; the token grows on
    -- every acquisition so a node that lost its lease cannot commit.
    lease_holder         TEXT,
    lease_token          INTEGER NOT NULL DEFAULT 0,
    lease_expires_at_us  INTEGER
);

CREATE TABLE identity_clock (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO identity_clock (id, generation) VALUES (1, 0);
