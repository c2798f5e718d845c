//! Items a module changes after putting them in a cart: a recalculated due is what gets
//! paid, never the old amount; an item in a payment or paid no longer changes. A free
//! payment's form sent twice adds one item.

mod common;

use common::Env;
use payments_core::*;

fn eur(s: &str) -> Money {
    Money::parse_eur(s).unwrap()
}

fn unavailable<T: std::fmt::Debug>(r: Result<T>) {
    assert!(
        matches!(r, Err(Error::Conflict(Conflict::ItemUnavailable { .. }))),
        "expected ItemUnavailable, got {r:?}"
    );
}

#[tokio::test]
async fn a_module_changes_an_open_item_and_never_one_in_a_payment_or_paid() {
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, cart) = env.cart("alice").await;
    let first = p
        .add_item(&alice, cart.id, env.tari("2026-1", "80.00"))
        .await
        .unwrap();
    // The payer never changes what a module asks, even by adding the source again.
    let r = p
        .add_item(&alice, cart.id, env.tari("2026-1", "1.00"))
        .await;
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    assert_eq!(p.cart(&alice, cart.id).await.unwrap().total, eur("80.00"));
    // The module recalculated the due: adding the source again changes the open item.
    let again = p
        .add_item(&Actor::System, cart.id, env.tari("2026-1", "95.50"))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.amount, eur("95.50"));
    // Or it says what changed.
    let changed = p
        .update_item(
            &Actor::System,
            first.id,
            ItemUpdate::new()
                .amount(eur("97.00"))
                .reason("TARI 2026 ricalcolata")
                .due_date(Some("2026-12-31".parse().unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(changed.amount, eur("97.00"));
    assert_eq!(changed.reason, "TARI 2026 ricalcolata");
    assert_eq!(p.cart(&alice, cart.id).await.unwrap().total, eur("97.00"));
    // A bad change is refused naming the field, and changes nothing.
    match p
        .update_item(&Actor::System, first.id, ItemUpdate::new().reason(" "))
        .await
    {
        Err(Error::Validation(e)) => assert_eq!(e.0[0].field, "reason"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    // Neither the payer nor a viewer changes what a module asks.
    for who in [
        alice.clone(),
        Actor::operator(env.fx.creditor.id, Role::Viewer, "vera"),
    ] {
        let r = p
            .update_item(&who, first.id, ItemUpdate::new().amount(eur("1.00")))
            .await;
        assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
        let r = p.withdraw_item(&who, first.id).await;
        assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
    }

    // In a payment: nothing changes, however it is asked.
    let checkout = p.checkout(&alice, cart.id, env.card(), "k").await.unwrap();
    assert_eq!(
        checkout.transaction.total,
        eur("97.00"),
        "the new amount is paid"
    );
    unavailable(
        p.add_item(&Actor::System, cart.id, env.tari("2026-1", "10.00"))
            .await,
    );
    unavailable(
        p.update_item(
            &Actor::System,
            first.id,
            ItemUpdate::new().amount(eur("10.00")),
        )
        .await,
    );
    unavailable(p.withdraw_item(&Actor::System, first.id).await);
    // Paid: still nothing.
    p.handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Paid))
        .await
        .unwrap();
    unavailable(
        p.update_item(
            &Actor::System,
            first.id,
            ItemUpdate::new().amount(eur("10.00")),
        )
        .await,
    );
    // Added again as it was paid, it is answered; with another amount, refused.
    let as_paid = env
        .tari("2026-1", "97.00")
        .with_due_date("2026-12-31".parse().unwrap());
    let as_paid = NewItem {
        reason: "TARI 2026 ricalcolata".into(),
        ..as_paid
    };
    unavailable(
        p.add_item(&Actor::System, cart.id, env.tari("2026-1", "12.00"))
            .await,
    );
    let paid = p.add_item(&alice, cart.id, as_paid).await.unwrap();
    assert_eq!(
        paid.state,
        ItemState::Paid(checkout.transaction.id),
        "re-adding it unchanged answers it"
    );
}

#[tokio::test]
async fn a_module_withdraws_an_open_item() {
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, cart) = env.cart("alice").await;
    let item = p
        .add_item(&alice, cart.id, env.tari("2026-2", "40.00"))
        .await
        .unwrap();
    let manager = Actor::operator(env.fx.creditor.id, Role::Manager, "anna");
    let withdrawn = p.withdraw_item(&manager, item.id).await.unwrap();
    assert_eq!(withdrawn.state, ItemState::Removed);
    assert_eq!(p.cart(&alice, cart.id).await.unwrap().total, eur("0.00"));
}

#[tokio::test]
async fn a_free_payment_form_sent_twice_adds_one_item() {
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, cart) = env.cart("alice").await;
    let token = "0b6f0f0e-7d3a-4d1b-9f0e-1a2b3c4d5e6f";
    let first = p
        .add_free_item(&alice, cart.id, env.fee("25,00").with_token(token))
        .await
        .unwrap();
    let second = p
        .add_free_item(&alice, cart.id, env.fee("25,00").with_token(token))
        .await
        .unwrap();
    assert_eq!(first.id, second.id, "a double click is one payment");
    let other = p
        .add_free_item(&alice, cart.id, env.fee("25,00").with_token("another-form"))
        .await
        .unwrap();
    assert_ne!(other.id, first.id, "another form is another payment");
    // The first form restored by the back button and sent with another amount: refused,
    // not taken as the first one.
    let r = p
        .add_free_item(&alice, cart.id, env.fee("99,00").with_token(token))
        .await;
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    assert_eq!(p.cart(&alice, cart.id).await.unwrap().total, eur("50.00"));
    // Bob sending Alice's token adds his own item, never reaches hers.
    let (bob, bob_cart) = env.cart("bob").await;
    let his = p
        .add_free_item(&bob, bob_cart.id, env.fee("25,00").with_token(token))
        .await
        .unwrap();
    assert_ne!(his.id, first.id);
    assert_eq!(his.payer_id, PayerId::from("bob"));
    // A token that is not one is refused, naming it.
    match p
        .add_free_item(&alice, cart.id, env.fee("25,00").with_token("<script>"))
        .await
    {
        Err(Error::Validation(e)) => assert_eq!(e.0[0].field, "token"),
        other => panic!("expected a validation error, got {other:?}"),
    }
}
