//! Transactions that never finish expire and free their items, after asking the provider
//! and closing its page; a payment the provider is still processing never expires. Money
//! that arrives after the end is in `money_edges.rs` of `payments-sqlx`, on every store.

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
        (last.from, last.to, last.actor.clone()),
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

    // The expiry closed the provider's page before freeing the items: the payer can no
    // longer pay there.
    assert_eq!(
        env.sandbox
            .session(&Env::session(&checkout))
            .unwrap()
            .outcome,
        PaymentOutcome::Cancelled
    );
    assert!(
        env.sandbox
            .complete(&Env::session(&checkout), PaymentOutcome::Paid)
            .is_err(),
        "a closed page takes no money"
    );
    assert!(
        last.note.as_deref().unwrap_or("").contains("closed"),
        "the event says the page was closed: {last:?}"
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
}

#[tokio::test]
async fn a_payment_still_processing_is_never_expired() {
    // SEPA direct debit takes up to 14 business days (SEPA Core rulebook; Stripe's
    // documentation): while the provider says processing, the expiry waits, with an event,
    // and after the longest window an operator is told.
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, cart) = env.cart("alice").await;
    p.add_item(&alice, cart.id, env.tari("sepa", "80.00"))
        .await
        .unwrap();
    let checkout = p
        .checkout(
            &alice,
            cart.id,
            env.fx.method(MethodKind::SepaDirectDebit).id,
            "sepa",
        )
        .await
        .unwrap();
    let processing = env.callback(&checkout, PaymentOutcome::Processing);
    assert!(
        !p.handle_callback("sandbox", &processing)
            .await
            .unwrap()
            .applied,
        "processing changes nothing"
    );
    env.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(p.expire_due().await.unwrap(), 0);
    let tx = p
        .transaction(&alice, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(tx.status, TxStatus::Pending);
    assert!(tx.expires_at > env.clock.now(), "postponed");
    let last = p.events(&alice, tx.id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.from, last.to),
        (Some(TxStatus::Pending), TxStatus::Pending)
    );
    assert!(last.note.unwrap().contains("processing"));
    let viewer = Actor::operator(env.fx.creditor.id, Role::Viewer, "vera");
    let ledger = |p: &Payments| {
        let p = p.clone();
        let viewer = viewer.clone();
        let creditor = env.fx.creditor.id;
        async move {
            p.exceptions(&viewer, &ExceptionQuery::new(creditor))
                .await
                .unwrap()
        }
    };
    assert!(ledger(p).await.is_empty(), "not odd yet");

    // Three weeks on, still processing: never expired, and now an exception, once.
    for _ in 0..3 {
        env.clock.advance(Duration::from_secs(7 * 24 * 3600));
        assert_eq!(p.expire_due().await.unwrap(), 0);
    }
    env.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(p.expire_due().await.unwrap(), 0);
    assert_eq!(
        p.transaction(&alice, tx.id).await.unwrap().status,
        TxStatus::Pending
    );
    let exceptions = ledger(p).await;
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0].kind, ExceptionKind::StillProcessing);
    assert_eq!(exceptions[0].transaction_id, Some(tx.id));

    // The debit goes through at last: paid, as always.
    let paid = env.callback(&checkout, PaymentOutcome::Paid);
    let out = p.handle_callback("sandbox", &paid).await.unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
    assert!(out.exception.is_none(), "not late: it never ended");
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
    // The provider's page was closed before the items were freed.
    assert_eq!(
        env.sandbox
            .session(&Env::session(&checkout))
            .unwrap()
            .outcome,
        PaymentOutcome::Cancelled
    );
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
