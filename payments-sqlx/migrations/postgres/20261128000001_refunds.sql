-- Refunds of paid transactions. The amounts that count are summed under the
-- transaction's lock, so concurrent refunds can never give back more than was paid.
CREATE TABLE refunds (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    transaction_id TEXT NOT NULL,
    refund_key TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (transaction_id, refund_key)
);
CREATE INDEX refunds_transaction ON refunds (transaction_id, id);
-- The reconciliation sweep lists unfinished transactions by id.
CREATE INDEX transactions_status_id ON transactions (status, id);
