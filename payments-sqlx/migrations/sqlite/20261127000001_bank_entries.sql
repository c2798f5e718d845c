-- Credits read from bank statements: one row per creditor and entry key, so importing a
-- statement twice records nothing new. The entry itself is kept as JSON.
CREATE TABLE bank_entries (
    creditor_id TEXT NOT NULL,
    entry_key TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    reference TEXT,
    transaction_id TEXT,
    is_exception BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (creditor_id, entry_key)
);
CREATE INDEX bank_entries_recent ON bank_entries (creditor_id, imported_at, entry_key);
CREATE INDEX bank_entries_reference ON bank_entries (creditor_id, reference);
