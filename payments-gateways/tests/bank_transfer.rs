//! Bank transfer end to end on the in-memory store: instructions, the EPC QR code read
//! back by real decoders, the payer's report, statements as banks write them, hostile
//! files, signed notifications and overdue reports.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use payments_core::testing::Fixture;
use payments_core::testing::gateway::GatewayDriver;
use payments_core::*;
use payments_gateways::bank_transfer::{
    BankAccount, BankTransferGateway, ImportReport, Limits, ReferenceScheme, epc, rf,
};

const IBAN: &str = "IT60X0542811101000000123456";
const KEY: &str = "a notification key shared with the bank connector";

struct Env {
    payments: Payments,
    bank: Arc<BankTransferGateway>,
    notifier: Arc<RecordingNotifier>,
    clock: Arc<ManualClock>,
    fx: Fixture,
    operator: Actor,
}

impl Env {
    async fn new() -> Env {
        Env::with_account(BankAccount::new("Comune di Esempio - Tesoreria", IBAN).unwrap()).await
    }

    async fn with_account(account: BankAccount) -> Env {
        Env::with_gateway(account, BankTransferGateway::new()).await
    }

    /// An environment whose gateway imports `movements` per database transaction.
    async fn with_chunk(movements: usize) -> Env {
        Env::with_gateway(
            BankAccount::new("Comune di Esempio - Tesoreria", IBAN).unwrap(),
            BankTransferGateway::new().with_import_chunk(movements),
        )
        .await
    }

    async fn with_gateway(account: BankAccount, bank: BankTransferGateway) -> Env {
        let bank = Arc::new(bank.with_notification_key(KEY));
        let notifier = Arc::new(RecordingNotifier::new());
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap(),
        ));
        let payments = Payments::builder()
            .store(Arc::new(InMemoryStore::new()))
            .gateway(bank.clone())
            .notifier(notifier.clone())
            .clock(clock.clone())
            .build()
            .unwrap();
        let fx = Fixture::install(&payments, "bank_transfer", &[MethodKind::BankTransfer])
            .await
            .unwrap();
        bank.set_account(fx.creditor.id, account);
        let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");
        Env {
            payments,
            bank,
            notifier,
            clock,
            fx,
            operator,
        }
    }

    /// `payer` checks out a fee of `amount` by bank transfer.
    async fn transfer(&self, payer: &str, amount: &str) -> (Transaction, BankTransferDetails) {
        let checkout = self
            .fx
            .pay_fee(&self.payments, payer, amount, MethodKind::BankTransfer)
            .await
            .unwrap();
        let Instruction::BankTransfer(details) = checkout.instruction else {
            panic!(
                "a bank transfer instruction, got {:?}",
                checkout.instruction
            )
        };
        (checkout.transaction, details)
    }

    async fn status(&self, tx: &Transaction) -> TxStatus {
        self.payments
            .transaction(&self.operator, tx.id)
            .await
            .unwrap()
            .status
    }

    async fn import(&self, file: &str) -> Result<ImportReport> {
        self.bank
            .import_statement(
                &self.payments,
                &self.operator,
                self.fx.creditor.id,
                file.as_bytes(),
            )
            .await
    }

    async fn entries(&self) -> Vec<BankEntry> {
        self.payments
            .bank_entries(&self.operator, &BankEntryQuery::new(self.fx.creditor.id))
            .await
            .unwrap()
    }
}

fn amount(tx: &Transaction) -> String {
    let cents = tx.total.minor_units();
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn spaced(text: &str, every: usize) -> String {
    text.as_bytes()
        .chunks(every)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn notification(msg: &str, amount: &str, reason: &str) -> String {
    include_str!("data/camt054_v08.xml")
        .replace("{{MSG}}", msg)
        .replace("{{IBAN}}", IBAN)
        .replace("{{AMOUNT}}", amount)
        .replace("{{REASON}}", reason)
}

// ---------------------------------------------------------------- the gateway contract

struct Driver(Arc<BankTransferGateway>);

#[async_trait]
impl GatewayDriver for Driver {
    async fn complete(
        &self,
        request: &StartRequest,
        started: &Started,
        _outcome: PaymentOutcome,
    ) -> CallbackRequest {
        let Instruction::BankTransfer(d) = &started.instruction else {
            panic!("a bank transfer")
        };
        let body = notification(
            &request.transaction.id.to_string()[..8],
            &amount(&request.transaction),
            &d.reason,
        );
        self.0
            .signed_notification(body)
            .expect("a notification key")
    }

    fn secrets(&self) -> Vec<String> {
        vec![KEY.into()]
    }

    fn outcomes(&self) -> Vec<PaymentOutcome> {
        vec![PaymentOutcome::Paid]
    }
}

#[tokio::test]
async fn passes_the_gateway_conformance_suite() {
    let bank = Arc::new(
        BankTransferGateway::new()
            .with_notification_key(KEY)
            .with_default_account(BankAccount::new("Comune di Prova", IBAN).unwrap()),
    );
    payments_core::testing::gateway::run_all(bank.as_ref(), &Driver(bank.clone())).await;
}

// ---------------------------------------------------------------- instructions

#[tokio::test]
async fn the_instruction_carries_reference_reason_and_an_epc_payload() {
    let env = Env::new().await;
    let (tx, d) = env.transfer("alice", "16,00").await;
    assert_eq!(d.iban, IBAN);
    assert_eq!(d.beneficiary, "Comune di Esempio - Tesoreria");
    assert_eq!(d.amount, tx.total);
    assert_eq!(d.reference.len(), 16, "RF, two check digits, 12 characters");
    assert!(
        !d.reference[4..].contains(['I', 'L', 'O', 'U']),
        "no letter a payer would confuse: {}",
        d.reference
    );
    assert!(rf::is_valid(&d.reference));
    assert_eq!(tx.provider_ref.as_deref(), Some(d.reference.as_str()));
    assert!(d.reason.starts_with(&rf::pretty(&d.reference)));
    assert!(d.reason.contains("Diritti pratica alice"));
    assert!(d.reason.chars().count() <= 140);
    let lines: Vec<&str> = d.epc_qr_payload.split('\n').collect();
    assert_eq!(&lines[..4], ["BCD", "002", "1", "SCT"]);
    assert_eq!(lines[4], "", "no BIC was set");
    assert_eq!(lines[5], "Comune di Esempio - Tesoreria");
    assert_eq!(lines[6], IBAN);
    assert_eq!(lines[7], "EUR16.00");
    assert_eq!(lines[8], "GOVT");
    assert_eq!(lines[9], d.reference, "the structured reference");
    assert_eq!(lines[10], "", "never both structured and unstructured");
    assert!(d.epc_qr_payload.len() <= epc::MAX_PAYLOAD_BYTES);
    // Bank transfers wait for the statement: 30 days, not the card's minutes, to the end of
    // the 30th day in Rome (created 20 Nov at 08:00 UTC: 20 Dec, 23:59:59 CET).
    assert_eq!(tx.created_at.to_rfc3339(), "2026-11-20T08:00:00+00:00");
    assert_eq!(tx.expires_at.to_rfc3339(), "2026-12-20T22:59:59+00:00");
}

#[tokio::test]
async fn a_long_cart_keeps_its_reference_within_140_characters() {
    let env = Env::new().await;
    let actor = Actor::payer("bob");
    let cart = env
        .payments
        .open_cart(&actor, env.fx.creditor.id, Fixture::payer("bob"))
        .await
        .unwrap();
    for n in 0..6 {
        let fee = NewFreeItem::new(
            env.fx.fees.id,
            "10",
            format!("Diritti di segreteria per la pratica edilizia numero {n} del 2026"),
        )
        .with_extra("case_number", format!("2026/{n}"))
        .with_extra("office", "edilizia");
        env.payments
            .add_free_item(&actor, cart.id, fee)
            .await
            .unwrap();
    }
    let method = env.fx.method(MethodKind::BankTransfer).id;
    let checkout = env
        .payments
        .checkout(&actor, cart.id, method, "k")
        .await
        .unwrap();
    let Instruction::BankTransfer(d) = checkout.instruction else {
        panic!()
    };
    let len = d.reason.chars().count();
    assert!((130..=140).contains(&len), "{len}");
    // The reference comes first among the candidates (a shorter run of it may check too,
    // one time in 97 for each length).
    assert_eq!(rf::find_in(&d.reason)[0], d.reference);
    assert!(d.epc_qr_payload.contains("EUR60.00"));
}

#[tokio::test]
async fn reference_schemes_prefix_and_unstructured() {
    let account = BankAccount::new("Comune di Esempio", IBAN)
        .unwrap()
        .with_bic("BPMOIT22XXX")
        .unwrap()
        .with_scheme(ReferenceScheme::Prefixed("TARI26".into()))
        .unwrap();
    let env = Env::with_account(account).await;
    let (_, d) = env.transfer("carla", "12,30").await;
    assert!(d.reference[4..].starts_with("TARI26"), "{}", d.reference);
    assert_eq!(d.reference.len(), 22);
    assert!(d.epc_qr_payload.contains("\nBPMOIT22XXX\n"));

    let account = BankAccount::new("Comune di Esempio", IBAN)
        .unwrap()
        .with_scheme(ReferenceScheme::Unstructured)
        .unwrap();
    let env = Env::with_account(account).await;
    let (_, d) = env.transfer("carla", "12,30").await;
    let lines: Vec<&str> = d.epc_qr_payload.split('\n').collect();
    assert_eq!(lines[9], "", "no structured reference");
    assert_eq!(lines[10], d.reason, "the reason as unstructured text");

    for bad in [
        ReferenceScheme::Prefixed(String::new()),
        ReferenceScheme::Prefixed("TOOLONGPREFIX".into()),
        ReferenceScheme::Prefixed("TA-RI".into()),
    ] {
        let err = BankAccount::new("Comune", IBAN)
            .unwrap()
            .with_scheme(bad)
            .unwrap_err();
        assert_eq!(
            err.validation_errors().unwrap().fields(),
            ["reference_scheme"]
        );
    }
}

#[test]
fn ibans_are_checked_when_an_account_is_set() {
    for good in [
        "IT60X0542811101000000123456",
        "IT60 X054 2811 1010 0000 0123 456",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
    ] {
        let account = BankAccount::new("Comune", good).unwrap();
        assert!(!account.iban().contains(' '));
    }
    for bad in [
        "IT61X0542811101000000123456",  // check digits
        "IT60X054281110100000012345",   // length
        "XX60X0542811101000000123456",  // country
        "IT60X05428111010000001234567", // one character too many
        "",
        "not an iban",
    ] {
        let err = BankAccount::new("Comune", bad).unwrap_err();
        assert_eq!(err.validation_errors().unwrap().fields(), ["iban"], "{bad}");
    }
    let err = BankAccount::new("", IBAN).unwrap_err();
    assert_eq!(err.validation_errors().unwrap().fields(), ["beneficiary"]);
    for bic in [
        "BPM",
        "BPMOIT2",
        "BPMOIT22XX",
        "12MOIT22",
        "ÀÀÀÀ",
        "BPMOIT22XX€",
    ] {
        let err = BankAccount::new("Comune", IBAN)
            .unwrap()
            .with_bic(bic)
            .unwrap_err();
        assert_eq!(err.validation_errors().unwrap().fields(), ["bic"], "{bic}");
    }
    for bic in ["BPMOIT22", "bpmoit22xxx"] {
        BankAccount::new("Comune", IBAN)
            .unwrap()
            .with_bic(bic)
            .unwrap();
    }
}

#[tokio::test]
async fn the_qr_code_decodes_back_to_the_payload() {
    // A name with an accent: the payload is UTF-8 (character set 1).
    let env =
        Env::with_account(BankAccount::new("Comune di Forlì - Tesoreria", IBAN).unwrap()).await;
    let (_, d) = env.transfer("dario", "456,78").await;
    let qr = BankTransferGateway::qr(&d).unwrap();
    assert!(qr.version() <= 13, "EPC codes stay within version 13");
    assert!(d.epc_qr_payload.contains("Forlì"));
    let png = qr.png(300).unwrap();
    let svg = qr.svg(300);
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"));

    // A pure-Rust decoder, everywhere.
    let image = image::load_from_memory(&png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, d.epc_qr_payload);

    // ZBar, the decoder Debian ships, where it is installed (CI installs it).
    let dir = std::env::temp_dir().join(format!("epc-qr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("epc.png");
    std::fs::write(&file, &png).unwrap();
    match std::process::Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sbinary"])
        .arg(&file)
        .output()
    {
        Ok(out) => {
            assert!(out.status.success(), "zbarimg failed: {out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            assert_eq!(text.trim_end_matches('\n'), d.epc_qr_payload);
        }
        Err(e) => eprintln!(
            "\n*** SKIPPED: zbarimg could not run ({e}); install zbar-tools to decode the EPC \
             QR code with ZBar too (CI does). The rqrr decoder checked it above. ***\n"
        ),
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------- statements

struct Six {
    a: (Transaction, BankTransferDetails),
    b: (Transaction, BankTransferDetails),
    c: (Transaction, BankTransferDetails),
    d: (Transaction, BankTransferDetails),
    e: (Transaction, BankTransferDetails),
    f: (Transaction, BankTransferDetails),
}

async fn six_transfers(env: &Env) -> Six {
    Six {
        a: env.transfer("a", "16,00").await,
        b: env.transfer("b", "120,50").await,
        c: env.transfer("c", "150").await,
        d: env.transfer("d", "48").await,
        e: env.transfer("e", "25").await,
        f: env.transfer("f", "33,30").await,
    }
}

fn statement_v02(s: &Six) -> String {
    let batch = s.b.0.total.amount() + s.c.0.total.amount() + rust_decimal::Decimal::new(4000, 2);
    include_str!("data/camt053_v02.xml")
        .replace("{{IBAN}}", IBAN)
        .replace("{{AMOUNT_A}}", &amount(&s.a.0))
        .replace("{{RF_A}}", &s.a.1.reference)
        .replace(
            "{{RF_A_LOWER_SPACED}}",
            &rf::pretty(&s.a.1.reference).to_lowercase(),
        )
        .replace("{{AMOUNT_BATCH}}", &format!("{batch:.2}"))
        .replace("{{AMOUNT_B}}", &amount(&s.b.0))
        .replace("{{RF_B_PRETTY}}", &rf::pretty(&s.b.1.reference))
        .replace("{{AMOUNT_C}}", &amount(&s.c.0))
        // Copied by hand: in groups, lower case, zeros and ones written as letters.
        .replace(
            "{{OWN_C_SPACED}}",
            &spaced(
                &s.c.1.reference[4..]
                    .to_lowercase()
                    .replace('0', "o")
                    .replace('1', "l"),
                3,
            ),
        )
        .replace("{{AMOUNT_D_PARTIAL}}", "40.00")
        .replace("{{RF_D}}", &s.d.1.reference)
        .replace("{{AMOUNT_E}}", &amount(&s.e.0))
        .replace("{{RF_E}}", &s.e.1.reference)
        .replace("{{AMOUNT_F}}", &amount(&s.f.0))
        .replace("{{RF_F}}", &s.f.1.reference)
}

fn statement_v08(s: &Six) -> String {
    include_str!("data/camt053_v08.xml")
        .replace("{{IBAN}}", IBAN)
        .replace("{{AMOUNT_F}}", &amount(&s.f.0))
        .replace("{{RF_F_PRETTY}}", &rf::pretty(&s.f.1.reference))
}

fn reason_of(report: &ImportReport, key_end: &str) -> String {
    let e = report
        .exceptions
        .iter()
        .find(|e| e.key.ends_with(key_end))
        .unwrap_or_else(|| panic!("an exception for {key_end} in {:#?}", report.exceptions));
    match &e.outcome {
        BankEntryOutcome::Exception { reason, .. } => reason.clone(),
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn a_statement_is_matched_as_banks_write_it_and_a_second_import_changes_nothing() {
    let env = Env::new().await;
    let s = six_transfers(&env).await;
    let file = statement_v02(&s);
    let report = env.import(&file).await.unwrap();

    assert_eq!(report.message_id, "STMT-20261120-0001");
    // Paid: A by its structured reference, B inside a batch by its reference written with
    // spaces, C by its amount and the reference quoted without RF in the reason.
    let matched: Vec<TransactionId> = report
        .matched
        .iter()
        .map(|e| e.transaction_id().unwrap())
        .collect();
    assert_eq!(matched, vec![s.a.0.id, s.b.0.id, s.c.0.id]);
    for t in [&s.a.0, &s.b.0, &s.c.0] {
        assert_eq!(env.status(t).await, TxStatus::Paid);
    }
    let a = env
        .payments
        .transaction(&env.operator, s.a.0.id)
        .await
        .unwrap();
    assert_eq!(
        a.provider_ref.as_deref(),
        Some(format!("{IBAN}:2026112000000101").as_str()),
        "the bank's reference of the credit is kept"
    );
    let b = env
        .payments
        .transaction(&env.operator, s.b.0.id)
        .await
        .unwrap();
    assert_eq!(
        b.provider_ref.as_deref(),
        Some(format!("{IBAN}:2026112000000102/1").as_str()),
        "a batch transaction is its entry's reference and position"
    );
    assert_eq!(report.matched[1].debtor.as_deref(), Some("LUCIA BIANCHI"));
    assert_eq!(
        report.matched[2].reference.as_deref(),
        Some(s.c.1.reference.as_str())
    );

    // Exceptions, each with its reason: the partial amount, the reversal, the foreign
    // currency, the second payment of A, the gift.
    assert_eq!(report.exceptions.len(), 5, "{:#?}", report.exceptions);
    assert!(
        reason_of(&report, "0102/3").contains("partial payment: 40.00 EUR received of 48.00 EUR")
    );
    assert_eq!(report.exceptions[0].transaction_id(), Some(s.d.0.id));
    assert!(reason_of(&report, "0103").contains("reversal of a credit"));
    assert!(reason_of(&report, "0105").contains("credited in CHF"));
    assert!(reason_of(&report, "0106").starts_with("duplicate"));
    assert!(reason_of(&report, "0107").contains("no reference"));
    for t in [&s.d.0, &s.e.0, &s.f.0] {
        assert_eq!(env.status(t).await, TxStatus::Pending, "unchanged");
    }
    // The fees debit and the entry not yet booked are not payments.
    assert_eq!(report.ignored, 2);
    assert_eq!(report.already_imported, 0);
    assert_eq!(env.entries().await.len(), 8);
    let mut q = BankEntryQuery::new(env.fx.creditor.id);
    q.exceptions_only = true;
    assert_eq!(
        env.payments
            .bank_entries(&env.operator, &q)
            .await
            .unwrap()
            .len(),
        5
    );

    // The same file again: everything is known, nothing changes.
    let events_before = env.payments.events(&env.operator, s.a.0.id).await.unwrap();
    let again = env.import(&file).await.unwrap();
    assert!(again.matched.is_empty() && again.exceptions.is_empty());
    assert_eq!(again.already_imported, 8);
    assert_eq!(again.ignored, 2);
    assert_eq!(env.entries().await.len(), 8);
    assert_eq!(
        env.payments.events(&env.operator, s.a.0.id).await.unwrap(),
        events_before
    );

    // A later statement in another version pays F.
    let later = env.import(&statement_v08(&s)).await.unwrap();
    assert_eq!(later.matched.len(), 1);
    assert_eq!(later.matched[0].transaction_id(), Some(s.f.0.id));
    assert_eq!(later.matched[0].debtor.as_deref(), Some("PAOLA FERRARI"));
    assert_eq!(
        later.matched[0].booked_on,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 21)
    );
    assert_eq!(env.status(&s.f.0).await, TxStatus::Paid);
}

#[tokio::test]
async fn a_credit_for_a_cancelled_transaction_pays_it_late() {
    // Money is a fact (DESIGN.md): the payer cancelled, then the transfer arrived; its items
    // were still free, so the credit pays the transaction, and operators see it was late.
    let env = Env::new().await;
    let s = six_transfers(&env).await;
    env.payments
        .cancel(&Actor::payer("a"), s.a.0.id)
        .await
        .unwrap();
    let report = env.import(&statement_v02(&s)).await.unwrap();
    assert!(
        report
            .matched
            .iter()
            .any(|e| e.transaction_id() == Some(s.a.0.id)),
        "{report:#?}"
    );
    assert_eq!(env.status(&s.a.0).await, TxStatus::Paid);
    let late = env
        .payments
        .exceptions(
            &env.operator,
            &ExceptionQuery::new(env.fx.creditor.id).of_transaction(s.a.0.id),
        )
        .await
        .unwrap();
    let kinds: Vec<ExceptionKind> = late.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ExceptionKind::LatePayment)
            .count(),
        1,
        "{late:#?}"
    );
    // More than due is not a payment of it: an exception.
    let more = notification("MORE", "33.31", &s.f.1.reference);
    let report = env.import(&more).await.unwrap();
    assert!(
        reason_of(&report, "N-MORE").contains("more than due: 33.31 EUR received for 33.30 EUR")
    );
    assert_eq!(env.status(&s.f.0).await, TxStatus::Pending);
}

#[tokio::test]
async fn two_identical_credits_are_two_entries_and_a_second_import_changes_nothing() {
    // Two payers send the same amount with the same reason on the same day, and the bank
    // gives neither credit a reference of its own: they are two credits, the second a
    // second payment, never silently merged into one.
    let env = Env::new().await;
    let (tx, d) = env.transfer("gino", "16,00").await;
    let one = notification("TWIN", "16.00", &d.reason);
    let start = one.find("<Ntry>").unwrap();
    let end = one.find("</Ntry>").unwrap() + "</Ntry>".len();
    let entry = one[start..end].replace("<AcctSvcrRef>N-TWIN</AcctSvcrRef>", "");
    let file = format!("{}{entry}{entry}{}", &one[..start], &one[end..]);
    let first = env.import(&file).await.unwrap();
    assert_eq!(first.matched.len(), 1, "{first:#?}");
    assert_eq!(first.exceptions.len(), 1, "{first:#?}");
    assert_eq!(first.matched[0].key, format!("{IBAN}:TWIN#1/1"));
    assert_eq!(first.exceptions[0].key, format!("{IBAN}:TWIN#2/1"));
    assert_eq!(env.status(&tx).await, TxStatus::Paid);
    // The second credit is in the ledger for an operator to give back.
    let ledger = env
        .payments
        .exceptions(&env.operator, &ExceptionQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].kind, ExceptionKind::UnmatchedCredit);
    assert_eq!(ledger[0].amount, Some(Money::parse_eur("16").unwrap()));
    assert!(
        ledger[0].reason.contains("duplicate"),
        "{}",
        ledger[0].reason
    );

    // The same file again: nothing new, nothing paid again.
    let again = env.import(&file).await.unwrap();
    assert_eq!(again.already_imported, 2);
    assert!(again.matched.is_empty() && again.exceptions.is_empty());
    let entries = env
        .payments
        .bank_entries(&env.operator, &BankEntryQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        env.payments
            .exceptions(&env.operator, &ExceptionQuery::new(env.fx.creditor.id))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn hostile_or_malformed_files_are_refused_and_change_nothing() {
    let env = Env::new().await;
    let s = six_transfers(&env).await;
    let good = statement_v02(&s);
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol9 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr><MsgId>&lol9;</MsgId></GrpHdr></BkToCstmrStmt></Document>"#;
    let external = good.replacen(
        "<Document",
        "<!DOCTYPE Document [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n<Document",
        1,
    );
    let entity_without_dtd = good.replacen("MARIO ROSSI", "&lol9;", 1);
    let huge = good.replacen("CONTRIBUTO FESTA PATRONALE", &"A".repeat(5_000_000), 1);
    let old_version = good.replace("camt.053.001.02", "camt.053.001.01");
    let pain = good.replace("camt.053.001.02", "pain.001.001.03");
    let truncated = good[..good.len() / 2].to_owned();
    let other_account = good.replace(IBAN, "DE89370400440532013000");
    let bad_amount = good.replacen(
        "<Amt Ccy=\"EUR\">50.00</Amt>",
        "<Amt Ccy=\"EUR\">cinquanta</Amt>",
        1,
    );
    let bad_indicator = good.replacen(
        "<CdtDbtInd>DBIT</CdtDbtInd>",
        "<CdtDbtInd>BOTH</CdtDbtInd>",
        1,
    );
    let mut latin1 = good.clone().into_bytes();
    let at = good.find("MARIO").unwrap();
    latin1[at] = 0xC8; // "È" in ISO 8859-1, invalid alone in UTF-8

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "billion laughs",
            laughs.as_bytes().to_vec(),
            "document type declaration",
        ),
        (
            "external entity",
            external.into_bytes(),
            "document type declaration",
        ),
        (
            "entity without DTD",
            entity_without_dtd.into_bytes(),
            "malformed statement",
        ),
        (
            "huge text",
            huge.into_bytes(),
            "RmtInf/Ustrd has 5000000 characters",
        ),
        (
            "version .001.01",
            old_version.into_bytes(),
            "version 01 is not supported",
        ),
        (
            "not camt",
            pain.into_bytes(),
            "no camt.053 or camt.054 namespace",
        ),
        ("truncated", truncated.into_bytes(), "malformed statement"),
        (
            "another account",
            other_account.into_bytes(),
            "not the creditor's",
        ),
        (
            "bad amount",
            bad_amount.into_bytes(),
            "Amt is not a decimal number",
        ),
        (
            "bad indicator",
            bad_indicator.into_bytes(),
            "CdtDbtInd is \"BOTH\"",
        ),
        ("not UTF-8", latin1, "not UTF-8"),
        ("empty", Vec::new(), "the file is empty"),
    ];
    for (name, file, expected) in cases {
        let err = env
            .bank
            .import_statement(&env.payments, &env.operator, env.fx.creditor.id, &file)
            .await
            .expect_err(name);
        let fields = err
            .validation_errors()
            .map(|v| v.fields())
            .unwrap_or_default();
        assert_eq!(fields, ["statement"], "{name}: {err}");
        assert!(err.to_string().contains(expected), "{name}: {err}");
    }
    // Too large for the limits set.
    let small = BankTransferGateway::new().with_limits(Limits {
        max_bytes: 1024,
        ..Limits::default()
    });
    small.set_account(
        env.fx.creditor.id,
        BankAccount::new("Comune", IBAN).unwrap(),
    );
    let err = small
        .import_statement(
            &env.payments,
            &env.operator,
            env.fx.creditor.id,
            good.as_bytes(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("at most 1024 are accepted"),
        "{err}"
    );

    assert!(env.entries().await.is_empty(), "nothing was recorded");
    for t in [&s.a.0, &s.b.0, &s.c.0] {
        assert_eq!(env.status(t).await, TxStatus::Pending, "nothing was paid");
    }
    // A payer may not import; an operator of another creditor may not either.
    let err = env
        .bank
        .import_statement(
            &env.payments,
            &Actor::payer("a"),
            env.fx.creditor.id,
            good.as_bytes(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }));
    let viewer = Actor::operator(env.fx.creditor.id, Role::Viewer, "vera");
    let err = env
        .bank
        .import_statement(&env.payments, &viewer, env.fx.creditor.id, good.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }));
}

// ---------------------------------------------------------------- the whole flow

#[tokio::test]
async fn checkout_report_import_paid_and_both_mails() {
    let env = Env::new().await;
    let (tx, d) = env.transfer("mario", "16,00").await;
    let payer = Actor::payer("mario");

    // A report that does not hold is refused field by field and changes nothing.
    let wrong =
        TransferReport::parse("2026-11-19", "15,00", "CRO 0306909606510", "IT00", "").unwrap_err();
    assert_eq!(
        wrong.validation_errors().unwrap().fields(),
        ["ordering_iban"],
        "what the form alone can tell"
    );
    let report = TransferReport::parse("2026-11-19", "15,00", "0306909606510", "", "").unwrap();
    let err = env
        .payments
        .report_transfer(&payer, tx.id, &report)
        .await
        .unwrap_err();
    assert_eq!(
        err.validation_errors().unwrap().fields(),
        ["amount", "executed_on"],
        "the amount is the total, and the transfer was made after the checkout"
    );
    assert_eq!(env.status(&tx).await, TxStatus::Pending);

    let report = TransferReport::parse(
        "2026-11-20",
        "16,00",
        "0306909606510",
        "DE89 3704 0044 0532 0130 00",
        "ricevuta-bonifico.pdf",
    )
    .unwrap();
    let reported = env
        .payments
        .report_transfer(&payer, tx.id, &report)
        .await
        .unwrap();
    assert_eq!(reported.status, TxStatus::Reported);
    let events = env.payments.events(&payer, tx.id).await.unwrap();
    let note = events.last().unwrap().note.clone().unwrap();
    assert!(
        note.contains("0306909606510") && note.contains("ricevuta-bonifico.pdf"),
        "{note}"
    );

    // The statement arrives: the transfer quotes the reference.
    // A bank that gives the credit no reference of its own: it is known by the
    // notification's identity and the entry's position in it.
    let file = notification("ROSSI1", "16.00", &d.reason)
        .replace("<AcctSvcrRef>N-ROSSI1</AcctSvcrRef>", "");
    let imported = env.import(&file).await.unwrap();
    assert_eq!(imported.matched.len(), 1, "{imported:#?}");
    assert_eq!(imported.matched[0].key, format!("{IBAN}:ROSSI1#1/1"));
    let again = env.import(&file).await.unwrap();
    assert_eq!(
        again.already_imported, 1,
        "the key is the same the second time"
    );
    assert_eq!(env.status(&tx).await, TxStatus::Paid);
    let steps: Vec<TxStatus> = env
        .payments
        .events(&payer, tx.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        steps,
        [
            TxStatus::Created,
            TxStatus::Pending,
            TxStatus::Reported,
            TxStatus::Paid
        ]
    );

    // Both mails of the payment are in the outbox, and go out.
    let messages = env
        .payments
        .outbox(
            &env.operator,
            env.fx.creditor.id,
            OutboxQuery {
                transaction_id: Some(tx.id),
                ..OutboxQuery::default()
            },
        )
        .await
        .unwrap();
    let paid_mails: Vec<NotificationKind> = messages
        .iter()
        .filter_map(|m| match &m.payload {
            OutboxPayload::Notification(n) if n.summary.status == TxStatus::Paid => Some(n.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        paid_mails,
        [NotificationKind::Receipt, NotificationKind::CreditorNotice]
    );
    env.payments.dispatch_outbox().await.unwrap();
    let sent = env.notifier.sent();
    assert_eq!(
        sent.len(),
        4,
        "report: receipt and notice; payment: receipt and notice"
    );
    assert_eq!(sent[2].0.to, "mario@example.it");
    assert_eq!(sent[3].0.to, "ragioneria@comune.example.it");
}

#[tokio::test]
async fn an_operator_confirms_or_rejects_a_report_with_a_note() {
    let env = Env::new().await;
    let (a, _) = env.transfer("a", "10").await;
    let (b, _) = env.transfer("b", "20").await;
    for (payer, tx, amount) in [("a", &a, "10"), ("b", &b, "20")] {
        let report = TransferReport::parse("2026-11-20", amount, "TRN1", "", "").unwrap();
        env.payments
            .report_transfer(&Actor::payer(payer), tx.id, &report)
            .await
            .unwrap();
    }
    env.payments
        .confirm_payment(&env.operator, a.id, Some("seen in the bank's app".into()))
        .await
        .unwrap();
    env.payments
        .reject_report(
            &env.operator,
            b.id,
            Some("no such transfer on the account".into()),
        )
        .await
        .unwrap();
    let a_events = env.payments.events(&env.operator, a.id).await.unwrap();
    let last = a_events.last().unwrap();
    assert_eq!(
        (last.to, last.note.as_deref()),
        (TxStatus::Paid, Some("seen in the bank's app"))
    );
    assert_eq!(last.actor, env.operator);
    let b_events = env.payments.events(&env.operator, b.id).await.unwrap();
    let last = b_events.last().unwrap();
    assert_eq!(last.to, TxStatus::Rejected);
    assert_eq!(
        last.note.as_deref(),
        Some("no such transfer on the account")
    );
    // A viewer may not confirm.
    let viewer = Actor::operator(env.fx.creditor.id, Role::Viewer, "vera");
    assert!(matches!(
        env.payments.confirm_payment(&viewer, a.id, None).await,
        Err(Error::Forbidden { .. })
    ));
}

#[tokio::test]
async fn reports_left_unmatched_are_flagged_after_the_configured_days() {
    let account = BankAccount::new("Comune di Esempio", IBAN)
        .unwrap()
        .flag_reports_after_days(3)
        .unwrap();
    let env = Env::with_account(account).await;
    let (old, _) = env.transfer("old", "10").await;
    let (new, _) = env.transfer("new", "20").await;
    let report = TransferReport::parse("2026-11-20", "10", "TRN-OLD", "", "").unwrap();
    env.payments
        .report_transfer(&Actor::payer("old"), old.id, &report)
        .await
        .unwrap();
    env.clock
        .advance(std::time::Duration::from_secs(2 * 86_400));
    let report = TransferReport::parse("2026-11-22", "20", "TRN-NEW", "", "").unwrap();
    env.payments
        .report_transfer(&Actor::payer("new"), new.id, &report)
        .await
        .unwrap();
    assert!(flagged(&env).await.is_empty());
    env.clock
        .advance(std::time::Duration::from_secs(86_400 + 1));
    assert_eq!(flagged(&env).await, vec![old.id]);
    env.clock
        .advance(std::time::Duration::from_secs(2 * 86_400));
    assert_eq!(flagged(&env).await, vec![old.id, new.id]);
}

// ---------------------------------------------------------------- notifications

#[tokio::test]
async fn a_signed_notification_pays_once_and_a_statement_later_knows_it() {
    let env = Env::new().await;
    let s = six_transfers(&env).await;
    // The reason runs on after the reference into a longer run that checks too: the
    // reference of this gateway's length is the one taken.
    let r = &s.a.1.reference;
    let digit = |n: u32| char::from_digit(n, 36).unwrap().to_ascii_uppercase();
    let tail = (0..36 * 36)
        .map(|n| format!("{}{}", digit(n / 36), digit(n % 36)))
        .find(|t| rf::is_valid(&format!("{r}{t}")))
        .unwrap();
    assert_eq!(
        rf::find_in(&format!("rif {} {tail}", rf::pretty(r)))[0],
        format!("{r}{tail}")
    );
    let body = notification(
        "N1",
        &amount(&s.a.0),
        &format!("rif {} {tail}", rf::pretty(r)),
    );
    let signed = env.bank.signed_notification(body.clone()).unwrap();
    let outcome = env
        .payments
        .handle_callback("bank_transfer", &signed)
        .await
        .unwrap();
    assert!(outcome.applied);
    assert_eq!(outcome.transaction.status, TxStatus::Paid);
    assert_eq!(
        outcome.transaction.provider_ref.as_deref(),
        Some(format!("{IBAN}:N-N1").as_str())
    );
    // A replay changes nothing.
    let again = env
        .payments
        .handle_callback("bank_transfer", &signed)
        .await
        .unwrap();
    assert!(!again.applied);

    // Signed with another key, or not signed: refused.
    let forged = BankTransferGateway::new()
        .with_notification_key("another key")
        .signed_notification(body.clone())
        .unwrap();
    let unsigned = CallbackRequest::new(body.clone());
    for request in [forged, unsigned] {
        assert!(matches!(
            env.payments
                .handle_callback("bank_transfer", &request)
                .await,
            Err(Error::Gateway {
                kind: GatewayErrorKind::InvalidSignature,
                ..
            })
        ));
    }
    // An amount that differs is money all the same: recorded as an exception operators
    // see, not applied, and answered Ok so the bank's connector does not send it again
    // (DESIGN.md, "Money is a fact").
    let short = notification("N2", "1.00", &s.b.1.reference);
    let recorded = env
        .payments
        .handle_callback(
            "bank_transfer",
            &env.bank.signed_notification(short.clone()).unwrap(),
        )
        .await
        .unwrap();
    assert!(recorded.applied);
    let exception = recorded.exception.expect("an exception");
    assert_eq!(exception.kind, ExceptionKind::AmountMismatch);
    assert_eq!(exception.transaction_id, Some(s.b.0.id));
    assert_eq!(exception.amount, Some(Money::parse_eur("1.00").unwrap()));
    assert_eq!(exception.expected, Some(s.b.0.total));
    let replay = env
        .payments
        .handle_callback(
            "bank_transfer",
            &env.bank.signed_notification(short).unwrap(),
        )
        .await
        .unwrap();
    assert!(!replay.applied, "recorded once");
    assert_eq!(replay.exception.map(|e| e.id), Some(exception.id));
    assert_eq!(env.status(&s.b.0).await, TxStatus::Pending);

    // The notification, imported as a statement too, finds the payment already made.
    let imported = env.import(&body).await.unwrap();
    assert_eq!(imported.matched.len(), 1);
    assert_eq!(imported.matched[0].transaction_id(), Some(s.a.0.id));
    let events = env.payments.events(&env.operator, s.a.0.id).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.to == TxStatus::Paid).count(), 1);
}

async fn flagged(env: &Env) -> Vec<TransactionId> {
    env.bank
        .overdue_reports(&env.payments, &env.operator, env.fx.creditor.id)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect()
}

#[tokio::test]
async fn recording_a_payment_by_hand_is_checked_and_happens_once() {
    let env = Env::new().await;
    let (tx, _) = env.transfer("gino", "16,00").await;
    let viewer = Actor::operator(env.fx.creditor.id, Role::Viewer, "vera");
    let sixteen = Money::parse_eur("16").unwrap();
    let forbidden = env
        .payments
        .record_payment(&viewer, tx.id, "CRO-1", &sixteen, None)
        .await;
    assert!(matches!(forbidden, Err(Error::Forbidden { .. })));
    let payer = env
        .payments
        .record_payment(&Actor::payer("gino"), tx.id, "CRO-1", &sixteen, None)
        .await;
    assert!(matches!(payer, Err(Error::Forbidden { .. })));
    let short = env
        .payments
        .record_payment(
            &env.operator,
            tx.id,
            "CRO-1",
            &Money::parse_eur("15").unwrap(),
            None,
        )
        .await;
    assert!(matches!(
        short,
        Err(Error::Gateway {
            kind: GatewayErrorKind::AmountMismatch { .. },
            ..
        })
    ));
    for bad in ["", "  ", "CRO\n1", &"x".repeat(MAX_PROVIDER_REF_LEN + 1)] {
        let err = env
            .payments
            .record_payment(&env.operator, tx.id, bad, &sixteen, None)
            .await
            .unwrap_err();
        assert_eq!(err.validation_errors().unwrap().fields(), ["provider_ref"]);
    }
    assert_eq!(env.status(&tx).await, TxStatus::Pending, "nothing changed");
    let done = env
        .payments
        .record_payment(
            &env.operator,
            tx.id,
            "CRO-1",
            &sixteen,
            Some("from the bank's app".into()),
        )
        .await
        .unwrap();
    assert!(done.applied);
    assert_eq!(done.transaction.provider_ref.as_deref(), Some("CRO-1"));
    let again = env
        .payments
        .record_payment(&env.operator, tx.id, "CRO-1", &sixteen, None)
        .await
        .unwrap();
    assert!(!again.applied, "a second time changes nothing");
    let last = env
        .payments
        .events(&env.operator, tx.id)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.to, last.actor),
        (TxStatus::Paid, env.operator.clone())
    );
}

// ---------------------------------------------------------------- statement details

/// One `Ntry` as an Italian treasury writes it. `details` are the transactions' own
/// amounts (none: one `TxDtls` without its own amount).
struct Ntry<'a> {
    amount: &'a str,
    credit: bool,
    reversal: bool,
    bank_ref: &'a str,
    value: &'a str,
    details: &'a [&'a str],
    reference: Option<&'a str>,
    ustrd: &'a str,
    entry_info: &'a str,
    tx_info: &'a str,
}

impl Default for Ntry<'_> {
    fn default() -> Self {
        Ntry {
            amount: "0.00",
            credit: true,
            reversal: false,
            bank_ref: "",
            value: "2026-11-20",
            details: &[],
            reference: None,
            ustrd: "",
            entry_info: "",
            tx_info: "",
        }
    }
}

fn tx_dtls(n: &Ntry, amount: Option<&str>) -> String {
    let amount = amount
        .map(|a| format!("<Amt Ccy=\"EUR\">{a}</Amt>"))
        .unwrap_or_default();
    let strd = n
        .reference
        .map(|r| {
            format!(
                "<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp>\
                 <Ref>{r}</Ref></CdtrRefInf></Strd>"
            )
        })
        .unwrap_or_default();
    let ustrd = if n.ustrd.is_empty() {
        String::new()
    } else {
        format!("<Ustrd>{}</Ustrd>", n.ustrd)
    };
    let rmt = if strd.is_empty() && ustrd.is_empty() {
        String::new()
    } else {
        format!("<RmtInf>{ustrd}{strd}</RmtInf>")
    };
    let info = if n.tx_info.is_empty() {
        String::new()
    } else {
        format!("<AddtlTxInf>{}</AddtlTxInf>", n.tx_info)
    };
    format!(
        "<TxDtls>{amount}<RltdPties><Dbtr><Pty><Nm>GIULIA VERDI</Nm></Pty></Dbtr></RltdPties>\
         {rmt}{info}</TxDtls>"
    )
}

fn ntry(n: &Ntry) -> String {
    let details: String = if n.details.is_empty() {
        tx_dtls(n, None)
    } else {
        n.details.iter().map(|a| tx_dtls(n, Some(a))).collect()
    };
    let info = if n.entry_info.is_empty() {
        String::new()
    } else {
        format!("<AddtlNtryInf>{}</AddtlNtryInf>", n.entry_info)
    };
    format!(
        "<Ntry><Amt Ccy=\"EUR\">{}</Amt><CdtDbtInd>{}</CdtDbtInd>{}<Sts><Cd>BOOK</Cd></Sts>\
         <BookgDt><Dt>2026-11-21</Dt></BookgDt><ValDt><Dt>{}</Dt></ValDt>\
         <AcctSvcrRef>{}</AcctSvcrRef><BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd>\
         <SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd><NtryDtls>{details}</NtryDtls>{info}</Ntry>",
        n.amount,
        if n.credit { "CRDT" } else { "DBIT" },
        if n.reversal {
            "<RvslInd>true</RvslInd>"
        } else {
            ""
        },
        n.value,
        n.bank_ref,
    )
}

/// A camt.053.001.08 (or, with `notification`, a camt.054.001.08) message with one
/// statement per account.
fn camt(id: &str, notification: bool, accounts: &[(&str, Vec<Ntry>)]) -> String {
    let (root, report, ns) = if notification {
        ("BkToCstmrDbtCdtNtfctn", "Ntfctn", "camt.054.001.08")
    } else {
        ("BkToCstmrStmt", "Stmt", "camt.053.001.08")
    };
    let reports: String = accounts
        .iter()
        .enumerate()
        .map(|(i, (iban, entries))| {
            format!(
                "<{report}><Id>{id}-{i}</Id><CreDtTm>2026-11-21T18:00:00+01:00</CreDtTm>\
                 <Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>EUR</Ccy></Acct>{}</{report}>",
                entries.iter().map(ntry).collect::<String>()
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:{ns}\"><{root}>\
         <GrpHdr><MsgId>{id}</MsgId><CreDtTm>2026-11-21T18:00:00+01:00</CreDtTm></GrpHdr>\
         {reports}</{root}></Document>"
    )
}

const IBAN_2: &str = "IT25O0306909606100000012345";

#[tokio::test]
async fn statement_details_are_kept_and_used_and_a_file_of_two_accounts_pays_both_bodies() {
    let env = Env::new().await;
    // A second body with its own account, managed by the same office (a union of
    // municipalities' treasury file holds both).
    let other = Fixture::install(&env.payments, "bank_transfer", &[MethodKind::BankTransfer])
        .await
        .unwrap();
    env.bank.set_account(
        other.creditor.id,
        BankAccount::new("Unione dei Comuni", IBAN_2).unwrap(),
    );
    let a = env.transfer("a", "16,00").await;
    let b = env.transfer("b", "20,00").await;
    let c = env.transfer("c", "30,00").await;
    let theirs = other
        .pay_fee(&env.payments, "z", "12,00", MethodKind::BankTransfer)
        .await
        .unwrap();
    let Instruction::BankTransfer(theirs_details) = &theirs.instruction else {
        panic!()
    };
    let file = camt(
        "TES-20261121",
        false,
        &[
            (
                IBAN,
                vec![
                    // The reference only in the bank's additional information, as Italian
                    // banks often write the payer's reason; valued the day before booking.
                    Ntry {
                        amount: &amount(&a.0),
                        bank_ref: "R1",
                        value: "2026-11-20",
                        entry_info: &format!("BONIFICO SEPA DA GIULIA VERDI {}", a.1.reference),
                        ..Ntry::default()
                    },
                    // A batch whose transactions do not add up to the entry: not paid.
                    Ntry {
                        amount: "50.00",
                        bank_ref: "R2",
                        details: &[&amount(&b.0), "25.00"],
                        reference: Some(&b.1.reference),
                        ..Ntry::default()
                    },
                    // The reference in the transaction's additional information.
                    Ntry {
                        amount: &amount(&c.0),
                        bank_ref: "R3",
                        tx_info: &format!("CAUSALE: {}", rf::pretty(&c.1.reference)),
                        ..Ntry::default()
                    },
                ],
            ),
            (
                IBAN_2,
                vec![Ntry {
                    amount: &amount(&theirs.transaction),
                    bank_ref: "R4",
                    reference: Some(&theirs_details.reference),
                    ..Ntry::default()
                }],
            ),
        ],
    );
    // Anna manages only her body: a file that also holds another body's account is
    // refused whole, and nothing changes.
    let err = env.import(&file).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    assert!(env.entries().await.is_empty());
    assert_eq!(env.status(&a.0).await, TxStatus::Pending);

    // The treasury's system import takes each account's entries to its body.
    let report = env
        .bank
        .import_statement(
            &env.payments,
            &Actor::System,
            env.fx.creditor.id,
            file.as_bytes(),
        )
        .await
        .unwrap();
    let matched: Vec<(CreditorId, Option<TransactionId>)> = report
        .matched
        .iter()
        .map(|e| (e.creditor_id, e.transaction_id()))
        .collect();
    assert_eq!(
        matched,
        vec![
            (env.fx.creditor.id, Some(a.0.id)),
            (env.fx.creditor.id, Some(c.0.id)),
            (other.creditor.id, Some(theirs.transaction.id)),
        ]
    );
    assert_eq!(env.status(&a.0).await, TxStatus::Paid);
    assert_eq!(env.status(&c.0).await, TxStatus::Paid);
    let paid_theirs = env
        .payments
        .transaction(&Actor::System, theirs.transaction.id)
        .await
        .unwrap();
    assert_eq!(paid_theirs.status, TxStatus::Paid);
    // The value date and the bank's information are kept with the entry.
    let first = &report.matched[0];
    assert_eq!(
        first.value_on,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 20)
    );
    assert_eq!(
        first.booked_on,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 21)
    );
    assert!(
        first
            .info
            .as_deref()
            .unwrap()
            .starts_with("BONIFICO SEPA DA GIULIA VERDI")
    );
    // The batch's two transactions are exceptions that say why, and B stays open.
    assert_eq!(report.exceptions.len(), 2, "{:#?}", report.exceptions);
    for e in &report.exceptions {
        let BankEntryOutcome::Exception { reason, .. } = &e.outcome else {
            panic!("{e:?}")
        };
        assert_eq!(
            reason,
            "the entry's 2 transactions add up to 45.00 EUR, not the entry's 50.00 EUR"
        );
    }
    assert_eq!(env.status(&b.0).await, TxStatus::Pending);

    // A file of an account no body has is refused whole.
    let unknown = camt(
        "X",
        false,
        &[(
            "IT37Y0542811101000000123457",
            vec![Ntry {
                amount: "1.00",
                bank_ref: "Z",
                ..Ntry::default()
            }],
        )],
    );
    let err = env.import(&unknown).await.unwrap_err();
    assert_eq!(err.validation_errors().unwrap().fields(), vec!["statement"]);
    // A statement document with no statement in it is refused, not read as empty.
    let empty = camt("EMPTY", false, &[]);
    let err = env.import(&empty).await.unwrap_err();
    assert!(err.to_string().contains("no account statement"), "{err}");
}

#[tokio::test]
async fn a_reversal_of_a_matched_credit_marks_the_payment_returned_by_the_bank() {
    let env = Env::new().await;
    let a = env.transfer("a", "16,00").await;
    let credit = Ntry {
        amount: &amount(&a.0),
        bank_ref: "C1",
        reference: Some(&a.1.reference),
        ..Ntry::default()
    };
    let report = env
        .import(&camt("S1", false, &[(IBAN, vec![credit])]))
        .await
        .unwrap();
    assert_eq!(report.matched.len(), 1);
    assert_eq!(env.status(&a.0).await, TxStatus::Paid);

    // The next day the bank reverses it (a debit with the reversal indicator, quoting
    // the same reference, ISO 20022 `RvslInd`).
    let reversal = Ntry {
        amount: &amount(&a.0),
        credit: false,
        reversal: true,
        bank_ref: "C1-R",
        reference: Some(&a.1.reference),
        ..Ntry::default()
    };
    let report = env
        .import(&camt("S2", false, &[(IBAN, vec![reversal])]))
        .await
        .unwrap();
    assert_eq!(report.exceptions.len(), 1);
    assert_eq!(
        report.exceptions[0].outcome,
        BankEntryOutcome::Returned {
            transaction_id: a.0.id,
            credit: format!("{IBAN}:C1"),
        }
    );
    // Operators see the payment returned by the bank, on the transaction.
    let mut q = ExceptionQuery::new(env.fx.creditor.id);
    q.transaction_id = Some(a.0.id);
    let exceptions = env.payments.exceptions(&env.operator, &q).await.unwrap();
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0].kind, ExceptionKind::ReturnedByBank);
    assert_eq!(exceptions[0].amount, Some(a.0.total));
    assert!(exceptions[0].reason.contains("no longer in the account"));
    // Imported again, nothing is added.
    let again = env
        .import(&camt(
            "S2",
            false,
            &[(
                IBAN,
                vec![Ntry {
                    amount: &amount(&a.0),
                    credit: false,
                    reversal: true,
                    bank_ref: "C1-R",
                    reference: Some(&a.1.reference),
                    ..Ntry::default()
                }],
            )],
        ))
        .await
        .unwrap();
    assert_eq!(again.already_imported, 1);
    assert_eq!(
        env.payments
            .exceptions(&env.operator, &q)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_signed_notification_of_many_credits_pays_each_once() {
    let env = Env::new().await;
    let a = env.transfer("a", "16,00").await;
    let b = env.transfer("b", "20,00").await;
    let body = camt(
        "N1",
        true,
        &[(
            IBAN,
            vec![
                Ntry {
                    amount: &amount(&a.0),
                    bank_ref: "N1",
                    reference: Some(&a.1.reference),
                    ..Ntry::default()
                },
                Ntry {
                    amount: &amount(&b.0),
                    bank_ref: "N2",
                    ustrd: &rf::pretty(&b.1.reference),
                    ..Ntry::default()
                },
            ],
        )],
    );
    let request = env.bank.signed_notification(body.clone()).unwrap();
    let report = env
        .bank
        .receive_notification(&env.payments, &request)
        .await
        .unwrap();
    assert_eq!(report.matched.len(), 2);
    assert_eq!(env.status(&a.0).await, TxStatus::Paid);
    assert_eq!(env.status(&b.0).await, TxStatus::Paid);
    // Sent again by the connector: nothing changes.
    let again = env
        .bank
        .receive_notification(&env.payments, &request)
        .await
        .unwrap();
    assert_eq!(again.already_imported, 2);
    // Unsigned, or signed with another key: refused, nothing read.
    let forged = CallbackRequest::new(body.into_bytes())
        .with_header(payments_gateways::bank_transfer::SIGNATURE_HEADER, "00");
    assert!(matches!(
        env.bank.receive_notification(&env.payments, &forged).await,
        Err(Error::Gateway { .. })
    ));
}

#[tokio::test]
async fn a_psp_transfer_of_a_day_is_recognised_by_its_flow_not_left_unmatched() {
    // SANP, "Riversamento": the PSP transfers a day's collections in one credit whose
    // remittance is /PUR/LGPE-RIVERSAMENTO/URI/<flow id>.
    let env = Env::new().await;
    let flow = "2026-11-20ABI03069-S0000001";
    let report = env
        .import(&camt(
            "S3",
            false,
            &[(
                IBAN,
                vec![Ntry {
                    amount: "1234.56",
                    bank_ref: "F1",
                    ustrd: &format!("/PUR/LGPE-RIVERSAMENTO/URI/{flow}"),
                    ..Ntry::default()
                }],
            )],
        ))
        .await
        .unwrap();
    assert!(report.exceptions.is_empty(), "{:#?}", report.exceptions);
    assert_eq!(report.flows.len(), 1);
    assert_eq!(report.flows[0].flow_id(), Some(flow));
    assert_eq!(report.flows[0].reference.as_deref(), Some(flow));
    assert_eq!(
        payments_gateways::bank_transfer::flow_of(
            "/PUR/LGPE-RIVERSAMENTO/URI/2026-11-20ABI03069-S0000001 DEL 20/11"
        )
        .as_deref(),
        Some(flow)
    );
    // SACI's form with the transfer's progressive, and a bank's prefix.
    assert_eq!(
        payments_gateways::bank_transfer::flow_of(&format!(
            "RI1/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/{flow}"
        ))
        .as_deref(),
        Some(flow)
    );
    // A run longer than a flow id (35 characters at most) is not one.
    assert_eq!(
        payments_gateways::bank_transfer::flow_of(&format!(
            "/PUR/LGPE-RIVERSAMENTO/URI/{flow}{flow}"
        )),
        None
    );
}

/// What an import left, told without ids: each entry (its bank reference, what it did and
/// which transaction, by its place among the open transfers), each transfer's status and
/// number of `Paid` events, and the exceptions ledger's kinds.
async fn ledger_of(env: &Env, transfers: &[Transaction]) -> (Vec<String>, Vec<String>) {
    let letter = |id: Option<TransactionId>| {
        id.and_then(|id| transfers.iter().position(|t| t.id == id))
            .map_or("-".to_owned(), |i| ((b'A' + i as u8) as char).to_string())
    };
    let mut entries: Vec<String> = env
        .entries()
        .await
        .iter()
        .map(|e| {
            let (what, tx) = match &e.outcome {
                BankEntryOutcome::Matched { transaction_id } => ("paid", Some(*transaction_id)),
                BankEntryOutcome::Exception { transaction_id, .. } => {
                    ("exception", *transaction_id)
                }
                other => panic!("no such outcome in this file: {other:?}"),
            };
            format!("{} {what} {}", e.key, letter(tx))
        })
        .collect();
    entries.sort();
    let mut state = Vec::new();
    for (i, t) in transfers.iter().enumerate() {
        let events = env.payments.events(&env.operator, t.id).await.unwrap();
        let paid = events.iter().filter(|e| e.to == TxStatus::Paid).count();
        state.push(format!(
            "{} {:?} paid {paid} time(s)",
            (b'A' + i as u8) as char,
            env.status(t).await
        ));
    }
    let mut kinds: Vec<String> = env
        .payments
        .exceptions(&env.operator, &ExceptionQuery::new(env.fx.creditor.id))
        .await
        .unwrap()
        .iter()
        .map(|x| format!("{:?}", x.kind))
        .collect();
    kinds.sort();
    state.extend(kinds);
    (entries, state)
}

#[tokio::test]
async fn a_statement_leaves_the_same_ledger_whatever_its_chunks() {
    // The import writes a chunk of credits while it reads and looks up the next one (on
    // the in-memory store, with chunks this small, the lookup always runs before that
    // write). Whatever the chunk
    // size, the ledger must be the one a movement-by-movement import leaves: a credit
    // repeated by the bank is recorded once, a second payment of a transfer (in the same
    // chunk or the next) is an exception beside it, an unknown credit is an exception,
    // each transfer is paid once, and a credit quoting a transfer the chunk before just
    // paid goes to its next reference.
    let mut outcomes = Vec::new();
    for chunk in [1000, 1, 2, 3] {
        let env = Env::with_chunk(chunk).await;
        let mut transfers = Vec::new();
        let mut refs = Vec::new();
        for (payer, amount) in [
            ("a", "10,00"),
            ("b", "20,00"),
            ("c", "30,00"),
            ("d", "40,00"),
            ("e", "10,00"),
            ("f", "10,00"),
        ] {
            let (tx, d) = env.transfer(payer, amount).await;
            transfers.push(tx);
            refs.push(d.reference);
        }
        fn credit<'a>(bank_ref: &'a str, amount: &'a str, reference: Option<&'a str>) -> Ntry<'a> {
            Ntry {
                amount,
                bank_ref,
                reference,
                ..Ntry::default()
            }
        }
        let free = format!("DIRITTI RIF. {}", rf::pretty(&refs[3]));
        let also_e = format!("OPPURE {}", rf::pretty(&refs[4]));
        let entries = vec![
            credit("R1", "10.00", Some(&refs[0])),
            credit("R2", "20.00", Some(&refs[1])),
            // Nobody's reference.
            credit("R3", "5.00", Some("RF18539007547034")),
            // A paid again, one credit later.
            credit("R4", "10.00", Some(&refs[0])),
            // The bank repeats R2.
            credit("R2", "20.00", Some(&refs[1])),
            credit("R5", "30.00", Some(&refs[2])),
            // D, its reference only in the free text.
            Ntry {
                ustrd: &free,
                ..credit("R6", "40.00", None)
            },
            // C paid again, two credits later.
            credit("R7", "30.00", Some(&refs[2])),
            credit("R8", "10.00", Some(&refs[5])),
            // F's reference first, then E's: F is paid by R8 just before (in the chunk
            // before, with chunks of 3), so this one pays E, as it would one by one.
            Ntry {
                ustrd: &also_e,
                ..credit("R9", "10.00", Some(&refs[5]))
            },
            // E paid again.
            credit("R10", "10.00", Some(&refs[4])),
        ];
        let file = camt("CHUNKS", false, &[(IBAN, entries)]);
        let report = env.import(&file).await.unwrap();
        assert_eq!(
            (
                report.matched.len(),
                report.exceptions.len(),
                report.already_imported
            ),
            (6, 4, 1),
            "chunks of {chunk}: {report:#?}"
        );
        let ledger = ledger_of(&env, &transfers).await;
        // The same file again changes nothing.
        let again = env.import(&file).await.unwrap();
        assert_eq!(again.already_imported, 11, "chunks of {chunk}: {again:#?}");
        assert!(again.matched.is_empty() && again.exceptions.is_empty());
        assert_eq!(
            ledger_of(&env, &transfers).await,
            ledger,
            "chunks of {chunk}"
        );
        outcomes.push((chunk, ledger));
    }
    let (_, first) = &outcomes[0];
    assert_eq!(
        first.1[..6],
        [
            "A Paid paid 1 time(s)",
            "B Paid paid 1 time(s)",
            "C Paid paid 1 time(s)",
            "D Paid paid 1 time(s)",
            "E Paid paid 1 time(s)",
            "F Paid paid 1 time(s)"
        ],
        "{first:#?}"
    );
    assert_eq!(first.0.len(), 10, "{first:#?}");
    // One by one: R9 pays E (F is R8's already), and R10 is E's second payment.
    assert!(
        first.0.iter().any(|e| e.ends_with(":R9 paid E"))
            && first.0.iter().any(|e| e.ends_with(":R10 exception E")),
        "{first:#?}"
    );
    for (chunk, ledger) in &outcomes[1..] {
        assert_eq!(ledger, first, "chunks of {chunk} against one chunk");
    }
}
