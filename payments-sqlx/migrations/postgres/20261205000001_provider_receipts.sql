-- Providers' receipts kept whole (pagoPA's paSendRT): one row per creditor and key (the
-- key of the line payment the receipt settled), the document as it arrived and the
-- receipt's fields as JSON.
CREATE TABLE provider_receipts (
    creditor_id TEXT NOT NULL,
    receipt_key TEXT NOT NULL,
    reference TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (creditor_id, receipt_key)
);
CREATE INDEX provider_receipts_recent ON provider_receipts (creditor_id, recorded_at, receipt_key);
CREATE INDEX provider_receipts_reference ON provider_receipts (creditor_id, reference);
