-- The ledger of exceptions operators resolve: one row per creditor and key, so the same
-- fact reported again (a provider's retry, a statement imported twice) adds nothing. The
-- exception itself is kept as JSON; the columns are what listings filter on.
CREATE TABLE exceptions (
    id TEXT PRIMARY KEY NOT NULL,
    creditor_id TEXT NOT NULL,
    exception_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    transaction_id TEXT,
    data TEXT NOT NULL,
    UNIQUE (creditor_id, exception_key)
);
CREATE INDEX exceptions_creditor ON exceptions (creditor_id, id);
CREATE INDEX exceptions_creditor_status ON exceptions (creditor_id, status, id);
CREATE INDEX exceptions_creditor_kind ON exceptions (creditor_id, kind, id);
CREATE INDEX exceptions_transaction ON exceptions (transaction_id, id);
-- Payments of single lines (pagoPA receipts): one row per creditor and payment key, so a
-- replay finds its payment; whether the line was already paid is decided with the item's
-- row locked, in the same database transaction.
CREATE TABLE line_payments (
    creditor_id TEXT NOT NULL,
    payment_key TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (creditor_id, payment_key)
);
CREATE INDEX line_payments_transaction ON line_payments (transaction_id, recorded_at);
-- The reconciliation sweep asks providers about unfinished refunds.
CREATE INDEX refunds_unfinished ON refunds (status, id);
