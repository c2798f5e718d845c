-- PostgreSQL's own time for the import's status change of 1,000 transactions, with the
-- statement the SQL store sends (rows as one JSON parameter), rolled back.
-- Run after `BENCH_STORE=postgres DATABASE_URL=… cargo bench -p payments-gateways --bench camt`:
--   psql "$DATABASE_URL" -f payments-gateways/benches/floors/postgres_status.sql
SET search_path TO bench_camt;
BEGIN;
CREATE TEMP TABLE ids AS SELECT id FROM transactions ORDER BY id DESC LIMIT 1000;
EXPLAIN (ANALYZE, BUFFERS, WAL)
UPDATE transactions SET status = 'pending', updated_at = v.v_at,
       provider_ref = COALESCE(v.v_ref, transactions.provider_ref)
FROM (SELECT j.value->>0 AS v_id, j.value->>1 AS v_from, j.value->>2 AS v_ref,
             CAST(j.value->>3 AS BIGINT) AS v_at
      FROM jsonb_array_elements((SELECT jsonb_agg(jsonb_build_array(id, 'paid', 'x', 5)) FROM ids))
           AS j(value)) AS v
WHERE transactions.id = v.v_id AND transactions.status = v.v_from;
ROLLBACK;
