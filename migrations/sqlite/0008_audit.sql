-- The audit trail: who signed in (and who failed to), when and from where; API
-- tokens made and revoked; and every write through the API or the web UI, with the
-- before and after of changes to ownership and structure. Failed sign-ins also drive
-- sign-in rate limiting, across every node of a deployment.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at_us      INTEGER NOT NULL,
    -- Who did it; absent for a failed sign-in, which names no one for certain.
    actor_id   INTEGER REFERENCES staff (id),
    -- What: `signin.password`, `signin.failed`, `token.created`, `write`, ...
    action     TEXT    NOT NULL,
    -- Through what: `api`, `web` or `cli`.
    surface    TEXT    NOT NULL,
    -- About what: the request (`PATCH /api/v1/accounts/12`), or the email a
    -- sign-in named.
    target     TEXT,
    -- The client's address.
    address    TEXT,
    -- The HTTP status answered.
    status     INTEGER,
    -- JSON: before and after, for changes of ownership and structure.
    detail     TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at_us);
CREATE INDEX audit_log_by_action_address ON audit_log (action, address, at_us);
CREATE INDEX audit_log_by_action_target ON audit_log (action, target, at_us);
