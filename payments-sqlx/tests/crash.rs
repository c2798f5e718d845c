//! Crash safety: the flow runs in a child process that is killed with SIGKILL after the
//! provider confirmed the payment and before any email went out. A new process on the same
//! database finds the transaction paid once, delivers every message, and the items are
//! never payable again.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{sandbox, service, session, shop};
use payments_core::*;
use payments_sqlx::SqlxStore;
use serde::{Deserialize, Serialize};

const CHILD_URL: &str = "PAYMENTS_CRASH_CHILD_URL";

/// What the child tells the parent before it is killed.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    creditor: String,
    cart: String,
    transaction: String,
    callback_body: String,
    callback_signature: String,
}

/// The child's part: run by the parent only (`--ignored --exact crash_child`).
#[tokio::test]
#[ignore = "the child process of the crash tests; run by them"]
async fn crash_child() {
    let url = std::env::var(CHILD_URL).expect("run by the crash tests");
    let store = Arc::new(SqlxStore::connect(&url).await.unwrap());
    let sandbox = sandbox();
    let (s, fx) = shop(store, sandbox.clone()).await;
    let (alice, cart) = s
        .cart(&fx, "alice", &[("2026-1", "99.90"), ("2026-2", "0.10")])
        .await;
    let checkout = s
        .payments
        .checkout(&alice, cart.id, fx.method(MethodKind::Card).id, "k")
        .await
        .unwrap();
    let callback = sandbox
        .complete(&session(&checkout), PaymentOutcome::Paid)
        .unwrap();
    let out = s
        .payments
        .handle_callback("sandbox", &callback)
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
    let report = Report {
        creditor: fx.creditor.id.to_string(),
        cart: cart.id.to_string(),
        transaction: checkout.transaction.id.to_string(),
        callback_body: String::from_utf8(callback.body.clone()).unwrap(),
        callback_signature: callback.header("x-sandbox-signature").unwrap().to_owned(),
    };
    println!("REPORT {}", serde_json::to_string(&report).unwrap());
    // Wait to be killed, with the receipts still in the outbox.
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
    panic!("the parent should have killed this process");
}

async fn killed_after_confirmation_loses_nothing(url: String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let report: Report = BufReader::new(stdout)
        .lines()
        .map_while(|l| l.ok())
        // The test harness may print its own words before ours on the same line.
        .find_map(|l| {
            l.split_once("REPORT ")
                .map(|(_, r)| serde_json::from_str(r).unwrap())
        })
        .expect("the child reports before it is killed");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");

    // A new process, on the same database.
    let store = Arc::new(SqlxStore::connect(&url).await.unwrap());
    let sandbox = Arc::new(payments_gateways::sandbox::SandboxGateway::new(
        "sqlx-test-key",
    ));
    let s = service(store, sandbox);
    let tx_id: TransactionId = report.transaction.parse().unwrap();
    let creditor: CreditorId = report.creditor.parse().unwrap();
    let tx = s.payments.transaction(&Actor::System, tx_id).await.unwrap();
    assert_eq!(tx.status, TxStatus::Paid, "the payment survived the crash");
    let paid_events = s.payments.events(&Actor::System, tx_id).await.unwrap();
    assert_eq!(
        paid_events
            .iter()
            .filter(|e| e.to == TxStatus::Paid)
            .count(),
        1,
        "paid once"
    );
    let pending = s
        .payments
        .outbox(
            &Actor::System,
            creditor,
            OutboxQuery {
                status: Some(OutboxStatus::Pending),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        pending.len(),
        4,
        "receipt, notice and two settlements waited in the outbox"
    );

    // The provider retries its callback after the crash: nothing changes.
    let replay = CallbackRequest::new(report.callback_body.into_bytes())
        .with_header("x-sandbox-signature", report.callback_signature);
    let again = s
        .payments
        .handle_callback("sandbox", &replay)
        .await
        .unwrap();
    assert!(!again.applied);

    let delivered = s.payments.dispatch_outbox().await.unwrap();
    assert_eq!(
        (delivered.delivered, delivered.retrying, delivered.dead),
        (4, 0, 0),
        "every message is delivered"
    );
    assert_eq!(s.notifier.sent().len(), 2);
    assert_eq!(s.tributi.heard().len(), 2);

    // The items are never payable again.
    let alice = Actor::payer("alice");
    let cart: CartId = report.cart.parse().unwrap();
    let fx_tari = s
        .payments
        .payment_types(creditor)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.code == "tari")
        .unwrap();
    let again = NewItem::new(
        Source::new("tributi", "2026-1"),
        fx_tari.id,
        "TARI 2026-1",
        Money::parse_eur("99.90").unwrap(),
    )
    .with_extra("year", "2026");
    let item = s.payments.add_item(&alice, cart, again).await.unwrap();
    assert_eq!(item.state, ItemState::Paid(tx_id));
    let method = s.payments.methods(creditor).await.unwrap()[0].id;
    assert!(matches!(
        s.payments.checkout(&alice, cart, method, "after-crash").await,
        Err(Error::Validation(e)) if e.fields() == ["cart"]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_after_confirmation_loses_nothing() {
    killed_after_confirmation_loses_nothing(common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_after_confirmation_loses_nothing() {
    let Some(url) = common::postgres_url("postgres_killed_after_confirmation_loses_nothing") else {
        return;
    };
    // A schema of its own, named in the URL so the child process uses it too.
    killed_after_confirmation_loses_nothing(common::postgres_schema_url(&url).await).await;
}
