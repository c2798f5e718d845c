//! What the benchmarks share: timing, and the floor every XML reader is compared to.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use quick_xml::events::Event;

pub(crate) use payments_core::testing::Spread;

/// How many times each measure is repeated: `BENCH_RUNS`, at least 5.
pub(crate) fn runs() -> usize {
    size("BENCH_RUNS", 5).max(5)
}

/// A measure repeated: the library's and the floor's times (seconds) and their ratio, run
/// by run.
#[derive(Debug, Default)]
pub(crate) struct Measure {
    pub(crate) library: Spread,
    pub(crate) floor: Spread,
    pub(crate) ratio: Spread,
}

impl Measure {
    /// Adds one run: the library's time and the floor's, measured beside it.
    pub(crate) fn push(&mut self, library: Duration, floor: Duration) {
        self.library.push(library.as_secs_f64());
        self.floor.push(floor.as_secs_f64());
        self.ratio.push(library.as_secs_f64() / floor.as_secs_f64());
    }

    /// Prints the library's rate for `n` `unit` a run, its time and the floor's (median,
    /// min to max) and their ratio: the form every benchmark of this project reports in.
    pub(crate) fn print(&self, what: &str, n: usize, unit: &str) {
        println!(
            "{what}: {:>9.0} {unit}/s (median)\n  library {} s\n  floor   {} s\n  ratio   {}x",
            n as f64 / self.library.median(),
            self.library.show(3),
            self.floor.show(3),
            self.ratio.show(2)
        );
    }
}

/// [`runs`] runs of `handle_callback` on `payments` for `gateway`: before each, `prepare`
/// (given the run's number) opens the run's transactions and answers their callbacks,
/// untimed; then `floor` reads them all, then each is applied and must pay. Prints the
/// measure as `what` (`n` `unit` a run); `name` says where.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_runs(
    payments: &payments_core::Payments,
    gateway: &str,
    name: &str,
    n: usize,
    what: &str,
    unit: &str,
    mut prepare: impl AsyncFnMut(usize) -> Vec<payments_core::CallbackRequest>,
    floor: impl Fn(&payments_core::CallbackRequest) -> usize,
) {
    let mut measure = Measure::default();
    let mut setup = Duration::ZERO;
    for run in 0..runs() {
        let started = Instant::now();
        let callbacks = prepare(run).await;
        setup += started.elapsed();
        let start = Instant::now();
        let read: usize = callbacks.iter().map(&floor).sum();
        let floor_took = start.elapsed();
        assert!(read > 0);
        let start = Instant::now();
        for c in &callbacks {
            let outcome = payments.handle_callback(gateway, c).await.unwrap();
            assert_eq!(outcome.transaction.status, payments_core::TxStatus::Paid);
        }
        measure.push(start.elapsed(), floor_took);
    }
    eprintln!(
        "  ({name}: {n} open transactions and their callbacks prepared before each run, \
         {:.1} s in all; the store grows by {n} paid transactions a run)",
        setup.as_secs_f64()
    );
    measure.print(&format!("{what} on {name}"), n, unit);
}

/// Runs `floor`, then `library`, [`runs`] times in turn: their times, and the library's
/// last result.
pub(crate) fn alternate<F, T>(
    mut floor: impl FnMut() -> F,
    mut library: impl FnMut() -> T,
) -> (Measure, T) {
    let mut measure = Measure::default();
    let mut last = None;
    for _ in 0..runs() {
        let start = Instant::now();
        std::hint::black_box(floor());
        let floor_took = start.elapsed();
        let start = Instant::now();
        let out = library();
        measure.push(start.elapsed(), floor_took);
        last = Some(out);
    }
    (measure, last.expect("one run"))
}

/// The floor: every event read, every text unescaped.
pub(crate) fn quick_xml_alone(text: &str) -> usize {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut bytes = 0;
    loop {
        match reader.read_event().expect("well-formed") {
            Event::Text(t) => bytes += t.xml_content(quick_xml::XmlVersion::Explicit1_0).len(),
            Event::GeneralRef(r) => bytes += r.len(),
            Event::Start(e) => bytes += e.attributes().count(),
            Event::Eof => break,
            _ => {}
        }
    }
    bytes
}

/// The number in the environment variable `var`, or `default`.
pub(crate) fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A two-worker runtime, as on this project's two-core machine.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Whether `BENCH_STORE` (a comma-separated list) names `store`.
pub(crate) fn store_wanted(store: &str) -> bool {
    std::env::var("BENCH_STORE").is_ok_and(|v| v.split(',').any(|s| s.trim() == store))
}

/// With `BENCH_STORE=sqlite`, the URL of a new SQLite file `name` under the target
/// directory (any earlier one removed); `None` otherwise.
pub(crate) fn sqlite_url(name: &str) -> Option<String> {
    if !store_wanted("sqlite") {
        return None;
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&dir).expect("the bench directory");
    let db = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    Some(format!("sqlite://{}", db.display()))
}

/// With `BENCH_STORE=sqlite`, a store on a new SQLite file `name` under the target
/// directory; `None` otherwise.
pub(crate) fn sqlite_store(
    rt: &tokio::runtime::Runtime,
    name: &str,
) -> Option<std::sync::Arc<dyn payments_core::Store>> {
    let url = sqlite_url(name)?;
    let store = rt
        .block_on(payments_sqlx::SqlxStore::connect(&url))
        .expect("a SQLite store");
    Some(std::sync::Arc::new(store))
}

/// With `BENCH_STORE=postgres` and `DATABASE_URL=postgres://…`, the database's URL, the
/// schema `schema` dropped (the store makes it anew); `None` otherwise (said when
/// `DATABASE_URL` is missing).
pub(crate) fn postgres_url(rt: &tokio::runtime::Runtime, schema: &str) -> Option<String> {
    if !store_wanted("postgres") {
        return None;
    }
    let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    else {
        println!("PostgreSQL: SKIPPED (set DATABASE_URL=postgres://… to measure it)");
        return None;
    };
    rt.block_on(async {
        use sqlx::Executor;
        let pool = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
        pool.execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .await
        .expect("dropping the bench schema");
        pool.close().await;
    });
    Some(url)
}

/// With `BENCH_STORE=postgres` and `DATABASE_URL=postgres://…`, a store in the schema
/// `schema`, dropped and made anew; `None` otherwise (said when `DATABASE_URL` is missing).
pub(crate) fn postgres_store(
    rt: &tokio::runtime::Runtime,
    schema: &str,
) -> Option<std::sync::Arc<dyn payments_core::Store>> {
    let url = postgres_url(rt, schema)?;
    let store = rt
        .block_on(
            payments_sqlx::SqlxStore::builder(url)
                .with_schema(schema)
                .build(),
        )
        .expect("a PostgreSQL store");
    Some(std::sync::Arc::new(store))
}

/// A field of `/proc/self/status` (`VmRSS`, `VmHWM`), in MiB; 0 where there is none.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts a new peak of the process's resident memory from what it holds now (Linux:
/// `/proc/self/clear_refs`).
pub(crate) fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since [`reset_peak`] (`VmHWM`), in MiB.
pub(crate) fn peak_mib() -> f64 {
    status_mib("VmHWM")
}

/// The process's resident memory now (`VmRSS`), in MiB.
pub(crate) fn held_mib() -> f64 {
    status_mib("VmRSS")
}
