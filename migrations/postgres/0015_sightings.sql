-- One conversation or meeting seen through several connections is one event
-- (rapport_core::sighting): the message in the organisation's IMAP mailbox and in
-- Gmail, in two people's mailboxes; the meeting in every attendee's calendar.
--
-- `identity` names what an event is independently of where it was seen
-- (`email:<message-id>`, `meeting:<uid>[@<occurrence>]`); at most one event has each.
-- Every connection that reported it has a sighting: its own key, version and capture.
-- The event's `connector`/`source_id` are those of the sighting whose content it
-- holds, and its `captured_by`/`sharing` summarise all of them (the most open).
-- Events without an identity have no sightings and are keyed as before.
ALTER TABLE timeline_events ADD COLUMN identity TEXT;

CREATE TABLE event_sightings (
    connector      TEXT    NOT NULL,
    source_id      TEXT    NOT NULL,
    identity       TEXT    NOT NULL,
    source_version BIGINT  NOT NULL,
    captured_by    BIGINT  REFERENCES staff (id),
    sharing        TEXT CHECK (sharing IN ('shared', 'metadata', 'private')),
    PRIMARY KEY (connector, source_id)
);
-- An event's sightings, and whether a viewer's line holds one of their owners.
CREATE INDEX event_sightings_by_identity ON event_sightings (identity, captured_by);

-- Mail already stored gets its identity from its `message_id` (the SQL form of
-- `shared_identity`), and a sighting. Where several events hold one message (two
-- people's mailboxes), the first stays, with every one's sighting, and the others go;
-- the insights of the accounts they were on are rebuilt when rapport starts.
UPDATE timeline_events
   SET identity = 'email:' || lower(btrim(attributes->'message_id'->>'text', ' <>'))
 WHERE kind IN ('email.received', 'email.sent')
   AND jsonb_typeof(attributes->'message_id'->'text') = 'string'
   AND btrim(attributes->'message_id'->>'text', ' <>') <> '';
CREATE INDEX timeline_identity_backfill ON timeline_events (identity, id);
INSERT INTO event_sightings (connector, source_id, identity, source_version, captured_by, sharing)
SELECT connector, source_id, identity, source_version, captured_by, sharing
  FROM timeline_events WHERE identity IS NOT NULL;
DELETE FROM account_insights WHERE account_id IN (
    SELECT account_id FROM timeline_events
     WHERE identity IS NOT NULL AND account_id IS NOT NULL
       AND id > (SELECT MIN(first.id) FROM timeline_events first
                  WHERE first.identity = timeline_events.identity));
DELETE FROM timeline_events
 WHERE identity IS NOT NULL
   AND id > (SELECT MIN(first.id) FROM timeline_events first
              WHERE first.identity = timeline_events.identity);
DROP INDEX timeline_identity_backfill;
CREATE UNIQUE INDEX timeline_by_identity ON timeline_events (identity) WHERE identity IS NOT NULL;

-- Each event's capture summary: its most open sighting's (rapport-store's `restamp`).
UPDATE timeline_events
   SET captured_by = (SELECT s.captured_by FROM event_sightings s
                       WHERE s.identity = timeline_events.identity
                       ORDER BY CASE WHEN s.captured_by IS NULL THEN 0 WHEN s.sharing = 'shared' THEN 1
                                     WHEN s.sharing = 'metadata' THEN 2 ELSE 3 END, s.captured_by
                       LIMIT 1),
       sharing = (SELECT s.sharing FROM event_sightings s
                   WHERE s.identity = timeline_events.identity
                   ORDER BY CASE WHEN s.captured_by IS NULL THEN 0 WHEN s.sharing = 'shared' THEN 1
                                 WHEN s.sharing = 'metadata' THEN 2 ELSE 3 END, s.captured_by
                   LIMIT 1)
 WHERE identity IS NOT NULL;
