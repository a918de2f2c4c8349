-- An authorization in progress: someone was sent to a provider to connect an account
-- and has not come back yet. The row is found by the SHA-256 of the `state` sent along
-- (never the state itself), is bound to the person and to their browser session (the
-- SHA-256 of its form token), holds the PKCE verifier sealed, and is used once: the
-- callback deletes it as it reads it.
CREATE TABLE oauth_flows (
    state_hash        TEXT    PRIMARY KEY,
    staff_id          INTEGER  NOT NULL REFERENCES staff (id),
    session_hash      TEXT    NOT NULL,
    connector         TEXT    NOT NULL,
    -- Whose connection it makes: the person's own, or (an admin's) the organisation's.
    scope             TEXT    NOT NULL CHECK (scope IN ('org', 'person')),
    verifier_sealed   TEXT    NOT NULL,
    created_at_us     INTEGER  NOT NULL,
    expires_at_us     INTEGER  NOT NULL
);
CREATE INDEX oauth_flows_by_expiry ON oauth_flows (expires_at_us);
