//! `cargo bench -p payments-sqlx`: the store's speed beside a floor measured in the same run.
//!
//! 1. The full flow (add 3 items, checkout, signed callback to `Paid`, outbox rows written)
//!    in flows per second through the library, beside the same rows inserted and updated
//!    with plain sqlx statements in the same number of database transactions.
//! 2. Export of N transactions of 3 items (N = `BENCH_TRANSACTIONS`, 1,000,000 by default)
//!    to CSV: rows per second and peak memory, beside `sqlite3 -csv` (and `psql \copy` on
//!    PostgreSQL) exporting the same join from the same database.
//! 3. Operator search with three filters over those transactions: median and 99th
//!    percentile latency of a first page and of a deep page, with the selection's count and
//!    total.
//!
//! Each measure is repeated `BENCH_RUNS` times (5 by default, at least 5; the flow, whose
//! run takes about a second, 11 times unless `BENCH_RUNS` asks for more), the library and
//! its floor alternating, and printed as median (min to max); a ratio is the median of the
//! runs' ratios. SQLite always; PostgreSQL too when `DATABASE_URL` is a `postgres://` URL.
//! `BENCH_LARGE=1` adds the search over 10,000,000 transactions on PostgreSQL (generating
//! them takes a long while the first time); `BENCH_ONLY_SEARCH=1` measures only the
//! searches, `BENCH_ONLY_FLOW=1` only the flow, `BENCH_SKIP_FLOW=1` all but the flow.
//! `BENCH_FLOW_STATEMENTS=1` first prints the statements a flow makes, library and floor,
//! with sqlx's time for each kind (`BENCH_FLOW_STATEMENTS=n`: n such runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use payments_core::testing::{Fixture, Spread};
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;
use payments_sqlx::{Dialect, ExportFormat, SqliteSync, SqlxStore};
use sqlx::{Executor, Row};

const CREDITOR: &str = "00000000-0000-7000-a000-0000000000c1";
const FLOWS: usize = 300;
const SEARCH_RUNS: usize = 200;

/// How many times the flow is repeated at least.
const FLOW_RUNS: usize = 11;

/// How many times each measure is repeated: `BENCH_RUNS`, at least 5.
fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(5)
}

fn main() {
    // The export, measured in a child process so its peak memory is its own.
    if let Ok(url) = std::env::var("BENCH_EXPORT_CHILD") {
        return export_child(&url);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n: u64 = std::env::var("BENCH_TRANSACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&dir).unwrap();

    println!(
        "# payments-sqlx benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let flow_db = dir.join("flow.db");
    // Both flow databases are new at each run (the `synchronous = NORMAL` one too).
    for db in ["flow.db", "flow.db.normal"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{db}{suffix}")));
        }
    }
    let sqlite_flow = format!("sqlite://{}", flow_db.display());
    let only_search = std::env::var("BENCH_ONLY_SEARCH").is_ok();
    let with_flow = std::env::var("BENCH_SKIP_FLOW").is_err() && !only_search;
    let only_flow = std::env::var("BENCH_ONLY_FLOW").is_ok();
    if with_flow {
        rt.block_on(flow(&sqlite_flow, Dialect::Sqlite));
    }
    if only_flow {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && url.starts_with("postgres")
        {
            let flow_url = rt.block_on(schema_url(&url, "bench_flow", true));
            rt.block_on(flow(&flow_url, Dialect::Postgres));
        }
        return;
    }
    let data_db = dir.join(format!("data-{n}.db"));
    let sqlite_data = format!("sqlite://{}", data_db.display());
    rt.block_on(generate(&sqlite_data, n));
    if !only_search {
        export(&sqlite_data, n, Floor::Sqlite3(&data_db));
    }
    rt.block_on(search(&sqlite_data, n, 20.0));

    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let flow_url = rt.block_on(schema_url(&url, "bench_flow", true));
            if with_flow {
                rt.block_on(flow(&flow_url, Dialect::Postgres));
            }
            let data_url = rt.block_on(schema_url(&url, &format!("bench_data_{n}"), false));
            rt.block_on(generate(&data_url, n));
            if !only_search {
                export(&data_url, n, Floor::Psql(&url, &format!("bench_data_{n}")));
            }
            rt.block_on(search(&data_url, n, 20.0));
            if std::env::var("BENCH_LARGE").is_ok() {
                let large = 10_000_000;
                let large_url =
                    rt.block_on(schema_url(&url, &format!("bench_data_{large}"), false));
                rt.block_on(generate(&large_url, large));
                rt.block_on(search(&large_url, large, 50.0));
            }
        }
        _ => println!("\nPostgreSQL: SKIPPED (set DATABASE_URL=postgres://… to measure it)"),
    }
}

/// A URL whose connections use `schema` (dropped first when `fresh`).
async fn schema_url(url: &str, schema: &str, fresh: bool) -> String {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    if fresh {
        pool.execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .await
        .unwrap();
    }
    pool.execute(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .await
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99))
}

// ------------------------------------------------------------------------------------ profile

/// Every statement sqlx runs while on (its `sqlx::query` log records' summaries): the
/// flow's profile of round trips, library against floor.
struct Statements {
    on: std::sync::atomic::AtomicBool,
    seen: std::sync::Mutex<Vec<(String, f64)>>,
}

static STATEMENTS: Statements = Statements {
    on: std::sync::atomic::AtomicBool::new(false),
    seen: std::sync::Mutex::new(Vec::new()),
};

impl log::Log for Statements {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query" && self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        // `summary="SELECT … FROM t …" db.statement=…`: the kind and the first table.
        let summary = text
            .split("summary=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or(&text);
        let short: String = summary
            .split_whitespace()
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        // sqlx's own measure of the statement, from its start to its last row.
        let elapsed = text
            .split("elapsed_secs=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        self.seen.lock().unwrap().push((short, elapsed));
    }

    fn flush(&self) {}
}

/// Runs `f` and answers the statements it made, by kind, most frequent first: how many
/// and their seconds in all; and `f`'s own time.
async fn statements_of<F: std::future::Future>(f: F) -> (Vec<(String, usize, f64)>, Duration) {
    STATEMENTS.seen.lock().unwrap().clear();
    STATEMENTS
        .on
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    f.await;
    let took = started.elapsed();
    STATEMENTS
        .on
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let mut by_kind = std::collections::BTreeMap::<String, (usize, f64)>::new();
    for (s, secs) in STATEMENTS.seen.lock().unwrap().drain(..) {
        let e = by_kind.entry(s).or_default();
        e.0 += 1;
        e.1 += secs;
    }
    let mut v: Vec<(String, usize, f64)> =
        by_kind.into_iter().map(|(k, (n, t))| (k, n, t)).collect();
    v.sort_by_key(|(k, n, _)| (std::cmp::Reverse(*n), k.clone()));
    (v, took)
}

/// Prints the statements a flow makes, library and floor (`BENCH_FLOW_STATEMENTS=1`):
/// how many of each kind, and the time sqlx measured for them, beside the flow's.
async fn profile_flow(url: &str, dialect: Dialect) {
    let _ = log::set_logger(&STATEMENTS);
    log::set_max_level(log::LevelFilter::Trace);
    let mut fixture = None;
    let library = statements_of(async {
        fixture = Some(library_flows(url, SqliteSync::Full).await.2);
    })
    .await;
    let fx = fixture.unwrap();
    let floor = statements_of(async {
        floor_flows(url, &fx, dialect).await;
    })
    .await;
    for (name, (list, took)) in [("library", library), ("floor", floor)] {
        // Kinds seen less than once every other flow are the set-up's (migrations, the
        // fixture), not the flow's.
        let (flow, setup): (Vec<_>, Vec<_>) =
            list.into_iter().partition(|(_, n, _)| *n >= FLOWS / 2);
        let total: usize = flow.iter().map(|(_, n, _)| n).sum();
        let secs: f64 = flow.iter().map(|(_, _, t)| t).sum();
        let per = |x: f64| x * 1000.0 / FLOWS as f64;
        println!(
            "statements a flow, {name}: {:.1}, {:.2} ms of {:.2} ms a flow (and {} of set-up)",
            total as f64 / FLOWS as f64,
            per(secs),
            per(took.as_secs_f64()),
            setup.iter().map(|(_, n, _)| n).sum::<usize>()
        );
        for (kind, n, t) in flow {
            println!(
                "  {:>5.2}  {:>6.3} ms  {kind}",
                n as f64 / FLOWS as f64,
                per(t)
            );
        }
    }
}

// ------------------------------------------------------------------------------------ flow

/// A flow's three phases: the cart and its items, the checkout (with the start), the
/// payment (the callback).
type Phases = [Duration; 3];

/// `FLOWS` flows through the library on a store at `url`: their time, the phases', and
/// the fixture.
async fn library_flows(url: &str, sync: SqliteSync) -> (Duration, Phases, Fixture) {
    let store = Arc::new(
        SqlxStore::builder(url)
            .with_max_connections(4)
            .with_sqlite_sync(sync)
            .build()
            .await
            .unwrap(),
    );
    let sandbox = Arc::new(SandboxGateway::new("bench-key"));
    let payments = Payments::builder()
        .store(store.clone())
        .gateway(sandbox.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    let card = fx.method(MethodKind::Card).id;
    // Each run its own payers: a payer's idempotency key is unique across creditors.
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut phases = Phases::default();
    let started = Instant::now();
    for n in 0..FLOWS {
        let t0 = Instant::now();
        let payer = format!("payer{run}-{n}");
        let actor = Actor::payer(payer.as_str());
        let cart = payments
            .open_cart(&actor, fx.creditor.id, Fixture::payer(&payer))
            .await
            .unwrap();
        for i in 0..3 {
            let item = NewItem::new(
                Source::new("tributi", format!("{n}-{i}")),
                fx.tari.id,
                "TARI",
                Money::parse_eur("10.50").unwrap(),
            )
            .with_extra("year", "2026");
            payments.add_item(&actor, cart.id, item).await.unwrap();
        }
        let t1 = Instant::now();
        let c = payments.checkout(&actor, cart.id, card, "k").await.unwrap();
        let t2 = Instant::now();
        let Instruction::Redirect { url, .. } = &c.instruction else {
            unreachable!()
        };
        let cb = sandbox
            .complete(url.rsplit('/').next().unwrap(), PaymentOutcome::Paid)
            .unwrap();
        assert!(
            payments
                .handle_callback("sandbox", &cb)
                .await
                .unwrap()
                .applied
        );
        phases[0] += t1 - t0;
        phases[1] += t2 - t1;
        phases[2] += t2.elapsed();
    }
    let elapsed = started.elapsed();
    store.close().await;
    (elapsed, phases, fx)
}

async fn flow(url: &str, dialect: Dialect) {
    let name = if dialect == Dialect::Sqlite {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    // A run of the flow is short, and one run's ratio moves by a tenth on a shared
    // machine: more runs make the median hold.
    let runs = runs().max(FLOW_RUNS);
    println!(
        "\n## {name}: full flow, {FLOWS} flows one after another, {runs} runs \
         (library, then floor, then on SQLite the library with synchronous = NORMAL; \
         the database is new at the first run and grows by {FLOWS} flows a run)"
    );
    // `BENCH_FLOW_STATEMENTS=n`: n profiled runs (1 for any other value).
    if let Ok(v) = std::env::var("BENCH_FLOW_STATEMENTS") {
        for _ in 0..v.parse::<usize>().unwrap_or(1).max(1) {
            profile_flow(url, dialect).await;
        }
    }
    let per_flow = |d: Duration| d.as_secs_f64() * 1000.0 / FLOWS as f64;
    let [
        mut library,
        mut floor,
        mut normal,
        mut ratio,
        mut normal_ratio,
    ]: [Spread; 5] = Default::default();
    let [mut library_phases, mut floor_phases]: [[Spread; 3]; 2] = Default::default();
    for _ in 0..runs {
        let (l, lp, fx) = library_flows(url, SqliteSync::Full).await;
        let (f, fp) = floor_flows(url, &fx, dialect).await;
        for (i, (a, b)) in lp.iter().zip(fp.iter()).enumerate() {
            library_phases[i].push(per_flow(*a));
            floor_phases[i].push(per_flow(*b));
        }
        library.push(per_flow(l));
        floor.push(per_flow(f));
        ratio.push(l.as_secs_f64() / f.as_secs_f64());
        // On SQLite, the price of durability: the same flows with `synchronous = NORMAL`,
        // on a file of their own.
        if dialect == Dialect::Sqlite {
            let path = url.trim_start_matches("sqlite://").to_owned() + ".normal";
            let (d, _, _) = library_flows(&format!("sqlite://{path}"), SqliteSync::Normal).await;
            normal.push(per_flow(d));
            normal_ratio.push(d.as_secs_f64() / f.as_secs_f64());
        }
    }
    println!("library: {} ms a flow", library.show(2));
    println!(
        "floor:   {} ms a flow (plain sqlx: the same rows and bytes, 7 transactions, the same pool policy)",
        floor.show(2)
    );
    println!(
        "ratio:   {}x the floor's time (target: at most 1.2x)",
        ratio.show(2)
    );
    for (i, phase) in ["the cart and its items", "the checkout", "the payment"]
        .iter()
        .enumerate()
    {
        println!(
            "  {phase}: library {} ms, floor {} ms",
            library_phases[i].show(2),
            floor_phases[i].show(2)
        );
    }
    if normal.runs() > 0 {
        println!(
            "library with synchronous = NORMAL: {} ms a flow, {}x the floor's time: \
             what synchronous = FULL, the default, costs",
            normal.show(2),
            normal_ratio.show(2)
        );
    }
}

/// What the library wrote in its last flow, which the floor writes again: the same bytes
/// in every column that is not an id or a time (the payer, the lines, the instruction,
/// the provider's reference, each event's actor and note, the five messages' payloads).
struct Written {
    payer: String,
    lines: String,
    instruction: String,
    provider_ref: String,
    /// Per event (created, pending, paid): actor and note.
    events: Vec<(String, Option<String>)>,
    payloads: Vec<String>,
    extra: String,
}

impl Written {
    async fn read(pool: &sqlx::AnyPool, creditor: &str) -> Written {
        let tx = sqlx::query(
            "SELECT id, payer, lines, instruction, provider_ref FROM transactions \
             WHERE creditor_id = $1 AND payer_id LIKE 'payer%' ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(creditor)
        .fetch_one(pool)
        .await
        .unwrap();
        let id: String = tx.get("id");
        let events = sqlx::query(
            "SELECT actor, note FROM transaction_events WHERE transaction_id = $1 ORDER BY id",
        )
        .bind(&id)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("actor"), r.get("note")))
        .collect::<Vec<_>>();
        let payloads: Vec<String> =
            sqlx::query_scalar("SELECT payload FROM outbox WHERE transaction_id = $1 ORDER BY id")
                .bind(&id)
                .fetch_all(pool)
                .await
                .unwrap();
        let extra: String =
            sqlx::query_scalar("SELECT extra FROM items WHERE transaction_id = $1 LIMIT 1")
                .bind(&id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(
            (events.len(), payloads.len()),
            (3, 5),
            "a flow is three events and five messages"
        );
        Written {
            payer: tx.get("payer"),
            lines: tx.get("lines"),
            instruction: tx.get("instruction"),
            provider_ref: tx.get("provider_ref"),
            events,
            payloads,
            extra,
        }
    }
}

/// The floor of the flow: the same rows written with plain statements of the same shapes,
/// in the same 7 database transactions per flow (cart, 3 items, checkout, start, payment),
/// with the same bytes as the library's last flow (see [`Written`]), through a pool that
/// checks connections as the library's does, for `FLOWS` flows; their time.
async fn floor_flows(url: &str, fx: &Fixture, dialect: Dialect) -> (Duration, Phases) {
    let card = fx.method(MethodKind::Card).id;
    // The library's pool policy (a connection is checked only after a second idle), so
    // that the two make the same round trips to hand out a connection.
    let pool = payments_sqlx::check_idle_connections(sqlx::any::AnyPoolOptions::new())
        .connect(url)
        .await
        .unwrap();
    let begin = if dialect == Dialect::Sqlite {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    };
    let creditor = fx.creditor.id.to_string();
    let tari = fx.tari.id.to_string();
    let w = Written::read(&pool, &creditor).await;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut phases = Phases::default();
    let started = Instant::now();
    for n in 0..FLOWS {
        let t0 = Instant::now();
        let now = Utc::now().timestamp_micros();
        let cart = uuid::Uuid::now_v7().to_string();
        let payer = format!("floor{run}-{n}");
        sqlx::query("INSERT INTO carts (id, creditor_id, payer_id, payer, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&cart).bind(&creditor).bind(&payer).bind(&w.payer).bind(now)
            .execute(&pool).await.unwrap();
        let mut items = Vec::new();
        for i in 0..3 {
            let id = uuid::Uuid::now_v7().to_string();
            sqlx::query("INSERT INTO items (id, creditor_id, cart_id, payer_id, module, source_key, payment_type_id, reason, amount_cents, currency, due_date, extra, state, transaction_id, created_at) VALUES ($1, $2, $3, $4, 'tributi', $5, $6, 'TARI', 1050, 'EUR', NULL, $7, 'open', NULL, $8)")
                .bind(&id).bind(&creditor).bind(&cart).bind(&payer).bind(format!("floor-{run}-{n}-{i}")).bind(&tari).bind(&w.extra).bind(now)
                .execute(&pool).await.unwrap();
            items.push(id);
        }
        let t1 = Instant::now();
        let mut t2 = t1;
        let tx_id = uuid::Uuid::now_v7().to_string();
        let mut tx = pool.begin_with(begin).await.unwrap();
        sqlx::query("INSERT INTO transactions (id, creditor_id, cart_id, payer_id, payer, method_id, method_kind, gateway_id, lines, total_cents, currency, status, provider_ref, idempotency_key, instruction, created_at, updated_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'card', 'sandbox', $7, 3150, 'EUR', 'created', NULL, 'k', NULL, $8, $8, $8)")
            .bind(&tx_id).bind(&creditor).bind(&cart).bind(&payer).bind(&w.payer).bind(card.to_string()).bind(&w.lines).bind(now)
            .execute(&mut *tx).await.unwrap();
        sqlx::query("UPDATE items SET state = 'locked', transaction_id = $1 WHERE cart_id = $2 AND state = 'open' AND id IN ($3, $4, $5)")
            .bind(&tx_id).bind(&cart).bind(&items[0]).bind(&items[1]).bind(&items[2])
            .execute(&mut *tx).await.unwrap();
        let mut lines = sqlx::query("INSERT INTO transaction_lines (transaction_id, position, item_id, module, source_key, payment_type_id, reason, amount_cents) VALUES ($1, 0, $2, 'tributi', $5, $3, 'TARI', 1050), ($1, 1, $4, 'tributi', $6, $3, 'TARI', 1050), ($1, 2, $7, 'tributi', $8, $3, 'TARI', 1050)")
            .bind(&tx_id).bind(&items[0]).bind(&tari);
        lines = lines
            .bind(&items[1])
            .bind(format!("floor-{run}-{n}-0"))
            .bind(format!("floor-{run}-{n}-1"))
            .bind(&items[2])
            .bind(format!("floor-{run}-{n}-2"));
        lines.execute(&mut *tx).await.unwrap();
        floor_event(&mut tx, &tx_id, None, "created", None, &w.events[0], now).await;
        tx.commit().await.unwrap();
        for (step, (from, to)) in [("created", "pending"), ("pending", "paid")]
            .into_iter()
            .enumerate()
        {
            let mut tx = pool.begin_with(begin).await.unwrap();
            sqlx::query("UPDATE transactions SET status = $1, updated_at = $2, provider_ref = COALESCE($3, provider_ref), instruction = COALESCE($4, instruction), expires_at = COALESCE($5, expires_at) WHERE id = $6 AND status = $7")
                .bind(to)
                .bind(now)
                .bind(&w.provider_ref)
                .bind((to == "pending").then_some(&w.instruction))
                .bind((to == "pending").then_some(now))
                .bind(&tx_id)
                .bind(from)
                .execute(&mut *tx).await.unwrap();
            if to == "paid" {
                sqlx::query("UPDATE items SET state = 'paid' WHERE transaction_id = $1 AND state = 'locked'")
                    .bind(&tx_id).execute(&mut *tx).await.unwrap();
            }
            floor_event(
                &mut tx,
                &tx_id,
                Some(from),
                to,
                Some(&w.provider_ref),
                &w.events[step + 1],
                now,
            )
            .await;
            if to == "paid" {
                let mut outbox = sqlx::query(
                    "INSERT INTO outbox (id, transaction_id, creditor_id, payload, status, attempts, next_attempt_at, last_error, created_at, delivered_at) VALUES ($1, $6, $7, $9, 'pending', 0, $8, NULL, $8, NULL), ($2, $6, $7, $10, 'pending', 0, $8, NULL, $8, NULL), ($3, $6, $7, $11, 'pending', 0, $8, NULL, $8, NULL), ($4, $6, $7, $12, 'pending', 0, $8, NULL, $8, NULL), ($5, $6, $7, $13, 'pending', 0, $8, NULL, $8, NULL)",
                );
                for _ in 0..5 {
                    outbox = outbox.bind(uuid::Uuid::now_v7().to_string());
                }
                outbox = outbox.bind(&tx_id).bind(&creditor).bind(now);
                for payload in &w.payloads {
                    outbox = outbox.bind(payload);
                }
                outbox.execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
            if to == "pending" {
                // The start ends the checkout; the payment follows.
                t2 = Instant::now();
            }
        }
        phases[0] += t1 - t0;
        phases[1] += t2 - t1;
        phases[2] += t2.elapsed();
    }
    let elapsed = started.elapsed();
    pool.close().await;
    (elapsed, phases)
}

async fn floor_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tx_id: &str,
    from: Option<&str>,
    to: &str,
    provider_ref: Option<&str>,
    (actor, note): &(String, Option<String>),
    now: i64,
) {
    sqlx::query("INSERT INTO transaction_events (id, transaction_id, at, actor, from_status, to_status, provider_ref, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(uuid::Uuid::now_v7().to_string()).bind(tx_id).bind(now).bind(actor).bind(from).bind(to).bind(provider_ref).bind(note)
        .execute(&mut **tx).await.unwrap();
}

// ------------------------------------------------------------------------------------ data

/// Fills the database with `n` transactions of 3 items each, unless it holds them already.
async fn generate(url: &str, n: u64) {
    let store = SqlxStore::connect(url).await.unwrap();
    let pool = store.pool();
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM transactions")
        .fetch_one(pool)
        .await
        .unwrap();
    if have as u64 == n {
        println!("\n{n} transactions already in place");
        return;
    }
    println!("\ngenerating {n} transactions of 3 items…");
    let started = Instant::now();
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap()
        .timestamp_micros();
    let lines = lines_json(store.dialect());
    let (tx_sql, lines_sql) = match store.dialect() {
        Dialect::Sqlite => (
            format!(
                "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < {n}) \
                 INSERT INTO transactions SELECT printf('00000000-0000-7000-8000-%012x', n), '{CREDITOR}', \
                 printf('00000000-0000-7000-b000-%012x', n), printf('payer%d', n % 10000), \
                 printf('{{\"id\":\"payer%d\",\"name\":\"Citizen %d\",\"email\":null,\"fiscal_code\":null,\"locale\":\"it\"}}', n % 10000, n % 10000), \
                 '00000000-0000-7000-a000-0000000000d1', CASE n % 3 WHEN 0 THEN 'card' WHEN 1 THEN 'bank_transfer' ELSE 'pago_pa' END, 'sandbox', \
                 {lines}, \
                 1000 + n % 500 + 250 + n % 100 + 5000, 'EUR', CASE n % 4 WHEN 1 THEN 'pending' WHEN 2 THEN 'failed' ELSE 'paid' END, \
                 printf('prv-%d', n), printf('key-%d', n), NULL, {base} + n * 1000000, {base} + n * 1000000, {base} + n * 1000000 + 1800000000 FROM seq"
            ),
            format!(
                "WITH RECURSIVE seq(m) AS (SELECT 0 UNION ALL SELECT m + 1 FROM seq WHERE m + 1 < {n} * 3) \
                 INSERT INTO transaction_lines SELECT printf('00000000-0000-7000-8000-%012x', m / 3), m % 3, \
                 printf('00000000-0000-7000-9000-%012x', m), CASE (m / 3 + m % 3) % 5 WHEN 0 THEN 'tributi' WHEN 1 THEN 'edilizia' WHEN 2 THEN 'anagrafe' WHEN 3 THEN 'scuola' ELSE 'cimiteri' END, \
                 printf('k%d', m), printf('00000000-0000-7000-a000-00000000000%d', m % 3 + 1), printf('Voce %d', m), \
                 CASE m % 3 WHEN 0 THEN 1000 + (m / 3) % 500 WHEN 1 THEN 250 + (m / 3) % 100 ELSE 5000 END FROM seq"
            ),
        ),
        _ => (
            format!(
                "INSERT INTO transactions SELECT '00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'), '{CREDITOR}', \
                 '00000000-0000-7000-b000-' || lpad(to_hex(n), 12, '0'), 'payer' || (n % 10000), \
                 format('{{\"id\":\"payer%s\",\"name\":\"Citizen %s\",\"email\":null,\"fiscal_code\":null,\"locale\":\"it\"}}', n % 10000, n % 10000), \
                 '00000000-0000-7000-a000-0000000000d1', CASE n % 3 WHEN 0 THEN 'card' WHEN 1 THEN 'bank_transfer' ELSE 'pago_pa' END, 'sandbox', \
                 {lines}, \
                 1000 + n % 500 + 250 + n % 100 + 5000, 'EUR', CASE n % 4 WHEN 1 THEN 'pending' WHEN 2 THEN 'failed' ELSE 'paid' END, \
                 'prv-' || n, 'key-' || n, NULL, {base} + n * 1000000, {base} + n * 1000000, {base} + n * 1000000 + 1800000000 \
                 FROM generate_series(0::bigint, {n} - 1) AS n"
            ),
            format!(
                "INSERT INTO transaction_lines SELECT '00000000-0000-7000-8000-' || lpad(to_hex(m / 3), 12, '0'), m % 3, \
                 '00000000-0000-7000-9000-' || lpad(to_hex(m), 12, '0'), CASE (m / 3 + m % 3) % 5 WHEN 0 THEN 'tributi' WHEN 1 THEN 'edilizia' WHEN 2 THEN 'anagrafe' WHEN 3 THEN 'scuola' ELSE 'cimiteri' END, \
                 'k' || m, '00000000-0000-7000-a000-00000000000' || (m % 3 + 1), 'Voce ' || m, \
                 CASE m % 3 WHEN 0 THEN 1000 + (m / 3) % 500 WHEN 1 THEN 250 + (m / 3) % 100 ELSE 5000 END \
                 FROM generate_series(0::bigint, {n} * 3 - 1) AS m"
            ),
        ),
    };
    pool.execute("DELETE FROM transaction_lines").await.unwrap();
    pool.execute("DELETE FROM transactions").await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(tx_sql)).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(lines_sql)).await.unwrap();
    let analyze = if store.dialect() == Dialect::Sqlite {
        "ANALYZE"
    } else {
        "VACUUM ANALYZE transactions"
    };
    pool.execute(analyze).await.unwrap();
    if store.dialect() == Dialect::Postgres {
        pool.execute("VACUUM ANALYZE transaction_lines")
            .await
            .unwrap();
    }
    println!("generated in {:.1} s", started.elapsed().as_secs_f64());
}

/// The SQL expression of a generated transaction's `lines` column: the same three items as
/// its rows in `transaction_lines` (item `3n + i`, module `(n + i) % 5`, type `i + 1`).
fn lines_json(dialect: Dialect) -> String {
    let modules = "CASE (n + {i}) % 5 WHEN 0 THEN 'tributi' WHEN 1 THEN 'edilizia' WHEN 2 THEN 'anagrafe' WHEN 3 THEN 'scuola' ELSE 'cimiteri' END";
    let amount = |i: usize| match i {
        0 => "(1000 + n % 500)",
        1 => "(250 + n % 100)",
        _ => "5000",
    };
    let parts: Vec<String> = (0..3)
        .map(|i| {
            let module = modules.replace("{i}", &i.to_string());
            let a = amount(i);
            match dialect {
                Dialect::Sqlite => format!(
                    "printf('{{\"item_id\":\"00000000-0000-7000-9000-%012x\",\"source\":{{\"module\":\"%s\",\"key\":\"k%d\"}},\"payment_type_id\":\"00000000-0000-7000-a000-00000000000{t}\",\"reason\":\"Voce %d\",\"amount\":{{\"amount\":\"%d.%02d\",\"currency\":\"EUR\"}}}}', n * 3 + {i}, {module}, n * 3 + {i}, n * 3 + {i}, {a} / 100, {a} % 100)",
                    t = i + 1
                ),
                _ => format!(
                    "format('{{\"item_id\":\"00000000-0000-7000-9000-%s\",\"source\":{{\"module\":\"%s\",\"key\":\"k%s\"}},\"payment_type_id\":\"00000000-0000-7000-a000-00000000000{t}\",\"reason\":\"Voce %s\",\"amount\":{{\"amount\":\"%s.%s\",\"currency\":\"EUR\"}}}}', lpad(to_hex(n * 3 + {i}), 12, '0'), {module}, n * 3 + {i}, n * 3 + {i}, {a} / 100, lpad(({a} % 100)::text, 2, '0'))",
                    t = i + 1
                ),
            }
        })
        .collect();
    match dialect {
        Dialect::Sqlite => format!("'[' || {} || ']'", parts.join(" || ',' || ")),
        _ => format!("'[' || {} || ']'", parts.join(" || ',' || ")),
    }
}

// ------------------------------------------------------------------------------------ export

enum Floor<'a> {
    Sqlite3(&'a Path),
    Psql(&'a str, &'a str),
}

/// The query the floor runs: the same join, the same order, the same columns' data.
const FLOOR_SQL: &str = "SELECT t.id, t.created_at, t.updated_at, t.status, t.method_kind, t.provider_ref, t.payer, \
     t.total_cents, t.currency, l.position, l.item_id, l.module, l.source_key, l.payment_type_id, l.reason, \
     l.amount_cents FROM transactions t JOIN transaction_lines l ON l.transaction_id = t.id \
     WHERE t.creditor_id = '00000000-0000-7000-a000-0000000000c1' ORDER BY t.created_at DESC, t.id DESC, l.position";

const FORMATS: [&str; 3] = ["CSV", "XLSX", "JSON lines"];

fn export(url: &str, n: u64, floor: Floor<'_>) {
    let runs = runs();
    let floor_name = match floor {
        Floor::Sqlite3(_) => "sqlite3 -csv",
        Floor::Psql(..) => "psql \\copy",
    };
    println!(
        "\n## export of {n} transactions × 3 items, {runs} runs (each: CSV, the floor \
         ({floor_name}), XLSX, JSON lines; the library in a child process of its own; the \
         database's cache warm after the first)"
    );
    let rows = n * 3;
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    let mut speed: [Spread; 3] = Default::default();
    let mut peak: [Spread; 3] = Default::default();
    let mut ratio: [Spread; 3] = Default::default();
    let mut floor_speed = Spread::default();
    let mut floor_failed = false;
    for _ in 0..runs {
        let mut times = [Duration::ZERO; 3];
        let mut floor_time = None;
        for (i, format) in FORMATS.iter().enumerate() {
            let (d, peak_kib) = export_once(url, format, rows);
            times[i] = d;
            speed[i].push(rate(d));
            peak[i].push(peak_kib as f64 / 1024.0);
            if i == 0 {
                floor_time = run_floor(&floor);
            }
        }
        match floor_time {
            Some(f) => {
                floor_speed.push(rate(f));
                for i in 0..3 {
                    ratio[i].push(f.as_secs_f64() / times[i].as_secs_f64());
                }
            }
            None => floor_failed = true,
        }
    }
    for (i, format) in FORMATS.iter().enumerate() {
        println!(
            "{format:<10} {} rows/s, peak memory {} MiB (target: under 64 MiB)",
            speed[i].show(0),
            peak[i].show(1)
        );
        if !floor_failed {
            let target = if i == 0 {
                " (target: at least 0.7)"
            } else {
                ""
            };
            println!(
                "{:<10} {} of the floor's speed{target}",
                "",
                ratio[i].show(2)
            );
        }
    }
    if floor_failed {
        println!("floor: {floor_name} is not installed or failed: no ratio");
    } else {
        println!(
            "floor      {} rows/s ({floor_name}, CSV)",
            floor_speed.show(0)
        );
    }
}

/// One export in a child process: its time and peak resident memory (KiB).
fn export_once(url: &str, format: &str, rows: u64) -> (Duration, u64) {
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let out = Command::new(exe)
        .env("BENCH_EXPORT_CHILD", url)
        .env("BENCH_EXPORT_FORMAT", format)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "export child failed: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |n: usize| -> u64 {
        report
            .split_whitespace()
            .nth(n)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(field(1), rows, "every row exported as {format}");
    (elapsed, field(3))
}

/// The floor: the database's own CLI exporting the same join as CSV; its time.
fn run_floor(floor: &Floor<'_>) -> Option<Duration> {
    let started = Instant::now();
    let status = match floor {
        Floor::Sqlite3(path) => Command::new("sqlite3")
            .args(["-csv", "-header", path.to_str().unwrap(), FLOOR_SQL])
            .stdout(std::fs::File::create("/dev/null").unwrap())
            .status(),
        Floor::Psql(url, schema) => Command::new("psql")
            .args([
                *url,
                "-q",
                "-c",
                &format!("SET search_path TO {schema}"),
                "-c",
                &format!("\\copy ({FLOOR_SQL}) TO '/dev/null' WITH CSV HEADER"),
            ])
            .status(),
    };
    match status {
        Ok(s) if s.success() => Some(started.elapsed()),
        _ => None,
    }
}

fn export_child(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(async {
        let store = SqlxStore::builder(url)
            .with_max_connections(1)
            .build()
            .await
            .unwrap();
        let creditor: CreditorId = CREDITOR.parse().unwrap();
        let out =
            std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create("/dev/null").unwrap());
        let format = match std::env::var("BENCH_EXPORT_FORMAT").as_deref() {
            Ok("XLSX") => ExportFormat::Xlsx,
            Ok("JSON lines") => ExportFormat::JsonLines,
            _ => ExportFormat::Csv { separator: b';' },
        };
        store
            .export(&Actor::System, &MovementQuery::new(creditor), format, out)
            .await
            .unwrap()
    });
    let peak = payments_core::testing::peak_resident_kib();
    println!("rows {rows} peak_kib {peak}");
}

// ------------------------------------------------------------------------------------ search

async fn search(url: &str, n: u64, target_ms: f64) {
    let runs = runs();
    println!(
        "\n## operator search over {n} transactions: status paid, method card, a date range; \
         {runs} runs of {SEARCH_RUNS} searches each, after ANALYZE, the cache warm (the walk \
         to page 200 comes first)"
    );
    let store = SqlxStore::connect(url).await.unwrap();
    store.pool().execute("ANALYZE").await.unwrap();
    let creditor: CreditorId = CREDITOR.parse().unwrap();
    let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
    let span = chrono::Duration::seconds(n as i64);
    let query = MovementQuery {
        statuses: vec![TxStatus::Paid],
        method_kind: Some(MethodKind::Card),
        from: Some(base + span / 4),
        to: Some(base + span * 3 / 4),
        limit: 50,
        ..MovementQuery::new(creditor)
    };
    // A deep page: the cursor of the 200th page.
    let mut deep = query.clone();
    for _ in 0..199 {
        let page = store.search(&deep).await.unwrap();
        deep.after = page.page.next;
    }
    let first_page = store.search(&query).await.unwrap();
    // The count and total, checked against the rows themselves.
    let (count, total): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(total_cents) AS BIGINT) FROM transactions \
         WHERE creditor_id = $1 AND status = 'paid' AND method_kind = 'card' \
         AND created_at >= $2 AND created_at < $3",
    )
    .bind(CREDITOR)
    .bind(query.from.unwrap().timestamp_micros())
    .bind(query.to.unwrap().timestamp_micros())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        (first_page.count, first_page.total.minor_units()),
        (count as u64, total),
        "the search's count and total are those of the rows"
    );
    println!(
        "selection: {} transactions, total {} (equal to a count of the rows)",
        first_page.count, first_page.total
    );
    for (label, q) in [("first page", &query), ("page 200 (keyset)", &deep)] {
        let (mut p50, mut p99) = (Spread::default(), Spread::default());
        for _ in 0..runs {
            let mut samples = Vec::with_capacity(SEARCH_RUNS);
            for _ in 0..SEARCH_RUNS {
                let started = Instant::now();
                let page = store.search(q).await.unwrap();
                samples.push(started.elapsed());
                assert_eq!(page.page.items.len(), 50);
            }
            let (a, b) = stats(samples);
            p50.push(a.as_secs_f64() * 1000.0);
            p99.push(b.as_secs_f64() * 1000.0);
        }
        println!(
            "{label:<18} p50 {} ms   p99 {} ms (target p99: under {target_ms} ms)",
            p50.show(2),
            p99.show(2)
        );
    }
}
