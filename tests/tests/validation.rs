//! Bad input gets a typed error naming the field, and changes nothing.

mod common;

use common::Env;
use payments_core::*;

/// Submits `item`, expects a validation error on exactly `fields`, and checks the cart is
/// still empty.
async fn refused(env: &Env, item: NewFreeItem, fields: &[&str]) {
    let (alice, cart) = env.cart("alice").await;
    match env
        .payments
        .add_free_item(&alice, cart.id, item.clone())
        .await
    {
        Err(Error::Validation(errors)) => {
            assert_eq!(errors.fields(), fields, "for {item:?}: {errors}");
        }
        r => panic!("{item:?} must be refused, got {r:?}"),
    }
    assert!(
        env.payments
            .cart(&alice, cart.id)
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was added"
    );
}

#[tokio::test]
async fn every_free_item_error_names_its_field() {
    let env = Env::new().await;
    let ok = env.fee("16,00");
    let (alice, cart) = env.cart("alice").await;
    // The well-formed one is accepted, normalised.
    let added = env
        .payments
        .add_free_item(
            &alice,
            cart.id,
            ok.clone()
                .with_extra("email", "Mario.Rossi@Example.it")
                .with_extra("fiscal_code", "rssmra85t10a562s")
                .with_extra("filed_on", "04/05/2026"),
        )
        .await
        .unwrap();
    assert_eq!(added.amount, Money::parse_eur("16").unwrap());
    assert_eq!(added.source.module, FREE_PAYMENT_MODULE);
    assert_eq!(added.extra["fiscal_code"], "RSSMRA85T10A562S");
    assert_eq!(added.extra["filed_on"], "2026-05-04");
    env.payments
        .remove_item(&alice, cart.id, added.id)
        .await
        .unwrap();

    let with = |f: &dyn Fn(&mut NewFreeItem)| {
        let mut i = ok.clone();
        f(&mut i);
        i
    };
    let cases: Vec<(NewFreeItem, &[&str])> = vec![
        (with(&|i| i.payment_type_id = None), &["payment_type_id"]),
        (
            with(&|i| i.payment_type_id = Some(PaymentTypeId::new())),
            &["payment_type_id"],
        ),
        // TARI exists but takes no free payments (and has other fields).
        (
            with(&|i| {
                i.payment_type_id = Some(env.fx.tari.id);
                i.extra.clear();
                i.extra.insert("year".into(), "2026".into());
            }),
            &["payment_type_id"],
        ),
        (with(&|i| i.amount = None), &["amount"]),
        (with(&|i| i.amount = Some("  ".into())), &["amount"]),
        (with(&|i| i.amount = Some("dieci".into())), &["amount"]),
        (with(&|i| i.amount = Some("12.345".into())), &["amount"]),
        (with(&|i| i.amount = Some("-5".into())), &["amount"]),
        (with(&|i| i.amount = Some("0".into())), &["amount"]),
        (with(&|i| i.amount = Some("0,99".into())), &["amount"]),
        (with(&|i| i.amount = Some("500,01".into())), &["amount"]),
        (with(&|i| i.amount = Some("1e3".into())), &["amount"]),
        (with(&|i| i.reason = "  ".into()), &["reason"]),
        (with(&|i| i.reason = "x".repeat(141)), &["reason"]),
        (with(&|i| i.reason = "line\u{0}break".into()), &["reason"]),
        (
            with(&|i| {
                i.extra.remove("case_number");
            }),
            &["extra.case_number"],
        ),
        (
            with(&|i| {
                i.extra.insert("case_number".into(), "  ".into());
            }),
            &["extra.case_number"],
        ),
        (
            with(&|i| {
                i.extra.insert("case_number".into(), "x".repeat(21));
            }),
            &["extra.case_number"],
        ),
        (
            with(&|i| {
                i.extra.remove("office");
            }),
            &["extra.office"],
        ),
        (
            with(&|i| {
                i.extra.insert("office".into(), "tributi".into());
            }),
            &["extra.office"],
        ),
        (
            with(&|i| {
                i.extra.insert("email".into(), "mario@".into());
            }),
            &["extra.email"],
        ),
        (
            with(&|i| {
                i.extra
                    .insert("fiscal_code".into(), "RSSMRA85T10A562T".into());
            }),
            &["extra.fiscal_code"],
        ),
        (
            with(&|i| {
                i.extra.insert("filed_on".into(), "31/02/2026".into());
            }),
            &["extra.filed_on"],
        ),
        (
            with(&|i| {
                i.extra.insert("colour".into(), "blue".into());
            }),
            &["extra.colour"],
        ),
        // Several problems at once: all are reported, each with its field.
        (
            with(&|i| {
                i.amount = Some("abc".into());
                i.reason = String::new();
                i.extra.clear();
            }),
            &["reason", "amount", "extra.case_number", "extra.office"],
        ),
    ];
    for (item, fields) in cases {
        refused(&env, item, fields).await;
    }
}

#[tokio::test]
async fn a_fixed_amount_may_be_left_out_but_not_changed() {
    let env = Env::new().await;
    let mut building = env.fx.building.clone();
    building.free_payments = true;
    env.payments
        .define_payment_type(&Actor::System, &building)
        .await
        .unwrap();
    let (alice, cart) = env.cart("alice").await;
    let item = NewFreeItem {
        payment_type_id: Some(building.id),
        amount: None,
        reason: "Oneri".into(),
        ..Default::default()
    };
    let added = env
        .payments
        .add_free_item(&alice, cart.id, item.clone())
        .await
        .unwrap();
    assert_eq!(added.amount, Money::parse_eur("150").unwrap());
    env.payments
        .remove_item(&alice, cart.id, added.id)
        .await
        .unwrap();
    let changed = NewFreeItem {
        amount: Some("149.99".into()),
        ..item
    };
    refused(&env, changed, &["amount"]).await;
}

#[tokio::test]
async fn module_items_are_checked_too() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    let p = &env.payments;
    let mut bad = env.tari("k", "10.00");
    bad.extra.insert("year".into(), "1999".into());
    bad.source.module = "Tributi!".into();
    match p.add_item(&alice, cart.id, bad).await {
        Err(Error::Validation(e)) => assert_eq!(e.fields(), ["source.module", "extra.year"]),
        r => panic!("{r:?}"),
    }
    let over_limit = env.tari("k", "10000.01");
    match p.add_item(&alice, cart.id, over_limit).await {
        Err(Error::Validation(e)) => {
            assert_eq!(e.fields(), ["amount"], "over the creditor's item limit")
        }
        r => panic!("{r:?}"),
    }
    let wrong_fixed = NewItem::new(
        Source::new("edilizia", "x"),
        env.fx.building.id,
        "Oneri",
        Money::parse_eur("1").unwrap(),
    );
    assert!(matches!(
        p.add_item(&alice, cart.id, wrong_fixed).await,
        Err(Error::Validation(_))
    ));
    assert!(p.cart(&alice, cart.id).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn a_method_that_an_item_type_does_not_accept_is_refused() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    let p = &env.payments;
    p.add_item(&alice, cart.id, env.tari("a", "10.00"))
        .await
        .unwrap();
    // Secretarial fees accept card and bank transfer only.
    p.add_free_item(&alice, cart.id, env.fee("20"))
        .await
        .unwrap();
    let sdd = env.fx.method(MethodKind::SepaDirectDebit).id;
    match p.checkout(&alice, cart.id, sdd, "k1").await {
        Err(Error::Validation(e)) => {
            let err = e.field("method").expect("the method field is named");
            assert!(
                err.reason.contains("Diritti di segreteria"),
                "{}",
                err.reason
            );
        }
        r => panic!("the method must be refused, got {r:?}"),
    }
    assert!(
        p.cart(&alice, cart.id)
            .await
            .unwrap()
            .items
            .iter()
            .all(|i| i.state == ItemState::Open),
        "nothing was locked"
    );
    assert_eq!(
        p.search(&Actor::System, &MovementQuery::new(env.fx.creditor.id))
            .await
            .unwrap()
            .count,
        0
    );
    // A method of another creditor, or an unknown one, is refused as well.
    assert!(matches!(
        p.checkout(&alice, cart.id, MethodId::new(), "k2").await,
        Err(Error::Validation(_))
    ));
    // The accepted method works.
    assert!(p.checkout(&alice, cart.id, env.card(), "k3").await.is_ok());
}

#[tokio::test]
async fn checkout_input_is_checked() {
    let env = Env::new().await;
    let (alice, cart) = env.cart("alice").await;
    let p = &env.payments;
    assert!(matches!(
        p.checkout(&alice, cart.id, env.card(), "k").await,
        Err(Error::Validation(e)) if e.fields() == ["cart"]
    ));
    p.add_item(&alice, cart.id, env.tari("a", "10.00"))
        .await
        .unwrap();
    for key in ["", "   ", &"k".repeat(129), "a\nb"] {
        assert!(matches!(
            p.checkout(&alice, cart.id, env.card(), key).await,
            Err(Error::Validation(e)) if e.fields() == ["idempotency_key"]
        ));
    }
    // The creditor's transaction limit holds over the sum of items under the item limit.
    for n in 0..6 {
        p.add_item(&alice, cart.id, env.tari(&format!("big{n}"), "9999.99"))
            .await
            .unwrap();
    }
    assert!(matches!(
        p.checkout(&alice, cart.id, env.card(), "k").await,
        Err(Error::Validation(e)) if e.fields() == ["total"]
    ));
}
