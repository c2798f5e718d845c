//! What the service's unit tests share: a sample creditor and cart, and mocks of the
//! store, gateway, notifier and clock.

pub(crate) use std::sync::Arc;

pub(crate) use super::*;
pub(crate) use crate::testing::store::{Sample, t0};
pub(crate) use crate::*;
pub(crate) use crate::{
    CallbackEvent, MockClock, MockGateway, MockNotifier, MockStore, NewOutboxMessage, OutboxStatus,
};
pub(crate) use mockall::predicate::eq;

/// A sample creditor, type (card only), cart with one item, built on a scratch store.
pub(crate) async fn sample() -> (Sample, PayableItem) {
    let scratch = crate::InMemoryStore::new();
    let mut s = Sample::install(&scratch).await;
    s.payment_type.methods = vec![crate::MethodKind::Card];
    let item = s
        .item(&scratch, &s.cart.clone(), "tributi", "a", "10.00")
        .await;
    (s, item)
}

pub(crate) fn clock() -> Arc<MockClock> {
    let mut c = MockClock::new();
    c.expect_now().returning(t0);
    Arc::new(c)
}

pub(crate) fn gateway_with(setup: impl FnOnce(&mut MockGateway)) -> Arc<MockGateway> {
    let mut g = MockGateway::new();
    g.expect_id().returning(|| GatewayId::from("sandbox"));
    g.expect_kinds()
        .returning(|| vec![crate::MethodKind::Card, crate::MethodKind::BankTransfer]);
    g.expect_line_limit().returning(|| None);
    setup(&mut g);
    Arc::new(g)
}

pub(crate) fn service(
    store: MockStore,
    gateway: Arc<MockGateway>,
    notifier: MockNotifier,
) -> Payments {
    Payments::builder()
        .store(Arc::new(store))
        .gateway(gateway)
        .notifier(Arc::new(notifier))
        .clock(clock())
        .build()
        .unwrap()
}

/// A store that answers the reads a checkout makes.
pub(crate) fn store_for_checkout(s: &Sample, item: &PayableItem) -> MockStore {
    let mut store = MockStore::new();
    let (cart, creditor, method, ptype, item) = (
        s.cart.clone(),
        s.creditor.clone(),
        s.method.clone(),
        s.payment_type.clone(),
        item.clone(),
    );
    store
        .expect_cart_with_items()
        .returning(move |_| Ok(Some((cart.clone(), vec![item.clone()]))));
    store.expect_transaction_by_key().returning(|_, _| Ok(None));
    store
        .expect_creditor()
        .returning(move |_| Ok(Some(creditor.clone())));
    store
        .expect_method()
        .returning(move |_| Ok(Some(method.clone())));
    store
        .expect_payment_type()
        .returning(move |_| Ok(Some(ptype.clone())));
    store
}

/// A `Pending` transaction of alice's over one € 10,00 item, and its creditor.
pub(crate) async fn pending_transaction() -> (Transaction, Creditor) {
    let scratch = crate::InMemoryStore::new();
    let s = Sample::install(&scratch).await;
    let item = s.item(&scratch, &s.cart, "tributi", "a", "10.00").await;
    let mut tx = s.checkout(&scratch, &s.cart, &[item], "k", t0()).await;
    tx.status = TxStatus::Pending;
    (tx, s.creditor)
}

/// A store whose reads of any transaction return `tx`.
pub(crate) fn store_reading(tx: &Transaction) -> MockStore {
    let mut store = MockStore::new();
    let read = tx.clone();
    store
        .expect_transaction()
        .returning(move |_| Ok(Some(read.clone())));
    store
}

pub(crate) fn gateway_reporting(
    tx: &Transaction,
    outcome: PaymentOutcome,
    amount: Money,
) -> Arc<MockGateway> {
    let id = tx.id;
    gateway_with(move |g| {
        g.expect_parse_callback().returning(move |_| {
            Ok(CallbackEvent::new(outcome, amount)
                .with_transaction_id(id)
                .with_provider_ref("p"))
        });
    })
}
