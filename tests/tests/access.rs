//! A payer reaches only their own carts and transactions; an operator only their creditor's.
//! A refusal is `Forbidden`, never an empty list.

mod common;

use common::Env;
use payments_core::testing::Fixture;
use payments_core::*;

fn forbidden<T: std::fmt::Debug>(r: Result<T>) {
    assert!(
        matches!(r, Err(Error::Forbidden { .. })),
        "expected Forbidden, got {r:?}"
    );
}

#[tokio::test]
async fn payer_a_cannot_reach_payer_b() {
    let env = Env::new().await;
    let p = &env.payments;
    let (_, bob_checkout) = env.pending("bob", "b").await;
    let bob_tx = bob_checkout.transaction.id;
    let bob_cart = bob_checkout.transaction.cart_id;
    let alice = Actor::payer("alice");

    forbidden(p.transaction(&alice, bob_tx).await);
    forbidden(p.events(&alice, bob_tx).await);
    forbidden(p.history(&alice, &HistoryQuery::new("bob")).await);
    forbidden(p.cart(&alice, bob_cart).await);
    forbidden(p.add_item(&alice, bob_cart, env.tari("x", "1.00")).await);
    forbidden(p.add_free_item(&alice, bob_cart, env.fee("5")).await);
    forbidden(p.checkout(&alice, bob_cart, env.card(), "k").await);
    forbidden(p.cancel(&alice, bob_tx).await);
    let report = TransferReport::parse("2026-11-20", "5,00", "CRO1", "", "").expect("report");
    forbidden(p.report_transfer(&alice, bob_tx, &report).await);
    forbidden(
        p.open_cart(&alice, env.fx.creditor.id, Fixture::payer("bob"))
            .await,
    );
    forbidden(
        p.search(&alice, &MovementQuery::new(env.fx.creditor.id))
            .await,
    );
    forbidden(p.confirm_payment(&alice, bob_tx, None).await);

    // Bob himself reaches it all.
    let bob = Actor::payer("bob");
    assert_eq!(p.transaction(&bob, bob_tx).await.unwrap().id, bob_tx);
    assert_eq!(
        p.history(&bob, &HistoryQuery::new("bob"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        p.history(&alice, &HistoryQuery::new("alice"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Nothing changed on the way.
    assert_eq!(
        p.transaction(&bob, bob_tx).await.unwrap().status,
        TxStatus::Pending
    );
}

#[tokio::test]
async fn an_operator_of_creditor_a_cannot_reach_creditor_b() {
    let env = Env::new().await;
    let p = &env.payments;
    let (_, checkout) = env.pending("alice", "a").await;
    let tx = checkout.transaction.id;
    let a = env.fx.creditor.id;
    let other = Creditor::new("Comune di Altrove", "00488410010", "altrove@example.it").unwrap();
    p.register_creditor(&Actor::System, &other).await.unwrap();
    let op_a = Actor::operator(a, Role::Manager, "anna");
    let op_b = Actor::operator(other.id, Role::Manager, "bruno");

    // B's operator sees nothing of A's.
    forbidden(p.transaction(&op_b, tx).await);
    forbidden(p.events(&op_b, tx).await);
    forbidden(p.search(&op_b, &MovementQuery::new(a)).await);
    forbidden(
        p.history(
            &op_b,
            &HistoryQuery {
                creditor_id: Some(a),
                ..HistoryQuery::new("alice")
            },
        )
        .await,
    );
    forbidden(p.history(&op_b, &HistoryQuery::new("alice")).await);
    forbidden(p.confirm_payment(&op_b, tx, None).await);
    forbidden(p.outbox(&op_b, a, OutboxQuery::default()).await);
    forbidden(p.define_payment_type(&op_b, &env.fx.tari).await);
    forbidden(p.register_creditor(&op_a, &other).await);

    // A's operator sees A's movements; B's search of B is empty and allowed.
    assert_eq!(p.transaction(&op_a, tx).await.unwrap().id, tx);
    assert_eq!(
        p.search(&op_a, &MovementQuery::new(a)).await.unwrap().count,
        1
    );
    assert_eq!(
        p.search(&op_b, &MovementQuery::new(other.id))
            .await
            .unwrap()
            .count,
        0
    );
    let history = p
        .history(
            &op_a,
            &HistoryQuery {
                creditor_id: Some(a),
                ..HistoryQuery::new("alice")
            },
        )
        .await
        .unwrap();
    assert_eq!(history.items.len(), 1);

    // A viewer reads but does not confirm.
    let viewer = Actor::operator(a, Role::Viewer, "vera");
    assert!(p.search(&viewer, &MovementQuery::new(a)).await.is_ok());
    forbidden(p.confirm_payment(&viewer, tx, None).await);
    // A gateway acts only through callbacks.
    forbidden(
        p.transaction(
            &Actor::Gateway {
                id: "sandbox".into(),
            },
            tx,
        )
        .await,
    );
}

#[tokio::test]
async fn operators_search_with_filters_and_pages() {
    let env = Env::new().await;
    let p = &env.payments;
    let mut paid = Vec::new();
    for n in 0..5 {
        let (_, c) = env.pending(&format!("payer{n}"), &format!("k{n}")).await;
        if n % 2 == 0 {
            p.handle_callback("sandbox", &env.callback(&c, PaymentOutcome::Paid))
                .await
                .unwrap();
            paid.push(c.transaction.id);
        }
    }
    let op = Actor::operator(env.fx.creditor.id, Role::Viewer, "anna");
    let mut q = MovementQuery {
        statuses: vec![TxStatus::Paid],
        module: Some("tributi".into()),
        limit: 2,
        ..MovementQuery::new(env.fx.creditor.id)
    };
    let first = p.search(&op, &q).await.unwrap();
    assert_eq!(
        (first.count, first.total),
        (3, Money::parse_eur("240").unwrap())
    );
    assert_eq!(first.page.items.len(), 2);
    q.after = first.page.next;
    let second = p.search(&op, &q).await.unwrap();
    let mut got: Vec<_> = first
        .page
        .items
        .iter()
        .chain(&second.page.items)
        .map(|t| t.id)
        .collect();
    assert_eq!(second.page.next, None);
    got.reverse();
    assert_eq!(got, paid, "newest first, every paid one once");
    for bad in [
        MovementQuery {
            limit: 0,
            ..MovementQuery::new(env.fx.creditor.id)
        },
        MovementQuery {
            limit: 501,
            ..MovementQuery::new(env.fx.creditor.id)
        },
        MovementQuery {
            min_total: Some(Money::parse_eur("10").unwrap()),
            max_total: Some(Money::parse_eur("5").unwrap()),
            ..MovementQuery::new(env.fx.creditor.id)
        },
    ] {
        assert!(matches!(
            p.search(&op, &bad).await,
            Err(Error::Validation(_))
        ));
    }
}

/// What a payer-facing call is: a read, or an act for the payer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Cart,
    CartMethods,
    Transaction,
    Events,
    Refunds,
    LinePayments,
    OpenCart,
    AddItem,
    AddFreeItem,
    RemoveItem,
    Checkout,
    Cancel,
}

impl Op {
    const ALL: [Op; 12] = [
        Op::Cart,
        Op::CartMethods,
        Op::Transaction,
        Op::Events,
        Op::Refunds,
        Op::LinePayments,
        Op::OpenCart,
        Op::AddItem,
        Op::AddFreeItem,
        Op::RemoveItem,
        Op::Checkout,
        Op::Cancel,
    ];

    fn reads(self) -> bool {
        matches!(
            self,
            Op::Cart
                | Op::CartMethods
                | Op::Transaction
                | Op::Events
                | Op::Refunds
                | Op::LinePayments
        )
    }
}

/// Runs `op` as `actor` on Alice's cart (with an open item) and her pending transaction.
async fn run(env: &Env, op: Op, actor: &Actor) -> Result<()> {
    let p = &env.payments;
    let (_, cart) = env.cart("alice").await;
    let item = p
        .add_item(&Actor::payer("alice"), cart.id, env.tari("open", "12.00"))
        .await
        .unwrap();
    let (_, checkout) = env.pending("alice", "pending").await;
    let tx = checkout.transaction.id;
    match op {
        Op::Cart => p.cart(actor, cart.id).await.map(drop),
        Op::CartMethods => p.cart_methods(actor, cart.id).await.map(drop),
        Op::Transaction => p.transaction(actor, tx).await.map(drop),
        Op::Events => p.events(actor, tx).await.map(drop),
        Op::Refunds => p.refunds(actor, tx).await.map(drop),
        Op::LinePayments => p.line_payments(actor, tx).await.map(drop),
        Op::OpenCart => p
            .open_cart(actor, env.fx.creditor.id, Fixture::payer("alice"))
            .await
            .map(drop),
        Op::AddItem => p
            .add_item(actor, cart.id, env.tari("new", "3.00"))
            .await
            .map(drop),
        Op::AddFreeItem => p
            .add_free_item(actor, cart.id, env.fee("5"))
            .await
            .map(drop),
        Op::RemoveItem => p.remove_item(actor, cart.id, item.id).await.map(drop),
        Op::Checkout => p.checkout(actor, cart.id, env.card(), "k2").await.map(drop),
        Op::Cancel => p.cancel(actor, tx).await.map(drop),
    }
}

#[tokio::test]
async fn a_viewer_reads_and_never_acts_for_a_payer_every_call_every_actor() {
    for op in Op::ALL {
        let env = Env::new().await;
        let a = env.fx.creditor.id;
        let other =
            Creditor::new("Comune di Altrove", "00488410010", "altrove@example.it").unwrap();
        env.payments
            .register_creditor(&Actor::System, &other)
            .await
            .unwrap();
        // (who, may read, may act)
        let actors = [
            (Actor::payer("alice"), true, true),
            (Actor::payer("bob"), false, false),
            (Actor::operator(a, Role::Viewer, "vera"), true, false),
            (Actor::operator(a, Role::Manager, "anna"), true, true),
            (
                Actor::operator(other.id, Role::Viewer, "vito"),
                false,
                false,
            ),
            (
                Actor::operator(other.id, Role::Manager, "bruno"),
                false,
                false,
            ),
            (Actor::System, true, true),
            (
                Actor::Gateway {
                    id: GatewayId::from("sandbox"),
                },
                false,
                false,
            ),
        ];
        for (actor, reads, acts) in actors {
            let allowed = if op.reads() { reads } else { acts };
            let result = run(&env, op, &actor).await;
            let refused = matches!(result, Err(Error::Forbidden { .. }));
            assert_eq!(
                refused, !allowed,
                "{op:?} by {actor:?}: {result:?} (allowed: {allowed})"
            );
        }
    }
}
