-- Containment: which event a failure was about, the result of the connector's own
-- `check`, which process holds a lease, and a row a readiness probe writes.

-- The source id of the event a connector's last failure was about, when it was one.
ALTER TABLE connector_state ADD COLUMN last_error_source_id TEXT;
-- Whether the connector's `check` should run before its next sync (set when it is
-- first registered and whenever its configuration changes).
ALTER TABLE connector_state ADD COLUMN check_due BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE connector_state ADD COLUMN last_check_at_us BIGINT;
ALTER TABLE connector_state ADD COLUMN last_check_ok BOOLEAN;
ALTER TABLE connector_state ADD COLUMN last_check_message TEXT;
-- The lease holder's process (`machine:boot:pid:start`), so a node on the same machine
-- can tell that it has died and take over at once.
ALTER TABLE connector_state ADD COLUMN lease_process TEXT;

CREATE TABLE write_probe (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    at_us BIGINT NOT NULL
);
INSERT INTO write_probe (id, at_us) VALUES (1, 0);
