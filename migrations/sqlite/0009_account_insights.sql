-- An account's insight: the facts its health, current revenue and last contact are
-- computed from (`rapport_core::insight::Insight`, as JSON), kept in the transaction
-- that writes the events they come from, so the book, Team and attention answers read
-- one row per account instead of its timeline. `version` is the shape of `insight`;
-- the store rebuilds rows of another version from the timeline when it opens.
CREATE TABLE account_insights (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
    version    INTEGER NOT NULL,
    insight    TEXT    NOT NULL
);
