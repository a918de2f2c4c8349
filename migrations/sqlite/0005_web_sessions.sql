-- Signing in to the web UI: one-time sign-in links (`rapport signin`), passwords, and
-- browser sessions. Only SHA-256 digests of link and session secrets are stored (they
-- have 244 random bits, so a fast hash cannot be reversed); passwords only as argon2id
-- PHC strings.
CREATE TABLE sign_in_links (
    id            INTEGER PRIMARY KEY,
    staff_id      INTEGER NOT NULL REFERENCES staff (id),
    link_hash     TEXT    NOT NULL UNIQUE,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    used_at_us    INTEGER
);

CREATE TABLE web_sessions (
    id            INTEGER PRIMARY KEY,
    staff_id      INTEGER NOT NULL REFERENCES staff (id),
    session_hash  TEXT    NOT NULL UNIQUE,
    -- Sent back in every form; a POST without it is refused (cross-site request forgery).
    csrf_token    TEXT    NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    ended_at_us   INTEGER
);
CREATE INDEX web_sessions_by_staff ON web_sessions (staff_id);

ALTER TABLE staff ADD COLUMN password_hash TEXT;
