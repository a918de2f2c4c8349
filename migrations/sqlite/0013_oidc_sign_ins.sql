-- A staff sign-in through an OpenID Connect provider in progress: someone was sent to
-- the provider and has not come back yet. Found by the SHA-256 of the `state` sent
-- along, bound to the browser that started it (the SHA-256 of a cookie set then), and
-- used once within minutes: the callback deletes it as it reads it. The nonce and
-- PKCE verifier are kept to check the ID token and redeem the code; neither is of use
-- without the single-use code the provider sends only to that browser.
CREATE TABLE oidc_sign_ins (
    state_hash     TEXT    PRIMARY KEY,
    provider       TEXT    NOT NULL,
    browser_hash   TEXT    NOT NULL,
    nonce          TEXT    NOT NULL,
    pkce_verifier  TEXT    NOT NULL,
    -- Where to go once signed in (a local path).
    next_path      TEXT    NOT NULL,
    created_at_us  INTEGER NOT NULL,
    expires_at_us  INTEGER NOT NULL
);
CREATE INDEX oidc_sign_ins_by_expiry ON oidc_sign_ins (expires_at_us);
