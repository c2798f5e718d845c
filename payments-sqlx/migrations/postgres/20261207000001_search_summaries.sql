-- The operator's search at scale.
--
-- Counts and totals: one row per creditor, state, method and hour of creation (hours since
-- 1970, rounded down, from `created_at` in microseconds) holds how many transactions it has
-- and their total. Triggers keep it in the same database transaction as every insert,
-- change of state and delete, whatever statement makes it, so it cannot drift from the
-- rows. A search by state, method and period adds the whole hours from here and counts
-- only the rows of its first and last partial hours.
CREATE TABLE transaction_summaries (
    creditor_id TEXT NOT NULL,
    status TEXT NOT NULL,
    method_kind TEXT NOT NULL,
    hour BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total_cents BIGINT NOT NULL,
    PRIMARY KEY (creditor_id, status, method_kind, hour)
);

INSERT INTO transaction_summaries (creditor_id, status, method_kind, hour, n, total_cents)
SELECT creditor_id, status, method_kind,
       (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
       COUNT(*), SUM(total_cents)
FROM transactions GROUP BY 1, 2, 3, 4;

-- Statement-level triggers: a statement that changes a thousand transactions (a chunk of a
-- bank statement) changes each summary row it touches once, in key order, instead of a
-- thousand times.
CREATE FUNCTION transaction_summaries_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO transaction_summaries AS s (creditor_id, status, method_kind, hour, n, total_cents)
        SELECT creditor_id, status, method_kind,
               (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
               COUNT(*), SUM(total_cents)
        FROM new_rows GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (creditor_id, status, method_kind, hour)
        DO UPDATE SET n = s.n + EXCLUDED.n, total_cents = s.total_cents + EXCLUDED.total_cents;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO transaction_summaries AS s (creditor_id, status, method_kind, hour, n, total_cents)
        SELECT creditor_id, status, method_kind, hour, SUM(dn), SUM(dt)
        FROM (
            SELECT creditor_id, status, method_kind, created_at, 1 AS dn, total_cents AS dt
            FROM new_rows
            UNION ALL
            SELECT creditor_id, status, method_kind, created_at, -1, -total_cents
            FROM old_rows
        ) AS d (creditor_id, status, method_kind, created_at, dn, dt),
        LATERAL (SELECT (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000) AS h (hour)
        GROUP BY 1, 2, 3, 4 HAVING SUM(dn) <> 0 OR SUM(dt) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (creditor_id, status, method_kind, hour)
        DO UPDATE SET n = s.n + EXCLUDED.n, total_cents = s.total_cents + EXCLUDED.total_cents;
    ELSE
        UPDATE transaction_summaries AS s SET n = s.n - d.n, total_cents = s.total_cents - d.total
        FROM (
            SELECT creditor_id, status, method_kind,
                   (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000 AS hour,
                   COUNT(*) AS n, SUM(total_cents) AS total
            FROM old_rows GROUP BY 1, 2, 3, 4
        ) AS d
        WHERE s.creditor_id = d.creditor_id AND s.status = d.status
          AND s.method_kind = d.method_kind AND s.hour = d.hour;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER transactions_summary_insert AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION transaction_summaries_apply();
CREATE TRIGGER transactions_summary_update AFTER UPDATE ON transactions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION transaction_summaries_apply();
CREATE TRIGGER transactions_summary_delete AFTER DELETE ON transactions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION transaction_summaries_apply();

-- Pages go newest first by creation time (then id), so a period's first page starts at its
-- end instead of stepping over every later row. Each index below serves a search or a
-- sweep; BENCHMARKS.md says which. Replaced: the pages' and counts' indexes of the search
-- (now one, with `created_at` before `id`), the creditor's indexes by id and by creation
-- time (now one), by state (now with `created_at`), by method (a method alone is a third
-- of the rows: the creditor's index by creation time finds a page at once) and by payer
-- (`transactions_payer` finds a payer's few transactions). Fewer indexes also make each
-- change of state cheaper: PostgreSQL writes a new entry in every index of the table when
-- an indexed column such as `status` changes.
DROP INDEX transactions_creditor;
DROP INDEX transactions_creditor_created;
DROP INDEX transactions_creditor_status;
DROP INDEX transactions_creditor_method;
DROP INDEX transactions_creditor_payer;
DROP INDEX transactions_search_page;
DROP INDEX transactions_search_count;
CREATE INDEX transactions_recent ON transactions (creditor_id, created_at, id);
CREATE INDEX transactions_status_recent ON transactions (creditor_id, status, created_at, id);
CREATE INDEX transactions_search ON transactions (creditor_id, status, method_kind, created_at, id) INCLUDE (total_cents);
