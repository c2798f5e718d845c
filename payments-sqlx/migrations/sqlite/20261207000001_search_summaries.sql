-- The operator's search at scale.
--
-- Counts and totals: one row per creditor, state, method and hour of creation (hours since
-- 1970, rounded down, from `created_at` in microseconds) holds how many transactions it has
-- and their total. Triggers keep it in the same database transaction as every insert,
-- update and delete of `transactions`, whatever statement makes it (an `INSERT OR REPLACE`
-- would escape them: the store never uses one). SQLite has one writer at a time, so the
-- triggers update the summary rows in place. A search by state, method and period adds
-- the whole hours from here and counts only the rows of its first and last partial hours.
CREATE TABLE transaction_summaries (
    creditor_id TEXT NOT NULL,
    status TEXT NOT NULL,
    method_kind TEXT NOT NULL,
    hour BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total_cents BIGINT NOT NULL,
    PRIMARY KEY (creditor_id, status, method_kind, hour)
) WITHOUT ROWID;

INSERT INTO transaction_summaries (creditor_id, status, method_kind, hour, n, total_cents)
SELECT creditor_id, status, method_kind,
       (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
       COUNT(*), SUM(total_cents)
FROM transactions GROUP BY 1, 2, 3, 4;

CREATE TRIGGER transactions_summary_insert AFTER INSERT ON transactions BEGIN
    INSERT INTO transaction_summaries (creditor_id, status, method_kind, hour, n, total_cents)
    VALUES (NEW.creditor_id, NEW.status, NEW.method_kind,
            (NEW.created_at - ((NEW.created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
            1, NEW.total_cents)
    ON CONFLICT (creditor_id, status, method_kind, hour)
    DO UPDATE SET n = n + 1, total_cents = total_cents + excluded.total_cents;
END;

CREATE TRIGGER transactions_summary_update
AFTER UPDATE OF creditor_id, status, method_kind, created_at, total_cents ON transactions
WHEN OLD.creditor_id IS NOT NEW.creditor_id OR OLD.status IS NOT NEW.status
  OR OLD.method_kind IS NOT NEW.method_kind OR OLD.created_at IS NOT NEW.created_at
  OR OLD.total_cents IS NOT NEW.total_cents
BEGIN
    UPDATE transaction_summaries SET n = n - 1, total_cents = total_cents - OLD.total_cents
    WHERE creditor_id = OLD.creditor_id AND status = OLD.status AND method_kind = OLD.method_kind
      AND hour = (OLD.created_at - ((OLD.created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000;
    INSERT INTO transaction_summaries (creditor_id, status, method_kind, hour, n, total_cents)
    VALUES (NEW.creditor_id, NEW.status, NEW.method_kind,
            (NEW.created_at - ((NEW.created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
            1, NEW.total_cents)
    ON CONFLICT (creditor_id, status, method_kind, hour)
    DO UPDATE SET n = n + 1, total_cents = total_cents + excluded.total_cents;
END;

CREATE TRIGGER transactions_summary_delete AFTER DELETE ON transactions BEGIN
    UPDATE transaction_summaries SET n = n - 1, total_cents = total_cents - OLD.total_cents
    WHERE creditor_id = OLD.creditor_id AND status = OLD.status AND method_kind = OLD.method_kind
      AND hour = (OLD.created_at - ((OLD.created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000;
END;

-- Pages go newest first by creation time (then id), so a period's first page starts at its
-- end instead of stepping over every later row. Each index below serves a search or a
-- sweep; BENCHMARKS.md says which. Replaced: the pages' and counts' indexes of the search
-- (now one, with `created_at` before `id`), the creditor's indexes by id and by creation
-- time (now one), by state (now with `created_at`), by method (a method alone is a third
-- of the rows: the creditor's index by creation time finds a page at once) and by payer
-- (`transactions_payer` finds a payer's few transactions).
DROP INDEX transactions_creditor;
DROP INDEX transactions_creditor_created;
DROP INDEX transactions_creditor_status;
DROP INDEX transactions_creditor_method;
DROP INDEX transactions_creditor_payer;
DROP INDEX transactions_search_page;
DROP INDEX transactions_search_count;
CREATE INDEX transactions_recent ON transactions (creditor_id, created_at, id);
CREATE INDEX transactions_status_recent ON transactions (creditor_id, status, created_at, id);
CREATE INDEX transactions_search ON transactions (creditor_id, status, method_kind, created_at, id, total_cents);
