-- Per-staff API tokens. Only a token's SHA-256 is stored; its first characters are kept
-- in the clear so people can tell their tokens apart.
CREATE TABLE api_tokens (
    id              INTEGER PRIMARY KEY,
    staff_id        INTEGER NOT NULL REFERENCES staff (id),
    name            TEXT    NOT NULL,
    token_hash      TEXT    NOT NULL UNIQUE,
    display_prefix  TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    expires_at_us   INTEGER,
    last_used_at_us INTEGER,
    revoked_at_us   INTEGER
);
CREATE INDEX api_tokens_by_staff ON api_tokens (staff_id);
