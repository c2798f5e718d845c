//! `transaction_summaries`, which the operator search reads counts and totals from, always
//! equals a recount of the transactions: a property test over random inserts, changes of
//! state, moves in time, changes of total and deletes, each a statement of several rows as the store's bulk
//! paths write them, on SQLite and on PostgreSQL (there, the changes the triggers append
//! are counted before and after they are folded). Times before 1970 are among them. After
//! each case the search's count and total for random periods (bounds on and off the hour)
//! equal those of the rows.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use payments_core::{CreditorId, MethodKind, MovementQuery, Store, TxStatus};
use payments_sqlx::{Dialect, SqlxStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const CREDITORS: [&str; 2] = [
    "00000000-0000-7000-a000-0000000000c1",
    "00000000-0000-7000-a000-0000000000c2",
];
const STATUSES: [TxStatus; 4] = [
    TxStatus::Created,
    TxStatus::Pending,
    TxStatus::Paid,
    TxStatus::Failed,
];
const KINDS: [MethodKind; 3] = [
    MethodKind::Card,
    MethodKind::PagoPa,
    MethodKind::BankTransfer,
];

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).single().unwrap()
}

/// One transaction as the test knows it.
#[derive(Debug, Clone)]
struct Row {
    creditor: usize,
    status: usize,
    kind: usize,
    /// Seconds after `base()`.
    at: i64,
    cents: i64,
}

#[derive(Debug, Clone)]
enum Op {
    /// New transactions, in one multi-row `INSERT`.
    Insert(Vec<Row>),
    /// Some of them changed, in one statement `… WHERE id IN (…)`.
    Change(Vec<prop::sample::Index>, Change),
}

/// What one statement does to the transactions it picks.
#[derive(Debug, Clone)]
enum Change {
    /// Their state set (`UPDATE`).
    Status(usize),
    /// Their creation time moved (`UPDATE`).
    Move(i64),
    /// Their total changed (`UPDATE`: the count stays, the total moves).
    Reprice(i64),
    /// Deleted (`DELETE`).
    Delete,
}

impl Change {
    /// Does to the test's copy of transaction `id` what the statement does.
    fn apply(&self, rows: &mut BTreeMap<String, Row>, id: &str) {
        match self {
            Change::Status(s) => rows.get_mut(id).unwrap().status = *s,
            Change::Move(at) => rows.get_mut(id).unwrap().at = *at,
            Change::Reprice(cents) => rows.get_mut(id).unwrap().cents = *cents,
            Change::Delete => {
                rows.remove(id);
            }
        }
    }

    /// The statement, up to its `WHERE`.
    fn sql(&self) -> String {
        match self {
            Change::Status(s) => format!(
                "UPDATE transactions SET status = '{}'",
                STATUSES[*s].as_str()
            ),
            Change::Move(at) => format!("UPDATE transactions SET created_at = {}", micros(*at)),
            Change::Reprice(cents) => format!("UPDATE transactions SET total_cents = {cents}"),
            Change::Delete => "DELETE FROM transactions".into(),
        }
    }
}

/// Seconds after `base()`: mostly around it, sometimes before 1970 (whose hours round
/// down below zero).
fn at() -> impl Strategy<Value = i64> {
    prop_oneof![
        9 => -7_200..14_400i64,
        1 => -1_772_370_000..-1_772_340_000i64,
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (0..2usize, 0..4usize, 0..3usize, at(), 0..100_000i64).prop_map(
        |(creditor, status, kind, at, cents)| Row {
            creditor,
            status,
            kind,
            at,
            cents,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let picks = || prop::collection::vec(any::<prop::sample::Index>(), 1..8);
    prop_oneof![
        3 => prop::collection::vec(row(), 1..12).prop_map(Op::Insert),
        3 => (picks(), 0..4usize).prop_map(|(p, s)| Op::Change(p, Change::Status(s))),
        1 => (picks(), at()).prop_map(|(p, at)| Op::Change(p, Change::Move(at))),
        1 => (picks(), 0..100_000i64).prop_map(|(p, c)| Op::Change(p, Change::Reprice(c))),
        1 => picks().prop_map(|p| Op::Change(p, Change::Delete)),
    ]
}

/// A search's filters: period bounds in seconds after `base()`, states, method.
type Search = (Option<i64>, Option<i64>, Vec<usize>, Option<usize>);

fn search() -> impl Strategy<Value = Search> {
    let bound = || {
        prop_oneof![
            Just(None),
            // On the hour.
            (-3..5i64).prop_map(|h| Some(h * 3600)),
            // Anywhere.
            (-7_200..14_400i64).prop_map(Some),
        ]
    };
    (
        bound(),
        bound(),
        prop::collection::vec(0..4usize, 0..3),
        prop::option::of(0..3usize),
    )
}

fn micros(at: i64) -> i64 {
    (base() + Duration::seconds(at)).timestamp_micros()
}

/// Applies `ops` with plain SQL, then checks the summaries against a recount and the
/// search against the rows the test holds.
async fn case(store: &SqlxStore, ops: &[Op], searches: &[Search]) -> Result<(), TestCaseError> {
    let pool = store.pool();
    sqlx::query("DELETE FROM transactions")
        .execute(pool)
        .await
        .unwrap();
    let left: Vec<Summary> = sqlx::query_as(sqlx::AssertSqlSafe(summaries(store)))
        .fetch_all(pool)
        .await
        .unwrap();
    prop_assert_eq!(
        left,
        vec![],
        "deleting every transaction empties the summaries"
    );

    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut next = 0u64;
    for op in ops {
        let ids: Vec<String> = rows.keys().cloned().collect();
        let picked = |p: &[prop::sample::Index]| -> Vec<String> {
            if ids.is_empty() {
                return Vec::new();
            }
            let mut v: Vec<String> = p.iter().map(|i| ids[i.index(ids.len())].clone()).collect();
            v.sort();
            v.dedup();
            v
        };
        let in_list = |v: &[String]| {
            v.iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = match op {
            Op::Insert(new) => {
                let values: Vec<String> = new
                    .iter()
                    .map(|r| {
                        next += 1;
                        let id = format!("00000000-0000-7000-8000-{next:012x}");
                        rows.insert(id.clone(), r.clone());
                        format!(
                            "('{id}', '{c}', '00000000-0000-7000-b000-000000000001', 'payer', \
                             '{{\"id\":\"payer\",\"name\":\"Citizen\",\"email\":null,\"fiscal_code\":null,\"locale\":\"it\"}}', \
                             '00000000-0000-7000-a000-0000000000d1', '{k}', 'sandbox', '[]', {cents}, 'EUR', '{s}', NULL, \
                             'key-{next}', NULL, {at}, {at}, {at})",
                            c = CREDITORS[r.creditor],
                            k = KINDS[r.kind].as_str(),
                            cents = r.cents,
                            s = STATUSES[r.status].as_str(),
                            at = micros(r.at),
                        )
                    })
                    .collect();
                format!(
                    "INSERT INTO transactions (id, creditor_id, cart_id, payer_id, payer, method_id, \
                     method_kind, gateway_id, lines, total_cents, currency, status, provider_ref, \
                     idempotency_key, instruction, created_at, updated_at, expires_at) VALUES {}",
                    values.join(", ")
                )
            }
            Op::Change(p, change) => {
                let v = picked(p);
                if v.is_empty() {
                    continue;
                }
                for id in &v {
                    change.apply(&mut rows, id);
                }
                format!("{} WHERE id IN ({})", change.sql(), in_list(&v))
            }
        };
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }

    // The summaries, against a recount of the rows in the database.
    let hour = "(created_at - ((created_at % 3600000000) + 3600000000) % 3600000000) / 3600000000";
    let recount: Vec<Summary> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT creditor_id, status, method_kind, CAST({hour} AS BIGINT), CAST(COUNT(*) AS BIGINT), \
         CAST(SUM(total_cents) AS BIGINT) FROM transactions GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    let kept: Vec<Summary> = sqlx::query_as(sqlx::AssertSqlSafe(summaries(store)))
        .fetch_all(pool)
        .await
        .unwrap();
    prop_assert_eq!(&kept, &recount, "the summaries are a recount");
    prop_assert_eq!(
        recount.iter().map(|r| r.4).sum::<i64>(),
        rows.len() as i64,
        "the database holds the test's rows"
    );

    // The search, against the rows the test holds: before the changes are folded (on
    // PostgreSQL) and after.
    for fold in [false, true] {
        if fold {
            store.fold_summaries().await.unwrap();
            let changes: i64 = match store.dialect() {
                Dialect::Postgres => {
                    sqlx::query_scalar("SELECT COUNT(*) FROM transaction_summary_changes")
                        .fetch_one(pool)
                        .await
                        .unwrap()
                }
                _ => 0,
            };
            prop_assert_eq!(changes, 0, "a fold leaves no change behind");
            let kept: Vec<Summary> = sqlx::query_as(sqlx::AssertSqlSafe(summaries(store)))
                .fetch_all(pool)
                .await
                .unwrap();
            prop_assert_eq!(&kept, &recount, "the folded summaries are a recount");
        }
        searched(store, &rows, searches).await?;
    }
    Ok(())
}

/// A summary row: creditor, state, method, hour, count, total.
type Summary = (String, String, String, i64, i64, i64);

/// The summaries as the search reads them, the changes not yet folded added (PostgreSQL),
/// rows of nothing left out.
fn summaries(store: &SqlxStore) -> String {
    let rows = match store.dialect() {
        Dialect::Postgres => {
            "SELECT * FROM transaction_summaries UNION ALL SELECT * FROM transaction_summary_changes"
        }
        _ => "SELECT * FROM transaction_summaries",
    };
    format!(
        "SELECT creditor_id, status, method_kind, hour, CAST(SUM(n) AS BIGINT), \
         CAST(SUM(total_cents) AS BIGINT) FROM ({rows}) AS s GROUP BY 1, 2, 3, 4 \
         HAVING SUM(n) <> 0 OR SUM(total_cents) <> 0 ORDER BY 1, 2, 3, 4"
    )
}

/// Each search's count and total equal those of the rows the test holds.
async fn searched(
    store: &SqlxStore,
    rows: &BTreeMap<String, Row>,
    searches: &[Search],
) -> Result<(), TestCaseError> {
    for (from, to, statuses, kind) in searches {
        for (c, creditor) in CREDITORS.iter().enumerate() {
            let q = MovementQuery {
                from: from.map(|s| base() + Duration::seconds(s)),
                to: to.map(|s| base() + Duration::seconds(s)),
                statuses: statuses.iter().map(|s| STATUSES[*s]).collect(),
                method_kind: kind.map(|k| KINDS[k]),
                limit: 1,
                ..MovementQuery::new(creditor.parse::<CreditorId>().unwrap())
            };
            let selected: Vec<&Row> = rows
                .values()
                .filter(|r| {
                    r.creditor == c
                        && from.is_none_or(|f| r.at >= f)
                        && to.is_none_or(|t| r.at < t)
                        && (statuses.is_empty() || statuses.contains(&r.status))
                        && kind.is_none_or(|k| r.kind == k)
                })
                .collect();
            let page = store.search(&q).await.unwrap();
            prop_assert_eq!(page.count, selected.len() as u64, "count of {:?}", q);
            prop_assert_eq!(
                page.total.minor_units(),
                selected.iter().map(|r| r.cents).sum::<i64>(),
                "total of {:?}",
                q
            );
        }
    }
    Ok(())
}

fn run(make: impl std::future::Future<Output = SqlxStore>, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(make);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(op(), 1..12),
        prop::collection::vec(search(), 1..6),
    );
    runner
        .run(&strategy, |(ops, searches)| {
            rt.block_on(case(&store, &ops, &searches))
        })
        .unwrap();
}

#[test]
fn summaries_equal_a_recount_on_sqlite() {
    run(common::sqlite(), 64);
}

#[test]
fn summaries_equal_a_recount_on_postgres() {
    let Some(url) = common::postgres_url("summaries_equal_a_recount_on_postgres") else {
        return;
    };
    run(common::postgres(&url), 32);
}
