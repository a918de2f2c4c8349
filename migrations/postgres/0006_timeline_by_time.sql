-- The whole timeline newest first. A feed across a wide book (a director's or a VP's)
-- walks this index and keeps the rows of visible accounts: it stops after one page
-- instead of reading and sorting every visible account's history, which grows with
-- the org. Narrow books (a manager's) still read `timeline_by_account` per account.
-- Measured in BENCHMARKS.md ("Scale").
CREATE INDEX timeline_by_time ON timeline_events (occurred_at_us DESC, id DESC);
