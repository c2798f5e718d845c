-- Named counters: each row holds the next value to hand out. One upsert reserves a block
-- of values atomically, so instances sharing the database never hand out the same one.
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);
-- pagoPA receipts and bank credits are listed per transaction and per reference, newest
-- first: the indexes hold the order too, or SQLite walks the creditor's every entry.
CREATE INDEX bank_entries_transaction
    ON bank_entries (creditor_id, transaction_id, imported_at, entry_key);
DROP INDEX bank_entries_reference;
CREATE INDEX bank_entries_reference
    ON bank_entries (creditor_id, reference, imported_at, entry_key);
