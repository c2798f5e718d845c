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

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    best_of, held_mib, peak_mib, postgres_url, print_rate, quick_xml_alone, reset_peak, runtime,
    size, sqlite_url,
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

async fn import_on(place: Place, name: &str, n: usize, floor: Duration) {
    let bank = Arc::new(BankTransferGateway::new());
    let payments = service(open(&place).await, bank.clone());
    let fx = Fixture::install(&payments, "bank_transfer", &[MethodKind::BankTransfer])
        .await
        .unwrap();
    bank.set_account(fx.creditor.id, BankAccount::new("Comune", IBAN).unwrap());
    let setup = Instant::now();
    let open = open_transfers(&payments, &fx, n).await;
    let entries: Vec<String> = open
        .iter()
        .enumerate()
        .map(|(i, (tx, r))| entry(i, tx, r))
        .collect();
    let file = statement(&entries);
    eprintln!(
        "  ({name}: {n} open transfers and the statement prepared in {:.1} s)",
        setup.elapsed().as_secs_f64()
    );
    drop(entries);
    drop(open);
    let mib = file.len() as f64 / (1024.0 * 1024.0);
    let in_process = std::env::var("BENCH_IN_PROCESS").is_ok();
    let (took, peak, before, whose) = match &place {
        Place::Sqlite(url) | Place::Postgres(url, _) if !in_process => {
            // A process of its own, as an import job would be: its peak is the import's,
            // not this setup's (whose freed heap the allocator keeps).
            let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("camt-statement.xml");
            std::fs::write(&path, &file).unwrap();
            drop(file);
            let (kind, schema) = match &place {
                Place::Postgres(_, schema) => ("postgres", schema.as_str()),
                _ => ("sqlite", ""),
            };
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .env(
                    CHILD,
                    format!(
                        "{kind}\t{url}\t{schema}\t{}\t{}\t{n}",
                        fx.creditor.id,
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
            let _ = std::fs::remove_file(&path);
            let text = String::from_utf8(out.stdout).unwrap();
            let v: Vec<f64> = text
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            (
                Duration::from_secs_f64(v[0]),
                v[1],
                v[2],
                format!(
                    "a process of its own (processor time {:.1} s, {:.0}% of one core)",
                    v[3],
                    100.0 * v[3] / v[0]
                ),
            )
        }
        _ => {
            let (took, peak, before) =
                import(&payments, &bank, fx.creditor.id, file.as_bytes(), n).await;
            (
                took,
                peak,
                before,
                "this process, which made the data".to_owned(),
            )
        }
    };
    print_rate(
        &format!("import (parse + match + pay + record) on {name}"),
        n,
        "entries",
        took,
        floor,
    );
    println!(
        "  peak memory of {whose}: {peak:.0} MiB resident ({before:.0} MiB before the \
         import, the {mib:.0} MiB file included)",
    );
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
    let (floor, bytes) = best_of(3, || quick_xml_alone(&file));
    assert!(bytes > 0);
    let limits = Limits::default();
    let (parse, message) = best_of(3, || camt::parse(file.as_bytes(), &limits).unwrap());
    assert_eq!(message.movements().len(), n);
    let (stream, movements) = best_of(3, || {
        let mut reader = camt::StatementReader::new(file.as_bytes(), &limits).unwrap();
        let mut movements = 0;
        while let Some(read) = reader.next_entry().unwrap() {
            movements += read.movements(reader.message_id()).len();
        }
        reader.finish().unwrap();
        movements
    });
    assert_eq!(movements, n);
    println!("file: {mb:.1} MB");
    println!(
        "floor: quick-xml reading every event: {:>9.0} entries/s  ({:.2} s, {:.0} MB/s)",
        n as f64 / floor.as_secs_f64(),
        floor.as_secs_f64(),
        mb / floor.as_secs_f64()
    );
    println!(
        "camt::parse to typed entries:         {:>9.0} entries/s  ({:.2} s, {:.0} MB/s)   ratio {:.2}x",
        n as f64 / parse.as_secs_f64(),
        parse.as_secs_f64(),
        mb / parse.as_secs_f64(),
        parse.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "StatementReader, entry by entry:      {:>9.0} entries/s  ({:.2} s, {:.0} MB/s)   ratio {:.2}x",
        n as f64 / stream.as_secs_f64(),
        stream.as_secs_f64(),
        mb / stream.as_secs_f64(),
        stream.as_secs_f64() / floor.as_secs_f64()
    );
    drop(message);
    drop(file);

    // The databases first: the in-memory store's data, freed, would stay in the
    // process's resident memory and in their peaks.
    if let Some(url) = sqlite_url("camt.db") {
        rt.block_on(import_on(Place::Sqlite(url), "SQLite", n, floor));
    }
    if let Some(url) = postgres_url(&rt, "bench_camt") {
        rt.block_on(import_on(
            Place::Postgres(url, "bench_camt".into()),
            "PostgreSQL",
            n,
            floor,
        ));
    }
    if std::env::var("BENCH_SKIP_MEMORY").is_err() {
        rt.block_on(import_on(
            Place::Memory(Arc::new(InMemoryStore::new())),
            "the in-memory store",
            n,
            floor,
        ));
    }
}
