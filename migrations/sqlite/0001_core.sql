-- rapport core schema (SQLite). Instants are INTEGER microseconds since the Unix epoch,
-- UTC, in columns named *_us: they sort and compare exactly like the PostgreSQL schema's.

CREATE TABLE staff (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    email         TEXT    NOT NULL UNIQUE,
    level         TEXT    NOT NULL CHECK (level IN ('associate', 'manager', 'director', 'vp')),
    reports_to    INTEGER REFERENCES staff (id),
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    CHECK (reports_to IS NULL OR reports_to <> id)
);
CREATE INDEX staff_reports_to ON staff (reports_to);

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    parent_id     INTEGER REFERENCES accounts (id),
    lifecycle     TEXT    NOT NULL CHECK (lifecycle IN ('prospect', 'onboarding', 'active', 'churned')),
    renewal_date  TEXT    CHECK (renewal_date IS NULL OR renewal_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX accounts_parent ON accounts (parent_id);
CREATE INDEX accounts_name ON accounts (name COLLATE NOCASE);

-- A domain may belong to several accounts (identity resolution then treats it as
-- ambiguous); an external id belongs to exactly one.
CREATE TABLE account_domains (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    domain     TEXT    NOT NULL,
    PRIMARY KEY (account_id, domain)
);
CREATE INDEX account_domains_domain ON account_domains (domain);

CREATE TABLE account_external_ids (
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    system      TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    PRIMARY KEY (system, external_id)
);
CREATE INDEX account_external_ids_account ON account_external_ids (account_id);

CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email      TEXT    NOT NULL,
    name       TEXT,
    title      TEXT,
    UNIQUE (account_id, email)
);
CREATE INDEX contacts_email ON contacts (email);

-- Effective-dated: rows are closed (valid_to_us set), never deleted.
CREATE TABLE assignments (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (id),
    staff_id      INTEGER NOT NULL REFERENCES staff (id),
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'support')),
    valid_from_us INTEGER NOT NULL,
    valid_to_us   INTEGER,
    CHECK (valid_to_us IS NULL OR valid_to_us >= valid_from_us)
);
-- The database itself guarantees at most one current owner, even under races.
CREATE UNIQUE INDEX assignments_one_current_owner
    ON assignments (account_id) WHERE role = 'owner' AND valid_to_us IS NULL;
CREATE UNIQUE INDEX assignments_one_current_support
    ON assignments (account_id, staff_id) WHERE role = 'support' AND valid_to_us IS NULL;
CREATE INDEX assignments_current_by_staff ON assignments (staff_id) WHERE valid_to_us IS NULL;
CREATE INDEX assignments_by_account ON assignments (account_id, valid_from_us);

CREATE TABLE timeline_events (
    id             INTEGER PRIMARY KEY,
    connector      TEXT    NOT NULL,
    source_id      TEXT    NOT NULL,
    source_version INTEGER NOT NULL,
    -- 1 when first stored, +1 on each replacement by a newer source version.
    revision       INTEGER NOT NULL DEFAULT 1,
    account_id     INTEGER REFERENCES accounts (id),
    kind           TEXT    NOT NULL,
    occurred_at_us INTEGER NOT NULL,
    ingested_at_us INTEGER NOT NULL,
    title          TEXT    NOT NULL,
    summary        TEXT    NOT NULL,
    url            TEXT,
    actor          TEXT,               -- JSON
    attributes     TEXT    NOT NULL,   -- JSON
    hints          TEXT    NOT NULL,   -- JSON
    match_rule     TEXT CHECK (match_rule IN ('direct', 'external_id', 'contact_email', 'domain', 'manual')),
    match_detail   TEXT,               -- JSON
    UNIQUE (connector, source_id),
    CHECK ((account_id IS NULL) = (match_rule IS NULL))
);
-- Keyset pagination: (account, occurred_at desc, id desc).
CREATE INDEX timeline_by_account ON timeline_events (account_id, occurred_at_us DESC, id DESC);
CREATE INDEX timeline_unmatched ON timeline_events (occurred_at_us DESC, id DESC) WHERE account_id IS NULL;
