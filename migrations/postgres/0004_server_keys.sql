-- Secrets every node of one deployment shares, made once by the first node that needs
-- them (e.g. the key that signs API pagination cursors), so a cursor one node hands out
-- is accepted by every other.
CREATE TABLE server_keys (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
