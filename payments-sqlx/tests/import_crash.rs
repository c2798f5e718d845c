//! A large statement's import killed in the middle (SIGKILL, in a child process, while it
//! writes its chunks) and run again: every credit is recorded once, every transfer paid
//! once with one event and one set of messages, the exceptions are those of a clean
//! import. SQLite always, PostgreSQL with `DATABASE_URL`.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway};
use payments_sqlx::SqlxStore;

const IBAN: &str = "IT60X0542811101000000123456";
const CHILD_URL: &str = "PAYMENTS_IMPORT_CHILD_URL";
const CHILD_CREDITOR: &str = "PAYMENTS_IMPORT_CHILD_CREDITOR";
const CHILD_FILE: &str = "PAYMENTS_IMPORT_CHILD_FILE";
/// Open transfers, each paid by one credit of the statement.
const TRANSFERS: usize = 800;
/// Movements per database transaction: small, so that the kill falls between many.
const CHUNK: usize = 40;

fn entry(bank_ref: &str, cents: i64, remittance: &str) -> String {
    format!(
        r#"<Ntry><Amt Ccy="EUR">{}.{:02}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-20</Dt></ValDt><AcctSvcrRef>{bank_ref}</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf>{remittance}</RmtInf></TxDtls></NtryDtls></Ntry>
"#,
        cents / 100,
        cents % 100
    )
}

/// The statement: a credit per transfer (one in a hundred quoting its reference only in
/// the reason, without `RF`, so found by amount and reason), three credits nobody expects,
/// and a second credit for the first transfer.
fn statement(open: &[(Transaction, String)]) -> String {
    let mut entries = String::new();
    for (i, (tx, reference)) in open.iter().enumerate() {
        let remittance = if i % 100 == 50 {
            format!("<Ustrd>DIRITTI PRATICA COD {}</Ustrd>", &reference[4..])
        } else {
            format!("<Strd><CdtrRefInf><Ref>{reference}</Ref></CdtrRefInf></Strd>")
        };
        entries.push_str(&entry(
            &format!("T{i:05}"),
            tx.total.minor_units(),
            &remittance,
        ));
    }
    for n in 0..3 {
        entries.push_str(&entry(
            &format!("X{n}"),
            777 + n,
            "<Ustrd>RIMBORSO SPESE</Ustrd>",
        ));
    }
    let (first, reference) = &open[0];
    entries.push_str(&entry(
        "DUP-1",
        first.total.minor_units(),
        &format!("<Strd><CdtrRefInf><Ref>{reference}</Ref></CdtrRefInf></Strd>"),
    ));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>CRASH-1</MsgId></GrpHdr><Stmt><Id>1</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id></Acct>
{entries}</Stmt></BkToCstmrStmt></Document>"#
    )
}

fn service(
    store: Arc<dyn Store>,
    creditor: Option<CreditorId>,
) -> (Payments, Arc<BankTransferGateway>) {
    let bank = Arc::new(BankTransferGateway::new().with_import_chunk(CHUNK));
    if let Some(c) = creditor {
        bank.set_account(c, BankAccount::new("Comune", IBAN).unwrap());
    }
    let payments = Payments::builder()
        .store(store)
        .gateway(bank.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .build()
        .unwrap();
    (payments, bank)
}

/// The child's part: imports the statement until the parent kills it.
#[tokio::test]
#[ignore = "the child process of the import crash tests; run by them"]
async fn import_crash_child() {
    let url = std::env::var(CHILD_URL).expect("run by the import crash tests");
    let creditor: CreditorId = std::env::var(CHILD_CREDITOR).unwrap().parse().unwrap();
    let file = std::fs::read(std::env::var(CHILD_FILE).unwrap()).unwrap();
    let store = Arc::new(SqlxStore::connect(&url).await.unwrap());
    let (payments, bank) = service(store, Some(creditor));
    let operator = Actor::operator(creditor, Role::Manager, "child");
    bank.import_statement(&payments, &operator, creditor, &file)
        .await
        .unwrap();
    println!("IMPORTED");
}

async fn killed_mid_import_is_completed_by_a_rerun(url: String) {
    let store = Arc::new(SqlxStore::connect(&url).await.unwrap());
    let (payments, bank) = service(store.clone(), None);
    let fx = Fixture::install(&payments, "bank_transfer", &[MethodKind::BankTransfer])
        .await
        .unwrap();
    bank.set_account(fx.creditor.id, BankAccount::new("Comune", IBAN).unwrap());
    let mut open = Vec::with_capacity(TRANSFERS);
    for i in 0..TRANSFERS {
        // Amounts all different: the credits found by amount and reason find one.
        let amount = format!("{},{:02}", 10 + i / 100, i % 100);
        let checkout = fx
            .pay_fee(
                &payments,
                &format!("p{i}"),
                &amount,
                MethodKind::BankTransfer,
            )
            .await
            .unwrap();
        let Instruction::BankTransfer(d) = checkout.instruction else {
            panic!("a transfer")
        };
        open.push((checkout.transaction, d.reference));
    }
    let file = statement(&open);
    let path = common::temp_dir().join("statement.xml");
    std::fs::write(&path, &file).unwrap();
    let keys: Vec<String> = (0..TRANSFERS)
        .map(|i| format!("{IBAN}:T{i:05}"))
        .chain((0..3).map(|n| format!("{IBAN}:X{n}")))
        .chain([format!("{IBAN}:DUP-1")])
        .collect();

    // The import, in a process of its own, killed once a few chunks are written.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "import_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &url)
        .env(CHILD_CREDITOR, fx.creditor.id.to_string())
        .env(CHILD_FILE, &path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let written = store.bank_entry_keys(fx.creditor.id, &keys).await.unwrap();
        if written.len() >= 3 * CHUNK {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child wrote nothing in two minutes"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");
    let survived = store.bank_entry_keys(fx.creditor.id, &keys).await.unwrap();
    assert!(
        survived.len() < keys.len(),
        "the kill came after the import ended ({} entries): nothing was interrupted",
        survived.len()
    );

    eprintln!("killed after {} of {} entries", survived.len(), keys.len());
    // A new process runs the same import again: it completes what the first began.
    let (payments, bank) = service(store.clone(), Some(fx.creditor.id));
    let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");
    let report = bank
        .import_statement(&payments, &operator, fx.creditor.id, file.as_bytes())
        .await
        .unwrap();
    assert_eq!(report.already_imported, survived.len(), "{report:?}");
    assert_eq!(
        report.already_imported + report.matched.len() + report.exceptions.len(),
        keys.len()
    );

    // Every credit once; every transfer paid once, with one set of messages.
    assert_eq!(
        store
            .bank_entry_keys(fx.creditor.id, &keys)
            .await
            .unwrap()
            .len(),
        keys.len()
    );
    for (tx, _) in &open {
        let stored = store.transaction(tx.id).await.unwrap().unwrap();
        assert_eq!(stored.status, TxStatus::Paid, "{}", tx.id);
        let paid = store
            .events(tx.id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.to == TxStatus::Paid)
            .count();
        assert_eq!(paid, 1, "{} paid once", tx.id);
    }
    let outbox = store.outbox(&OutboxQuery::default()).await.unwrap();
    let mut per_tx: HashMap<TransactionId, usize> = HashMap::new();
    for m in &outbox {
        *per_tx.entry(m.transaction_id).or_default() += 1;
    }
    let counts: std::collections::BTreeSet<usize> = per_tx.values().copied().collect();
    assert_eq!(per_tx.len(), TRANSFERS, "every transfer has its messages");
    assert_eq!(
        counts.len(),
        1,
        "each transfer the same messages: {counts:?}"
    );

    // The ledger: three credits nobody expects and the second credit of the first
    // transfer, each once.
    let mut q = ExceptionQuery::new(fx.creditor.id);
    q.limit = 100;
    let ledger = payments.exceptions(&operator, &q).await.unwrap();
    assert_eq!(ledger.len(), 4, "{ledger:#?}");
    assert!(
        ledger
            .iter()
            .all(|e| e.kind == ExceptionKind::UnmatchedCredit)
    );
    let again = bank
        .import_statement(&payments, &operator, fx.creditor.id, file.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        again.already_imported,
        keys.len(),
        "a third import changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_import_killed_midway_is_completed_by_a_rerun() {
    killed_mid_import_is_completed_by_a_rerun(common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_import_killed_midway_is_completed_by_a_rerun() {
    let Some(url) = common::postgres_url("postgres_import_killed_midway_is_completed_by_a_rerun")
    else {
        return;
    };
    // A schema of its own, named in the URL so the child process uses it too.
    killed_mid_import_is_completed_by_a_rerun(common::postgres_schema_url(&url).await).await;
}
