//! Concurrency on both databases: one transaction per cart whatever the number of
//! checkouts, one transition per callback whatever the number of deliveries, and on
//! PostgreSQL two application instances that never double-book and share the outbox.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{Service, sandbox, service, session, shop, tari};
use payments_core::testing::Fixture;
use payments_core::*;

async fn many_checkouts_one_transaction(store: Arc<dyn Store>) {
    let (s, fx) = shop(store, sandbox()).await;
    let (alice, cart) = s
        .cart(
            &fx,
            "alice",
            &[("a", "10.00"), ("b", "10.00"), ("c", "10.00")],
        )
        .await;
    let method = fx.method(MethodKind::Card).id;
    let mut tasks = Vec::new();
    for n in 0..24 {
        let p = s.payments.clone();
        let alice = alice.clone();
        let key = if n % 3 == 0 {
            "double-click".to_owned()
        } else {
            format!("tab-{n}")
        };
        tasks.push(tokio::spawn(async move {
            p.checkout(&alice, cart.id, method, &key).await
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => {
                ids.insert(c.transaction.id);
            }
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ids.len(), 1, "one transaction");
    let all = s
        .payments
        .search(&Actor::System, &MovementQuery::new(fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(all.count, 1, "exactly one transaction in the database");
    assert_eq!(all.page.items[0].lines.len(), 3);
}

async fn one_callback_a_hundred_times(store: Arc<dyn Store>) {
    let sandbox = sandbox();
    let (s, fx) = shop(store, sandbox.clone()).await;
    let (alice, cart) = s.cart(&fx, "alice", &[("a", "12.34")]).await;
    let checkout = s
        .payments
        .checkout(&alice, cart.id, fx.method(MethodKind::Card).id, "k")
        .await
        .unwrap();
    let callback = sandbox
        .complete(&session(&checkout), PaymentOutcome::Paid)
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let p = s.payments.clone();
        let cb = callback.clone();
        tasks.push(tokio::spawn(async move {
            p.handle_callback("sandbox", &cb).await
        }));
    }
    let mut applied = 0;
    for t in tasks {
        let out = t
            .await
            .unwrap()
            .expect("every delivery is answered without error");
        assert_eq!(out.transaction.status, TxStatus::Paid);
        applied += usize::from(out.applied);
    }
    assert_eq!(applied, 1, "one transition");
    let tx = checkout.transaction.id;
    let events = s.payments.events(&Actor::System, tx).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.to == TxStatus::Paid).count(),
        1,
        "one Paid event"
    );
    let outbox = s
        .payments
        .outbox(&Actor::System, fx.creditor.id, OutboxQuery::default())
        .await
        .unwrap();
    assert_eq!(
        outbox.len(),
        3,
        "one set of outbox rows: receipt, notice, settlement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_many_checkouts_make_one_transaction() {
    many_checkouts_one_transaction(Arc::new(common::sqlite().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_one_callback_a_hundred_times_applies_once() {
    one_callback_a_hundred_times(Arc::new(common::sqlite().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_many_checkouts_make_one_transaction() {
    let Some(url) = common::postgres_url("postgres_many_checkouts_make_one_transaction") else {
        return;
    };
    many_checkouts_one_transaction(Arc::new(common::postgres(&url).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_callback_a_hundred_times_applies_once() {
    let Some(url) = common::postgres_url("postgres_one_callback_a_hundred_times_applies_once")
    else {
        return;
    };
    one_callback_a_hundred_times(Arc::new(common::postgres(&url).await)).await;
}

/// Two application servers: one database, two pools, two `Payments`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_instances_never_double_book_and_share_the_outbox() {
    let Some(url) =
        common::postgres_url("postgres_two_instances_never_double_book_and_share_the_outbox")
    else {
        return;
    };
    let schema = common::schema();
    let store = |url: String, schema: String| async move {
        payments_sqlx::SqlxStore::builder(url)
            .with_schema(schema)
            .with_max_connections(4)
            .build()
            .await
            .unwrap()
    };
    let sandbox = sandbox();
    let one: Service = service(
        Arc::new(store(url.clone(), schema.clone()).await),
        sandbox.clone(),
    );
    let two: Service = service(
        Arc::new(store(url.clone(), schema.clone()).await),
        sandbox.clone(),
    );
    let fx = Fixture::install(&one.payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    let method = fx.method(MethodKind::Card).id;

    // 20 payers, each with two items; both instances race to check out every cart.
    let mut carts = Vec::new();
    for n in 0..20 {
        let payer = format!("payer{n}");
        let actor = Actor::payer(payer.as_str());
        let cart = one
            .payments
            .open_cart(&actor, fx.creditor.id, Fixture::payer(&payer))
            .await
            .unwrap();
        one.payments
            .add_item(&actor, cart.id, tari(&fx, &format!("{n}-a"), "10.00"))
            .await
            .unwrap();
        two.payments
            .add_item(&actor, cart.id, tari(&fx, &format!("{n}-b"), "5.00"))
            .await
            .unwrap();
        carts.push((actor, cart.id));
    }
    let mut tasks = Vec::new();
    for (actor, cart) in &carts {
        for (i, p) in [&one.payments, &two.payments].into_iter().enumerate() {
            let (p, actor, cart) = (p.clone(), actor.clone(), *cart);
            tasks.push(tokio::spawn(async move {
                p.checkout(&actor, cart, method, &format!("server-{i}"))
                    .await
            }));
        }
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => won.push(c),
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(
        won.len(),
        20,
        "one transaction per cart, whichever server won"
    );
    let all = one
        .payments
        .search(
            &Actor::System,
            &MovementQuery {
                limit: 500,
                ..MovementQuery::new(fx.creditor.id)
            },
        )
        .await
        .unwrap();
    assert_eq!(all.count, 20);
    let mut locked_items = BTreeSet::new();
    for tx in &all.page.items {
        for line in &tx.lines {
            assert!(
                locked_items.insert(line.item_id),
                "an item is in one transaction only"
            );
        }
    }
    assert_eq!(locked_items.len(), 40);

    // Every payment arrives, half through each server.
    for (i, c) in won.iter().enumerate() {
        let cb = sandbox.complete(&session(c), PaymentOutcome::Paid).unwrap();
        let p = if i % 2 == 0 {
            &one.payments
        } else {
            &two.payments
        };
        assert!(p.handle_callback("sandbox", &cb).await.unwrap().applied);
    }
    // Both dispatchers work the outbox at once: 20 × (receipt + notice + 2 settlements).
    let (a, b) = tokio::join!(drain(&one.payments), drain(&two.payments));
    assert_eq!(a + b, 80, "every message delivered");
    let mut seen = BTreeSet::new();
    for (n, _) in one.notifier.sent().into_iter().chain(two.notifier.sent()) {
        assert!(seen.insert(n.id), "a message delivered twice");
    }
    for s in one.tributi.heard().into_iter().chain(two.tributi.heard()) {
        assert!(seen.insert(s.id), "a settlement delivered twice");
    }
    assert_eq!(seen.len(), 80);
    assert!(
        a > 0 && b > 0,
        "both instances shared the work ({a} and {b})"
    );
}

/// Dispatches until a pass finds nothing; returns how many messages this instance delivered.
async fn drain(p: &Payments) -> u32 {
    let mut delivered = 0;
    loop {
        let r = p.dispatch_outbox().await.unwrap();
        delivered += r.delivered;
        assert_eq!(r.retrying + r.dead, 0);
        if r.claimed() == 0 {
            return delivered;
        }
        tokio::task::yield_now().await;
    }
}
