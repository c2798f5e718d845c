//! The [`Store`] checks of debt positions: registered once per key in bulk, found by key
//! and notice number, listed with filters, changed by compare-and-set, and paid in the
//! same database transaction that settles their items.
//! [`store::run_all`](super::store::run_all) runs them with the others.

use chrono::{Duration, NaiveDate};

use super::store::{Sample, outbox_for, t0, transition};
use crate::{
    Actor, Conflict, DebtPosition, Error, ExceptionKind, ExceptionQuery, ItemId, ItemState, Money,
    NewDebtPosition, NewOption, NewOutboxMessage, OutboxId, OutboxPayload, OutboxQuery,
    PayableItem, PositionEvent, PositionPayer, PositionQuery, PositionStatus, Store, TxStatus,
};

fn eur(s: &str) -> Money {
    Money::parse_eur(s).expect("a valid amount")
}

fn day(d: &str) -> NaiveDate {
    d.parse().expect("a date")
}

/// A TARI position of `payer` keyed `key`: a single option and two instalments, with
/// notice numbers from `first`.
fn tari(s: &Sample, key: &str, payer: &str, first: u64) -> DebtPosition {
    NewDebtPosition::new(
        "tributi",
        key,
        PositionPayer::new(payer, "Mario Rossi").with_email("mario@example.it"),
        s.payment_type.id,
        "TARI 2026",
    )
    .valid_until(day("2026-12-31"))
    .with_single(NewOption::new(eur("300.00"), day("2026-04-30")))
    .with_instalment(NewOption::new(eur("150.00"), day("2026-04-30")))
    .with_instalment(NewOption::new(eur("150.00"), day("2026-09-30")))
    .build(
        s.creditor.id,
        (first..first + 3)
            .map(|n| format!("3010000000000{n:05}"))
            .collect(),
        t0(),
        |amount, remittance| {
            vec![crate::Transfer::to_iban(
                "00488410010",
                "IT60X0542811101000000123456",
                *amount,
                remittance,
                "9/0101101IM/",
            )]
        },
    )
}

fn registered(p: &DebtPosition) -> PositionEvent {
    PositionEvent {
        position_id: p.id,
        at: t0(),
        actor: Actor::System,
        from: None,
        to: p.status,
        note: "registered".into(),
    }
}

/// The item of option `index` of `p` in its payer's cart.
async fn option_item(store: &dyn Store, s: &Sample, p: &DebtPosition, index: usize) -> PayableItem {
    let cart = Sample::cart_of(store, &s.creditor, &p.payer.fiscal_code).await;
    let source = p.source(index).expect("an option");
    let item = PayableItem {
        id: ItemId::new(),
        creditor_id: s.creditor.id,
        cart_id: cart.id,
        payer_id: cart.payer.id.clone(),
        source,
        payment_type_id: s.payment_type.id,
        reason: p.reason.clone(),
        amount: p.options[index].amount,
        due_date: Some(p.options[index].due_date),
        extra: Default::default(),
        state: ItemState::Open,
        created_at: t0(),
    };
    store.add_item(&item).await.expect("add_item").item
}

/// Pays option `index` of `p` with a transaction of its own; answers the position after.
async fn pay_option(
    store: &dyn Store,
    s: &Sample,
    p: &DebtPosition,
    index: usize,
    key: &str,
) -> DebtPosition {
    let item = option_item(store, s, p, index).await;
    let cart = store
        .cart(item.cart_id)
        .await
        .expect("cart")
        .expect("a cart");
    let tx = s.checkout(store, &cart, &[item], key, t0()).await;
    let mut paid = transition(
        &tx,
        TxStatus::Created,
        TxStatus::Paid,
        t0() + Duration::minutes(1),
    );
    paid.outbox = outbox_for(&tx, &s.creditor, t0());
    store.transition(&paid).await.expect("paid");
    store
        .position(p.id)
        .await
        .expect("position")
        .expect("the position exists")
}

/// Positions are registered once per key, in batches, and found by key and notice number.
pub async fn positions_are_registered_once_and_found(store: std::sync::Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let a = tari(&s, "TARI-1", "RSSMRA80A01H501U", 0);
    let b = tari(&s, "TARI-2", "VRDLGU75C12F205X", 3);
    let inserted = store
        .insert_positions(
            &[a.clone(), b.clone()],
            &[registered(&a), registered(&b)],
            &[],
        )
        .await
        .expect("insert_positions");
    assert_eq!(inserted, vec![true, true]);
    // The same keys again (new ids and numbers): left as they were.
    let again = tari(&s, "TARI-1", "RSSMRA80A01H501U", 10);
    let inserted = store
        .insert_positions(std::slice::from_ref(&again), &[registered(&again)], &[])
        .await
        .expect("insert_positions again");
    assert_eq!(inserted, vec![false]);
    let found = store
        .position_by_key(s.creditor.id, "tributi", "TARI-1")
        .await
        .expect("by key")
        .expect("found by key");
    assert_eq!(found, a);
    let by_notice = store
        .position_by_notice(s.creditor.id, &b.options[2].notice_number)
        .await
        .expect("by notice")
        .expect("found by notice");
    assert_eq!(by_notice.id, b.id);
    assert!(
        store
            .position_by_notice(s.creditor.id, &again.options[0].notice_number)
            .await
            .expect("by notice")
            .is_none(),
        "the numbers of a refused duplicate are not recorded"
    );
    // A notice number already taken refuses the whole batch.
    let clash = tari(&s, "TARI-3", "RSSMRA80A01H501U", 2);
    let err = store
        .insert_positions(std::slice::from_ref(&clash), &[registered(&clash)], &[])
        .await
        .expect_err("a notice number is unique per creditor");
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(
        store
            .position_by_key(s.creditor.id, "tributi", "TARI-3")
            .await
            .expect("by key")
            .is_none()
    );
    assert_eq!(store.position_events(a.id).await.expect("events").len(), 1);

    // Filters: payer, status, due dates, paging.
    let mut q = PositionQuery::of(s.creditor.id);
    q.payer = Some("VRDLGU75C12F205X".into());
    let list = store.positions(&q).await.expect("positions");
    assert_eq!(list.iter().map(|p| p.id).collect::<Vec<_>>(), vec![b.id]);
    let mut q = PositionQuery::of(s.creditor.id);
    q.due_from = Some(day("2026-09-01"));
    q.due_to = Some(day("2026-09-30"));
    assert_eq!(store.positions(&q).await.expect("positions").len(), 2);
    q.due_from = Some(day("2026-10-01"));
    q.due_to = None;
    assert!(store.positions(&q).await.expect("positions").is_empty());
    let mut q = PositionQuery::of(s.creditor.id);
    q.limit = 1;
    let first = store.positions(&q).await.expect("positions");
    assert_eq!(first[0].id, b.id, "newest first");
    q.before = Some(first[0].id);
    assert_eq!(store.positions(&q).await.expect("positions")[0].id, a.id);
    let mut q = PositionQuery::of(s.creditor.id);
    q.status = Some(PositionStatus::Paid);
    assert!(store.positions(&q).await.expect("positions").is_empty());
    let mut q = PositionQuery::of(s.creditor.id);
    q.valid_before = Some(day("2027-01-01"));
    assert_eq!(store.positions(&q).await.expect("positions").len(), 2);
    q.valid_before = Some(day("2026-12-31"));
    assert!(store.positions(&q).await.expect("positions").is_empty());
}

/// Settling an option's item pays the option in the same database transaction: an
/// instalment makes the position partly paid and takes the single option's open item out of
/// the cart, the rest pays it, and the single option paid anyway (its payment had started
/// before) is excess money: an exception, the position left as it was.
pub async fn paying_an_option_pays_the_position(store: std::sync::Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let p = tari(&s, "TARI-1", "RSSMRA80A01H501U", 0);
    let q = tari(&s, "TARI-2", "RSSMRA80A01H501U", 3);
    store
        .insert_positions(
            &[p.clone(), q.clone()],
            &[registered(&p), registered(&q)],
            &[],
        )
        .await
        .expect("insert");
    // A payment of the single option starts before any instalment is paid.
    let single_item = option_item(store, &s, &p, 0).await;
    let cart = store
        .cart(single_item.cart_id)
        .await
        .expect("cart")
        .expect("cart");
    let single_tx = s.checkout(store, &cart, &[single_item], "u", t0()).await;
    let after = pay_option(store, &s, &p, 1, "r1").await;
    assert_eq!(after.status, PositionStatus::PartiallyPaid);
    assert!(after.options[1].paid_by.is_some());
    assert_eq!(after.payable(), vec![2]);
    let mut due = PositionQuery::of(s.creditor.id);
    due.due_from = Some(day("2026-04-30"));
    due.due_to = Some(day("2026-04-30"));
    assert_eq!(
        store.positions(&due).await.expect("positions").len(),
        2,
        "the single options are unpaid that day"
    );
    let after = pay_option(store, &s, &after, 2, "r2").await;
    assert_eq!(after.status, PositionStatus::Paid);
    let events = store.position_events(p.id).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.to).collect::<Vec<_>>(),
        vec![
            PositionStatus::Valid,
            PositionStatus::PartiallyPaid,
            PositionStatus::Paid
        ]
    );
    // The single option's payment goes through anyway: recorded, and an exception says
    // the body holds the money twice; the position stays as its instalments made it.
    store
        .transition(&transition(
            &single_tx,
            TxStatus::Created,
            TxStatus::Paid,
            t0(),
        ))
        .await
        .expect("paid");
    let after = store
        .position(p.id)
        .await
        .expect("position")
        .expect("exists");
    assert_eq!(after.status, PositionStatus::Paid);
    assert_eq!(after.options[0].paid_by, None);
    let exceptions = store
        .exceptions(&ExceptionQuery::new(s.creditor.id).of_kind(ExceptionKind::DoublePayment))
        .await
        .expect("exceptions");
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0].transaction_id, Some(single_tx.id));
    assert_eq!(exceptions[0].amount, Some(eur("300.00")));

    // The other position: its single option waits in the cart; an instalment paid takes
    // it out, so it cannot be paid too.
    let waiting = option_item(store, &s, &q, 0).await;
    pay_option(store, &s, &q, 1, "q1").await;
    let waiting = store.item(waiting.id).await.expect("item").expect("item");
    assert_eq!(waiting.state, ItemState::Removed);
}

/// A payment of an option given back in full makes it payable again, in the same database
/// transaction as the refund's end.
pub async fn a_refund_in_full_reopens_the_option(store: std::sync::Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let p = tari(&s, "TARI-1", "RSSMRA80A01H501U", 0);
    store
        .insert_positions(std::slice::from_ref(&p), &[registered(&p)], &[])
        .await
        .expect("insert");
    let after = pay_option(store, &s, &p, 0, "u").await;
    assert_eq!(after.status, PositionStatus::Paid);
    let tx_id = after.options[0].paid_by.expect("paid");
    let tx = store.transaction(tx_id).await.expect("tx").expect("tx");
    let refund = crate::Refund {
        id: crate::RefundId::new(),
        transaction_id: tx.id,
        creditor_id: tx.creditor_id,
        amount: tx.total,
        key: "back".into(),
        reason: None,
        status: crate::RefundStatus::Requested,
        provider_ref: None,
        note: None,
        lines: crate::allocate_refund(&tx, &[], &[], tx.total).expect("allocate"),
        excess: false,
        requested_by: Actor::System,
        created_at: t0(),
        updated_at: t0(),
    };
    let event = || crate::TransactionEvent {
        id: crate::EventId::new(),
        transaction_id: tx.id,
        actor: Actor::System,
        at: t0(),
        from: Some(TxStatus::Paid),
        to: TxStatus::Paid,
        provider_ref: None,
        note: Some("refund".into()),
    };
    store
        .create_refund(&refund, &event())
        .await
        .expect("create");
    store
        .finish_refund(&crate::RefundUpdate {
            refund: refund.id,
            from: crate::RefundStatus::Requested,
            to: crate::RefundStatus::Succeeded,
            provider_ref: None,
            note: None,
            at: t0() + Duration::minutes(5),
            event: event(),
            outbox: Vec::new(),
            exception: None,
        })
        .await
        .expect("succeeded");
    let after = store
        .position(p.id)
        .await
        .expect("position")
        .expect("exists");
    assert_eq!(after.status, PositionStatus::Valid);
    assert_eq!(after.payable(), vec![0, 1, 2]);
    let mut due = PositionQuery::of(s.creditor.id);
    due.due_from = Some(day("2026-04-30"));
    due.due_to = Some(day("2026-04-30"));
    assert_eq!(
        store.positions(&due).await.expect("positions").len(),
        1,
        "unpaid again"
    );
}

/// A change applies only over the version it was read at, with its event.
pub async fn positions_change_by_compare_and_set(store: std::sync::Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let p = tari(&s, "TARI-1", "RSSMRA80A01H501U", 0);
    store
        .insert_positions(std::slice::from_ref(&p), &[registered(&p)], &[])
        .await
        .expect("insert");
    // Option 0's item waits in the cart; option 1's is in a payment in progress.
    let open = option_item(store, &s, &p, 0).await;
    let held = option_item(store, &s, &p, 1).await;
    let cart = store.cart(held.cart_id).await.expect("cart").expect("cart");
    let holding = s
        .checkout(store, &cart, std::slice::from_ref(&held), "held", t0())
        .await;
    let mut next = p.clone();
    next.version += 1;
    next.revision += 1;
    next.options[2].due_date = day("2026-10-31");
    let event = PositionEvent {
        position_id: p.id,
        at: t0(),
        actor: Actor::System,
        from: Some(p.status),
        to: p.status,
        note: "due date moved".into(),
    };
    let refused = store
        .update_position(&next, &event, &[])
        .await
        .expect_err("an option's payment is in progress");
    assert!(
        matches!(refused, Error::Conflict(Conflict::ItemUnavailable { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.position(p.id).await.expect("p").expect("p").version,
        1,
        "nothing changed"
    );
    store
        .transition(&transition(
            &holding,
            TxStatus::Created,
            TxStatus::Cancelled,
            t0(),
        ))
        .await
        .expect("cancelled");
    store
        .update_position(&next, &event, &[])
        .await
        .expect("update");
    for item in [open, held] {
        let item = store.item(item.id).await.expect("item").expect("item");
        assert_eq!(
            item.state,
            ItemState::Removed,
            "out of the cart: an old amount is never paid"
        );
    }
    let err = store
        .update_position(&next, &event, &[])
        .await
        .expect_err("a second change over the same version");
    assert!(
        matches!(err, Error::Conflict(Conflict::PositionChanged { .. })),
        "{err:?}"
    );
    let mut q = PositionQuery::of(s.creditor.id);
    q.due_from = Some(day("2026-10-31"));
    assert_eq!(
        store.positions(&q).await.expect("positions").len(),
        1,
        "the due date moved"
    );
    // An item of the new revision pays the option; one of the old revision does too.
    let after = pay_option(store, &s, &next, 1, "new").await;
    assert!(after.options[1].paid_by.is_some());
    let old = pay_option(store, &s, &p, 2, "old").await;
    assert!(
        old.options[2].paid_by.is_some(),
        "an item of an earlier revision still pays its option"
    );
    assert_eq!(old.status, PositionStatus::Paid);
    assert_eq!(store.position_events(p.id).await.expect("events").len(), 4);
}

/// A message enqueued with a key goes out once.
pub async fn messages_enqueue_once_per_key(store: std::sync::Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let p = tari(&s, "TARI-1", "RSSMRA80A01H501U", 0);
    let message = |id| NewOutboxMessage {
        id,
        transaction_id: crate::TransactionId::from(*p.id.as_uuid()),
        payload: OutboxPayload::Reminder(crate::Reminder {
            id,
            to: "mario@example.it".into(),
            locale: crate::Locale::It,
            creditor: s.creditor.clone(),
            position: p.clone(),
            option: 1,
            offset_days: -7,
        }),
    };
    assert!(
        store
            .enqueue_once("reminder:1", s.creditor.id, &message(OutboxId::new()), t0())
            .await
            .expect("enqueue")
    );
    assert!(
        !store
            .enqueue_once("reminder:1", s.creditor.id, &message(OutboxId::new()), t0())
            .await
            .expect("enqueue again")
    );
    let q = OutboxQuery {
        creditor_id: Some(s.creditor.id),
        ..OutboxQuery::default()
    };
    let queued = store.outbox(&q).await.expect("outbox");
    assert_eq!(queued.len(), 1);
    assert!(
        matches!(&queued[0].payload, OutboxPayload::Reminder(r) if r.offset_days == -7 && r.position == p)
    );
    let claimed = store
        .claim_outbox(t0(), t0() + Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "due at the time given");
}

/// A position's outbox message (its copy for pagoPA's archive) is written with the
/// position, in the same database transaction: with an inserted position and not with one
/// already registered, with a change and not with a change refused.
pub async fn position_messages_go_with_their_change(store: std::sync::Arc<dyn Store>) {
    let store = store.as_ref();
    let s = Sample::install(store).await;
    let archive = |p: &crate::DebtPosition| {
        let id = OutboxId::new();
        NewOutboxMessage {
            id,
            transaction_id: crate::TransactionId::from(*p.id.as_uuid()),
            payload: OutboxPayload::Archive(crate::ArchiveSync {
                id,
                position_id: p.id,
                version: p.version,
            }),
        }
    };
    let p = tari(&s, "TARI-1", "RSSMRA80A01H501U", 0);
    store
        .insert_positions(std::slice::from_ref(&p), &[registered(&p)], &[archive(&p)])
        .await
        .expect("insert");
    assert_eq!(archived(store, &s).await, vec![(p.id, 1)]);
    // Registered again under the same key: no second message.
    let again = tari(&s, "TARI-1", "RSSMRA80A01H501U", 10);
    store
        .insert_positions(
            std::slice::from_ref(&again),
            &[registered(&again)],
            &[archive(&again)],
        )
        .await
        .expect("insert again");
    assert_eq!(archived(store, &s).await.len(), 1);
    let mut next = p.clone();
    next.version += 1;
    next.status = crate::PositionStatus::Invalid;
    let event = PositionEvent {
        position_id: p.id,
        at: t0(),
        actor: Actor::System,
        from: Some(p.status),
        to: next.status,
        note: "invalidated".into(),
    };
    store
        .update_position(&next, &event, &[archive(&next)])
        .await
        .expect("update");
    let mut seen = archived(store, &s).await;
    seen.sort_by_key(|(_, v)| *v);
    assert_eq!(seen, vec![(p.id, 1), (p.id, 2)]);
    // A change over a version that moved on is refused, and enqueues nothing.
    store
        .update_position(&next, &event, &[archive(&next)])
        .await
        .expect_err("a stale change");
    assert_eq!(archived(store, &s).await.len(), 2);
}

/// The positions and versions of the archive messages queued for the sample's creditor.
async fn archived(store: &dyn Store, s: &Sample) -> Vec<(crate::DebtPositionId, u32)> {
    let q = OutboxQuery {
        creditor_id: Some(s.creditor.id),
        ..OutboxQuery::default()
    };
    store
        .outbox(&q)
        .await
        .expect("outbox")
        .into_iter()
        .filter_map(|m| match m.payload {
            OutboxPayload::Archive(a) => Some((a.position_id, a.version)),
            _ => None,
        })
        .collect()
}
