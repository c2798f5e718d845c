-- A transaction's state change settles or frees its items by transaction id: without this
-- index every payment scanned the whole items table.
CREATE INDEX items_transaction ON items (transaction_id);
