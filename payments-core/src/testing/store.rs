//! The [`Store`] conformance suite: the promises of the trait's contract, checked.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::{
    Actor, Cart, CartId, Conflict, Creditor, Error, HistoryQuery, Instruction, ItemId, ItemState,
    MethodKind, Money, MovementQuery, NewOutboxMessage, OutboxId, OutboxQuery, OutboxStatus,
    PayableItem, Payer, PaymentMethod, PaymentType, Source, Store, Transaction, TransactionEvent,
    TransactionId, Transition, TxStatus,
};

use super::{money, positions};

/// Runs every check, each on a fresh store from `make` (those of [`money`] too).
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    config_round_trips(make().await).await;
    carts_and_items(make().await).await;
    create_transaction_locks_items(make().await).await;
    concurrent_checkouts_create_one_transaction(make().await).await;
    concurrent_same_key_returns_one_transaction(make().await).await;
    transition_is_compare_and_set(make().await).await;
    paid_settles_items_and_enqueues_outbox(make().await).await;
    failure_frees_items(make().await).await;
    concurrent_transitions_apply_once(make().await).await;
    expiry_candidates(make().await).await;
    outbox_lifecycle(make().await).await;
    concurrent_claims_share_the_outbox(make().await).await;
    search_filters_pages_and_totals(make().await).await;
    search_counts_every_period_and_pages_by_creation(make().await).await;
    history_is_per_payer_and_paged(make().await).await;
    bank_entries_are_recorded_once(make().await).await;
    bank_entries_are_recorded_in_chunks(make().await).await;
    provider_receipts_are_kept_whole_once(make().await).await;
    reporting_flows_are_kept_per_revision(make().await).await;
    sequences_never_hand_out_a_value_twice(make().await).await;
    refunds_never_exceed_what_was_paid(make().await).await;
    unfinished_lists_open_transactions_by_age(make().await).await;
    money::late_payment_settles_free_items_and_leaves_paid_ones(make().await).await;
    money::line_payments_settle_once(make().await).await;
    money::freeing_a_partly_paid_transaction_keeps_its_paid_lines(make().await).await;
    money::concurrent_line_payments_settle_once(make().await).await;
    money::exceptions_are_recorded_once_and_resolved_once(make().await).await;
    money::expiry_is_postponed_by_compare_and_set(make().await).await;
    money::refunds_end_with_their_messages(make().await).await;
    money::refunds_fit_each_line_and_double_payments_stand_apart(make().await).await;
    positions::positions_are_registered_once_and_found(make().await).await;
    positions::paying_an_option_pays_the_position(make().await).await;
    positions::a_refund_in_full_reopens_the_option(make().await).await;
    positions::positions_change_by_compare_and_set(make().await).await;
    positions::messages_enqueue_once_per_key(make().await).await;
    positions::position_messages_go_with_their_change(make().await).await;
}

/// A fixed instant, so stores are tested with chosen times.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
        .single()
        .expect("a valid date")
}

fn eur(s: &str) -> Money {
    Money::parse_eur(s).expect("a valid amount")
}

/// What the checks build on: a creditor, a payment type, a method and a payer's cart.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The creditor.
    pub creditor: Creditor,
    /// A payment type.
    pub payment_type: PaymentType,
    /// A card method.
    pub method: PaymentMethod,
    /// A cart of payer `alice`.
    pub cart: Cart,
}

impl Sample {
    /// Stores a creditor, a type, a method and alice's cart.
    pub async fn install(store: &dyn Store) -> Sample {
        let creditor =
            Creditor::new("Comune di Prova", "00488410010", "enti@example.it").expect("creditor");
        store.put_creditor(&creditor).await.expect("put_creditor");
        let payment_type = PaymentType::new(creditor.id, "tari", "TARI");
        store
            .put_payment_type(&payment_type)
            .await
            .expect("put_payment_type");
        let method = PaymentMethod::new(creditor.id, MethodKind::Card, "sandbox");
        store.put_method(&method).await.expect("put_method");
        let cart = Sample::cart_of(store, &creditor, "alice").await;
        Sample {
            creditor,
            payment_type,
            method,
            cart,
        }
    }

    /// Opens the cart of `payer` at `creditor`.
    pub async fn cart_of(store: &dyn Store, creditor: &Creditor, payer: &str) -> Cart {
        let cart = Cart {
            id: CartId::new(),
            creditor_id: creditor.id,
            payer: Payer::new(payer, format!("Payer {payer}"))
                .with_email(format!("{payer}@example.it")),
            created_at: t0(),
        };
        store.open_cart(&cart).await.expect("open_cart")
    }

    /// Adds an open item to `cart`.
    pub async fn item(
        &self,
        store: &dyn Store,
        cart: &Cart,
        module: &str,
        key: &str,
        amount: &str,
    ) -> PayableItem {
        let item = PayableItem {
            id: ItemId::new(),
            creditor_id: cart.creditor_id,
            cart_id: cart.id,
            payer_id: cart.payer.id.clone(),
            source: Source::new(module, key),
            payment_type_id: self.payment_type.id,
            reason: format!("{module} {key}"),
            amount: eur(amount),
            due_date: None,
            extra: [("year".to_owned(), "2026".to_owned())].into(),
            state: ItemState::Open,
            created_at: t0(),
        };
        store.add_item(&item).await.expect("add_item").item
    }

    /// A `Created` transaction over `items`, not yet stored, and its first event.
    pub fn transaction(
        &self,
        cart: &Cart,
        items: &[PayableItem],
        key: &str,
        at: DateTime<Utc>,
    ) -> (Transaction, TransactionEvent) {
        Transaction::create(
            cart,
            &self.method,
            items,
            key,
            &Actor::payer(cart.payer.id.clone()),
            at,
            at + Duration::minutes(30),
        )
        .expect("a transaction of valid items")
    }

    /// Stores a transaction over `items` and returns it.
    pub async fn checkout(
        &self,
        store: &dyn Store,
        cart: &Cart,
        items: &[PayableItem],
        key: &str,
        at: DateTime<Utc>,
    ) -> Transaction {
        let (tx, event) = self.transaction(cart, items, key, at);
        let created = store
            .create_transaction(&tx, &event)
            .await
            .expect("create_transaction");
        assert!(
            created.created,
            "a new idempotency key must create a transaction"
        );
        created.transaction
    }
}

/// A transition with no side data.
pub fn transition(tx: &Transaction, from: TxStatus, to: TxStatus, at: DateTime<Utc>) -> Transition {
    Transition {
        transaction: tx.id,
        from,
        to,
        actor: Actor::System,
        at,
        provider_ref: None,
        instruction: None,
        expires_at: None,
        note: None,
        outbox: Vec::new(),
        already_paid: Vec::new(),
        exceptions: Vec::new(),
    }
}

/// The outbox the service writes when `tx` is paid: a receipt, a notice and one
/// settlement per module item.
pub fn outbox_for(
    tx: &Transaction,
    creditor: &Creditor,
    at: DateTime<Utc>,
) -> Vec<NewOutboxMessage> {
    crate::service::messages_for_status(
        tx,
        creditor,
        tx.provider_ref.clone(),
        at,
        TxStatus::Paid,
        Default::default(),
        &|_| true,
    )
}

async fn state_of(store: &dyn Store, item: ItemId) -> ItemState {
    store
        .item(item)
        .await
        .expect("item")
        .expect("item exists")
        .state
}

/// Creditors, payment types and methods come back as stored, per creditor.
pub async fn config_round_trips(store: Arc<dyn Store>) {
    let s = Sample::install(store.as_ref()).await;
    assert_eq!(
        store.creditor(s.creditor.id).await.unwrap(),
        Some(s.creditor.clone())
    );
    assert_eq!(
        store.payment_type(s.payment_type.id).await.unwrap(),
        Some(s.payment_type.clone())
    );
    assert_eq!(
        store.method(s.method.id).await.unwrap(),
        Some(s.method.clone())
    );
    let other = Creditor::new("Altro Comune", "00488410010", "altro@example.it").unwrap();
    store.put_creditor(&other).await.unwrap();
    let other_type = PaymentType::new(other.id, "imu", "IMU");
    store.put_payment_type(&other_type).await.unwrap();
    assert_eq!(
        store.payment_types(s.creditor.id).await.unwrap(),
        vec![s.payment_type.clone()]
    );
    assert_eq!(
        store.payment_types(other.id).await.unwrap(),
        vec![other_type]
    );
    assert!(store.methods(other.id).await.unwrap().is_empty());
    let mut renamed = s.payment_type.clone();
    renamed.name = "TARI 2026".into();
    store.put_payment_type(&renamed).await.unwrap();
    assert_eq!(
        store.payment_type(renamed.id).await.unwrap().unwrap().name,
        "TARI 2026",
        "put replaces"
    );
    let mut disabled = s.method.clone();
    disabled.enabled = false;
    store.put_method(&disabled).await.unwrap();
    assert!(
        !store.method(disabled.id).await.unwrap().unwrap().enabled,
        "put replaces"
    );
    assert_eq!(
        store.creditor(crate::CreditorId::new()).await.unwrap(),
        None
    );
}

/// A payer has one cart per creditor; items are idempotent on their source; removal.
pub async fn carts_and_items(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let again = Sample::cart_of(store, &s.creditor, "alice").await;
    assert_eq!(again.id, s.cart.id, "open_cart returns the payer's cart");
    let bob = Sample::cart_of(store, &s.creditor, "bob").await;
    assert_ne!(bob.id, s.cart.id, "another payer has another cart");
    assert_eq!(
        store.cart(s.cart.id).await.unwrap().unwrap().payer.id,
        s.cart.payer.id
    );

    let first = s.item(store, &s.cart, "tributi", "k1", "10.00").await;
    assert_eq!(
        store.item(first.id).await.unwrap().as_ref(),
        Some(&first),
        "add_item answers the item as a read does (times to the microsecond)"
    );
    let mut dup = first.clone();
    dup.id = ItemId::new();
    dup.amount = eur("99.00");
    let added = store.add_item(&dup).await.unwrap();
    assert!(!added.created, "the same source is not inserted twice");
    assert_eq!(added.item.id, first.id);
    assert_eq!(
        added.item.amount,
        eur("10.00"),
        "the first item is kept unchanged"
    );
    let second = s.item(store, &s.cart, "tributi", "k2", "5.50").await;
    let same_key_other_module = s.item(store, &s.cart, "edilizia", "k1", "1.00").await;
    assert_ne!(
        same_key_other_module.id, first.id,
        "a source is module and key together"
    );
    let items = store.cart_items(s.cart.id).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![first.id, second.id, same_key_other_module.id]
    );
    assert!(store.cart_items(bob.id).await.unwrap().is_empty());

    let removed = store.remove_item(second.id).await.unwrap();
    assert_eq!(removed.state, ItemState::Removed);
    assert!(
        matches!(store.remove_item(second.id).await, Err(Error::Conflict(_))),
        "removing twice conflicts"
    );
    assert_eq!(store.cart_items(s.cart.id).await.unwrap().len(), 2);
    // The cart and its items in one read answer what the two reads answer: the removed
    // item left out, the others oldest first; a cart without items, none; no cart, None.
    let (cart, items) = store.cart_with_items(s.cart.id).await.unwrap().unwrap();
    assert_eq!(cart, store.cart(s.cart.id).await.unwrap().unwrap());
    assert_eq!(items, store.cart_items(s.cart.id).await.unwrap());
    assert_eq!(
        items.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![first.id, same_key_other_module.id]
    );
    let (empty, none) = store.cart_with_items(bob.id).await.unwrap().unwrap();
    assert_eq!(
        (empty.id, empty.payer.id.clone(), none),
        (bob.id, bob.payer.id.clone(), vec![])
    );
    assert!(
        store
            .cart_with_items(CartId::new())
            .await
            .unwrap()
            .is_none()
    );
    let back = s.item(store, &s.cart, "tributi", "k2", "5.50").await;
    assert_eq!(
        (back.id, back.state),
        (second.id, ItemState::Open),
        "adding a removed source brings it back"
    );
    assert!(matches!(
        store.remove_item(ItemId::new()).await,
        Err(Error::NotFound { .. })
    ));
    // An open item changes its reason, amount and due date, and keeps the rest.
    let mut recalculated = first.clone();
    recalculated.amount = eur("12.34");
    recalculated.reason = "TARI ricalcolata".into();
    recalculated.due_date = Some("2026-12-31".parse().unwrap());
    let changed = store.update_item(&recalculated).await.unwrap();
    assert_eq!(changed, recalculated);
    assert_eq!(store.item(first.id).await.unwrap().unwrap(), recalculated);
    let mut missing = first.clone();
    missing.id = ItemId::new();
    assert!(matches!(
        store.update_item(&missing).await,
        Err(Error::NotFound { .. })
    ));
    // What add_item answers for a new item is what a read answers: the time to the
    // microsecond, the amount in cents, whatever precision and scale it was given with.
    let mut precise = first.clone();
    precise.id = ItemId::new();
    precise.source = Source::new("tributi", "k-precise");
    precise.created_at = t0() + Duration::nanoseconds(1_234_567);
    precise.amount = Money::new(rust_decimal::Decimal::new(3, 0), crate::Currency::Eur).unwrap();
    let added = store.add_item(&precise).await.unwrap();
    assert!(added.created);
    assert_eq!(Some(added.item), store.item(precise.id).await.unwrap());
}

/// Creating a transaction locks its items; a second one over them is refused and changes
/// nothing; the same key returns the first.
pub async fn create_transaction_locks_items(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let a = s.item(store, &s.cart, "tributi", "a", "10.00").await;
    let b = s.item(store, &s.cart, "tributi", "b", "2.50").await;
    let tx = s
        .checkout(store, &s.cart, &[a.clone(), b.clone()], "key-1", t0())
        .await;
    assert_eq!(tx.total, eur("12.50"));
    assert_eq!(state_of(store, a.id).await, ItemState::Locked(tx.id));
    assert_eq!(state_of(store, b.id).await, ItemState::Locked(tx.id));
    assert!(
        matches!(store.remove_item(a.id).await, Err(Error::Conflict(_))),
        "a locked item cannot be removed"
    );
    let mut cheaper = a.clone();
    cheaper.amount = eur("1.00");
    assert!(
        matches!(
            store.update_item(&cheaper).await,
            Err(Error::Conflict(Conflict::ItemUnavailable { .. }))
        ),
        "a locked item cannot be changed"
    );
    assert_eq!(
        store.item(a.id).await.unwrap().unwrap().amount,
        eur("10.00"),
        "nothing changed"
    );

    // A line at an amount its item no longer has (changed since the cart was read) locks
    // nothing and writes nothing.
    let d = s.item(store, &s.cart, "tributi", "d", "7.00").await;
    let mut stale = d.clone();
    stale.amount = eur("6.00");
    let (old, ev) = s.transaction(&s.cart, std::slice::from_ref(&stale), "key-stale", t0());
    assert!(
        matches!(
            store.create_transaction(&old, &ev).await,
            Err(Error::Conflict(_))
        ),
        "an old amount is never locked for payment"
    );
    assert_eq!(state_of(store, d.id).await, ItemState::Open);
    assert!(store.transaction(old.id).await.unwrap().is_none());

    let c = s.item(store, &s.cart, "tributi", "c", "1.00").await;
    let (other, ev) = s.transaction(&s.cart, &[c.clone(), a.clone()], "key-2", t0());
    match store.create_transaction(&other, &ev).await {
        Err(Error::Conflict(Conflict::ItemUnavailable { .. })) => {}
        r => panic!("a locked item must refuse a second transaction, got {r:?}"),
    }
    assert_eq!(
        store.transaction(other.id).await.unwrap(),
        None,
        "a refused transaction is not stored"
    );
    assert_eq!(
        state_of(store, c.id).await,
        ItemState::Open,
        "a refused transaction locks nothing"
    );

    let (replay, ev) = s.transaction(&s.cart, std::slice::from_ref(&c), "key-1", t0());
    let created = store.create_transaction(&replay, &ev).await.unwrap();
    assert!(!created.created);
    assert_eq!(
        created.transaction.id, tx.id,
        "the same payer and key return the first transaction"
    );
    assert_eq!(state_of(store, c.id).await, ItemState::Open);
    assert_eq!(
        store
            .transaction_by_key(&s.cart.payer.id, "key-1")
            .await
            .unwrap()
            .map(|t| t.id),
        Some(tx.id)
    );
    assert_eq!(
        store
            .transaction_by_key(&"bob".into(), "key-1")
            .await
            .unwrap(),
        None,
        "keys are per payer"
    );

    let stored = store.transaction(tx.id).await.unwrap().unwrap();
    assert_eq!(stored, tx, "a transaction comes back as stored");
    let events = store.events(tx.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].from, events[0].to), (None, TxStatus::Created));
}

/// Many concurrent transactions over the same items: exactly one is created.
pub async fn concurrent_checkouts_create_one_transaction(store: Arc<dyn Store>) {
    let s = Sample::install(store.as_ref()).await;
    let a = s
        .item(store.as_ref(), &s.cart, "tributi", "a", "10.00")
        .await;
    let b = s
        .item(store.as_ref(), &s.cart, "tributi", "b", "20.00")
        .await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        let (tx, ev) = s.transaction(&s.cart, &[a.clone(), b.clone()], &format!("key-{n}"), t0());
        tasks.push(tokio::spawn(async move {
            store.create_transaction(&tx, &ev).await
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(c) if c.created => created.push(c.transaction.id),
            Ok(c) => panic!(
                "a fresh key returned an existing transaction {}",
                c.transaction.id
            ),
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one transaction wins the items");
    assert_eq!(
        state_of(store.as_ref(), a.id).await,
        ItemState::Locked(created[0])
    );
    assert_eq!(
        state_of(store.as_ref(), b.id).await,
        ItemState::Locked(created[0])
    );
}

/// Many concurrent calls with one idempotency key: one transaction, returned to all.
pub async fn concurrent_same_key_returns_one_transaction(store: Arc<dyn Store>) {
    let s = Sample::install(store.as_ref()).await;
    let a = s
        .item(store.as_ref(), &s.cart, "tributi", "a", "10.00")
        .await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let (tx, ev) = s.transaction(&s.cart, std::slice::from_ref(&a), "same-key", t0());
        tasks.push(tokio::spawn(async move {
            store.create_transaction(&tx, &ev).await
        }));
    }
    let mut ids = Vec::new();
    let mut created = 0;
    for t in tasks {
        let c = t
            .await
            .expect("task")
            .expect("the same key never conflicts");
        created += usize::from(c.created);
        ids.push(c.transaction.id);
    }
    assert_eq!(created, 1, "one call creates");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every call gets the same transaction");
}

/// A transition applies only from the expected state; a stale one changes nothing.
pub async fn transition_is_compare_and_set(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let a = s.item(store, &s.cart, "tributi", "a", "10.00").await;
    let tx = s.checkout(store, &s.cart, &[a], "k", t0()).await;
    let mut t = transition(
        &tx,
        TxStatus::Created,
        TxStatus::Pending,
        t0() + Duration::seconds(1),
    );
    t.provider_ref = Some("prov-123".into());
    // A POST form keeps its fields, in order, through the store.
    t.instruction = Some(Instruction::post_form(
        "https://pay.example/s/1",
        vec![
            crate::FormField::new("importo", "1234"),
            crate::FormField::new("alias", "ALIAS_WEB_1"),
        ],
    ));
    t.expires_at = Some(t0() + Duration::hours(2));
    t.note = Some("started".into());
    let moved = store.transition(&t).await.unwrap();
    assert_eq!(moved.status, TxStatus::Pending);
    assert_eq!(moved.provider_ref.as_deref(), Some("prov-123"));
    assert_eq!(moved.instruction, t.instruction);
    assert_eq!(moved.expires_at, t0() + Duration::hours(2));
    assert_eq!(moved.updated_at, t0() + Duration::seconds(1));
    assert_eq!(store.transaction(tx.id).await.unwrap().unwrap(), moved);
    assert_eq!(
        store
            .transaction_by_provider_ref(&s.method.gateway_id, "prov-123")
            .await
            .unwrap()
            .map(|t| t.id),
        Some(tx.id)
    );
    assert_eq!(
        store
            .transaction_by_provider_ref(&"other".into(), "prov-123")
            .await
            .unwrap(),
        None
    );

    let mut stale = transition(
        &tx,
        TxStatus::Created,
        TxStatus::Failed,
        t0() + Duration::seconds(2),
    );
    stale.outbox = outbox_for(&tx, &s.creditor, t0());
    match store.transition(&stale).await {
        Err(Error::Conflict(Conflict::StaleState { .. })) => {}
        r => panic!("a stale transition must be refused, got {r:?}"),
    }
    assert_eq!(
        store.transaction(tx.id).await.unwrap().unwrap().status,
        TxStatus::Pending
    );
    assert!(
        store
            .outbox(&OutboxQuery::default())
            .await
            .unwrap()
            .is_empty(),
        "a refused transition enqueues nothing"
    );
    let events = store.events(tx.id).await.unwrap();
    assert_eq!(events.len(), 2, "a refused transition leaves no event");
    let e = &events[1];
    assert_eq!((e.from, e.to), (Some(TxStatus::Created), TxStatus::Pending));
    assert_eq!(
        (e.note.as_deref(), e.provider_ref.as_deref()),
        (Some("started"), Some("prov-123"))
    );
    assert_eq!(e.actor, Actor::System);
    // A new provider reference replaces the old one: the transaction is found by it alone.
    let mut paid = transition(
        &tx,
        TxStatus::Pending,
        TxStatus::Paid,
        t0() + Duration::seconds(3),
    );
    paid.provider_ref = Some("bank-credit-9".into());
    store.transition(&paid).await.unwrap();
    let by = |r: &'static str| {
        let gateway = s.method.gateway_id.clone();
        async move {
            store
                .transaction_by_provider_ref(&gateway, r)
                .await
                .unwrap()
                .map(|t| t.id)
        }
    };
    assert_eq!(by("bank-credit-9").await, Some(tx.id));
    assert_eq!(
        by("prov-123").await,
        None,
        "the replaced reference finds nothing"
    );
    let unknown = Transition {
        transaction: TransactionId::new(),
        ..transition(&tx, TxStatus::Paid, TxStatus::Refunded, t0())
    };
    assert!(matches!(
        store.transition(&unknown).await,
        Err(Error::NotFound { .. })
    ));
}

/// `Paid` settles the items and enqueues the outbox in the same step.
pub async fn paid_settles_items_and_enqueues_outbox(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let a = s.item(store, &s.cart, "tributi", "a", "10.00").await;
    let b = s.item(store, &s.cart, "edilizia", "b", "0.99").await;
    let tx = s
        .checkout(store, &s.cart, &[a.clone(), b.clone()], "k", t0())
        .await;
    store
        .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, t0()))
        .await
        .unwrap();
    let mut paid = transition(
        &tx,
        TxStatus::Pending,
        TxStatus::Paid,
        t0() + Duration::minutes(1),
    );
    paid.outbox = outbox_for(&tx, &s.creditor, paid.at);
    let ids: Vec<OutboxId> = paid.outbox.iter().map(|m| m.id).collect();
    store.transition(&paid).await.unwrap();
    assert_eq!(state_of(store, a.id).await, ItemState::Paid(tx.id));
    assert_eq!(state_of(store, b.id).await, ItemState::Paid(tx.id));
    assert!(
        store.cart_items(s.cart.id).await.unwrap().is_empty(),
        "paid items leave the cart"
    );
    let outbox = store
        .outbox(&OutboxQuery {
            transaction_id: Some(tx.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        outbox.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids,
        "every message is enqueued, in order"
    );
    for (m, new) in outbox.iter().zip(&paid.outbox) {
        assert_eq!(m.payload, new.payload);
        assert_eq!(
            (m.status, m.attempts, m.creditor_id),
            (OutboxStatus::Pending, 0, tx.creditor_id)
        );
        assert_eq!(m.next_attempt_at, paid.at);
    }
    // A paid item is never locked again, even by a transaction that names it.
    let (again, ev) = s.transaction(&s.cart, std::slice::from_ref(&a), "k2", t0());
    assert!(matches!(
        store.create_transaction(&again, &ev).await,
        Err(Error::Conflict(_))
    ));
    // Adding the same source again returns the paid item, still paid.
    let re = s.item(store, &s.cart, "tributi", "a", "10.00").await;
    assert_eq!(re.state, ItemState::Paid(tx.id));
}

/// `Failed` (and the other ends that free items) make the items payable again.
pub async fn failure_frees_items(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let a = s.item(store, &s.cart, "tributi", "a", "10.00").await;
    let tx = s
        .checkout(store, &s.cart, std::slice::from_ref(&a), "k1", t0())
        .await;
    store
        .transition(&transition(&tx, TxStatus::Created, TxStatus::Failed, t0()))
        .await
        .unwrap();
    assert_eq!(state_of(store, a.id).await, ItemState::Open);
    let second = s
        .checkout(store, &s.cart, std::slice::from_ref(&a), "k2", t0())
        .await;
    assert_eq!(state_of(store, a.id).await, ItemState::Locked(second.id));
    store
        .transition(&transition(
            &second,
            TxStatus::Created,
            TxStatus::Pending,
            t0(),
        ))
        .await
        .unwrap();
    store
        .transition(&transition(
            &second,
            TxStatus::Pending,
            TxStatus::Expired,
            t0(),
        ))
        .await
        .unwrap();
    assert_eq!(state_of(store, a.id).await, ItemState::Open);
}

/// The same transition applied concurrently: one applies, with one set of outbox rows.
pub async fn concurrent_transitions_apply_once(store: Arc<dyn Store>) {
    let s = Sample::install(store.as_ref()).await;
    let a = s
        .item(store.as_ref(), &s.cart, "tributi", "a", "10.00")
        .await;
    let tx = s.checkout(store.as_ref(), &s.cart, &[a], "k", t0()).await;
    store
        .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, t0()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let mut t = transition(&tx, TxStatus::Pending, TxStatus::Paid, t0());
        t.outbox = outbox_for(&tx, &s.creditor, t0());
        tasks.push(tokio::spawn(async move { store.transition(&t).await }));
    }
    let mut applied = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => applied += 1,
            Err(Error::Conflict(Conflict::StaleState { .. })) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(applied, 1, "one transition applies");
    let outbox = store.outbox(&OutboxQuery::default()).await.unwrap();
    assert_eq!(outbox.len(), 3, "one set of outbox rows");
    assert_eq!(
        store.events(tx.id).await.unwrap().len(),
        3,
        "created, pending, paid"
    );
}

/// Unfinished transactions whose time is up are listed for expiry; others are not.
pub async fn expiry_candidates(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let mut txs = Vec::new();
    for (n, status) in [
        TxStatus::Created,
        TxStatus::Pending,
        TxStatus::Paid,
        TxStatus::Reported,
    ]
    .into_iter()
    .enumerate()
    {
        let item = s
            .item(store, &s.cart, "tributi", &format!("i{n}"), "1.00")
            .await;
        let tx = s
            .checkout(store, &s.cart, &[item], &format!("k{n}"), t0())
            .await;
        if status != TxStatus::Created {
            store
                .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, t0()))
                .await
                .unwrap();
        }
        if status != TxStatus::Created && status != TxStatus::Pending {
            store
                .transition(&transition(&tx, TxStatus::Pending, status, t0()))
                .await
                .unwrap();
        }
        txs.push(tx);
    }
    let before = store
        .due_for_expiry(t0() + Duration::minutes(29), 100)
        .await
        .unwrap();
    assert!(before.is_empty(), "nothing expires before its time");
    let mut due: Vec<TransactionId> = store
        .due_for_expiry(t0() + Duration::minutes(30), 100)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    due.sort();
    assert_eq!(
        due,
        vec![txs[0].id, txs[1].id],
        "only created and pending transactions expire"
    );
    assert_eq!(
        store
            .due_for_expiry(t0() + Duration::hours(1), 1)
            .await
            .unwrap()
            .len(),
        1,
        "the limit holds"
    );
}

async fn paid_transaction_with_outbox(
    store: &dyn Store,
    s: &Sample,
    key: &str,
) -> (Transaction, Vec<OutboxId>) {
    let item = s.item(store, &s.cart, "tributi", key, "3.00").await;
    let tx = s.checkout(store, &s.cart, &[item], key, t0()).await;
    store
        .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, t0()))
        .await
        .unwrap();
    let mut paid = transition(&tx, TxStatus::Pending, TxStatus::Paid, t0());
    paid.outbox = outbox_for(&tx, &s.creditor, t0());
    store.transition(&paid).await.unwrap();
    (tx, paid.outbox.iter().map(|m| m.id).collect())
}

/// Claim, lease, failure with retry, giving up, an operator's retry, delivery.
pub async fn outbox_lifecycle(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let (_, ids) = paid_transaction_with_outbox(store, &s, "a").await;
    let lease = t0() + Duration::minutes(5);
    assert!(
        store
            .claim_outbox(t0() - Duration::seconds(1), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is due before it is enqueued"
    );
    let first = store.claim_outbox(t0(), lease, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[..2],
        "oldest first, up to the limit"
    );
    assert!(
        first
            .iter()
            .all(|m| m.attempts == 1 && m.next_attempt_at == lease)
    );
    let rest = store.claim_outbox(t0(), lease, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[2..],
        "claimed messages are not claimed again"
    );
    assert!(
        store
            .claim_outbox(lease - Duration::seconds(1), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "not within the lease"
    );

    store.outbox_delivered(ids[0], t0()).await.unwrap();
    let retry_at = t0() + Duration::seconds(30);
    store
        .outbox_failed(ids[1], "smtp down", Some(retry_at))
        .await
        .unwrap();
    store
        .outbox_failed(ids[2], "no listener", None)
        .await
        .unwrap();
    let m1 = store.outbox_message(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (m1.status, m1.next_attempt_at, m1.last_error.as_deref()),
        (OutboxStatus::Pending, retry_at, Some("smtp down"))
    );
    let dead = store
        .outbox(&OutboxQuery {
            status: Some(OutboxStatus::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[2]]);
    let delivered = store.outbox_message(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (delivered.status, delivered.delivered_at),
        (OutboxStatus::Delivered, Some(t0()))
    );

    let again = store
        .claim_outbox(retry_at, retry_at + Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(),
        vec![(ids[1], 2)],
        "a failed message is due again at its retry time, and only it"
    );

    assert!(
        matches!(
            store.outbox_retry(ids[0], t0()).await,
            Err(Error::Conflict(_))
        ),
        "only a dead message is retried"
    );
    let revived = store.outbox_retry(ids[2], retry_at).await.unwrap();
    assert_eq!(
        (revived.status, revived.attempts, revived.next_attempt_at),
        (OutboxStatus::Pending, 0, retry_at)
    );
    let claimed = store
        .claim_outbox(retry_at, retry_at + Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    let other = Creditor::new("Altro", "00488410010", "x@example.it").unwrap();
    assert!(
        store
            .outbox(&OutboxQuery {
                creditor_id: Some(other.id),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .outbox(&OutboxQuery {
                creditor_id: Some(s.creditor.id),
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Concurrent claimers never get the same message.
pub async fn concurrent_claims_share_the_outbox(store: Arc<dyn Store>) {
    let s = Sample::install(store.as_ref()).await;
    let mut all = Vec::new();
    for n in 0..6 {
        all.extend(
            paid_transaction_with_outbox(store.as_ref(), &s, &format!("k{n}"))
                .await
                .1,
        );
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_outbox(t0(), t0() + Duration::minutes(5), 2)
                    .await
                    .expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.expect("task"));
    }
    claimed.sort();
    all.sort();
    assert_eq!(claimed, all, "every message is claimed exactly once");
}

/// Every filter of the operator search, keyset pages, and the selection's count and total.
pub async fn search_filters_pages_and_totals(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let other_type = PaymentType::new(s.creditor.id, "diritti", "Diritti");
    store.put_payment_type(&other_type).await.unwrap();
    let bob_cart = Sample::cart_of(store, &s.creditor, "bob").await;
    let mut all = Vec::new();
    for n in 0..12u32 {
        let cart = if n % 3 == 0 { &bob_cart } else { &s.cart };
        let module = if n % 2 == 0 { "tributi" } else { "edilizia" };
        let mut item = s
            .item(
                store,
                cart,
                module,
                &format!("k{n}"),
                &format!("{}.25", n + 1),
            )
            .await;
        if n == 5 {
            // One item of another type: stored with that type.
            let mut other = item.clone();
            other.id = ItemId::new();
            other.source = Source::new(module, "other-type");
            other.payment_type_id = other_type.id;
            item = store.add_item(&other).await.unwrap().item;
        }
        let at = t0() + Duration::days(i64::from(n));
        let tx = s
            .checkout(store, cart, &[item], &format!("key{n}"), at)
            .await;
        let tx = if n % 4 == 1 {
            store
                .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, at))
                .await
                .unwrap();
            store
                .transition(&transition(&tx, TxStatus::Pending, TxStatus::Paid, at))
                .await
                .unwrap()
        } else {
            tx
        };
        all.push(tx);
    }
    // Another creditor's movement never shows.
    let other = Creditor::new("Altro", "00488410010", "x@example.it").unwrap();
    store.put_creditor(&other).await.unwrap();
    let other_cart = Sample::cart_of(store, &other, "alice").await;
    let other_item = s.item(store, &other_cart, "tributi", "x", "1.00").await;
    s.checkout(store, &other_cart, &[other_item], "x", t0())
        .await;

    let check = |q: MovementQuery, label: &'static str| {
        let expected: Vec<&Transaction> = all.iter().rev().filter(|t| q.matches(t)).collect();
        async move {
            let mut got = Vec::new();
            let mut q = q;
            q.limit = 2;
            let first = store.search(&q).await.unwrap();
            let (count, total) = (first.count, first.total);
            let mut page = first.page;
            loop {
                assert!(
                    page.items.len() <= 2,
                    "{label}: a page holds at most the limit"
                );
                got.extend(page.items.iter().map(|t| t.id));
                match page.next {
                    Some(next) => {
                        q.after = Some(next);
                        let p = store.search(&q).await.unwrap();
                        assert_eq!(
                            (p.count, p.total),
                            (count, total),
                            "{label}: count and total do not depend on the page"
                        );
                        page = p.page;
                    }
                    None => break,
                }
            }
            assert_eq!(
                got,
                expected.iter().map(|t| t.id).collect::<Vec<_>>(),
                "{label}: rows, newest first"
            );
            assert_eq!(count, expected.len() as u64, "{label}: count");
            let sum: i64 = expected.iter().map(|t| t.total.minor_units()).sum();
            assert_eq!(total.minor_units(), sum, "{label}: total");
            got.len()
        }
    };
    let base = MovementQuery::new(s.creditor.id);
    let d = |n: i64| Some(t0() + Duration::days(n));
    let cases: Vec<(&'static str, MovementQuery, usize)> = vec![
        ("all", base.clone(), 12),
        (
            "dates",
            MovementQuery {
                from: d(3),
                to: d(7),
                ..base.clone()
            },
            4,
        ),
        (
            "status",
            MovementQuery {
                statuses: vec![TxStatus::Paid],
                ..base.clone()
            },
            3,
        ),
        (
            "type",
            MovementQuery {
                payment_type_id: Some(other_type.id),
                ..base.clone()
            },
            1,
        ),
        (
            "method",
            MovementQuery {
                method_kind: Some(MethodKind::Card),
                ..base.clone()
            },
            12,
        ),
        (
            "other method",
            MovementQuery {
                method_kind: Some(MethodKind::PagoPa),
                ..base.clone()
            },
            0,
        ),
        (
            "module",
            MovementQuery {
                module: Some("edilizia".into()),
                ..base.clone()
            },
            6,
        ),
        (
            "payer",
            MovementQuery {
                payer_id: Some("bob".into()),
                ..base.clone()
            },
            4,
        ),
        (
            "amount",
            MovementQuery {
                min_total: Some(eur("3.25")),
                max_total: Some(eur("6.25")),
                ..base.clone()
            },
            4,
        ),
        (
            "three filters",
            MovementQuery {
                statuses: vec![TxStatus::Created],
                module: Some("tributi".into()),
                from: d(2),
                ..base.clone()
            },
            5,
        ),
    ];
    for (label, query, expected) in cases {
        assert_eq!(
            check(query, label).await,
            expected,
            "{label}: the fixture's expectation"
        );
    }
    let none = store
        .search(&MovementQuery {
            payer_id: Some("nobody".into()),
            ..base
        })
        .await
        .unwrap();
    assert_eq!(
        (
            none.count,
            none.total.minor_units(),
            none.page.items.len(),
            none.page.next
        ),
        (0, 0, 0, None)
    );
}

/// The count and total of a search by state, method and period are those of the rows it
/// selects, whatever the period's bounds (on the hour, inside one hour, open) and after
/// changes of state; pages go newest first by creation time even when ids were handed out
/// in another order, and by id among those created in the same instant.
pub async fn search_counts_every_period_and_pages_by_creation(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let mut ids = Vec::new();
    // 16 transactions 23 minutes apart around the hours, created in an order that is not
    // that of their ids: the one made last is the oldest.
    let minutes = |n: i64| Duration::minutes(23 * n - 40);
    let mut order: Vec<i64> = (1..16).collect();
    order.push(0);
    for n in order {
        let item = s
            .item(
                store,
                &s.cart,
                "tributi",
                &format!("h{n}"),
                &format!("{}.10", n + 1),
            )
            .await;
        // Three made in the same instant (2, 3, 4): paging by four, a page ends between them.
        let at = t0() + minutes(if (2..=4).contains(&n) { 2 } else { n });
        let (mut tx, event) = s.transaction(&s.cart, &[item], &format!("h{n}"), at);
        if n % 3 == 2 {
            tx.method_kind = MethodKind::PagoPa;
        }
        let tx = store
            .create_transaction(&tx, &event)
            .await
            .unwrap()
            .transaction;
        let to = match n % 4 {
            0 => None,
            1 => Some(TxStatus::Pending),
            2 => Some(TxStatus::Paid),
            _ => Some(TxStatus::Failed),
        };
        if let Some(to) = to {
            store
                .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, at))
                .await
                .unwrap();
            if to != TxStatus::Pending {
                store
                    .transition(&transition(&tx, TxStatus::Pending, to, at))
                    .await
                    .unwrap();
            }
        }
        ids.push(tx.id);
    }
    let mut all = Vec::new();
    for id in &ids {
        all.push(store.transaction(*id).await.unwrap().unwrap());
    }
    all.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    let hour = t0() - Duration::minutes(40);
    let bounds = [
        None,
        Some(t0()),
        Some(t0() - Duration::hours(1)),
        Some(t0() + Duration::minutes(1)),
        Some(t0() + Duration::minutes(59)),
        Some(t0() + Duration::hours(2)),
        Some(t0() + Duration::minutes(150)),
        Some(hour + minutes(16)),
        Some(t0() + Duration::hours(9)),
    ];
    let statuses = [
        vec![],
        vec![TxStatus::Paid],
        vec![TxStatus::Created, TxStatus::Failed],
    ];
    let kinds = [None, Some(MethodKind::Card), Some(MethodKind::PagoPa)];
    for from in bounds {
        for to in bounds {
            for status in &statuses {
                for kind in kinds {
                    let q = MovementQuery {
                        from,
                        to,
                        statuses: status.clone(),
                        method_kind: kind,
                        limit: 3,
                        ..MovementQuery::new(s.creditor.id)
                    };
                    let expected: Vec<&Transaction> = all.iter().filter(|t| q.matches(t)).collect();
                    let page = store.search(&q).await.unwrap();
                    let label = format!("{from:?}..{to:?} {status:?} {kind:?}");
                    assert_eq!(page.count, expected.len() as u64, "{label}: count");
                    let sum: i64 = expected.iter().map(|t| t.total.minor_units()).sum();
                    assert_eq!(page.total.minor_units(), sum, "{label}: total");
                    let first: Vec<TransactionId> = expected.iter().take(3).map(|t| t.id).collect();
                    assert_eq!(
                        page.page.items.iter().map(|t| t.id).collect::<Vec<_>>(),
                        first,
                        "{label}: the first page, newest first"
                    );
                }
            }
        }
    }
    // Every page of everything, by creation time, the oldest (made last) at the end.
    let mut q = MovementQuery {
        limit: 4,
        ..MovementQuery::new(s.creditor.id)
    };
    let mut got = Vec::new();
    loop {
        let page = store.search(&q).await.unwrap();
        got.extend(page.page.items.iter().map(|t| t.id));
        match page.page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(got, all.iter().map(|t| t.id).collect::<Vec<_>>());
    assert_eq!(got.last(), ids.last(), "the last made is the oldest");
}

/// A payer's history holds only their transactions, newest first, paged.
pub async fn history_is_per_payer_and_paged(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let bob = Sample::cart_of(store, &s.creditor, "bob").await;
    let mut alice_txs = Vec::new();
    for n in 0..5 {
        let item = s
            .item(store, &s.cart, "tributi", &format!("a{n}"), "1.00")
            .await;
        alice_txs.push(
            s.checkout(store, &s.cart, &[item], &format!("a{n}"), t0())
                .await
                .id,
        );
        let item = s
            .item(store, &bob, "tributi", &format!("b{n}"), "1.00")
            .await;
        s.checkout(store, &bob, &[item], &format!("b{n}"), t0())
            .await;
    }
    alice_txs.reverse();
    let mut q = HistoryQuery {
        limit: 2,
        ..HistoryQuery::new("alice")
    };
    let mut got = Vec::new();
    loop {
        let page = store.history(&q).await.unwrap();
        got.extend(page.items.iter().map(|t| t.id));
        assert!(page.items.iter().all(|t| t.payer.id.as_str() == "alice"));
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    assert_eq!(got, alice_txs, "all of alice's, newest first, each once");
    let page: Vec<TransactionId> = alice_txs[..2].to_vec();
    let events = store.events_of(&page).await.unwrap();
    let mut seen: Vec<TransactionId> = events.iter().map(|e| e.transaction_id).collect();
    seen.sort();
    let mut expected = page.clone();
    expected.sort();
    assert_eq!(
        seen, expected,
        "events_of: each creation event of the page, and no other"
    );
    assert!(events.iter().all(|e| e.to == TxStatus::Created));
    assert!(store.events_of(&[]).await.unwrap().is_empty());
    let elsewhere = store
        .history(&HistoryQuery {
            creditor_id: Some(crate::CreditorId::new()),
            ..HistoryQuery::new("alice")
        })
        .await
        .unwrap();
    assert!(elsewhere.items.is_empty(), "the creditor filter holds");
}

/// A provider's receipt is kept once per creditor and key, byte for byte, and listed
/// newest first by key and reference, never another creditor's.
pub async fn provider_receipts_are_kept_whole_once(store: Arc<dyn Store>) {
    use crate::ProviderReceiptQuery;
    let s = Sample::install(store.as_ref()).await;
    let other =
        Creditor::new("Provincia di Esempio", "92012345671", "prov@example.it").expect("creditor");
    store.put_creditor(&other).await.expect("put_creditor");
    let receipt = sample_receipt;
    let first = receipt(s.creditor.id, "r-1", 0, "302000000000000120");
    assert!(store.insert_provider_receipt(&first).await.expect("insert"));
    let mut again = first.clone();
    again.document = "<changed/>".into();
    assert!(
        !store.insert_provider_receipt(&again).await.expect("insert"),
        "a receipt sent again is recorded once"
    );
    let second = receipt(s.creditor.id, "r-2", 5, "302000000000000221");
    assert!(
        store
            .insert_provider_receipt(&second)
            .await
            .expect("insert")
    );
    let theirs = receipt(other.id, "r-1", 9, "302000000000000120");
    assert!(
        store
            .insert_provider_receipt(&theirs)
            .await
            .expect("insert"),
        "keys are per creditor"
    );
    let all = store
        .provider_receipts(&ProviderReceiptQuery::new(s.creditor.id))
        .await
        .expect("list");
    assert_eq!(
        all,
        vec![second.clone(), first.clone()],
        "newest first, kept whole"
    );
    let mut q = ProviderReceiptQuery::new(s.creditor.id);
    q.key = Some("pagopa:r-1".into());
    assert_eq!(
        store.provider_receipts(&q).await.expect("by key"),
        vec![first.clone()]
    );
    let mut q = ProviderReceiptQuery::new(s.creditor.id);
    q.reference = Some("302000000000000221".into());
    assert_eq!(
        store.provider_receipts(&q).await.expect("by ref"),
        vec![second]
    );
    let mut q = ProviderReceiptQuery::new(other.id);
    q.limit = 1;
    assert_eq!(
        store.provider_receipts(&q).await.expect("theirs"),
        vec![theirs]
    );
}

/// A pagoPA receipt of 105.00 EUR (100.00 to `creditor`), recorded `minutes` after [`t0`].
pub fn sample_receipt(
    creditor: crate::CreditorId,
    id: &str,
    minutes: i64,
    notice: &str,
) -> crate::ProviderReceipt {
    use crate::{ProviderReceipt, ReceiptRole, ReceiptShare};
    ProviderReceipt {
        creditor_id: creditor,
        gateway_id: crate::GatewayId::from("pagopa"),
        key: format!("pagopa:{id}"),
        receipt_id: id.into(),
        reference: notice.into(),
        role: ReceiptRole::Issuer,
        amount: eur("105.00"),
        share: eur("100.00"),
        transfers: vec![ReceiptShare {
            fiscal_code: "00488410010".into(),
            amount: eur("100.00"),
            iban: Some("IT60X0542811101000000123456".into()),
            remittance: Some("TARI 2026".into()),
            category: Some("9/0101101IM/".into()),
        }],
        psp_id: Some("BCITITMM".into()),
        psp_name: Some("Intesa Sanpaolo".into()),
        channel_id: Some("BCITITMM_01".into()),
        payment_method: Some("creditCard".into()),
        fee: Some(eur("1.50")),
        payer: Some("RSSMRA80A01H501U Mario Rossi".into()),
        debtor: Some("RSSMRA80A01H501U Mario Rossi".into()),
        paid_at: Some(t0().naive_utc()),
        transfer_date: Some(t0().date_naive()),
        document: format!("<receipt id=\"{id}\">àè &amp; €</receipt>"),
        media_type: "application/xml".into(),
        recorded_at: t0() + Duration::minutes(minutes),
    }
}

/// A chunk of bank entries: each recorded with its payment or not at all; a key already
/// recorded changes nothing; a payment whose compare-and-set fails undoes its own step and
/// no other.
pub async fn bank_entries_are_recorded_in_chunks(store: Arc<dyn Store>) {
    use crate::{BankEntry, BankEntryOutcome, BankStep, BankStepDone, Conflict};
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let mut txs = Vec::new();
    for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
        let item = s.item(st, &s.cart, "tributi", key, "10.00").await;
        let tx = s
            .checkout(
                st,
                &s.cart,
                std::slice::from_ref(&item),
                &format!("k{n}"),
                t0(),
            )
            .await;
        let tx = st
            .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, t0()))
            .await
            .unwrap();
        txs.push((tx, item.id));
    }
    let entry = |key: &str, outcome: BankEntryOutcome| BankEntry {
        creditor_id: s.creditor.id,
        key: key.into(),
        statement_id: "STMT-9".into(),
        imported_at: t0(),
        booked_on: Some(t0().date_naive()),
        value_on: None,
        amount: rust_decimal::Decimal::new(1000, 2),
        currency: "EUR".into(),
        debtor: None,
        remittance: String::new(),
        reference: None,
        info: None,
        outcome,
    };
    let pays = |tx: &Transaction, key: &str, from: TxStatus| {
        let mut t = transition(tx, from, TxStatus::Paid, t0() + Duration::minutes(1));
        t.provider_ref = Some(key.into());
        t.outbox = outbox_for(tx, &s.creditor, t.at);
        t
    };
    let matched = |tx: &Transaction| BankEntryOutcome::Matched {
        transaction_id: tx.id,
    };
    let first = vec![
        BankStep::new(
            entry("E-1", matched(&txs[0].0)),
            Some(pays(&txs[0].0, "E-1", TxStatus::Pending)),
        ),
        BankStep::new(
            entry("E-2", matched(&txs[1].0)),
            Some(pays(&txs[1].0, "E-2", TxStatus::Pending)),
        ),
        BankStep::new(
            entry(
                "F-1",
                BankEntryOutcome::Flow {
                    flow_id: "2026-11-20PSP-1".into(),
                },
            ),
            None,
        ),
    ];
    let done = st.record_bank_entries(&first).await.expect("a plain chunk");
    assert_eq!(done.len(), 3);
    for (n, d) in done[..2].iter().enumerate() {
        let BankStepDone::Recorded(back) = d else {
            panic!("step {n}: {d:?}")
        };
        let t = st.transaction(txs[n].0.id).await.unwrap().unwrap();
        if let Some(back) = back {
            assert_eq!(**back, t, "what the store answers is what it stored");
        }
        assert_eq!(t.status, TxStatus::Paid);
        assert_eq!(t.provider_ref.as_deref(), Some(["E-1", "E-2"][n]));
        assert_eq!(state_of(st, txs[n].1).await, ItemState::Paid(txs[n].0.id));
        let events = st.events(txs[n].0.id).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.to == TxStatus::Paid).count(), 1);
        let outbox = st
            .outbox(&OutboxQuery {
                transaction_id: Some(txs[n].0.id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            outbox.len(),
            first[n].payment.as_ref().unwrap().outbox.len()
        );
    }
    assert_eq!(done[2], BankStepDone::Recorded(None));

    // Again E-1 (already there), C paid from a state it is not in, and a new entry.
    let second = vec![
        BankStep::new(
            entry("E-1", matched(&txs[0].0)),
            Some(pays(&txs[0].0, "E-1", TxStatus::Pending)),
        ),
        BankStep::new(
            entry("E-3", matched(&txs[2].0)),
            Some(pays(&txs[2].0, "E-3", TxStatus::Reported)),
        ),
        BankStep::new(
            entry(
                "F-2",
                BankEntryOutcome::Flow {
                    flow_id: "2026-11-21PSP-1".into(),
                },
            ),
            None,
        ),
    ];
    let done = st.record_bank_entries(&second).await.expect("a chunk");
    assert_eq!(done[0], BankStepDone::AlreadyRecorded);
    assert!(
        matches!(
            &done[1],
            BankStepDone::Conflict(Conflict::StaleState { .. })
        ),
        "{:?}",
        done[1]
    );
    assert_eq!(done[2], BankStepDone::Recorded(None));
    let known = st
        .bank_entry_keys(
            s.creditor.id,
            &["E-1", "E-2", "E-3", "F-1", "F-2"].map(String::from),
        )
        .await
        .unwrap();
    let mut known = known;
    known.sort();
    assert_eq!(known, ["E-1", "E-2", "F-1", "F-2"], "E-3 was undone whole");
    let c = st.transaction(txs[2].0.id).await.unwrap().unwrap();
    assert_eq!(c.status, TxStatus::Pending);
    assert_eq!(state_of(st, txs[2].1).await, ItemState::Locked(c.id));
    assert_eq!(
        st.events(txs[0].0.id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.to == TxStatus::Paid)
            .count(),
        1,
        "E-1 again paid nothing"
    );
    let by_ref = st
        .transactions_by_provider_refs(
            &s.method.gateway_id,
            &["E-1".into(), "E-2".into(), "none".into()],
        )
        .await
        .unwrap();
    let mut ids: Vec<TransactionId> = by_ref.iter().map(|t| t.id).collect();
    ids.sort();
    let mut want = vec![txs[0].0.id, txs[1].0.id];
    want.sort();
    assert_eq!(ids, want);
}

/// A bank entry is recorded once per creditor and key, even by concurrent importers; the
/// listing filters exceptions and references and comes newest first.
pub async fn bank_entries_are_recorded_once(store: Arc<dyn Store>) {
    use crate::{BankEntry, BankEntryOutcome, BankEntryQuery};
    let s = Sample::install(store.as_ref()).await;
    let other =
        Creditor::new("Comune di Altrove", "00488410010", "altrove@example.it").expect("creditor");
    store.put_creditor(&other).await.expect("put_creditor");
    let entry =
        |key: &str, minutes: i64, reference: Option<&str>, outcome: BankEntryOutcome| BankEntry {
            creditor_id: s.creditor.id,
            key: key.into(),
            statement_id: "STMT-1".into(),
            imported_at: t0() + Duration::minutes(minutes),
            booked_on: Some(t0().date_naive()),
            amount: rust_decimal::Decimal::new(1230, 2),
            currency: "EUR".into(),
            debtor: Some("Mario Rossi".into()),
            remittance: "RF18539007547034 TARI".into(),
            value_on: None,
            info: None,
            reference: reference.map(str::to_owned),
            outcome,
        };
    let tx = TransactionId::new();
    let matched = entry(
        "AS-1/1",
        0,
        Some("RF18539007547034"),
        BankEntryOutcome::Matched { transaction_id: tx },
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let e = matched.clone();
        tasks.push(tokio::spawn(
            async move { store.insert_bank_entry(&e).await },
        ));
    }
    let mut inserted = 0;
    for t in tasks {
        if t.await.expect("task").expect("insert_bank_entry") {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1, "a bank entry is recorded exactly once");
    let mut elsewhere = matched.clone();
    elsewhere.creditor_id = other.id;
    assert!(
        store.insert_bank_entry(&elsewhere).await.expect("insert"),
        "keys are per creditor"
    );
    let exception = entry(
        "AS-2/1",
        5,
        None,
        BankEntryOutcome::Exception {
            reason: "no transaction matches".into(),
            transaction_id: None,
        },
    );
    assert!(store.insert_bank_entry(&exception).await.expect("insert"));

    let all = store
        .bank_entries(&BankEntryQuery::new(s.creditor.id))
        .await
        .expect("bank_entries");
    assert_eq!(
        all,
        vec![exception.clone(), matched.clone()],
        "newest first, as stored"
    );
    let mut q = BankEntryQuery::new(s.creditor.id);
    q.exceptions_only = true;
    assert_eq!(store.bank_entries(&q).await.expect("list"), vec![exception]);
    let mut q = BankEntryQuery::new(s.creditor.id);
    q.reference = Some("RF18539007547034".into());
    let found = store.bank_entries(&q).await.expect("list");
    assert_eq!(found, vec![matched.clone()]);
    assert_eq!(found[0].transaction_id(), Some(tx));
    let mut q = BankEntryQuery::new(s.creditor.id);
    q.key = Some("AS-2/1".into());
    assert_eq!(
        store.bank_entries(&q).await.expect("list").len(),
        1,
        "by key"
    );
    let mut q = BankEntryQuery::new(s.creditor.id);
    q.transaction_id = Some(tx);
    assert_eq!(
        store.bank_entries(&q).await.expect("list"),
        vec![matched.clone()],
        "by transaction"
    );
    let mut q = BankEntryQuery::new(s.creditor.id);
    q.limit = 1;
    assert_eq!(
        store.bank_entries(&q).await.expect("list").len(),
        1,
        "the limit holds"
    );
}

/// [`Store::allocate_sequence`] starts at 1, reserves blocks, keeps counters apart, refuses
/// bad arguments, and never hands a value out twice to concurrent callers.
pub async fn sequences_never_hand_out_a_value_twice(store: Arc<dyn Store>) {
    assert_eq!(store.allocate_sequence("a", 1).await.expect("allocate"), 1);
    assert_eq!(store.allocate_sequence("a", 5).await.expect("allocate"), 2);
    assert_eq!(store.allocate_sequence("a", 1).await.expect("allocate"), 7);
    assert_eq!(
        store.allocate_sequence("b", 1).await.expect("allocate"),
        1,
        "counters are apart"
    );
    for (name, count, field) in [("", 1, "name"), ("a", 0, "count"), ("a\n", 1, "name")] {
        let err = store
            .allocate_sequence(name, count)
            .await
            .expect_err("bad arguments are refused");
        assert_eq!(
            err.validation_errors().map(|v| v.fields()),
            Some(vec![field]),
            "the error names {field}"
        );
    }
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let count = 1 + i % 3;
            let first = store.allocate_sequence("shared", count).await?;
            Ok::<_, crate::Error>((first, count))
        }));
    }
    let mut taken = std::collections::BTreeSet::new();
    for t in tasks {
        let (first, count) = t.await.expect("task").expect("allocate");
        for v in first..first + u64::from(count) {
            assert!(taken.insert(v), "value {v} was handed out twice");
        }
    }
    assert_eq!(taken.first(), Some(&1));
    assert_eq!(
        taken.last().copied(),
        Some(taken.len() as u64),
        "no value is skipped by callers that all succeed"
    );
    assert_eq!(
        store.allocate_sequence("a", 1).await.expect("allocate"),
        8,
        "other counters are untouched"
    );
}

fn refund_of(tx: &Transaction, key: &str, amount: &str) -> crate::Refund {
    crate::Refund {
        id: crate::RefundId::new(),
        transaction_id: tx.id,
        creditor_id: tx.creditor_id,
        amount: eur(amount),
        key: key.into(),
        reason: None,
        status: crate::RefundStatus::Requested,
        provider_ref: None,
        note: None,
        lines: crate::allocate_refund(tx, &[], &[], eur(amount)).unwrap_or_default(),
        excess: false,
        requested_by: crate::Actor::System,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn refund_event(tx: &Transaction, note: &str) -> TransactionEvent {
    TransactionEvent {
        id: crate::EventId::new(),
        transaction_id: tx.id,
        actor: crate::Actor::System,
        at: t0(),
        from: Some(TxStatus::Paid),
        to: TxStatus::Paid,
        provider_ref: None,
        note: Some(note.into()),
    }
}

/// Refunds: idempotent per key, only of a paid transaction, and never, even when asked at
/// once, adding up to more than was paid; a failed one stops counting.
pub async fn refunds_never_exceed_what_was_paid(store: Arc<dyn Store>) {
    let s = Sample::install(store.as_ref()).await;
    let (tx, _) = paid_transaction_with_outbox(store.as_ref(), &s, "r").await;
    assert_eq!(tx.total, eur("3.00"));

    let first = refund_of(&tx, "a", "1.00");
    let created = store
        .create_refund(&first, &refund_event(&tx, "a"))
        .await
        .expect("a refund within the total");
    assert!(created.created);
    let again = store
        .create_refund(&refund_of(&tx, "a", "2.00"), &refund_event(&tx, "a again"))
        .await
        .expect("the same key");
    assert!(!again.created, "the same key gives the same refund");
    assert_eq!(again.refund, first);

    // 2.00 is left: of eight concurrent refunds of 0.50, four pass.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_refund(
                    &refund_of(&tx, &format!("c{i}"), "0.50"),
                    &refund_event(&tx, "c"),
                )
                .await
        }));
    }
    let mut passed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(c) => {
                assert!(c.created);
                passed += 1;
            }
            Err(e) => assert_eq!(
                e.validation_errors().map(|v| v.fields()),
                Some(vec!["amount"]),
                "a refund past the total names the amount: {e}"
            ),
        }
    }
    assert_eq!(passed, 4, "concurrent refunds never exceed what was paid");
    let list = store.refunds(tx.id).await.unwrap();
    assert_eq!(list.len(), 5);
    assert_eq!(list[0].id, first.id, "oldest first");
    let err = store
        .create_refund(&refund_of(&tx, "more", "0.01"), &refund_event(&tx, "more"))
        .await
        .expect_err("nothing is left");
    assert!(err.validation_errors().is_some());

    // A failed refund no longer counts; a finished one does not move again.
    let update = |to| crate::RefundUpdate {
        refund: first.id,
        from: crate::RefundStatus::Requested,
        to,
        provider_ref: None,
        note: Some("card expired".into()),
        at: t0() + Duration::seconds(5),
        event: refund_event(&tx, "refused"),
        outbox: Vec::new(),
        exception: None,
    };
    let failed = store
        .finish_refund(&update(crate::RefundStatus::Failed))
        .await
        .expect("requested to failed");
    assert_eq!(failed.status, crate::RefundStatus::Failed);
    assert_eq!(failed.note.as_deref(), Some("card expired"));
    assert!(matches!(
        store
            .finish_refund(&update(crate::RefundStatus::Succeeded))
            .await,
        Err(crate::Error::Conflict(_))
    ));
    let stored = store.refunds(tx.id).await.unwrap();
    assert_eq!(stored[0].status, crate::RefundStatus::Failed, "kept");
    store
        .create_refund(
            &refund_of(&tx, "after", "1.00"),
            &refund_event(&tx, "after"),
        )
        .await
        .expect("the failed refund's amount is free again");
    let events = store.events(tx.id).await.unwrap();
    let notes: Vec<_> = events.iter().filter_map(|e| e.note.as_deref()).collect();
    assert_eq!(
        notes.iter().filter(|n| **n == "c").count(),
        4,
        "each refund recorded leaves one event, a refused one none"
    );
    assert!(notes.contains(&"refused") && notes.contains(&"after"));

    // Only a paid transaction is refunded.
    let item = s
        .item(store.as_ref(), &s.cart, "tributi", "open", "1.00")
        .await;
    let open = s
        .checkout(store.as_ref(), &s.cart, &[item], "open", t0())
        .await;
    assert!(matches!(
        store
            .create_refund(&refund_of(&open, "x", "1.00"), &refund_event(&open, "x"))
            .await,
        Err(crate::Error::Conflict(_))
    ));
    assert!(store.refunds(open.id).await.unwrap().is_empty());
}

/// What the reconciliation sweep asks about: created or pending, unchanged since a time,
/// by id, paged.
pub async fn unfinished_lists_open_transactions_by_age(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let mut txs = Vec::new();
    for (n, status) in [
        TxStatus::Created,
        TxStatus::Pending,
        TxStatus::Paid,
        TxStatus::Pending,
    ]
    .into_iter()
    .enumerate()
    {
        let item = s
            .item(store, &s.cart, "tributi", &format!("u{n}"), "1.00")
            .await;
        let tx = s
            .checkout(store, &s.cart, &[item], &format!("u{n}"), t0())
            .await;
        // The last one changes later than the others.
        let at = t0() + Duration::minutes(if n == 3 { 10 } else { 1 });
        if status != TxStatus::Created {
            store
                .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, at))
                .await
                .unwrap();
        }
        if status == TxStatus::Paid {
            store
                .transition(&transition(&tx, TxStatus::Pending, status, at))
                .await
                .unwrap();
        }
        txs.push(tx);
    }
    let ids = |list: Vec<Transaction>| list.iter().map(|t| t.id).collect::<Vec<_>>();
    let asked = [s.method.gateway_id.clone()];
    let old = store
        .unfinished(t0() + Duration::minutes(5), &asked, None, 10)
        .await
        .unwrap();
    assert_eq!(
        ids(old),
        vec![txs[0].id, txs[1].id],
        "open and unchanged since"
    );
    let all = store
        .unfinished(t0() + Duration::minutes(10), &asked, None, 10)
        .await
        .unwrap();
    assert_eq!(ids(all), vec![txs[0].id, txs[1].id, txs[3].id]);
    let page = store
        .unfinished(t0() + Duration::minutes(10), &asked, Some(txs[0].id), 1)
        .await
        .unwrap();
    assert_eq!(ids(page), vec![txs[1].id], "paged by id");
    // Only the gateways asked about: another's transactions are not even read.
    let other = [crate::GatewayId::from("bank_transfer")];
    for gateways in [&other[..], &[][..]] {
        let none = store
            .unfinished(t0() + Duration::minutes(10), gateways, None, 10)
            .await
            .unwrap();
        assert!(none.is_empty(), "{gateways:?}");
    }
    let both = [crate::GatewayId::from("bank_transfer"), asked[0].clone()];
    let all = store
        .unfinished(t0() + Duration::minutes(10), &both, None, 10)
        .await
        .unwrap();
    assert_eq!(ids(all).len(), 3);
}

/// A reporting flow is stored once per revision; a later revision replaces the earlier
/// one (kept, marked replaced); updates are compare-and-set on the version and record
/// their exceptions and the receipts reported in the same database transaction.
pub async fn reporting_flows_are_kept_per_revision(store: Arc<dyn Store>) {
    use crate::{
        CreditCheck, Exception, ExceptionKind, ExceptionQuery, FlowPayment, FlowPaymentStatus,
        FlowQuery, FlowStored, GatewayId, PaymentCheck, ReportingFlow,
    };
    let s = Sample::install(store.as_ref()).await;
    let flow = |id: &str, psp: &str, revision: u32, minutes: i64| ReportingFlow {
        creditor_id: s.creditor.id,
        flow_id: id.into(),
        psp_id: psp.into(),
        revision,
        psp_name: Some("Banca di Esempio".into()),
        flow_date: t0(),
        published_at: t0() + Duration::minutes(minutes),
        regulation: Some("SCT-1".into()),
        regulation_date: Some(t0().date_naive()),
        bic: Some("UNCRITMMXXX".into()),
        total: eur("100.00"),
        count: 1,
        payments: vec![FlowPayment {
            index: 1,
            iuv: "02000000000000120".into(),
            iur: "r-1".into(),
            transfer: 1,
            amount: eur("100.00"),
            status: FlowPaymentStatus::Executed,
            paid_at: t0(),
            check: PaymentCheck::Unchecked,
        }],
        credit: CreditCheck::Awaited,
        replaces: None,
        replaced: false,
        received_at: t0(),
        checked_at: None,
        version: 1,
        events: Vec::new(),
    };
    let a1 = flow("2026-03-01PSP1-1", "PSP1", 1, 0);
    assert_eq!(
        store.put_flow(&a1).await.expect("put"),
        FlowStored::Inserted
    );
    assert_eq!(store.put_flow(&a1).await.expect("put"), FlowStored::Known);
    let b1 = flow("2026-03-01PSP2-1", "PSP2", 1, 10);
    store.put_flow(&b1).await.expect("put");
    let mut a2 = flow("2026-03-01PSP1-1", "PSP1", 2, 20);
    a2.replaces = Some(1);
    assert_eq!(
        store.put_flow(&a2).await.expect("put"),
        FlowStored::Replaced { previous: 1 }
    );
    assert_eq!(
        store.put_flow(&a1).await.expect("put"),
        FlowStored::Outdated { current: 2 },
        "an older revision changes nothing"
    );
    let q = FlowQuery::new(s.creditor.id);
    let current = store.flows(&q).await.expect("list");
    assert_eq!(
        current,
        vec![a2.clone(), b1.clone()],
        "newest first, current only"
    );
    let mut all = q.clone();
    all.include_replaced = true;
    let listed = store.flows(&all).await.expect("list");
    assert_eq!(listed.len(), 3);
    assert!(listed[2].replaced, "the replaced revision is kept, marked");
    let mut page = q.clone();
    page.limit = 1;
    page.before = Some((a2.published_at, a2.flow_id.clone(), a2.psp_id.clone()));
    assert_eq!(store.flows(&page).await.expect("page"), vec![b1.clone()]);
    let mut by_psp = q.clone();
    by_psp.psp_id = Some("PSP2".into());
    assert_eq!(store.flows(&by_psp).await.expect("psp"), vec![b1.clone()]);

    // Receipts: one reported by the update, one left unreported.
    let r1 = sample_receipt(s.creditor.id, "r-1", 0, "302000000000000120");
    let r2 = sample_receipt(s.creditor.id, "r-2", 1, "302000000000000221");
    store.insert_provider_receipt(&r1).await.expect("insert");
    store.insert_provider_receipt(&r2).await.expect("insert");
    let pagopa = GatewayId::from("pagopa");
    let late = t0() + Duration::days(10);
    assert_eq!(
        store
            .unreported_receipts(s.creditor.id, &pagopa, late, None, 10)
            .await
            .expect("unreported"),
        vec![r1.clone(), r2.clone()],
        "oldest first"
    );
    assert_eq!(
        store
            .unreported_receipts(
                s.creditor.id,
                &pagopa,
                late,
                Some((r1.recorded_at, r1.key.clone())),
                10
            )
            .await
            .expect("next page"),
        vec![r2.clone()],
        "paged by keyset"
    );
    let mut checked = a2.clone();
    checked.version = 2;
    checked.checked_at = Some(t0());
    checked.payments[0].check = PaymentCheck::Matched {
        receipt_key: r1.key.clone(),
    };
    let exception = Exception::new(
        s.creditor.id,
        ExceptionKind::ReportingMismatch,
        "fdr:test",
        "a test discrepancy",
        t0(),
    );
    assert!(
        store
            .update_flow(
                &checked,
                std::slice::from_ref(&exception),
                std::slice::from_ref(&r1.key)
            )
            .await
            .expect("update")
    );
    assert!(
        !store.update_flow(&checked, &[], &[]).await.expect("stale"),
        "an update of a version already replaced does not apply"
    );
    let mut old = a1.clone();
    old.version = 2;
    assert!(
        !store.update_flow(&old, &[], &[]).await.expect("replaced"),
        "a replaced revision is not updated"
    );
    assert_eq!(
        store.flows(&q).await.expect("list")[0],
        checked,
        "stored whole"
    );
    assert_eq!(
        store
            .unreported_receipts(s.creditor.id, &pagopa, late, None, 10)
            .await
            .expect("unreported"),
        vec![r2.clone()]
    );
    assert!(
        store
            .unreported_receipts(s.creditor.id, &pagopa, t0(), None, 10)
            .await
            .expect("none before")
            .is_empty()
    );
    assert!(
        store
            .unreported_receipts(s.creditor.id, &GatewayId::from("stripe"), late, None, 10)
            .await
            .expect("other gateway")
            .is_empty()
    );
    let mut eq = ExceptionQuery::new(s.creditor.id);
    eq.kind = Some(ExceptionKind::ReportingMismatch);
    assert_eq!(
        store.exceptions(&eq).await.expect("exceptions").len(),
        1,
        "recorded with the update"
    );
}
