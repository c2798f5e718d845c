//! `cargo bench -p payments-sqlx --bench positions`: registering debt positions in bulk.
//!
//! N positions (`BENCH_POSITIONS`, 100,000 by default), each a single option and two
//! instalments, registered in one streamed call ([`Payments::register_positions`]) with
//! notice numbers from the pagoPA gateway, on SQLite and (with `DATABASE_URL`) PostgreSQL.
//! The library runs in a child process, so its peak resident memory (`VmHWM`) is its own.
//! The floor writes the same rows (positions, options, item sources, events) with plain
//! sqlx multi-row inserts in the same batches and database transactions, the rows built
//! and serialised beforehand (untimed). Each is measured `BENCH_RUNS` times (5 by default,
//! at least 5), library and floor in turn, each run on new databases; the figures are
//! median (minimum to maximum), the ratio the median of the runs' ratios.

use payments_core::testing::{Spread, peak_resident_kib};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::pagopa::{PagoPaCreditor, PagoPaGateway};
use payments_sqlx::SqlxStore;
use sqlx::Executor;

const KEY: &str = "bench-station-key-0123456789";

fn positions(n: u64, type_id: PaymentTypeId) -> impl Iterator<Item = NewDebtPosition> + Send {
    let eur = |c: i64| Money::from_minor(c, Currency::Eur).unwrap();
    let day = |m: u32| NaiveDate::from_ymd_opt(2027, m, 28).unwrap();
    (0..n).map(move |i| {
        NewDebtPosition::new(
            "tributi",
            format!("TARI-2027-{i:08}"),
            PositionPayer::new("RSSMRA80A01H501U", format!("Contribuente {i}"))
                .with_email("contribuente@example.it")
                .with_address("Via Roma 1, 10100 Torino (TO)"),
            type_id,
            "TARI 2027 - Tassa sui rifiuti",
        )
        .with_single(NewOption::new(eur(30_000), day(4)))
        .with_instalment(NewOption::new(eur(15_000), day(4)))
        .with_instalment(NewOption::new(eur(15_000), day(9)))
    })
}

fn n() -> u64 {
    std::env::var("BENCH_POSITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

async fn service(url: &str) -> (Payments, Fixture) {
    let store = Arc::new(SqlxStore::connect(url).await.unwrap());
    let pagopa = Arc::new(PagoPaGateway::new(store.clone(), KEY).unwrap());
    let payments = Payments::builder()
        .store(store)
        .gateway(pagopa.clone())
        .notice_issuer(pagopa.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "pagopa", &[MethodKind::PagoPa])
        .await
        .unwrap();
    let config = PagoPaCreditor::new("02")
        .unwrap()
        .with_iban("IT60X0542811101000000123456")
        .unwrap()
        .with_taxonomy(fx.tari.id, "9/0101101IM/")
        .unwrap();
    pagopa.set_creditor(&fx.creditor, config).unwrap();
    (payments, fx)
}

/// The child: registers N positions through the library and prints its figures.
fn library_child(url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (payments, fx) = service(url).await;
        let before = peak_resident_kib();
        let started = Instant::now();
        let report = payments
            .register_positions(&Actor::System, fx.creditor.id, positions(n(), fx.tari.id))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(report.registered, n(), "{:?}", report.refused.first());
        println!(
            "registered {} seconds {:.3} peak_kib {} before_kib {before}",
            report.registered,
            took.as_secs_f64(),
            peak_resident_kib()
        );
    });
}

fn main() {
    if let Ok(url) = std::env::var("BENCH_POSITIONS_CHILD") {
        return library_child(&url);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "# debt positions registered in bulk: {} positions × 3 options",
        n()
    );
    let db = |name: &str| {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("db-wal"));
        let _ = std::fs::remove_file(path.with_extension("db-shm"));
        format!("sqlite://{}", path.display())
    };
    run(&rt, "SQLite", || {
        (db("positions-lib.db"), db("positions-floor.db"))
    });
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            run(&rt, "PostgreSQL", || {
                (
                    rt.block_on(schema_url(&url, "bench_positions_lib")),
                    rt.block_on(schema_url(&url, "bench_positions_floor")),
                )
            });
        }
        _ => println!("\nPostgreSQL: SKIPPED (set DATABASE_URL=postgres://… to measure it)"),
    }
}

/// `BENCH_RUNS` runs (at least 5) of the library and the floor in turn, each on the new
/// databases `fresh` gives (library, floor).
fn run(rt: &tokio::runtime::Runtime, name: &str, fresh: impl Fn() -> (String, String)) {
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize)
        .max(5);
    let n = n() as f64;
    let [mut lib, mut floor_rate, mut ratio, mut peak, mut before]: [Spread; 5] =
        Default::default();
    for _ in 0..runs {
        let (lib_url, floor_url) = fresh();
        let out = Command::new(std::env::current_exe().unwrap())
            .env("BENCH_POSITIONS_CHILD", &lib_url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |k: &str| -> f64 {
            let words: Vec<&str> = text.split_whitespace().collect();
            let i = words.iter().position(|w| *w == k).unwrap();
            words[i + 1].parse().unwrap()
        };
        let lib_s = field("seconds");
        let floor = rt.block_on(floor(&floor_url)).as_secs_f64();
        lib.push(n / lib_s);
        floor_rate.push(n / floor);
        ratio.push(lib_s / floor);
        peak.push(field("peak_kib") / 1024.0);
        before.push(field("before_kib") / 1024.0);
    }
    println!("\n## {name} ({runs} runs, each on new databases)");
    println!(
        "library: {} positions/s, peak resident {} MiB (before the call {} MiB)",
        lib.show(0),
        peak.show(1),
        before.show(1)
    );
    println!(
        "floor:   {} positions/s: plain sqlx, the same rows and batches",
        floor_rate.show(0)
    );
    println!(
        "ratio:   {}× the floor's time (goal ≤ 3×); peak memory goal < 128 MiB",
        ratio.show(2)
    );
}

async fn schema_url(url: &str, schema: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .await
    .unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// The same rows with plain sqlx: per 1,000 positions one database transaction, multi-row
/// inserts of at most 500 positions and 1,000 options, sources and events.
async fn floor(url: &str) -> Duration {
    let (payments, fx) = service(url).await;
    let store = payments.store().clone();
    drop(payments);
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let _ = store;
    let mut timed = Duration::ZERO;
    let all: Vec<NewDebtPosition> = Vec::new();
    drop(all);
    let mut iter = positions(n(), fx.tari.id).enumerate().peekable();
    let mut notice = 0u64;
    while iter.peek().is_some() {
        // Built and serialised outside the timing.
        let chunk: Vec<DebtPosition> = iter
            .by_ref()
            .take(1000)
            .map(|(_, mut p)| {
                // The rows the library writes: the same position, notice numbers and
                // (the creditor's default) transfer on each option.
                let reason = p.reason.clone();
                for o in p.single.iter_mut().chain(p.instalments.iter_mut()) {
                    o.transfers = vec![Transfer::to_iban(
                        "00488410010",
                        "IT60X0542811101000000123456",
                        o.amount,
                        reason.clone(),
                        "9/0101101IM/",
                    )];
                }
                let notices = (0..p.option_count())
                    .map(|_| {
                        notice += 1;
                        format!("3{notice:017}")
                    })
                    .collect();
                p.to_position(fx.creditor.id, notices, chrono::Utc::now())
            })
            .collect();
        let rows: Vec<(Vec<String>, String)> = chunk
            .iter()
            .map(|p| {
                (
                    vec![
                        p.id.to_string(),
                        p.creditor_id.to_string(),
                        p.module.clone(),
                        p.key.clone(),
                        p.payer.fiscal_code.clone(),
                        p.payment_type_id.to_string(),
                    ],
                    serde_json::to_string(p).unwrap(),
                )
            })
            .collect();
        let events: Vec<String> = chunk
            .iter()
            .map(|p| {
                serde_json::to_string(&PositionEvent {
                    position_id: p.id,
                    at: p.created_at,
                    actor: Actor::System,
                    from: None,
                    to: p.status,
                    note: "registered".into(),
                })
                .unwrap()
            })
            .collect();
        let started = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        for (batch, (rows, events)) in chunk
            .chunks(500)
            .zip(rows.chunks(500).zip(events.chunks(500)))
        {
            let mut sql = String::from(
                "INSERT INTO debt_positions (id, creditor_id, module, position_key, payer, payment_type_id, status, valid_until, version, data) VALUES ",
            );
            let mut args: Vec<String> = Vec::new();
            for (i, (cols, data)) in rows.iter().enumerate() {
                let b = args.len();
                sql.push_str(&format!(
                    "{}(${}, ${}, ${}, ${}, ${}, ${}, 'valid', NULL, 1, ${})",
                    if i > 0 { ", " } else { "" },
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                ));
                args.extend(cols.iter().cloned());
                args.push(data.clone());
            }
            sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for a in args {
                q = q.bind(a);
            }
            q.fetch_all(&mut *tx).await.unwrap();
            let mut opts = String::from(
                "INSERT INTO position_options (position_id, idx, creditor_id, notice_number, due_date, paid) VALUES ",
            );
            let mut srcs = String::from(
                "INSERT INTO position_sources (creditor_id, module, source_key, position_id, idx) VALUES ",
            );
            let mut oargs: Vec<(String, String, String)> = Vec::new();
            let mut sargs: Vec<(String, String, String)> = Vec::new();
            let mut n = 0;
            for p in batch {
                for (i, o) in p.options.iter().enumerate() {
                    let b = n * 3;
                    opts.push_str(&format!(
                        "{}(${}, {i}, ${}, ${}, '{}', 0)",
                        if n > 0 { ", " } else { "" },
                        b + 1,
                        b + 2,
                        b + 3,
                        o.due_date
                    ));
                    srcs.push_str(&format!(
                        "{}(${}, 'tributi', ${}, ${}, {i})",
                        if n > 0 { ", " } else { "" },
                        b + 1,
                        b + 2,
                        b + 3
                    ));
                    oargs.push((
                        p.id.to_string(),
                        p.creditor_id.to_string(),
                        o.notice_number.clone(),
                    ));
                    sargs.push((
                        p.creditor_id.to_string(),
                        format!("{}#{}", p.key, o.kind.label()),
                        p.id.to_string(),
                    ));
                    n += 1;
                }
            }
            srcs.push_str(" ON CONFLICT DO NOTHING");
            for (sql, args) in [(opts, oargs), (srcs, sargs)] {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (a, b, c) in args {
                    q = q.bind(a).bind(b).bind(c);
                }
                q.execute(&mut *tx).await.unwrap();
            }
            let mut ev =
                String::from("INSERT INTO position_events (position_id, seq, at, data) VALUES ");
            for i in 0..batch.len() {
                ev.push_str(&format!(
                    "{}(${}, 1, 0, ${})",
                    if i > 0 { ", " } else { "" },
                    i * 2 + 1,
                    i * 2 + 2
                ));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(ev));
            for (p, e) in batch.iter().zip(events) {
                q = q.bind(p.id.to_string()).bind(e.clone());
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        timed += started.elapsed();
    }
    timed
}
