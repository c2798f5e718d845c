//! The outbox delivers at least once, with retries and backoff; a notifier that fails never
//! loses a payment or a message.

mod common;

use std::time::Duration;

use common::Env;
use payments_core::*;

#[tokio::test]
async fn a_notifier_that_fails_three_times_then_succeeds_delivers_each_message_once() {
    let env = Env::with_notifier(RecordingNotifier::failing_first(3)).await;
    let p = &env.payments;
    let (_, checkout) = env.pending("alice", "a").await;
    p.handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Paid))
        .await
        .unwrap();
    let tx = checkout.transaction.id;

    // Round 1: both emails fail (failures 1 and 2); the settlement goes through.
    let r1 = p.dispatch_outbox().await.unwrap();
    assert_eq!((r1.delivered, r1.retrying, r1.dead), (1, 2, 0));
    assert_eq!(
        p.transaction(&Actor::System, tx).await.unwrap().status,
        TxStatus::Paid,
        "the payment stands"
    );
    assert!(env.notifier.sent().is_empty());
    assert_eq!(env.tributi.heard().len(), 1);

    // Nothing is retried before its backoff (1 s after the first failure).
    env.clock.advance(Duration::from_millis(999));
    assert_eq!(
        p.dispatch_outbox().await.unwrap().claimed(),
        0,
        "backoff holds"
    );

    // Round 2: one email fails (failure 3), the other is delivered.
    env.clock.advance(Duration::from_millis(1));
    let r2 = p.dispatch_outbox().await.unwrap();
    assert_eq!((r2.delivered, r2.retrying, r2.dead), (1, 1, 0));

    // The second failure of that message waits twice as long: 2 s.
    env.clock.advance(Duration::from_millis(1999));
    assert_eq!(
        p.dispatch_outbox().await.unwrap().claimed(),
        0,
        "the backoff doubles"
    );
    env.clock.advance(Duration::from_millis(1));
    let r3 = p.dispatch_outbox().await.unwrap();
    assert_eq!((r3.delivered, r3.retrying, r3.dead), (1, 0, 0));

    let sent = env.notifier.sent();
    assert_eq!(sent.len(), 2, "each email delivered once");
    let kinds: Vec<_> = sent.iter().map(|(n, _)| n.kind).collect();
    assert!(
        kinds.contains(&NotificationKind::Receipt)
            && kinds.contains(&NotificationKind::CreditorNotice)
    );
    let attempts: u32 = sent.iter().map(|(n, _)| env.notifier.attempts(n.id)).sum();
    assert_eq!(attempts, 5, "three failures and two deliveries");
    let outbox = p
        .outbox(&Actor::System, env.fx.creditor.id, OutboxQuery::default())
        .await
        .unwrap();
    assert!(outbox.iter().all(|m| m.status == OutboxStatus::Delivered));
    let failed_once = outbox.iter().filter(|m| m.last_error.is_some()).count();
    assert_eq!(failed_once, 2, "the failures are recorded");
    env.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        p.dispatch_outbox().await.unwrap().claimed(),
        0,
        "nothing is delivered again"
    );
    assert_eq!(env.tributi.heard().len(), 1);
}

#[tokio::test]
async fn a_message_given_up_on_is_visible_and_an_operator_retries_it() {
    // Fails far more often than the policy's five attempts.
    let env = Env::with_notifier(RecordingNotifier::failing_first(10)).await;
    let p = &env.payments;
    let creditor = env.fx.creditor.id;
    let alice = Actor::payer("alice");
    let (_, cart) = env.cart("alice").await;
    // A payer without an email address gets no receipt: only the creditor's notice.
    p.open_cart(&alice, creditor, Payer::new("alice", "Alice"))
        .await
        .unwrap();
    p.add_item(&alice, cart.id, env.tari("a", "10"))
        .await
        .unwrap();
    let checkout = p.checkout(&alice, cart.id, env.card(), "k").await.unwrap();
    p.handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Paid))
        .await
        .unwrap();

    let mut dead = 0;
    for _ in 0..10 {
        let r = p.dispatch_outbox().await.unwrap();
        dead += r.dead;
        env.clock.advance(Duration::from_secs(60));
    }
    assert_eq!(dead, 1, "after five attempts the notice is given up on");
    let operator = Actor::operator(creditor, Role::Manager, "anna");
    let dead_msgs = p
        .outbox(
            &operator,
            creditor,
            OutboxQuery {
                status: Some(OutboxStatus::Dead),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead_msgs.len(), 1);
    let m = &dead_msgs[0];
    assert_eq!(m.attempts, 5);
    assert!(m.last_error.as_deref().unwrap().contains("told to fail"));
    assert!(
        matches!(&m.payload, OutboxPayload::Notification(n) if n.kind == NotificationKind::CreditorNotice)
    );

    // A viewer may not retry; a manager may. The notifier has five failures left.
    let viewer = Actor::operator(creditor, Role::Viewer, "vera");
    assert!(matches!(
        p.retry_message(&viewer, m.id).await,
        Err(Error::Forbidden { .. })
    ));
    let revived = p.retry_message(&operator, m.id).await.unwrap();
    assert_eq!(
        (revived.status, revived.attempts),
        (OutboxStatus::Pending, 0)
    );
    let mut delivered = 0;
    for _ in 0..10 {
        delivered += p.dispatch_outbox().await.unwrap().delivered;
        env.clock.advance(Duration::from_secs(60));
    }
    assert_eq!(delivered, 0, "five more failures: dead again");
    p.retry_message(&operator, m.id).await.unwrap();
    assert_eq!(
        p.dispatch_outbox().await.unwrap().delivered,
        1,
        "the notifier works again"
    );
    assert_eq!(env.notifier.sent().len(), 1);
    assert_eq!(env.notifier.sent()[0].0.to, "ragioneria@comune.example.it");
}

#[tokio::test]
async fn a_settlement_for_a_module_without_a_listener_waits_for_one() {
    let env = Env::new().await;
    let p = &env.payments;
    let (alice, cart) = env.cart("alice").await;
    p.add_item(
        &alice,
        cart.id,
        NewItem::new(
            Source::new("anagrafe", "cert-1"),
            env.fx.tari.id,
            "Certificato",
            Money::parse_eur("16").unwrap(),
        )
        .with_extra("year", "2026"),
    )
    .await
    .unwrap();
    let checkout = p.checkout(&alice, cart.id, env.card(), "k").await.unwrap();
    p.handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Paid))
        .await
        .unwrap();
    let r = p.dispatch_outbox().await.unwrap();
    assert_eq!(
        (r.delivered, r.retrying, r.dead),
        (2, 1, 0),
        "the settlement is kept for later"
    );
    let waiting = p
        .outbox(
            &Actor::System,
            env.fx.creditor.id,
            OutboxQuery {
                status: Some(OutboxStatus::Pending),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        waiting[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no settlement listener for module anagrafe")
    );
}

#[tokio::test]
async fn the_worker_delivers_in_the_background_until_shut_down() {
    let env = Env::new().await;
    let (_, checkout) = env.pending("alice", "a").await;
    env.payments
        .handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Paid))
        .await
        .unwrap();
    run_worker_until_mails(&env, 2).await;
    assert_eq!(env.notifier.sent().len(), 2);
    assert_eq!(env.tributi.heard().len(), 1);
}

#[tokio::test]
async fn the_worker_recovers_a_lost_callback_with_its_reconciliation_sweep() {
    let env = Env::new().await;
    let (_, checkout) = env.pending("alice", "a").await;
    let (_, untouched) = env.pending("bruno", "b").await;
    // The payer paid on the provider's page; its callback never arrived.
    let _lost = env.callback(&checkout, PaymentOutcome::Paid);
    env.clock.advance(Duration::from_secs(11 * 60));
    run_worker_until_mails(&env, 2).await;
    let operator = Actor::operator(env.fx.creditor.id, Role::Viewer, "vera");
    let tx = env
        .payments
        .transaction(&operator, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(tx.status, TxStatus::Paid, "recovered from the provider");
    let events = env.payments.events(&operator, tx.id).await.unwrap();
    assert_eq!(events.last().unwrap().note.as_deref(), Some("reconciled"));
    assert_eq!(env.notifier.sent().len(), 2, "and its mails went out");
    let other = env
        .payments
        .transaction(&operator, untouched.transaction.id)
        .await
        .unwrap();
    assert_eq!(
        other.status,
        TxStatus::Pending,
        "a payment still open stays so"
    );
}

/// Runs the worker until `n` mails are sent (two seconds at most), then stops it.
async fn run_worker_until_mails(env: &Env, n: usize) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let p = env.payments.clone();
        tokio::spawn(async move {
            p.run_worker(Duration::from_millis(10), async {
                let _ = stopped.await;
            })
            .await
        })
    };
    for _ in 0..200 {
        if env.notifier.sent().len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap();
}

/// Records what it sends, and never finishes sending a creditor's notice (an SMTP server
/// that stopped answering mid-conversation).
#[derive(Debug, Default)]
struct StuckOnNotices {
    sent: std::sync::Mutex<Vec<NotificationKind>>,
}

#[async_trait::async_trait]
impl Notifier for StuckOnNotices {
    async fn send(&self, n: &Notification) -> Result<()> {
        if n.kind == NotificationKind::CreditorNotice {
            std::future::pending::<()>().await;
        }
        self.sent.lock().unwrap().push(n.kind);
        Ok(())
    }
}

#[tokio::test]
async fn each_message_is_marked_delivered_as_soon_as_it_is_sent() {
    let env = Env::new().await;
    let (_, checkout) = env.pending("alice", "a").await;
    env.payments
        .handle_callback("sandbox", &env.callback(&checkout, PaymentOutcome::Paid))
        .await
        .unwrap();
    // A second instance on the same store, whose mail server hangs on one message.
    let stuck = std::sync::Arc::new(StuckOnNotices::default());
    let instance = Payments::builder()
        .store(env.payments.store().clone())
        .gateway(env.sandbox.clone())
        .notifier(stuck.clone())
        .listener("tributi", env.tributi.clone())
        .listener("edilizia", env.edilizia.clone())
        .clock(env.clock.clone())
        .build()
        .unwrap();
    let running = tokio::spawn(async move { instance.dispatch_outbox().await });
    for _ in 0..500 {
        if stuck.sent.lock().unwrap().len() == 1 && env.tributi.heard().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let statuses = |outbox: &[OutboxMessage]| {
        let mut s: Vec<OutboxStatus> = outbox.iter().map(|m| m.status).collect();
        s.sort_by_key(|s| s.as_str());
        s
    };
    let outbox = env
        .payments
        .outbox(&Actor::System, env.fx.creditor.id, OutboxQuery::default())
        .await
        .unwrap();
    // The receipt and the settlement are on record as delivered while the notice hangs.
    assert_eq!(
        statuses(&outbox),
        [
            OutboxStatus::Delivered,
            OutboxStatus::Delivered,
            OutboxStatus::Pending
        ],
        "{outbox:?}"
    );
    // The instance dies with the notice in flight; after its lease another sends that one
    // alone.
    running.abort();
    env.clock
        .advance(RetryPolicy::default().lease + Duration::from_secs(1));
    let report = env.payments.dispatch_outbox().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (1, 0));
    let kinds: Vec<NotificationKind> = env.notifier.sent().iter().map(|(n, _)| n.kind).collect();
    assert_eq!(kinds, [NotificationKind::CreditorNotice]);
    assert_eq!(*stuck.sent.lock().unwrap(), [NotificationKind::Receipt]);
    assert_eq!(env.tributi.heard().len(), 1, "the module heard once");
}
