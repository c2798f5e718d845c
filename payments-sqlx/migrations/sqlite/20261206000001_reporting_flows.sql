-- Reporting flows (pagoPA's FdR): one row per creditor, flow id, PSP and revision; a later
-- revision marks the earlier one replaced. The flow, its payments and what matching found
-- are kept as JSON; `version` is the compare-and-set of each update.
CREATE TABLE reporting_flows (
    creditor_id TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    psp_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    published_at BIGINT NOT NULL,
    replaced BIGINT NOT NULL,
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (creditor_id, flow_id, psp_id, revision)
);
CREATE INDEX reporting_flows_recent ON reporting_flows (creditor_id, published_at, flow_id, psp_id);

-- Which flow reported each receipt; receipts no flow reported are found by the partial index.
ALTER TABLE provider_receipts ADD COLUMN gateway_id TEXT;
ALTER TABLE provider_receipts ADD COLUMN reported_by TEXT;
UPDATE provider_receipts SET gateway_id = json_extract(data, '$.gateway_id');
-- Receipts recorded before flows were read are not asked about: FdR keeps a month, and
-- an operator would get one exception per old receipt.
UPDATE provider_receipts SET reported_by = 'before reporting flows';
CREATE INDEX provider_receipts_unreported ON provider_receipts (creditor_id, recorded_at, receipt_key)
    WHERE reported_by IS NULL;
