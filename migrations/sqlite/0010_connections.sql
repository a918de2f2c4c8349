-- A connection: the credentials one connector runs with — the organisation's one
-- (scope 'org', no owner) or one staff member's own (scope 'person'). Tokens are
-- sealed (rapport_core::secret: 'rs1.<key id>.<nonce and ciphertext>', bound to the
-- connection's connector and owner) before they are written, so neither the database
-- file nor a dump holds one in the clear.
--
-- Refreshing is serialised across nodes by a lease on the row: a node claims it
-- (refresh_holder, until refresh_lease_expires_at_us) with a conditional UPDATE, and
-- stores new tokens only while it still holds the claim and token_version is what it
-- read, so two nodes never spend one refresh token and a slow node cannot overwrite
-- newer tokens.
CREATE TABLE connections (
    id                          INTEGER PRIMARY KEY,
    connector                   TEXT    NOT NULL,
    scope                       TEXT    NOT NULL CHECK (scope IN ('org', 'person')),
    owner_staff_id              INTEGER REFERENCES staff (id),
    status                      TEXT    NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'needs_reconnect', 'revoked')),
    -- Why it needs reconnecting or was revoked, for its owner.
    status_reason               TEXT,
    -- The account at the provider (an OpenID Connect email), when known.
    provider_account            TEXT,
    -- The scopes granted, space-separated.
    scopes                      TEXT    NOT NULL DEFAULT '',
    access_token_sealed         TEXT,
    access_expires_at_us        INTEGER,
    refresh_token_sealed        TEXT,
    -- Grows with every new set of tokens.
    token_version               INTEGER  NOT NULL DEFAULT 0,
    refreshed_at_us             INTEGER,
    refresh_holder              TEXT,
    refresh_lease_expires_at_us INTEGER,
    created_at_us               INTEGER  NOT NULL,
    updated_at_us               INTEGER  NOT NULL,
    CHECK ((scope = 'org') = (owner_staff_id IS NULL))
);
-- One connection per connector and person (and one organisation connection).
CREATE UNIQUE INDEX connections_by_owner ON connections (connector, COALESCE(owner_staff_id, 0));
CREATE INDEX connections_of_staff ON connections (owner_staff_id);
