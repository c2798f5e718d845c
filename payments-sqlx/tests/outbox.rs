//! The outbox reads its rows one by one: a message whose payload does not read (written
//! by a newer version, or edited by hand) fails alone, with why, and waits for its retry
//! (a newer instance may deliver it); the others are delivered, and the operators' list
//! still shows it.

mod common;

use std::sync::Arc;

use common::{postgres, postgres_url, sandbox, session, shop, sqlite};
use payments_core::*;
use payments_sqlx::SqlxStore;

async fn an_unreadable_message_fails_alone(store: SqlxStore) {
    let store = Arc::new(store);
    let sandbox = sandbox();
    let (s, fx) = shop(store.clone(), sandbox.clone()).await;
    let (alice, cart) = s.cart(&fx, "alice", &[("2026-1", "99.90")]).await;
    let checkout = s
        .payments
        .checkout(&alice, cart.id, fx.method(MethodKind::Card).id, "k")
        .await
        .unwrap();
    let callback = sandbox
        .complete(&session(&checkout), PaymentOutcome::Paid)
        .unwrap();
    s.payments
        .handle_callback("sandbox", &callback)
        .await
        .unwrap();
    // The payer's receipt, the creditor's notice, the settlement: the first one's payload
    // becomes one this version cannot read.
    let first: String = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id LIMIT 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE outbox SET payload = $1 WHERE id = $2")
        .bind(r#"{"type":"carrier_pigeon","to":"alice"}"#)
        .bind(first.clone())
        .execute(store.pool())
        .await
        .unwrap();
    let report = s.payments.dispatch_outbox().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (2, 1), "{report:?}");
    let outbox = s
        .payments
        .outbox(&Actor::System, fx.creditor.id, OutboxQuery::default())
        .await
        .expect("the list still reads");
    let unread: Vec<&OutboxMessage> = outbox
        .iter()
        .filter(|m| m.status != OutboxStatus::Delivered)
        .collect();
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0].id.to_string(), first);
    assert_eq!(unread[0].status, OutboxStatus::Pending, "tried again later");
    assert!(matches!(unread[0].payload, OutboxPayload::Unreadable(_)));
    let why = unread[0].last_error.as_deref().unwrap();
    assert!(why.contains("cannot be read"), "{why}");
    assert_eq!(
        outbox
            .iter()
            .filter(|m| m.status == OutboxStatus::Delivered)
            .count(),
        2
    );
    // Nothing is claimed again.
    assert_eq!(s.payments.dispatch_outbox().await.unwrap().claimed(), 0);
}

#[tokio::test]
async fn sqlite_an_unreadable_message_fails_alone() {
    an_unreadable_message_fails_alone(sqlite().await).await;
}

#[tokio::test]
async fn postgres_an_unreadable_message_fails_alone() {
    let Some(url) = postgres_url("postgres_an_unreadable_message_fails_alone") else {
        return;
    };
    an_unreadable_message_fails_alone(postgres(&url).await).await;
}
