//! `cargo bench -p payments-gateways --bench camt`: reading and matching a bank statement.
//!
//! A camt.053.001.08 statement of N credit entries (N = `BENCH_ENTRIES`, 100,000 by
//! default), each paying one of N open bank-transfer transactions: most quote the
//! reference in the structured field, one in ten writes it with spaces in the free text,
//! one in a thousand quotes only the reference without `RF` (matched by amount and reason).
//!
//! 1. The floor: quick-xml alone reading every event of the file and unescaping every
//!    text, the least any reader of this file does.
//! 2. `camt::parse`: the file to typed entries, beside the floor.
//! 3. `camt::StatementReader`: the same file read entry by entry to movements, as the
//!    import streams it (holding one entry at a time).
//! 4. `import_statement`: check the file, then stream it again, match each credit, pay its
//!    transaction (with its events and outbox messages) and record the entry, a chunk of
//!    1,000 per database transaction — on the in-memory store, on SQLite with
//!    `BENCH_STORE=sqlite`, on PostgreSQL with `BENCH_STORE=postgres` and `DATABASE_URL`
//!    (`BENCH_STORE=sqlite,postgres` for both; `BENCH_SKIP_MEMORY=1` skips the in-memory
//!    store). On a database the import runs in a process of its own (this bench, started
//!    again with `BENCH_IMPORT_CHILD`), as an import job would: it opens the store, reads
//!    the file and imports it, and its peak resident memory (Linux's `VmHWM`) is the
//!    import's, the file included, not the set-up's. `BENCH_IN_PROCESS=1` imports in this
//!    process instead. The in-memory store imports here (its data is here), its peak with
//!    the set-up's heap.
//!
//! Each measure runs `BENCH_RUNS` times (at least 5), the floor and the library in turn,
//! and prints the median, min and max of both and of their ratio. The file is read from
//! memory (a warm cache). Every import starts from the same data: on a database the open
//! transfers are made once, then copied before each run (the SQLite file, or `CREATE
//! DATABASE … TEMPLATE` on PostgreSQL, whose databases `bench_camt` and `bench_camt_run`
//! the bench makes beside `DATABASE_URL`'s); the in-memory store is made anew each run.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Measure, Spread, alternate, held_mib, peak_mib, postgres_url, quick_xml_alone, reset_peak,
    runs, runtime, size, sqlite_url,
};

use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway, Limits, camt, rf};

const IBAN: &str = "IT60X0542811101000000123456";

fn entry(i: usize, tx: &Transaction, reference: &str) -> String {
    let cents = tx.total.minor_units();
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let remittance = if i % 1000 == 999 {
        format!("<Ustrd>PAGAMENTO DIRITTI COD {}</Ustrd>", &reference[4..])
    } else if i % 10 == 9 {
        format!("<Ustrd>DIRITTI RIF. {}</Ustrd>", rf::pretty(reference))
    } else {
        format!(
            "<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>{reference}</Ref></CdtrRefInf></Strd>"
        )
    };
    format!(
        r#"
      <Ntry>
        <NtryRef>{i}</NtryRef>
        <Amt Ccy="EUR">{amount}</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <ValDt><Dt>2026-11-20</Dt></ValDt>
        <AcctSvcrRef>20261120{i:08}</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>
          <TxDtls>
            <Refs><EndToEndId>E2E-{i}</EndToEndId><TxId>TRN{i:011}</TxId></Refs>
            <Amt Ccy="EUR">{amount}</Amt>
            <CdtDbtInd>CRDT</CdtDbtInd>
            <RltdPties>
              <Dbtr><Pty><Nm>CITTADINO {i} &amp; FAMIGLIA</Nm></Pty></Dbtr>
              <DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct>
            </RltdPties>
            <RmtInf>{remittance}</RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>"#
    )
}

fn statement(entries: &[String]) -> String {
    let mut s = String::with_capacity(entries.len() * 1300 + 1000);
    s.push_str(&format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>BENCH-{}</MsgId><CreDtTm>2026-11-20T22:00:00+01:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>BENCH</Id>
      <Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>EUR</Ccy></Acct>"#,
        entries.len()
    ));
    for e in entries {
        s.push_str(e);
    }
    s.push_str("\n    </Stmt>\n  </BkToCstmrStmt>\n</Document>\n");
    s
}

async fn open_transfers(payments: &Payments, fx: &Fixture, n: usize) -> Vec<(Transaction, String)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let amount = format!("{},{:02}", 1 + i % 400, i % 100);
        let checkout = fx
            .pay_fee(
                payments,
                &format!("p{i}"),
                &amount,
                MethodKind::BankTransfer,
            )
            .await
            .unwrap();
        let Instruction::BankTransfer(d) = checkout.instruction else {
            panic!("a transfer")
        };
        out.push((checkout.transaction, d.reference));
    }
    out
}

/// Where a store under measurement is, for the child process that imports into it.
enum Place {
    /// The in-memory store: imported in this process (its data lives here).
    Memory(Arc<dyn Store>),
    /// A SQLite file at this URL.
    Sqlite(String),
    /// A PostgreSQL database at this URL, in this schema.
    Postgres(String, String),
}

/// The environment variable that makes this bench the child process importing a file:
/// `kind \t url \t schema \t creditor \t file \t entries`.
const CHILD: &str = "BENCH_IMPORT_CHILD";

async fn open(place: &Place) -> Arc<dyn Store> {
    match place {
        Place::Memory(store) => store.clone(),
        Place::Sqlite(url) => Arc::new(payments_sqlx::SqlxStore::connect(url).await.unwrap()),
        Place::Postgres(url, schema) => Arc::new(
            payments_sqlx::SqlxStore::builder(url.clone())
                .with_schema(schema.clone())
                .build()
                .await
                .unwrap(),
        ),
    }
}

fn service(store: Arc<dyn Store>, bank: Arc<BankTransferGateway>) -> Payments {
    Payments::builder()
        .store(store)
        .gateway(bank)
        .notifier(Arc::new(RecordingNotifier::new()))
        .build()
        .unwrap()
}

/// The processor time this process has used, user and system, in seconds (Linux:
/// `/proc/self/stat`, at 100 ticks a second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th
    // and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// Imports `file` for `creditor` and answers how long it took, the process's peak
/// resident memory during the import and what it held before (MiB).
async fn import(
    payments: &Payments,
    bank: &BankTransferGateway,
    creditor: CreditorId,
    file: &[u8],
    n: usize,
) -> (Duration, f64, f64) {
    let operator = Actor::operator(creditor, Role::Manager, "bench");
    let before = held_mib();
    reset_peak();
    let start = Instant::now();
    let report = bank
        .import_statement(payments, &operator, creditor, file)
        .await
        .unwrap();
    let took = start.elapsed();
    let peak = peak_mib();
    assert_eq!(report.matched.len(), n, "every credit is matched");
    assert!(report.exceptions.is_empty());
    (took, peak, before)
}

/// The child process: opens the store, reads the statement file and imports it, and
/// prints `seconds peak before cpu` for its parent.
fn child(spec: &str) {
    let f: Vec<&str> = spec.split('\t').collect();
    let place = match f[0] {
        "sqlite" => Place::Sqlite(f[1].to_owned()),
        _ => Place::Postgres(f[1].to_owned(), f[2].to_owned()),
    };
    let creditor: CreditorId = f[3].parse().unwrap();
    let n: usize = f[5].parse().unwrap();
    let rt = runtime();
    let mut cpu = 0.0;
    let (took, peak, before) = rt.block_on(async {
        let bank = Arc::new(BankTransferGateway::new());
        bank.set_account(creditor, BankAccount::new("Comune", IBAN).unwrap());
        let payments = service(open(&place).await, bank.clone());
        let file = std::fs::read(f[4]).unwrap();
        cpu = cpu_seconds();
        let done = import(&payments, &bank, creditor, &file, n).await;
        cpu = cpu_seconds() - cpu;
        done
    });
    println!("{} {peak} {before} {cpu}", took.as_secs_f64());
}

/// Where a run imports: a new copy of the prepared database, or (the in-memory store) a
/// store prepared for the run alone.
enum Base {
    /// The prepared SQLite file, copied to the run's file before each run.
    Sqlite {
        base: std::path::PathBuf,
        run: std::path::PathBuf,
    },
    /// The prepared PostgreSQL database (URL, name), copied (`CREATE DATABASE … TEMPLATE`)
    /// to the run's database before each run; the store is in schema `bench_camt` of both.
    Postgres { admin: String, base: String },
    /// The in-memory store: each run prepares its own.
    Memory,
}

/// `url` (`postgres://…/db?…`) with the database `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (head, query) = url
        .split_once('?')
        .map_or((url, None), |(h, q)| (h, Some(q)));
    let root = head.rsplit_once('/').map_or(head, |(r, _)| r);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

async fn admin(url: &str, statements: &[String]) {
    use sqlx::Executor;
    let pool = sqlx::PgPool::connect(url).await.expect("PostgreSQL");
    for s in statements {
        pool.execute(sqlx::AssertSqlSafe(s.clone()))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    pool.close().await;
}

/// A store at `place` with `n` open transfers and the statement paying them all: the
/// creditor and the file.
async fn prepare(place: &Place, n: usize) -> (CreditorId, String) {
    // A database's store is closed at the end, so that its data is whole on disk (SQLite's
    // log checkpointed) and no connection is left to the database about to be copied.
    let sql = match place {
        Place::Memory(_) => None,
        Place::Sqlite(url) => Some(Arc::new(
            payments_sqlx::SqlxStore::connect(url).await.unwrap(),
        )),
        Place::Postgres(url, schema) => Some(Arc::new(
            payments_sqlx::SqlxStore::builder(url.clone())
                .with_schema(schema.clone())
                .build()
                .await
                .unwrap(),
        )),
    };
    let store: Arc<dyn Store> = match (&sql, place) {
        (Some(s), _) => s.clone(),
        (None, Place::Memory(m)) => m.clone(),
        (None, _) => unreachable!(),
    };
    let bank = Arc::new(BankTransferGateway::new());
    let payments = service(store.clone(), bank.clone());
    let fx = Fixture::install(&payments, "bank_transfer", &[MethodKind::BankTransfer])
        .await
        .unwrap();
    bank.set_account(fx.creditor.id, BankAccount::new("Comune", IBAN).unwrap());
    let open = open_transfers(&payments, &fx, n).await;
    let entries: Vec<String> = open
        .iter()
        .enumerate()
        .map(|(i, (tx, r))| entry(i, tx, r))
        .collect();
    drop(payments);
    drop(store);
    if let Some(sql) = sql {
        sql.close().await;
    }
    (fx.creditor.id, statement(&entries))
}

/// [`runs`] imports of a statement of `n` entries into `name`, each on the same prepared
/// data (a copy of it on a database), beside the floor read of the same file.
async fn import_on(kind: Base, name: &str, n: usize) {
    let in_process = std::env::var("BENCH_IN_PROCESS").is_ok();
    let setup = Instant::now();
    // The run's place, and for a database the prepared data it is copied from.
    let (creditor, file, run_place) = match &kind {
        Base::Sqlite { base, .. } => {
            let url = format!("sqlite://{}", base.display());
            let place = Place::Sqlite(url);
            let (creditor, file) = prepare(&place, n).await;
            (Some(creditor), Some(file), None)
        }
        Base::Postgres { admin: url, base } => {
            admin(
                url,
                &[
                    format!("DROP DATABASE IF EXISTS {base} WITH (FORCE)"),
                    format!("CREATE DATABASE {base}"),
                ],
            )
            .await;
            let place = Place::Postgres(with_database(url, base), "bench_camt".into());
            let (creditor, file) = prepare(&place, n).await;
            (Some(creditor), Some(file), None)
        }
        Base::Memory => (None, None, Some(())),
    };
    if run_place.is_none() {
        eprintln!(
            "  ({name}: {n} open transfers and the statement prepared once in {:.1} s, \
             copied before each run)",
            setup.elapsed().as_secs_f64()
        );
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("camt-statement.xml");
    if let Some(file) = &file {
        std::fs::write(&path, file).unwrap();
    }
    let mut measure = Measure::default();
    let (mut peaks, mut befores, mut cpus) =
        (Spread::default(), Spread::default(), Spread::default());
    let mut mib = 0.0;
    let mut whose = String::new();
    for _ in 0..runs() {
        // The data as prepared, again.
        let (place, creditor, file, memory) = match &kind {
            Base::Sqlite { base, run } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", run.display()));
                }
                std::fs::copy(base, run).unwrap();
                (
                    Place::Sqlite(format!("sqlite://{}", run.display())),
                    creditor.unwrap(),
                    file.clone().unwrap(),
                    None,
                )
            }
            Base::Postgres { admin: url, base } => {
                let run = format!("{base}_run");
                admin(
                    url,
                    &[
                        format!("DROP DATABASE IF EXISTS {run} WITH (FORCE)"),
                        format!("CREATE DATABASE {run} TEMPLATE {base}"),
                    ],
                )
                .await;
                (
                    Place::Postgres(with_database(url, &run), "bench_camt".into()),
                    creditor.unwrap(),
                    file.clone().unwrap(),
                    None,
                )
            }
            Base::Memory => {
                let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
                let place = Place::Memory(store);
                let (creditor, file) = prepare(&place, n).await;
                let store = match &place {
                    Place::Memory(s) => s.clone(),
                    _ => unreachable!(),
                };
                (place, creditor, file, Some(store))
            }
        };
        mib = file.len() as f64 / (1024.0 * 1024.0);
        let start = Instant::now();
        assert!(quick_xml_alone(&file) > 0);
        let floor = start.elapsed();
        let (took, peak, before, cpu) = match (&place, memory) {
            (Place::Sqlite(url) | Place::Postgres(url, _), _) if !in_process => {
                // A process of its own, as an import job would be: its peak is the
                // import's, not this set-up's (whose freed heap the allocator keeps).
                let (kind, schema) = match &place {
                    Place::Postgres(_, schema) => ("postgres", schema.as_str()),
                    _ => ("sqlite", ""),
                };
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .env(
                        CHILD,
                        format!(
                            "{kind}\t{url}\t{schema}\t{creditor}\t{}\t{n}",
                            path.display()
                        ),
                    )
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "the import's process failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8(out.stdout).unwrap();
                let v: Vec<f64> = text
                    .split_whitespace()
                    .map(|x| x.parse().unwrap())
                    .collect();
                whose = "a process of its own".into();
                (Duration::from_secs_f64(v[0]), v[1], v[2], Some(v[3]))
            }
            (place, _) => {
                let bank = Arc::new(BankTransferGateway::new());
                bank.set_account(creditor, BankAccount::new("Comune", IBAN).unwrap());
                let payments = service(open(place).await, bank.clone());
                let (took, peak, before) =
                    import(&payments, &bank, creditor, file.as_bytes(), n).await;
                whose = "this process, which made the data".into();
                (took, peak, before, None)
            }
        };
        measure.push(took, floor);
        peaks.push(peak);
        befores.push(before);
        if let Some(cpu) = cpu {
            cpus.push(100.0 * cpu / took.as_secs_f64());
        }
    }
    let _ = std::fs::remove_file(&path);
    measure.print(
        &format!("import (parse + match + pay + record) on {name}, floor quick-xml"),
        n,
        "entries",
    );
    println!(
        "  peak memory of {whose}: {} MiB resident ({} MiB before the import, the \
         {mib:.0} MiB file included)",
        peaks.show(0),
        befores.show(0)
    );
    if cpus.runs() > 0 {
        println!(
            "  processor time of the import's process: {}% of one core",
            cpus.show(0)
        );
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    let n = size("BENCH_ENTRIES", 100_000);
    let rt = runtime();
    println!(
        "# payments-gateways: camt.053 of {n} entries ({} cores)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    // Parsing alone, on a statement whose references need no store.
    let fake: Vec<String> = (0..n)
        .map(|i| {
            let tx_total = Money::from_minor(100 + i as i64, Currency::Eur).unwrap();
            let reference = rf::creditor_reference(&format!("{i:012}")).unwrap();
            let mut tx = payments_core::testing::gateway::start_request(
                &BankTransferGateway::new(),
                MethodKind::BankTransfer,
                "1",
            )
            .transaction;
            tx.total = tx_total;
            entry(i, &tx, &reference)
        })
        .collect();
    let file = statement(&fake);
    drop(fake);
    let mb = file.len() as f64 / 1e6;
    println!("file: {mb:.1} MB, in memory (warm)");
    let limits = Limits::default();
    let (parse, message) = alternate(
        || quick_xml_alone(&file),
        || camt::parse(file.as_bytes(), &limits).unwrap(),
    );
    assert_eq!(message.movements().len(), n);
    parse.print(
        "camt::parse to typed entries, floor quick-xml reading every event",
        n,
        "entries",
    );
    let (stream, movements) = alternate(
        || quick_xml_alone(&file),
        || {
            let mut reader = camt::StatementReader::new(file.as_bytes(), &limits).unwrap();
            let mut movements = 0;
            while let Some(read) = reader.next_entry().unwrap() {
                movements += read.movements(reader.message_id()).len();
            }
            reader.finish().unwrap();
            movements
        },
    );
    assert_eq!(movements, n);
    stream.print(
        "StatementReader, entry by entry, floor quick-xml reading every event",
        n,
        "entries",
    );
    drop(message);
    drop(file);

    // The databases first: the in-memory store's data, freed, would stay in the
    // process's resident memory and in their peaks.
    if let Some(url) = sqlite_url("camt.db") {
        let base = std::path::PathBuf::from(url.trim_start_matches("sqlite://"));
        let run = base.with_extension("run.db");
        rt.block_on(import_on(
            Base::Sqlite { base, run },
            "SQLite (a copy of the prepared file each run)",
            n,
        ));
    }
    if let Some(url) = postgres_url(&rt, "bench_camt") {
        rt.block_on(import_on(
            Base::Postgres {
                admin: url,
                base: "bench_camt".into(),
            },
            "PostgreSQL (a copy of the prepared database each run)",
            n,
        ));
    }
    if std::env::var("BENCH_SKIP_MEMORY").is_err() {
        rt.block_on(import_on(
            Base::Memory,
            "the in-memory store (prepared anew each run)",
            n,
        ));
    }
}
