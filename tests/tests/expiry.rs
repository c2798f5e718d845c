//! Transactions that never finish expire and free their items.

mod common;

use std::time::Duration;

use common::Env;
use payments_core::*;

#[tokio::test]
async fn an_unfinished_transaction_expires_and_frees_its_items() {
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, checkout) = env.pending("alice", "a").await;
    let tx = checkout.transaction.id;
    let cart = checkout.transaction.cart_id;

    env.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        p.expire_due().await.unwrap(),
        0,
        "not before its time (30 minutes)"
    );
    assert!(matches!(
        p.checkout(&alice, cart, env.card(), "second").await,
        Err(Error::Conflict(Conflict::ItemUnavailable { .. }))
    ));

    env.clock.advance(Duration::from_secs(60));
    assert_eq!(p.expire_due().await.unwrap(), 1);
    let expired = p.transaction(&alice, tx).await.unwrap();
    assert_eq!(expired.status, TxStatus::Expired);
    let last = p.events(&alice, tx).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.actor),
        (Some(TxStatus::Pending), TxStatus::Expired, Actor::System)
    );
    assert!(
        p.cart(&alice, cart)
            .await
            .unwrap()
            .items
            .iter()
            .all(|i| i.state == ItemState::Open),
        "items are free"
    );
    assert_eq!(
        p.expire_due().await.unwrap(),
        0,
        "expiring twice does nothing"
    );

    // The items can be paid by a new transaction.
    let again = p
        .checkout(&alice, cart, env.card(), "second")
        .await
        .unwrap();
    assert_eq!(
        again.transaction.lines[0].item_id,
        checkout.transaction.lines[0].item_id
    );
    // A payment that arrives for the expired transaction is refused loudly, not applied.
    let late = env.callback(&checkout, PaymentOutcome::Paid);
    assert!(matches!(
        p.handle_callback("sandbox", &late).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        p.transaction(&alice, tx).await.unwrap().status,
        TxStatus::Expired
    );
}

#[tokio::test]
async fn a_transaction_paid_at_the_provider_is_not_expired() {
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, checkout) = env.pending("alice", "a").await;
    // The payer paid, but the callback never arrived.
    env.callback(&checkout, PaymentOutcome::Paid);
    env.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(p.expire_due().await.unwrap(), 0);
    let tx = p
        .transaction(&alice, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(
        tx.status,
        TxStatus::Paid,
        "the expiry asked the provider first"
    );
    assert_eq!(
        p.dispatch_outbox().await.unwrap().delivered,
        3,
        "and the receipts went out"
    );
}

#[tokio::test]
async fn a_payer_cancels_and_gets_the_items_back() {
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, checkout) = env.pending("alice", "a").await;
    let cancelled = p.cancel(&alice, checkout.transaction.id).await.unwrap();
    assert_eq!(cancelled.status, TxStatus::Cancelled);
    assert!(
        matches!(
            p.cancel(&alice, checkout.transaction.id).await,
            Err(Error::Conflict(_))
        ),
        "once"
    );
    let cart = p.cart(&alice, checkout.transaction.cart_id).await.unwrap();
    assert_eq!(cart.total, checkout.transaction.total, "payable again");
}
