//! What the benchmarks share: timing, and the floor every XML reader is compared to.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use quick_xml::events::Event;

/// The best time of `runs` runs of `f`, and its last result.
pub(crate) fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("one run"))
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

/// With `BENCH_STORE=sqlite`, a store on a new SQLite file `name` under the target
/// directory; `None` otherwise.
pub(crate) fn sqlite_store(
    rt: &tokio::runtime::Runtime,
    name: &str,
) -> Option<std::sync::Arc<dyn payments_core::Store>> {
    if std::env::var("BENCH_STORE").as_deref() != Ok("sqlite") {
        return None;
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&dir).expect("the bench directory");
    let db = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let url = format!("sqlite://{}", db.display());
    let store = rt
        .block_on(payments_sqlx::SqlxStore::connect(&url))
        .expect("a SQLite store");
    Some(std::sync::Arc::new(store))
}

/// Prints the library's figure for `n` `unit` done in `took`, the floor's time, and their
/// ratio, on one line: the form every benchmark of this project reports in.
pub(crate) fn print_rate(what: &str, n: usize, unit: &str, took: Duration, floor: Duration) {
    println!(
        "{what}: {:>9.0} {unit}/s  ({:.2} s)   floor {:.2} s   ratio {:.1}x",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        floor.as_secs_f64(),
        took.as_secs_f64() / floor.as_secs_f64()
    );
}
