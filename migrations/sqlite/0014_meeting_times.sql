-- When a meeting ends, for the question every book asks of every account: when was
-- the last meeting held, and when is the next one? Both move with the clock (a
-- scheduled meeting becomes a held one without any event changing), so they are read
-- when asked, from this index, rather than kept on write. Written from the meeting's
-- `ends_at` attribute with the event; null for every other kind.
ALTER TABLE timeline_events ADD COLUMN ends_at_us INTEGER;
CREATE INDEX timeline_meetings_held ON timeline_events (account_id, ends_at_us)
    WHERE kind IN ('meeting.scheduled', 'meeting.updated');
CREATE INDEX timeline_meetings_next ON timeline_events (account_id, occurred_at_us)
    WHERE kind IN ('meeting.scheduled', 'meeting.updated');
