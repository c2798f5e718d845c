-- The operator's search at scale.
--
-- Counts and totals: one row per creditor, state, method and hour of creation (hours since
-- 1970, rounded down, from `created_at` in microseconds) holds how many transactions it has
-- and their total. A search by state, method and period adds the whole hours from here and
-- counts only the rows of its first and last partial hours.
--
-- Writers never update those rows: statement triggers append what each statement changed
-- to `transaction_summary_changes` (insert only, so concurrent payments never wait for one
-- another there, nor lock summary rows in different orders), in the same database
-- transaction as the change. Searches add the changes to the summaries, and fold them in
-- (`SqlxStore::fold_summaries`, one statement) once they have read more than a few hundred.
--
-- The table is locked first, so that no row is written between the filling of the
-- summaries below and the creation of the triggers.
LOCK TABLE transactions IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE transaction_summaries (
    creditor_id TEXT NOT NULL,
    status TEXT NOT NULL,
    method_kind TEXT NOT NULL,
    hour BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total_cents BIGINT NOT NULL,
    PRIMARY KEY (creditor_id, status, method_kind, hour)
);

CREATE TABLE transaction_summary_changes (
    creditor_id TEXT NOT NULL,
    status TEXT NOT NULL,
    method_kind TEXT NOT NULL,
    hour BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total_cents BIGINT NOT NULL
);
CREATE INDEX transaction_summary_changes_key
    ON transaction_summary_changes (creditor_id, status, method_kind, hour);

INSERT INTO transaction_summaries (creditor_id, status, method_kind, hour, n, total_cents)
SELECT creditor_id, status, method_kind,
       (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
       COUNT(*), SUM(total_cents)
FROM transactions GROUP BY 1, 2, 3, 4;

-- Statement-level triggers: a statement that changes a thousand transactions (a chunk of a
-- bank statement) appends one change per summary row it touches.
CREATE FUNCTION transaction_summaries_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO transaction_summary_changes (creditor_id, status, method_kind, hour, n, total_cents)
        SELECT creditor_id, status, method_kind,
               (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
               COUNT(*), SUM(total_cents)
        FROM new_rows GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO transaction_summary_changes (creditor_id, status, method_kind, hour, n, total_cents)
        SELECT creditor_id, status, method_kind, hour, SUM(dn), SUM(dt)
        FROM (
            SELECT creditor_id, status, method_kind, created_at, 1 AS dn, total_cents AS dt
            FROM new_rows
            UNION ALL
            SELECT creditor_id, status, method_kind, created_at, -1, -total_cents
            FROM old_rows
        ) AS d (creditor_id, status, method_kind, created_at, dn, dt),
        LATERAL (SELECT (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000) AS h (hour)
        GROUP BY 1, 2, 3, 4 HAVING SUM(dn) <> 0 OR SUM(dt) <> 0;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO transaction_summary_changes (creditor_id, status, method_kind, hour, n, total_cents)
        SELECT creditor_id, status, method_kind,
               (created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000,
               -COUNT(*), -SUM(total_cents)
        FROM old_rows GROUP BY 1, 2, 3, 4;
    ELSE
        -- TRUNCATE: nothing is left to count.
        DELETE FROM transaction_summary_changes;
        DELETE FROM transaction_summaries;
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
CREATE TRIGGER transactions_summary_truncate AFTER TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION transaction_summaries_apply();

-- Pages go newest first by creation time (then id), so a period's first page starts at its
-- end instead of stepping over every later row. Each index below serves a search or a
-- sweep; BENCHMARKS.md says which. Replaced: the pages' and counts' indexes of the search
-- (now one, with `created_at` before `id`), the creditor's indexes by id and by creation
-- time (now one), by state (now with `created_at`), by method (a method alone is a third
-- of the rows: the creditor's index by creation time finds a page at once) and by payer
-- (`transactions_payer` finds a payer's few transactions). Fewer indexes also mean fewer
-- index entries written by each change of state: PostgreSQL writes one in every index of
-- the table when an indexed column such as `status` changes. These indexes are built
-- while the table is locked: on a large table, plan the migration for a quiet hour.
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
