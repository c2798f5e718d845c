//! The [`Store`] checks of money at the edges: payments that come late or twice, lines
//! paid one by one, the ledger of exceptions, postponed expiries and refunds that end
//! later. [`store::run_all`](super::store::run_all) runs them with the others.

use std::sync::Arc;

use chrono::Duration;

use super::store::{Sample, outbox_for, t0, transition};
use crate::{
    Actor, BankEntry, BankEntryOutcome, Conflict, Error, Exception, ExceptionKind, ExceptionQuery,
    ExceptionResolution, ExceptionStatus, ExceptionUpdate, ExpiryExtension, ItemState, LinePayment,
    LinePaymentOutcome, Money, OutboxQuery, PayableItem, RefundStatus, Store, Transaction,
    TransactionEvent, TxStatus,
};

fn eur(s: &str) -> Money {
    Money::parse_eur(s).expect("a valid amount")
}

async fn state_of(store: &dyn Store, item: &PayableItem) -> ItemState {
    store
        .item(item.id)
        .await
        .expect("item")
        .expect("the item exists")
        .state
}

async fn status_of(store: &dyn Store, tx: &Transaction) -> TxStatus {
    store
        .transaction(tx.id)
        .await
        .expect("transaction")
        .expect("the transaction exists")
        .status
}

/// A transaction of `items` in alice's cart, moved to `Pending`.
async fn pending(store: &dyn Store, s: &Sample, items: &[PayableItem], key: &str) -> Transaction {
    let tx = s.checkout(store, &s.cart, items, key, t0()).await;
    store
        .transition(&transition(&tx, TxStatus::Created, TxStatus::Pending, t0()))
        .await
        .expect("pending")
}

fn exception(s: &Sample, kind: ExceptionKind, key: &str, tx: Option<&Transaction>) -> Exception {
    let mut e = Exception::new(s.creditor.id, kind, key, format!("check {key}"), t0());
    if let Some(tx) = tx {
        e = e.with_transaction(tx.id).with_amount(tx.total);
    }
    e
}

/// The payment of line `line` of `tx`, keyed `key`, with one message to enqueue.
fn line_payment(s: &Sample, tx: &Transaction, line: usize, key: &str) -> LinePayment {
    let mut p = LinePayment::new(
        tx.id,
        line,
        key,
        format!("notice-{line}"),
        tx.lines[line].amount,
        Actor::Gateway {
            id: "pagopa".into(),
        },
        t0() + Duration::minutes(1),
        exception(s, ExceptionKind::DoublePayment, key, Some(tx)).with_lines([line]),
        exception(
            s,
            ExceptionKind::LatePayment,
            &format!("late:{key}"),
            Some(tx),
        ),
    );
    p.outbox = outbox_for(tx, &s.creditor, t0())
        .into_iter()
        .filter(|m| matches!(m.payload, crate::OutboxPayload::Settlement(ref x) if x.item_id == tx.lines[line].item_id))
        .collect();
    p
}

async fn outbox_of(store: &dyn Store, tx: &Transaction) -> usize {
    store
        .outbox(&OutboxQuery {
            transaction_id: Some(tx.id),
            ..OutboxQuery::default()
        })
        .await
        .expect("outbox")
        .len()
}

/// A move to `Paid` settles every item, whatever its state, except those another
/// transaction paid; the store, not the caller, decides which those are.
pub async fn late_payment_settles_free_items_and_leaves_paid_ones(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let b = s.item(st, &s.cart, "tributi", "b", "20.00").await;
    let c = s.item(st, &s.cart, "tributi", "c", "30.00").await;
    let t1 = pending(st, &s, &[a.clone(), b.clone(), c.clone()], "t1").await;
    let t1 = store
        .transition(&transition(&t1, TxStatus::Pending, TxStatus::Expired, t0()))
        .await
        .expect("expired");
    assert_eq!(state_of(st, &a).await, ItemState::Open, "expiry frees");
    // b is paid by another transaction, c is in one still open.
    let t2 = pending(st, &s, std::slice::from_ref(&b), "t2").await;
    let mut paid = transition(&t2, TxStatus::Pending, TxStatus::Paid, t0());
    paid.outbox = outbox_for(&t2, &s.creditor, t0());
    store.transition(&paid).await.expect("t2 paid");
    let t3 = pending(st, &s, std::slice::from_ref(&c), "t3").await;

    // The late payment of t1, told nothing is paid elsewhere: refused, nothing changes.
    let mut late = transition(&t1, TxStatus::Expired, TxStatus::Paid, t0());
    late.actor = Actor::Gateway {
        id: "sandbox".into(),
    };
    match store.transition(&late).await {
        Err(Error::Conflict(Conflict::ItemsChanged { .. })) => {}
        other => panic!("an item paid elsewhere must be named, got {other:?}"),
    }
    late.already_paid = vec![a.id];
    assert!(
        matches!(
            store.transition(&late).await,
            Err(Error::Conflict(Conflict::ItemsChanged { .. }))
        ),
        "an item named as paid elsewhere must be"
    );
    assert_eq!(status_of(st, &t1).await, TxStatus::Expired);
    assert_eq!(state_of(st, &a).await, ItemState::Open, "nothing changed");

    // Told right, it applies: a and c are paid by t1, b stays t2's, the exception is kept.
    late.already_paid = vec![b.id];
    late.exceptions =
        vec![exception(&s, ExceptionKind::DoublePayment, "double:t1", Some(&t1)).with_lines([1])];
    late.outbox = outbox_for(&t1, &s.creditor, t0());
    let moved = store.transition(&late).await.expect("late payment");
    assert_eq!(moved.status, TxStatus::Paid);
    assert_eq!(state_of(st, &a).await, ItemState::Paid(t1.id));
    assert_eq!(state_of(st, &b).await, ItemState::Paid(t2.id), "paid once");
    assert_eq!(
        state_of(st, &c).await,
        ItemState::Paid(t1.id),
        "money beats a lock: the open transaction no longer holds it"
    );
    let ledger = store
        .exceptions(&ExceptionQuery::new(s.creditor.id).of_transaction(t1.id))
        .await
        .expect("exceptions");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].lines, [1]);
    // t3, paid later, finds c paid by t1: the store says so.
    let mut t3_paid = transition(&t3, TxStatus::Pending, TxStatus::Paid, t0());
    assert!(matches!(
        store.transition(&t3_paid).await,
        Err(Error::Conflict(Conflict::ItemsChanged { .. }))
    ));
    t3_paid.already_paid = vec![c.id];
    store.transition(&t3_paid).await.expect("t3 paid");
    assert_eq!(state_of(st, &c).await, ItemState::Paid(t1.id), "still t1's");
}

/// Lines paid one by one settle once per key; a second payment of a line is a double
/// payment; the last line pays the transaction; a line paid after the end is late.
pub async fn line_payments_settle_once(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let b = s.item(st, &s.cart, "tributi", "b", "20.00").await;
    let tx = pending(st, &s, &[a.clone(), b.clone()], "lines").await;

    let first = store
        .pay_line(&line_payment(&s, &tx, 0, "rcpt-1"))
        .await
        .expect("pay line 1");
    assert!(first.recorded);
    assert_eq!(first.outcome, LinePaymentOutcome::Settled);
    assert_eq!(first.transaction.status, TxStatus::Pending);
    assert!(first.transaction.lines[0].paid_at.is_some());
    assert!(first.transaction.lines[1].paid_at.is_none());
    assert!(first.exceptions.is_empty());
    assert_eq!(state_of(st, &a).await, ItemState::Paid(tx.id));
    assert_eq!(state_of(st, &b).await, ItemState::Locked(tx.id));
    assert_eq!(outbox_of(st, &tx).await, 1, "the line's settlement");
    let stored = store.transaction(tx.id).await.unwrap().unwrap();
    assert!(
        stored.lines[0].paid_at.is_some(),
        "kept with the transaction"
    );

    let replay = store
        .pay_line(&line_payment(&s, &tx, 0, "rcpt-1"))
        .await
        .expect("replay");
    assert!(!replay.recorded);
    assert_eq!(replay.outcome, LinePaymentOutcome::Settled);
    assert_eq!(outbox_of(st, &tx).await, 1, "nothing new");

    let mut twice = line_payment(&s, &tx, 0, "rcpt-2");
    twice.on_duplicate = outbox_for(&tx, &s.creditor, t0())
        .into_iter()
        .take(1)
        .collect();
    let second = store.pay_line(&twice).await.expect("second payment");
    assert!(second.recorded);
    assert_eq!(second.outcome, LinePaymentOutcome::Duplicate);
    assert_eq!(second.exceptions.len(), 1);
    assert_eq!(second.exceptions[0].kind, ExceptionKind::DoublePayment);
    assert_eq!(outbox_of(st, &tx).await, 2, "the payer is told");
    assert_eq!(second.transaction.status, TxStatus::Pending);

    let last = store
        .pay_line(&line_payment(&s, &tx, 1, "rcpt-3"))
        .await
        .expect("pay line 2");
    assert_eq!(last.transaction.status, TxStatus::Paid, "every line paid");
    assert_eq!(status_of(st, &tx).await, TxStatus::Paid);
    assert_eq!(state_of(st, &b).await, ItemState::Paid(tx.id));
    let records = store.line_payments(tx.id).await.expect("line payments");
    // Each is found by its creditor and key, as a receipt read back again is checked.
    let found = store
        .line_payment(tx.creditor_id, &records[0].key)
        .await
        .expect("a line payment by key");
    assert_eq!(found.as_ref(), Some(&records[0]));
    assert!(
        store
            .line_payment(tx.creditor_id, "rcpt-never")
            .await
            .expect("by key")
            .is_none()
    );
    let outcomes: Vec<(usize, LinePaymentOutcome)> =
        records.iter().map(|r| (r.line, r.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (0, LinePaymentOutcome::Settled),
            (0, LinePaymentOutcome::Duplicate),
            (1, LinePaymentOutcome::Settled)
        ]
    );
    assert_eq!(records[1].exception_id, Some(second.exceptions[0].id));
    let events = store.events(tx.id).await.expect("events");
    assert_eq!(events.last().unwrap().to, TxStatus::Paid);
    assert!(events.len() >= 6, "an event for each payment: {events:#?}");

    // A transaction that ended: a free line is paid late; the end holds the rest.
    let c = s.item(st, &s.cart, "tributi", "c", "5.00").await;
    let d = s.item(st, &s.cart, "tributi", "d", "6.00").await;
    let ended = pending(st, &s, &[c.clone(), d.clone()], "ended").await;
    let ended = store
        .transition(&transition(
            &ended,
            TxStatus::Pending,
            TxStatus::Cancelled,
            t0(),
        ))
        .await
        .expect("cancelled");
    let late = store
        .pay_line(&line_payment(&s, &ended, 1, "rcpt-late"))
        .await
        .expect("late line");
    assert_eq!(late.outcome, LinePaymentOutcome::Settled);
    assert_eq!(late.transaction.status, TxStatus::PartiallyPaid);
    assert_eq!(late.exceptions.len(), 1);
    assert_eq!(late.exceptions[0].kind, ExceptionKind::LatePayment);
    assert_eq!(state_of(st, &d).await, ItemState::Paid(ended.id));
    assert_eq!(state_of(st, &c).await, ItemState::Open);
    let rest = store
        .pay_line(&line_payment(&s, &ended, 0, "rcpt-rest"))
        .await
        .expect("the rest");
    assert_eq!(rest.transaction.status, TxStatus::Paid);
}

/// A move that frees the items of a transaction some lines of which were paid on their
/// own ends in `PartiallyPaid`, freeing only the others.
pub async fn freeing_a_partly_paid_transaction_keeps_its_paid_lines(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let b = s.item(st, &s.cart, "tributi", "b", "20.00").await;
    let tx = pending(st, &s, &[a.clone(), b.clone()], "partly").await;
    store
        .pay_line(&line_payment(&s, &tx, 0, "rcpt-a"))
        .await
        .expect("pay line 1");
    let expired = store
        .transition(&transition(&tx, TxStatus::Pending, TxStatus::Expired, t0()))
        .await
        .expect("expire");
    assert_eq!(expired.status, TxStatus::PartiallyPaid);
    assert_eq!(state_of(st, &a).await, ItemState::Paid(tx.id));
    assert_eq!(state_of(st, &b).await, ItemState::Open);
    let last = store.events(tx.id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.from, last.to),
        (Some(TxStatus::Pending), TxStatus::PartiallyPaid)
    );

    // A whole payment of a transaction whose line was paid on its own must say so: the
    // store finds that item paid and refuses a move that would settle it again.
    let c = s.item(st, &s.cart, "tributi", "c", "1.00").await;
    let d = s.item(st, &s.cart, "tributi", "d", "2.00").await;
    let whole = pending(st, &s, &[c.clone(), d.clone()], "whole").await;
    store
        .pay_line(&line_payment(&s, &whole, 0, "rcpt-c"))
        .await
        .expect("pay line 1");
    let mut paid = transition(&whole, TxStatus::Pending, TxStatus::Paid, t0());
    assert!(matches!(
        store.transition(&paid).await,
        Err(Error::Conflict(Conflict::ItemsChanged { .. }))
    ));
    paid.already_paid = vec![c.id];
    store
        .transition(&paid)
        .await
        .expect("paid, the line left alone");
    assert_eq!(state_of(st, &d).await, ItemState::Paid(whole.id));
}

/// Concurrent payments of one line, each with its own key: exactly one settles it.
pub async fn concurrent_line_payments_settle_once(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let tx = pending(st, &s, std::slice::from_ref(&a), "race").await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        let p = line_payment(&s, &tx, 0, &format!("rcpt-{n}"));
        tasks.push(tokio::spawn(async move { store.pay_line(&p).await }));
    }
    let mut settled = 0;
    let mut duplicates = 0;
    for t in tasks {
        let paid = t.await.expect("task").expect("pay_line");
        assert!(paid.recorded);
        match paid.outcome {
            LinePaymentOutcome::Settled => settled += 1,
            LinePaymentOutcome::Duplicate => duplicates += 1,
        }
    }
    assert_eq!((settled, duplicates), (1, 15));
    assert_eq!(status_of(st, &tx).await, TxStatus::Paid);
    assert_eq!(outbox_of(st, &tx).await, 1, "one settlement");
    let doubles = store
        .exceptions(
            &ExceptionQuery::new(s.creditor.id)
                .of_kind(ExceptionKind::DoublePayment)
                .of_transaction(tx.id),
        )
        .await
        .expect("exceptions");
    assert_eq!(doubles.len(), 15, "every second payment is one exception");
}

/// Exceptions are recorded once per key, listed newest first with their filters, and
/// resolved once with an event; a bank entry that is an exception records one too.
pub async fn exceptions_are_recorded_once_and_resolved_once(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let tx = pending(st, &s, &[a], "x").await;
    let first = exception(&s, ExceptionKind::AmountMismatch, "m-1", Some(&tx));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let e = first.clone();
        tasks.push(tokio::spawn(
            async move { store.insert_exception(&e).await },
        ));
    }
    let mut inserted = 0;
    for t in tasks {
        if t.await.expect("task").expect("insert") {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1, "once per key");
    let second = exception(&s, ExceptionKind::UnknownPayment, "u-1", None);
    assert!(store.insert_exception(&second).await.unwrap());
    let all = store
        .exceptions(&ExceptionQuery::new(s.creditor.id))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        [second.id, first.id],
        "newest first"
    );
    let q = |f: fn(ExceptionQuery) -> ExceptionQuery| f(ExceptionQuery::new(s.creditor.id));
    assert_eq!(
        store
            .exceptions(&q(|q| q.of_kind(ExceptionKind::UnknownPayment)))
            .await
            .unwrap()
            .len(),
        1
    );
    let mut by_key = ExceptionQuery::new(s.creditor.id);
    by_key.key = Some("m-1".into());
    assert_eq!(store.exceptions(&by_key).await.unwrap()[0].id, first.id);
    let mut page = ExceptionQuery::new(s.creditor.id);
    page.limit = 1;
    page.before = Some(second.id);
    assert_eq!(store.exceptions(&page).await.unwrap()[0].id, first.id);
    let of_tx = store
        .exceptions(&ExceptionQuery::new(s.creditor.id).of_transaction(tx.id))
        .await
        .unwrap();
    assert_eq!(of_tx.len(), 1);

    let event = TransactionEvent {
        id: crate::EventId::new(),
        transaction_id: tx.id,
        actor: Actor::operator(s.creditor.id, crate::Role::Manager, "anna"),
        at: t0(),
        from: Some(TxStatus::Pending),
        to: TxStatus::Pending,
        provider_ref: None,
        note: Some("resolved".into()),
    };
    let mut update = ExceptionUpdate::new(
        first.id,
        ExceptionResolution {
            by: event.actor.clone(),
            at: t0(),
            note: "called the payer".into(),
        },
    );
    update.event = Some(event);
    let events_before = store.events(tx.id).await.unwrap().len();
    let resolved = store.resolve_exception(&update).await.expect("resolve");
    assert_eq!(resolved.status, ExceptionStatus::Resolved);
    assert_eq!(
        resolved.resolution.as_ref().map(|r| r.note.as_str()),
        Some("called the payer")
    );
    assert_eq!(store.events(tx.id).await.unwrap().len(), events_before + 1);
    assert!(matches!(
        store.resolve_exception(&update).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store
            .exceptions(&q(|q| q.open()))
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [second.id]
    );
    assert_eq!(
        store.exception(first.id).await.unwrap().unwrap().status,
        ExceptionStatus::Resolved,
        "stored"
    );

    let entry = BankEntry {
        creditor_id: s.creditor.id,
        key: "IT60X:STMT-1#1/1".into(),
        statement_id: "STMT-1".into(),
        imported_at: t0(),
        booked_on: None,
        amount: rust_decimal::Decimal::new(999, 2),
        currency: "EUR".into(),
        debtor: None,
        remittance: "nothing we know".into(),
        value_on: None,
        info: None,
        reference: None,
        outcome: BankEntryOutcome::Exception {
            reason: "matches nothing".into(),
            transaction_id: None,
        },
    };
    assert!(store.insert_bank_entry(&entry).await.unwrap());
    assert!(!store.insert_bank_entry(&entry).await.unwrap());
    let credits = store
        .exceptions(&q(|q| q.of_kind(ExceptionKind::UnmatchedCredit)))
        .await
        .unwrap();
    assert_eq!(credits.len(), 1, "recorded with the entry, once");
    assert_eq!(credits[0].amount, Some(eur("9.99")));
    assert_eq!(credits[0].key, "bank:IT60X:STMT-1#1/1");
}

/// An expiry is postponed only while the transaction is in the state the caller saw.
pub async fn expiry_is_postponed_by_compare_and_set(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let tx = pending(st, &s, &[a], "later").await;
    let until = t0() + Duration::hours(2);
    let x = ExpiryExtension {
        transaction: tx.id,
        status: TxStatus::Pending,
        until,
        actor: Actor::System,
        at: t0(),
        note: "the provider is still processing".into(),
        exceptions: vec![exception(
            &s,
            ExceptionKind::StillProcessing,
            "p-1",
            Some(&tx),
        )],
    };
    let moved = store.extend_expiry(&x).await.expect("postpone");
    assert_eq!((moved.status, moved.expires_at), (TxStatus::Pending, until));
    let last = store.events(tx.id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.note.as_deref()),
        (
            Some(TxStatus::Pending),
            TxStatus::Pending,
            Some("the provider is still processing")
        )
    );
    assert!(
        store
            .due_for_expiry(t0() + Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "not due before the new time"
    );
    store.extend_expiry(&x).await.expect("again");
    assert_eq!(
        store
            .exceptions(&ExceptionQuery::new(s.creditor.id))
            .await
            .unwrap()
            .len(),
        1,
        "the exception once"
    );
    let mut stale = x.clone();
    stale.status = TxStatus::Created;
    assert!(matches!(
        store.extend_expiry(&stale).await,
        Err(Error::Conflict(Conflict::StaleState { .. }))
    ));
}

/// Refunds end later (pending, then succeeded or failed), with their messages and
/// exception; the items of lines given back in full are no longer paid, and their source
/// added again comes back open.
pub async fn refunds_end_with_their_messages(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let b = s.item(st, &s.cart, "tributi", "b", "20.00").await;
    let tx = pending(st, &s, &[a.clone(), b.clone()], "refund").await;
    let mut paid = transition(&tx, TxStatus::Pending, TxStatus::Paid, t0());
    paid.outbox = outbox_for(&tx, &s.creditor, t0());
    let tx = store.transition(&paid).await.expect("paid");
    let messages = outbox_of(st, &tx).await;

    let refund = |key: &str, amount: &str| crate::Refund {
        id: crate::RefundId::new(),
        transaction_id: tx.id,
        creditor_id: tx.creditor_id,
        amount: eur(amount),
        key: key.into(),
        reason: None,
        status: RefundStatus::Requested,
        provider_ref: None,
        note: None,
        lines: crate::allocate_refund(&tx, &[], &[], eur(amount)).expect("allocate"),
        excess: false,
        requested_by: Actor::System,
        created_at: t0(),
        updated_at: t0(),
    };
    let event = |note: &str| TransactionEvent {
        id: crate::EventId::new(),
        transaction_id: tx.id,
        actor: Actor::System,
        at: t0(),
        from: Some(TxStatus::Paid),
        to: TxStatus::Paid,
        provider_ref: None,
        note: Some(note.into()),
    };
    let first = refund("r-1", "10.00");
    assert_eq!(first.lines.len(), 1, "the first line, in full");
    store
        .create_refund(&first, &event("asked"))
        .await
        .expect("create");
    let update = |from, to, outbox, exception| crate::RefundUpdate {
        refund: first.id,
        from,
        to,
        provider_ref: Some("re_1".into()),
        note: None,
        at: t0() + Duration::minutes(1),
        event: event("moved"),
        outbox,
        exception,
    };
    let pending = store
        .finish_refund(&update(
            RefundStatus::Requested,
            RefundStatus::Pending,
            Vec::new(),
            None,
        ))
        .await
        .expect("accepted");
    assert_eq!(pending.status, RefundStatus::Pending);
    assert_eq!(pending.provider_ref.as_deref(), Some("re_1"));
    let unfinished = store.unfinished_refunds(None, 10).await.unwrap();
    assert_eq!(
        unfinished.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first.id]
    );
    assert!(
        store
            .unfinished_refunds(Some(first.id), 10)
            .await
            .unwrap()
            .is_empty(),
        "paged by id"
    );
    assert!(
        matches!(
            store
                .finish_refund(&update(
                    RefundStatus::Requested,
                    RefundStatus::Succeeded,
                    Vec::new(),
                    None
                ))
                .await,
            Err(Error::Conflict(_))
        ),
        "compare-and-set on its state"
    );
    let done = store
        .finish_refund(&update(
            RefundStatus::Pending,
            RefundStatus::Succeeded,
            outbox_for(&tx, &s.creditor, t0()),
            None,
        ))
        .await
        .expect("succeeded");
    assert_eq!(done.status, RefundStatus::Succeeded);
    assert!(store.unfinished_refunds(None, 10).await.unwrap().is_empty());
    assert!(
        outbox_of(st, &tx).await > messages,
        "its messages are enqueued with it"
    );
    assert_eq!(
        state_of(st, &a).await,
        ItemState::Refunded(tx.id),
        "given back in full: no longer paid"
    );
    assert_eq!(state_of(st, &b).await, ItemState::Paid(tx.id));
    // The module owes it again: adding its source brings it back open.
    let again = store.add_item(&a).await.expect("add again");
    assert!(!again.created);
    assert_eq!(again.item.state, ItemState::Open);

    let mut second = refund("r-2", "5.00");
    second.lines =
        crate::allocate_refund(&tx, &store.refunds(tx.id).await.unwrap(), &[], eur("5.00"))
            .expect("line 2 has room");
    store
        .create_refund(&second, &event("asked"))
        .await
        .expect("create");
    let failed = store
        .finish_refund(&crate::RefundUpdate {
            refund: second.id,
            from: RefundStatus::Requested,
            to: RefundStatus::Failed,
            provider_ref: None,
            note: Some("card closed".into()),
            at: t0(),
            event: event("failed"),
            outbox: Vec::new(),
            exception: Some(exception(
                &s,
                ExceptionKind::RefundFailed,
                "refund:r-2",
                Some(&tx),
            )),
        })
        .await
        .expect("failed");
    assert_eq!(failed.status, RefundStatus::Failed);
    let ledger = store
        .exceptions(&ExceptionQuery::new(s.creditor.id).of_kind(ExceptionKind::RefundFailed))
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1, "recorded with the failure");
}

/// What is left to refund is checked line by line too; a refund of a double payment is
/// beside the payment; whether a line is given back in full is the store's to say.
pub async fn refunds_fit_each_line_and_double_payments_stand_apart(store: Arc<dyn Store>) {
    let st = store.as_ref();
    let s = Sample::install(st).await;
    let a = s.item(st, &s.cart, "tributi", "a", "10.00").await;
    let b = s.item(st, &s.cart, "tributi", "b", "20.00").await;
    let tx = pending(st, &s, &[a.clone(), b.clone()], "lines").await;
    let mut paid = transition(&tx, TxStatus::Pending, TxStatus::Paid, t0());
    paid.outbox = outbox_for(&tx, &s.creditor, t0());
    let tx = store.transition(&paid).await.expect("paid");
    let refund = |key: &str, lines: Vec<crate::RefundLine>, excess: bool| {
        let amount = Money::sum(tx.total.currency(), lines.iter().map(|l| &l.amount)).unwrap();
        crate::Refund {
            id: crate::RefundId::new(),
            transaction_id: tx.id,
            creditor_id: tx.creditor_id,
            amount,
            key: key.into(),
            reason: None,
            status: RefundStatus::Requested,
            provider_ref: None,
            note: None,
            lines,
            excess,
            requested_by: Actor::System,
            created_at: t0(),
            updated_at: t0(),
        }
    };
    let line = |line: usize, amount: &str| crate::RefundLine {
        line,
        amount: eur(amount),
    };
    let event = || TransactionEvent {
        id: crate::EventId::new(),
        transaction_id: tx.id,
        actor: Actor::System,
        at: t0(),
        from: Some(TxStatus::Paid),
        to: TxStatus::Paid,
        provider_ref: None,
        note: None,
    };
    let first = refund("a-1", vec![line(0, "6.00")], false);
    store.create_refund(&first, &event()).await.expect("fits");
    let err = store
        .create_refund(&refund("a-2", vec![line(0, "6.00")], false), &event())
        .await
        .expect_err("line 1 has 4.00 left");
    assert_eq!(err.validation_errors().unwrap().fields(), ["lines"]);
    // A double payment of line 1, given back: beside the payment, whatever is left of it.
    let twice = refund("double", vec![line(0, "10.00")], true);
    store
        .create_refund(&twice, &event())
        .await
        .expect("a double payment is beside the payment");
    let message = |r: &crate::Refund, item: &PayableItem| {
        let id = crate::OutboxId::new();
        crate::NewOutboxMessage {
            id,
            transaction_id: tx.id,
            payload: crate::OutboxPayload::Refund(crate::RefundSettlement {
                id,
                source: item.source.clone(),
                item_id: item.id,
                transaction_id: tx.id,
                refund_id: r.id,
                amount: r.amount,
                in_full: false,
                refunded_at: t0(),
            }),
        }
    };
    let finish = |r: &crate::Refund, outbox| crate::RefundUpdate {
        refund: r.id,
        from: RefundStatus::Requested,
        to: RefundStatus::Succeeded,
        provider_ref: None,
        note: None,
        at: t0(),
        event: event(),
        outbox,
        exception: None,
    };
    store
        .finish_refund(&finish(&twice, Vec::new()))
        .await
        .expect("done");
    assert_eq!(
        state_of(st, &a).await,
        ItemState::Paid(tx.id),
        "the payment stands"
    );
    store
        .finish_refund(&finish(&first, vec![message(&first, &a)]))
        .await
        .expect("done");
    let rest = refund("a-3", vec![line(0, "4.00")], false);
    store.create_refund(&rest, &event()).await.expect("fits");
    store
        .finish_refund(&finish(&rest, vec![message(&rest, &a)]))
        .await
        .expect("done");
    assert_eq!(state_of(st, &a).await, ItemState::Refunded(tx.id));
    let told: Vec<(bool, crate::RefundId)> = store
        .outbox(&OutboxQuery {
            transaction_id: Some(tx.id),
            ..OutboxQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m.payload {
            crate::OutboxPayload::Refund(r) => Some((r.in_full, r.refund_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        [(false, first.id), (true, rest.id)],
        "the store says which message gives the line back in full"
    );

    // A line payment of an item given back is a second payment: nothing settles again.
    let c = s.item(st, &s.cart, "tributi", "c", "3.00").await;
    let one = pending(st, &s, std::slice::from_ref(&c), "one").await;
    store
        .pay_line(&line_payment(&s, &one, 0, "rcpt-one"))
        .await
        .expect("paid");
    let back = refund("c-back", Vec::new(), false);
    let back = crate::Refund {
        transaction_id: one.id,
        amount: eur("3.00"),
        lines: vec![line(0, "3.00")],
        ..back
    };
    store.create_refund(&back, &event()).await.expect("fits");
    store
        .finish_refund(&finish(&back, Vec::new()))
        .await
        .expect("done");
    assert_eq!(state_of(st, &c).await, ItemState::Refunded(one.id));
    let again = store
        .pay_line(&line_payment(&s, &one, 0, "rcpt-again"))
        .await
        .expect("recorded");
    assert_eq!(again.outcome, LinePaymentOutcome::Duplicate);
    assert_eq!(state_of(st, &c).await, ItemState::Refunded(one.id));
}
