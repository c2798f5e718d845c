//! The whole flow on the in-memory store and the sandbox gateway: items in, one checkout,
//! a signed callback, the outbox delivered once.

mod common;

use common::Env;
use payments_core::*;

#[tokio::test]
async fn two_modules_and_a_free_item_paid_in_one_transaction() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    let p = &env.payments;
    p.add_item(&alice, cart.id, env.tari("2026-1", "120.40"))
        .await
        .unwrap();
    p.add_item(&alice, cart.id, env.building("PE-2026-31"))
        .await
        .unwrap();
    p.add_free_item(&alice, cart.id, env.fee("16,27"))
        .await
        .unwrap();
    let contents = p.cart(&alice, cart.id).await.unwrap();
    assert_eq!(contents.items.len(), 3);
    assert_eq!(contents.total, Money::parse_eur("286.67").unwrap());

    let checkout = p
        .checkout(&alice, cart.id, env.card(), "pay-1")
        .await
        .unwrap();
    let tx = &checkout.transaction;
    assert_eq!(tx.status, TxStatus::Pending);
    assert_eq!(tx.lines.len(), 3, "one transaction for every item");
    assert_eq!(
        tx.total,
        Money::parse_eur("286.67").unwrap(),
        "the total is the exact sum"
    );
    let Instruction::Redirect { url, .. } = &checkout.instruction else {
        panic!("a hosted page")
    };
    assert!(url.starts_with("http://localhost:8080/sandbox/pay/sbx_"));
    let session = env.sandbox.session(&Env::session(&checkout)).unwrap();
    assert_eq!((session.amount, session.transaction_id), (tx.total, tx.id));
    assert_eq!(
        session.return_url.as_deref(),
        Some("http://localhost:3000/return")
    );
    assert!(
        p.cart(&alice, cart.id)
            .await
            .unwrap()
            .items
            .iter()
            .all(|i| i.state == ItemState::Locked(tx.id)),
        "the items are locked by the transaction"
    );

    let outcome = p
        .handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Paid))
        .await
        .unwrap();
    assert!(outcome.applied);
    assert_eq!(outcome.transaction.status, TxStatus::Paid);
    assert_eq!(
        outcome.transaction.provider_ref,
        Some(Env::session(&checkout))
    );
    assert!(
        p.cart(&alice, cart.id).await.unwrap().items.is_empty(),
        "paid items leave the cart"
    );

    let report = p.dispatch_outbox().await.unwrap();
    assert_eq!((report.delivered, report.retrying, report.dead), (4, 0, 0));
    assert_eq!(
        p.dispatch_outbox().await.unwrap().claimed(),
        0,
        "nothing is delivered twice"
    );

    let sent = env.notifier.sent();
    assert_eq!(sent.len(), 2, "the receipt and the creditor's notice");
    let receipt = sent
        .iter()
        .find(|(n, _)| n.kind == NotificationKind::Receipt)
        .unwrap();
    assert_eq!(receipt.0.to, "alice@example.it");
    assert!(
        receipt.1.subject.starts_with("Ricevuta di pagamento"),
        "Italian by default"
    );
    assert!(receipt.1.text.contains("€ 286,67"), "{}", receipt.1.text);
    assert!(receipt.1.text.contains(&tx.id.to_string()));
    let notice = sent
        .iter()
        .find(|(n, _)| n.kind == NotificationKind::CreditorNotice)
        .unwrap();
    assert_eq!(notice.0.to, "ragioneria@comune.example.it");

    let tributi = env.tributi.heard();
    let edilizia = env.edilizia.heard();
    assert_eq!(tributi.len(), 1, "the taxes module hears once");
    assert_eq!(edilizia.len(), 1, "the building module hears once");
    assert_eq!(
        (tributi[0].source.key.as_str(), tributi[0].transaction_id),
        ("2026-1", tx.id)
    );
    assert_eq!(tributi[0].amount, Money::parse_eur("120.40").unwrap());
    assert_eq!(edilizia[0].source.key, "PE-2026-31");

    let history = p
        .history(&alice, &HistoryQuery::new("alice"))
        .await
        .unwrap();
    assert_eq!(
        history
            .items
            .iter()
            .map(|h| (
                h.transaction.id,
                h.transaction.status,
                h.transaction.lines.len(),
                h.events.len()
            ))
            .collect::<Vec<_>>(),
        vec![(tx.id, TxStatus::Paid, 3, 3)],
        "the history shows each transaction with its items and events"
    );
    let events: Vec<_> = p
        .events(&alice, tx.id)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.from, e.to))
        .collect();
    assert_eq!(
        events,
        vec![
            (None, TxStatus::Created),
            (Some(TxStatus::Created), TxStatus::Pending),
            (Some(TxStatus::Pending), TxStatus::Paid)
        ]
    );

    // A paid item is never paid again: its module adding it again gets the paid item back.
    let again = p
        .add_item(&alice, cart.id, env.tari("2026-1", "120.40"))
        .await
        .unwrap();
    assert_eq!(again.state, ItemState::Paid(tx.id));
    assert!(matches!(
        p.checkout(&alice, cart.id, env.card(), "pay-2").await,
        Err(Error::Validation(v)) if v.field("cart").is_some()
    ));
}

#[tokio::test]
async fn adding_the_same_source_twice_gives_one_item() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    let p = &env.payments;
    let first = p
        .add_item(&alice, cart.id, env.tari("2026-1", "50.00"))
        .await
        .unwrap();
    let second = p
        .add_item(&alice, cart.id, env.tari("2026-1", "50.00"))
        .await
        .unwrap();
    assert_eq!(first.id, second.id);
    let contents = p.cart(&alice, cart.id).await.unwrap();
    assert_eq!(contents.items.len(), 1);
    assert_eq!(contents.total, Money::parse_eur("50").unwrap());
    // Removed, then added again by its module: it comes back, still one item.
    p.remove_item(&alice, cart.id, first.id).await.unwrap();
    assert!(p.cart(&alice, cart.id).await.unwrap().items.is_empty());
    let back = p
        .add_item(&alice, cart.id, env.tari("2026-1", "50.00"))
        .await
        .unwrap();
    assert_eq!((back.id, back.state), (first.id, ItemState::Open));
    // The same source for another payer is a conflict, not a second item.
    let (bob, bob_cart) = env.cart("bob").await;
    assert!(matches!(
        p.add_item(&bob, bob_cart.id, env.tari("2026-1", "50.00"))
            .await,
        Err(Error::Conflict(_))
    ));
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_transaction() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    let p = &env.payments;
    p.add_item(&alice, cart.id, env.tari("a", "10.00"))
        .await
        .unwrap();
    let first = p
        .checkout(&alice, cart.id, env.card(), "double-click")
        .await
        .unwrap();
    let second = p
        .checkout(&alice, cart.id, env.card(), "double-click")
        .await
        .unwrap();
    assert_eq!(
        first, second,
        "the same transaction and the same instruction"
    );
    let page = p
        .search(&Actor::System, &MovementQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(page.count, 1, "never a second transaction");
    // A new key while the items are locked is refused.
    assert!(matches!(
        p.checkout(&alice, cart.id, env.card(), "another-key").await,
        Err(Error::Conflict(Conflict::ItemUnavailable { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_of_one_cart_make_one_transaction() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    env.payments
        .add_item(&alice, cart.id, env.tari("a", "10.00"))
        .await
        .unwrap();
    env.payments
        .add_item(&alice, cart.id, env.building("b"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..32 {
        let p = env.payments.clone();
        let alice = alice.clone();
        let method = env.card();
        // Half the tasks share a key (a double click), half use their own (two tabs).
        let key = if n % 2 == 0 {
            "shared".to_owned()
        } else {
            format!("tab-{n}")
        };
        tasks.push(tokio::spawn(async move {
            p.checkout(&alice, cart.id, method, &key).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => ids.push(c.transaction.id),
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "every successful checkout got the one transaction"
    );
    let page = env
        .payments
        .search(&Actor::System, &MovementQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(page.count, 1, "exactly one transaction exists");
    assert_eq!(page.page.items[0].lines.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_callback_changes_nothing() {
    let env = Env::new().await;
    let (_, checkout) = env.pending("alice", "a").await;
    let callback = env.callback(&checkout, PaymentOutcome::Paid);
    let first = env
        .payments
        .handle_callback("sandbox", &callback)
        .await
        .unwrap();
    assert!(first.applied);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let p = env.payments.clone();
        let cb = callback.clone();
        tasks.push(tokio::spawn(async move {
            p.handle_callback("sandbox", &cb).await
        }));
    }
    for t in tasks {
        let replay = t.await.unwrap().unwrap();
        assert!(!replay.applied, "a replay is not applied again");
        assert_eq!(replay.transaction.status, TxStatus::Paid);
    }
    let tx = checkout.transaction.id;
    assert_eq!(
        env.payments.events(&Actor::System, tx).await.unwrap().len(),
        3,
        "one Paid event"
    );
    let outbox = env
        .payments
        .outbox(&Actor::System, env.fx.creditor.id, OutboxQuery::default())
        .await
        .unwrap();
    assert_eq!(outbox.len(), 3, "one receipt, one notice, one settlement");
    // A late contradicting callback cannot undo a payment: it is old news, answered as a
    // replay (so the provider stops sending it) and changing nothing.
    let failed = env
        .sandbox
        .signed_callback(&payments_gateways::sandbox::CallbackBody {
            event_id: "late".into(),
            session: Env::session(&checkout),
            transaction_id: tx.to_string(),
            status: PaymentOutcome::Failed,
            amount: "80.00".into(),
            currency: "EUR".into(),
        });
    let late = env
        .payments
        .handle_callback("sandbox", &failed)
        .await
        .unwrap();
    assert!(!late.applied);
    assert_eq!(late.transaction.status, TxStatus::Paid);
    assert_eq!(
        env.payments
            .transaction(&Actor::System, tx)
            .await
            .unwrap()
            .status,
        TxStatus::Paid
    );
}

#[tokio::test]
async fn a_tampered_signature_is_refused_and_changes_nothing() {
    let env = Env::new().await;
    let (_, checkout) = env.pending("alice", "a").await;
    let genuine = env.callback(&checkout, PaymentOutcome::Paid);

    let mut wrong_signature = genuine.clone();
    let sig = wrong_signature
        .headers
        .get_mut("x-sandbox-signature")
        .unwrap();
    let flipped = if sig.ends_with('0') { '1' } else { '0' };
    sig.pop();
    sig.push(flipped);
    let mut tampered_body = genuine.clone();
    tampered_body.body = String::from_utf8(genuine.body.clone())
        .unwrap()
        .replace("80.00", "0.01")
        .into_bytes();
    let mut unsigned = genuine.clone();
    unsigned.headers.clear();
    for forged in [wrong_signature, tampered_body, unsigned] {
        match env.payments.handle_callback("sandbox", &forged).await {
            Err(Error::Gateway {
                kind: GatewayErrorKind::InvalidSignature,
                ..
            }) => {}
            r => panic!("a forged callback must be refused, got {r:?}"),
        }
    }
    let tx = env
        .payments
        .transaction(&Actor::System, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(tx.status, TxStatus::Pending, "nothing changed");
    assert_eq!(
        env.payments.dispatch_outbox().await.unwrap().claimed(),
        0,
        "nothing was enqueued"
    );
    // The genuine one still works.
    assert!(
        env.payments
            .handle_callback("sandbox", &genuine)
            .await
            .unwrap()
            .applied
    );
}

#[tokio::test]
async fn a_callback_with_another_amount_is_recorded_for_operators_and_never_applied() {
    // Money is a fact (DESIGN.md): a verified payment of another amount is kept as an
    // exception operators see, and answered Ok so the provider does not resend it; it does
    // not pay the transaction.
    let env = Env::new().await;
    let (_, checkout) = env.pending("alice", "a").await;
    let body = |amount: &str| payments_gateways::sandbox::CallbackBody {
        event_id: "e1".into(),
        session: Env::session(&checkout),
        transaction_id: checkout.transaction.id.to_string(),
        status: PaymentOutcome::Paid,
        amount: amount.into(),
        currency: "EUR".into(),
    };
    // Signed with the right key, so only the amount check can stop it.
    for amount in ["79.99", "80.01", "8.00"] {
        let cb = env.sandbox.signed_callback(&body(amount));
        let out = env.payments.handle_callback("sandbox", &cb).await.unwrap();
        assert!(out.applied, "recorded");
        assert_eq!(out.transaction.status, TxStatus::Pending, "not applied");
        let e = out.exception.expect("an exception");
        assert_eq!(e.kind, ExceptionKind::AmountMismatch);
        assert_eq!(e.amount, Some(Money::parse_eur(amount).unwrap()));
        assert_eq!(e.expected, Some(checkout.transaction.total));
        // Sent again, it is recorded once.
        let again = env.payments.handle_callback("sandbox", &cb).await.unwrap();
        assert!(!again.applied);
        assert_eq!(again.exception.map(|x| x.id), Some(e.id));
    }
    let ledger = env
        .payments
        .exceptions(
            &Actor::operator(env.fx.creditor.id, Role::Viewer, "vera"),
            &ExceptionQuery::new(env.fx.creditor.id),
        )
        .await
        .unwrap();
    assert_eq!(ledger.len(), 3);
    // A currency that is not ours cannot even be read as money here: refused.
    let mut other_currency = body("80.00");
    other_currency.currency = "USD".into();
    let cb = env.sandbox.signed_callback(&other_currency);
    assert!(matches!(
        env.payments.handle_callback("sandbox", &cb).await,
        Err(Error::Gateway { .. })
    ));
    let tx = env
        .payments
        .transaction(&Actor::System, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(tx.status, TxStatus::Pending, "nothing changed");
    assert_eq!(
        env.payments
            .events(&Actor::System, tx.id)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        env.payments.dispatch_outbox().await.unwrap().claimed(),
        0,
        "nothing was sent"
    );
}

#[tokio::test]
async fn a_failed_payment_frees_the_items_for_another_try() {
    let env = Env::new().await;
    let (alice, checkout) = env.pending("alice", "a").await;
    let out = env
        .payments
        .handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Failed))
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Failed);
    assert_eq!(
        env.payments.dispatch_outbox().await.unwrap().claimed(),
        0,
        "a failure sends no receipt"
    );
    let retry = env
        .payments
        .checkout(
            &alice,
            checkout.transaction.cart_id,
            env.card(),
            "second-try",
        )
        .await
        .unwrap();
    assert_ne!(retry.transaction.id, checkout.transaction.id);
    assert_eq!(retry.transaction.total, checkout.transaction.total);
}

#[tokio::test]
async fn cart_methods_are_those_every_open_item_accepts() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    let p = &env.payments;
    // A method stored by an earlier configuration, whose gateway this service no longer
    // has, is never offered.
    let orphan = PaymentMethod::new(env.fx.creditor.id, MethodKind::PagoPa, "nowhere");
    p.store().put_method(&orphan).await.unwrap();
    let kinds = |methods: Vec<PaymentMethod>| methods.iter().map(|m| m.kind).collect::<Vec<_>>();
    assert!(
        p.cart_methods(&alice, cart.id).await.unwrap().is_empty(),
        "an empty cart has nothing to pay"
    );
    p.add_item(&alice, cart.id, env.tari("2026-1", "120.40"))
        .await
        .unwrap();
    let mut tari = kinds(p.cart_methods(&alice, cart.id).await.unwrap());
    tari.sort_by_key(|k| k.as_str());
    assert_eq!(tari, [MethodKind::Card, MethodKind::SepaDirectDebit]);
    // Secretarial fees accept card and bank transfer only: direct debit goes.
    let fee = p
        .add_free_item(&alice, cart.id, env.fee("16,00"))
        .await
        .unwrap();
    assert_eq!(
        kinds(p.cart_methods(&alice, cart.id).await.unwrap()),
        [MethodKind::Card]
    );
    p.remove_item(&alice, cart.id, fee.id).await.unwrap();
    assert_eq!(p.cart_methods(&alice, cart.id).await.unwrap().len(), 2);
    let (bob, _) = env.cart("bob").await;
    assert!(
        matches!(
            p.cart_methods(&bob, cart.id).await,
            Err(Error::Forbidden { .. })
        ),
        "another payer's cart is refused"
    );
}
