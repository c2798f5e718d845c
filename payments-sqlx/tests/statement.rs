//! A bank statement imported into the SQL store: matched credits pay their transactions
//! durably, each credit is recorded once, and an import that stopped between paying and
//! recording is finished by the next one without paying twice. SQLite always, PostgreSQL
//! with `DATABASE_URL`.

mod common;

use std::sync::Arc;

use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway};

const IBAN: &str = "IT60X0542811101000000123456";

fn statement(credits: &[(&str, &Transaction, &str)]) -> String {
    let mut entries = String::new();
    for (bank_ref, tx, reference) in credits {
        let cents = tx.total.minor_units();
        entries.push_str(&format!(
            r#"<Ntry><Amt Ccy="EUR">{}.{:02}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2026-11-20</Dt></BookgDt><AcctSvcrRef>{bank_ref}</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Strd><CdtrRefInf><Ref>{reference}</Ref></CdtrRefInf></Strd></RmtInf></TxDtls></NtryDtls></Ntry>"#,
            cents / 100,
            cents % 100
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>SQL-1</MsgId></GrpHdr><Stmt><Id>1</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id></Acct>
{entries}</Stmt></BkToCstmrStmt></Document>"#
    )
}

/// A service on `store` with the bank transfer gateway (the creditor's account set) and an
/// open transfer for each `(payer, amount)`: the transaction and its reference.
async fn open_transfers(
    store: Arc<dyn Store>,
    transfers: &[(&str, &str)],
) -> (
    Payments,
    Arc<BankTransferGateway>,
    Fixture,
    Vec<(Transaction, String)>,
) {
    let bank = Arc::new(BankTransferGateway::new());
    let payments = Payments::builder()
        .store(store)
        .gateway(bank.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "bank_transfer", &[MethodKind::BankTransfer])
        .await
        .unwrap();
    bank.set_account(fx.creditor.id, BankAccount::new("Comune", IBAN).unwrap());
    let mut open = Vec::new();
    for (payer, amount) in transfers {
        let checkout = fx
            .pay_fee(&payments, payer, amount, MethodKind::BankTransfer)
            .await
            .unwrap();
        let Instruction::BankTransfer(d) = checkout.instruction else {
            panic!("a transfer")
        };
        open.push((checkout.transaction, d.reference));
    }
    (payments, bank, fx, open)
}

async fn run(store: Arc<dyn Store>) {
    let (payments, bank, fx, open) = open_transfers(
        store.clone(),
        &[("a", "16,00"), ("b", "120,50"), ("c", "7")],
    )
    .await;
    let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");

    // An earlier import paid C and stopped before recording the credit.
    payments
        .record_payment(
            &operator,
            open[2].0.id,
            &format!("{IBAN}:C-1"),
            &open[2].0.total,
            None,
        )
        .await
        .unwrap();

    let file = statement(&[
        ("A-1", &open[0].0, &open[0].1),
        ("B-1", &open[1].0, &open[1].1),
        ("C-1", &open[2].0, &open[2].1),
    ]);
    let import = |file: String| {
        let bank = bank.clone();
        let payments = &payments;
        let operator = &operator;
        let creditor = fx.creditor.id;
        async move {
            bank.import_statement(payments, operator, creditor, file.as_bytes())
                .await
                .unwrap()
        }
    };
    let report = import(file.clone()).await;
    assert_eq!(report.matched.len(), 3, "{report:#?}");
    assert!(report.exceptions.is_empty());
    for (tx, _) in &open {
        let stored = store.transaction(tx.id).await.unwrap().unwrap();
        assert_eq!(stored.status, TxStatus::Paid);
        let paid_events = store
            .events(tx.id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.to == TxStatus::Paid)
            .count();
        assert_eq!(paid_events, 1, "paid once");
    }
    let again = import(file).await;
    assert_eq!(again.already_imported, 3);
    assert!(again.matched.is_empty());
    let entries = payments
        .bank_entries(&operator, &BankEntryQuery::new(fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| !e.is_exception()));
    let outbox = store.outbox(&OutboxQuery::default()).await.unwrap();
    assert_eq!(
        outbox.len(),
        6,
        "a receipt and a notice for each payment, once"
    );
}

#[tokio::test]
async fn a_statement_pays_durably_once_on_sqlite() {
    run(Arc::new(common::sqlite().await)).await;
}

#[tokio::test]
async fn a_statement_pays_durably_once_on_postgres() {
    let Some(url) = common::postgres_url("a_statement_pays_durably_once_on_postgres") else {
        return;
    };
    run(Arc::new(common::postgres(&url).await)).await;
}

/// Two credits alike in every field, with no reference of the bank's own, in one statement:
/// two entries (the second a duplicate the ledger shows once), and a second import of the
/// file changes nothing.
async fn identical_credits(store: Arc<dyn Store>) {
    let (payments, bank, fx, open) = open_transfers(store.clone(), &[("d", "16,00")]).await;
    let (tx, reference) = &open[0];
    let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");
    let file = statement(&[("", tx, reference), ("", tx, reference)])
        .replace("<AcctSvcrRef></AcctSvcrRef>", "");
    let import = || bank.import_statement(&payments, &operator, fx.creditor.id, file.as_bytes());
    let first = import().await.unwrap();
    assert_eq!((first.matched.len(), first.exceptions.len()), (1, 1));
    assert_eq!(first.matched[0].key, format!("{IBAN}:1#1/1"));
    assert_eq!(first.exceptions[0].key, format!("{IBAN}:1#2/1"));
    let again = import().await.unwrap();
    assert_eq!(again.already_imported, 2);
    assert_eq!(
        payments
            .bank_entries(&operator, &BankEntryQuery::new(fx.creditor.id))
            .await
            .unwrap()
            .len(),
        2
    );
    let ledger = payments
        .exceptions(&operator, &ExceptionQuery::new(fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:#?}");
    assert_eq!(ledger[0].kind, ExceptionKind::UnmatchedCredit);
    let paid = store.transaction(tx.id).await.unwrap().unwrap();
    assert_eq!(paid.status, TxStatus::Paid);
}

#[tokio::test]
async fn identical_credits_are_two_entries_on_sqlite() {
    identical_credits(Arc::new(common::sqlite().await)).await;
}

#[tokio::test]
async fn identical_credits_are_two_entries_on_postgres() {
    let Some(url) = common::postgres_url("identical_credits_are_two_entries_on_postgres") else {
        return;
    };
    identical_credits(Arc::new(common::postgres(&url).await)).await;
}

/// A chunk of credits handed to `record_bank_credits` with each transfer as the import read
/// it ([`BankCredit::with_read`]): a transfer still as read is paid from that copy; one that
/// changed since (an operator confirmed it meanwhile, so the copy's `Pending` is stale) is
/// left to the import (`Alone`: nothing of it written, not paid twice); a copy of another
/// transfer than the entry's is ignored and the entry's own is read.
async fn credits_carrying_their_read(store: Arc<dyn Store>) {
    let (payments, _bank, fx, open) = open_transfers(
        store.clone(),
        &[("x", "16,00"), ("y", "16,00"), ("z", "16,00")],
    )
    .await;
    let refs: Vec<String> = open.iter().map(|(_, r)| r.clone()).collect();
    let read = payments
        .transactions_by_provider_refs(&GatewayId::from("bank_transfer"), &refs)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    let copy = |n: usize| read.iter().find(|t| t.id == open[n].0.id).unwrap().clone();
    assert_eq!(copy(0).status, TxStatus::Pending);

    // Meanwhile an operator confirms the first transfer.
    let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");
    payments
        .confirm_payment(&operator, open[0].0.id, None)
        .await
        .unwrap();

    let credit = |n: usize, key: &str| {
        let (tx, reference) = &open[n];
        BankCredit::new(
            BankEntry {
                creditor_id: fx.creditor.id,
                key: key.to_owned(),
                statement_id: "S-1".into(),
                imported_at: payments.clock().now(),
                booked_on: None,
                value_on: None,
                amount: tx.total.amount(),
                currency: "EUR".into(),
                debtor: None,
                remittance: reference.clone(),
                reference: Some(reference.clone()),
                info: None,
                outcome: BankEntryOutcome::Matched {
                    transaction_id: tx.id,
                },
            },
            true,
            None,
        )
    };
    let credits = [
        credit(0, "X-1").with_read(copy(0)),
        credit(1, "Y-1").with_read(copy(1)),
        credit(2, "Z-1").with_read(copy(1)),
    ];
    let done = payments
        .record_bank_credits(&operator, &credits)
        .await
        .unwrap();
    assert_eq!(
        done,
        [
            BankCreditDone::Alone,
            BankCreditDone::Recorded,
            BankCreditDone::Recorded
        ]
    );
    for (n, provider_ref) in [(0, None), (1, Some("Y-1")), (2, Some("Z-1"))] {
        let stored = store.transaction(open[n].0.id).await.unwrap().unwrap();
        assert_eq!(stored.status, TxStatus::Paid);
        if let Some(r) = provider_ref {
            assert_eq!(stored.provider_ref.as_deref(), Some(r));
        }
        let paid = store
            .events(open[n].0.id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.to == TxStatus::Paid)
            .count();
        assert_eq!(paid, 1, "transfer {n} paid once");
    }
    let keys: Vec<String> = payments
        .bank_entries(&operator, &BankEntryQuery::new(fx.creditor.id))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        !keys.contains(&"X-1".to_owned()),
        "the stale credit wrote nothing"
    );
    let outbox = store.outbox(&OutboxQuery::default()).await.unwrap();
    assert_eq!(
        outbox.len(),
        6,
        "a receipt and a notice for each payment, once"
    );
}

#[tokio::test]
async fn credits_carrying_their_read_pay_once_in_memory() {
    credits_carrying_their_read(Arc::new(InMemoryStore::new())).await;
}

#[tokio::test]
async fn credits_carrying_their_read_pay_once_on_sqlite() {
    credits_carrying_their_read(Arc::new(common::sqlite().await)).await;
}

#[tokio::test]
async fn credits_carrying_their_read_pay_once_on_postgres() {
    let Some(url) = common::postgres_url("credits_carrying_their_read_pay_once_on_postgres") else {
        return;
    };
    credits_carrying_their_read(Arc::new(common::postgres(&url).await)).await;
}
