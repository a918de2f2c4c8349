-- Who sees what a person's own connection captured (rapport_core::sharing).
--
-- An event stored from a person's connection (connector `<connector>:<staff id>`)
-- carries the mailbox owner and the connection's sharing level, stamped in the
-- transaction that writes it and re-stamped in the one that changes the level.
-- Every other event has neither, and is shared as the account rule says.
ALTER TABLE timeline_events ADD COLUMN captured_by INTEGER REFERENCES staff (id);
ALTER TABLE timeline_events ADD COLUMN sharing TEXT
    CHECK (sharing IN ('shared', 'metadata', 'private'));

-- A person's connection: the level its events carry now (the organisation's, or the
-- owner's own choice where the organisation allows one), and that choice, if any.
ALTER TABLE connections ADD COLUMN sharing TEXT NOT NULL DEFAULT 'shared'
    CHECK (sharing IN ('shared', 'metadata', 'private'));
ALTER TABLE connections ADD COLUMN sharing_chosen TEXT
    CHECK (sharing_chosen IN ('shared', 'metadata', 'private'));
