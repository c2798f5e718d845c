//! The worker's loops are independent: a provider that hangs when asked (a Stripe or Nexi
//! outage) holds up neither the mail nor the modules' settlements, and calls to it are cut
//! off after the provider timeout.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;

/// The sandbox, except that asking it anything on its own (status, closing, receipts)
/// never answers.
#[derive(Debug)]
struct Hanging(Arc<SandboxGateway>);

#[async_trait]
impl Gateway for Hanging {
    fn id(&self) -> GatewayId {
        self.0.id()
    }
    fn kinds(&self) -> Vec<MethodKind> {
        self.0.kinds()
    }
    async fn start(&self, request: &StartRequest) -> Result<Started> {
        self.0.start(request).await
    }
    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        self.0.parse_callback(request).await
    }
    async fn fetch_status(&self, _: &Transaction) -> Result<PaymentOutcome> {
        std::future::pending().await
    }
    async fn close(&self, _: &Transaction) -> Result<PaymentOutcome> {
        std::future::pending().await
    }
}

struct World {
    payments: Payments,
    notifier: Arc<RecordingNotifier>,
    tributi: Arc<RecordingListener>,
    fx: Fixture,
    sandbox: Arc<SandboxGateway>,
}

/// A service whose provider hangs, with one paid transaction (two mails
/// and a settlement to deliver) and one left pending, already due to expire.
async fn world(provider_timeout: Duration) -> (World, TransactionId) {
    let sandbox = Arc::new(SandboxGateway::new("worker-test-key"));
    let notifier = Arc::new(RecordingNotifier::new());
    let tributi = Arc::new(RecordingListener::new());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let payments = Payments::builder()
        .clock(clock.clone())
        .store(Arc::new(InMemoryStore::new()))
        .gateway(Arc::new(Hanging(sandbox.clone())))
        .notifier(notifier.clone())
        .listener("tributi", tributi.clone())
        .reconcile_every(Duration::from_millis(20), Duration::ZERO)
        .provider_timeout(provider_timeout)
        .return_url("http://localhost:3000/return")
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    let w = World {
        payments,
        notifier,
        tributi,
        fx,
        sandbox,
    };
    let mut pending = None;
    for (payer, paid) in [("alice", true), ("bob", false)] {
        let actor = Actor::payer(payer);
        let cart = w
            .payments
            .open_cart(&actor, w.fx.creditor.id, Fixture::payer(payer))
            .await
            .unwrap();
        let item = NewItem::new(
            Source::new("tributi", format!("TARI-{payer}")),
            w.fx.tari.id,
            "TARI 2026",
            Money::parse_eur("80.00").unwrap(),
        )
        .with_extra("year", "2026");
        w.payments.add_item(&actor, cart.id, item).await.unwrap();
        let c = w
            .payments
            .checkout(&actor, cart.id, w.fx.method(MethodKind::Card).id, "k")
            .await
            .unwrap();
        if paid {
            let Instruction::Redirect { url, .. } = &c.instruction else {
                unreachable!()
            };
            let cb = w
                .sandbox
                .complete(url.rsplit('/').next().unwrap(), PaymentOutcome::Paid)
                .unwrap();
            w.payments.handle_callback("sandbox", &cb).await.unwrap();
        } else {
            pending = Some(c.transaction.id);
        }
    }
    // A day on: the pending one is due to expire, and old enough for the sweep.
    clock.advance(Duration::from_secs(24 * 3600));
    (w, pending.unwrap())
}

#[tokio::test]
async fn a_hanging_provider_holds_up_neither_mail_nor_settlements() {
    // Calls to the provider are never cut off here: the loops must not wait on each other.
    let (w, _) = world(Duration::from_secs(3600)).await;
    let interval = Duration::from_millis(50);
    let run = w
        .payments
        .run_worker(interval, tokio::time::sleep(Duration::from_secs(2)));
    let watch = async {
        let started = std::time::Instant::now();
        while w.notifier.sent().len() < 2 || w.tributi.heard().is_empty() {
            assert!(
                started.elapsed() < interval * 10,
                "mail and settlements wait for the hanging provider"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = run => panic!("the worker stopped before delivering"),
        _ = watch => {}
    }
    assert_eq!(w.notifier.sent().len(), 2);
    assert_eq!(w.tributi.heard().len(), 1);
}

#[tokio::test]
async fn a_provider_call_that_hangs_is_cut_off_and_the_expiry_waits() {
    let (w, pending) = world(Duration::from_millis(100)).await;
    let expired = tokio::time::timeout(Duration::from_secs(5), w.payments.expire_due())
        .await
        .expect("expiry returns although the provider hangs")
        .unwrap();
    assert_eq!(expired, 0, "never expired without the provider's word");
    let events = w.payments.events(&Actor::System, pending).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        w.payments
            .transaction(&Actor::System, pending)
            .await
            .unwrap()
            .status,
        TxStatus::Pending
    );
    assert!(
        last.note
            .as_deref()
            .is_some_and(|n| n.contains("could not be asked")),
        "{events:?}"
    );
    // The sweep too comes back.
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        w.payments.reconcile_pending(Duration::ZERO, 10),
    )
    .await
    .expect("the sweep returns although the provider hangs")
    .unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
}

#[tokio::test]
async fn a_hanging_provider_delays_only_its_own_expiries() {
    let sandbox = Arc::new(SandboxGateway::new("worker-test-key"));
    let quick = Arc::new(SandboxGateway::new("quick-test-key").with_id("quick"));
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let payments = Payments::builder()
        .clock(clock.clone())
        .store(Arc::new(InMemoryStore::new()))
        .gateway(Arc::new(Hanging(sandbox.clone())))
        .gateway(quick.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .listener("tributi", Arc::new(RecordingListener::new()))
        .provider_timeout(Duration::from_secs(3600))
        .return_url("http://localhost:3000/return")
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    let mut method = PaymentMethod::new(fx.creditor.id, MethodKind::SepaDirectDebit, "quick");
    method.label = "Addebito SEPA".into();
    payments
        .enable_method(&Actor::System, &method)
        .await
        .unwrap();
    // Five payments left pending on the hanging provider (more than expiry asks at once),
    // then one on the provider that answers.
    let mut pending = Vec::new();
    for (i, method) in [fx.method(MethodKind::Card).id; 5]
        .into_iter()
        .chain([method.id])
        .enumerate()
    {
        let payer = format!("payer{i}");
        let actor = Actor::payer(payer.as_str());
        let cart = payments
            .open_cart(&actor, fx.creditor.id, Fixture::payer(&payer))
            .await
            .unwrap();
        let item = NewItem::new(
            Source::new("tributi", format!("TARI-{i}")),
            fx.tari.id,
            "TARI 2026",
            Money::parse_eur("80.00").unwrap(),
        )
        .with_extra("year", "2026");
        payments.add_item(&actor, cart.id, item).await.unwrap();
        let c = payments
            .checkout(&actor, cart.id, method, "k")
            .await
            .unwrap();
        pending.push(c.transaction.id);
        clock.advance(Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(24 * 3600));
    let answering = *pending.last().unwrap();
    let expiry = payments.expire_due();
    let watch = async {
        loop {
            let tx = payments
                .transaction(&Actor::System, answering)
                .await
                .unwrap();
            if tx.status == TxStatus::Expired {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = expiry => panic!("expiry cannot finish while a provider hangs"),
        done = tokio::time::timeout(Duration::from_secs(2), watch) => {
            done.expect("the answering provider's payment expires meanwhile");
        }
    }
}

/// A provider the sweep may ask: counts the questions about each transaction, and says
/// each is still pending.
#[derive(Debug)]
struct Counting(Arc<SandboxGateway>, std::sync::Mutex<Vec<TransactionId>>);

#[async_trait]
impl Gateway for Counting {
    fn id(&self) -> GatewayId {
        self.0.id()
    }
    fn kinds(&self) -> Vec<MethodKind> {
        self.0.kinds()
    }
    async fn start(&self, request: &StartRequest) -> Result<Started> {
        self.0.start(request).await
    }
    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        self.0.parse_callback(request).await
    }
    async fn fetch_status(&self, tx: &Transaction) -> Result<PaymentOutcome> {
        self.1.lock().unwrap().push(tx.id);
        Ok(PaymentOutcome::Pending)
    }
}

/// A provider with nothing to ask (as a bank transfer): the sweep must not even read its
/// transactions, let alone ask.
#[derive(Debug)]
struct Silent(Arc<SandboxGateway>);

#[async_trait]
impl Gateway for Silent {
    fn id(&self) -> GatewayId {
        GatewayId::from("silent")
    }
    fn kinds(&self) -> Vec<MethodKind> {
        vec![MethodKind::BankTransfer]
    }
    async fn start(&self, _: &StartRequest) -> Result<Started> {
        Ok(Started::new(Instruction::redirect(
            "https://bank.example/transfer",
        )))
    }
    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        self.0.parse_callback(request).await
    }
    async fn fetch_status(&self, _: &Transaction) -> Result<PaymentOutcome> {
        panic!("a provider with nothing to ask was asked")
    }
    async fn fetch_receipts(&self, _: &Transaction) -> Result<Vec<CallbackEvent>> {
        panic!("a provider with nothing to ask was asked")
    }
    fn answers_status(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn the_sweep_pages_through_what_it_can_ask_and_never_reads_the_rest() {
    let sandbox = Arc::new(SandboxGateway::new("worker-test-key"));
    let counting = Arc::new(Counting(sandbox.clone(), Default::default()));
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let payments = Payments::builder()
        .clock(clock.clone())
        .store(Arc::new(InMemoryStore::new()))
        .gateway(counting.clone())
        .gateway(Arc::new(Silent(sandbox.clone())))
        .notifier(Arc::new(RecordingNotifier::new()))
        .return_url("http://localhost:3000/return")
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    let transfer = PaymentMethod::new(fx.creditor.id, MethodKind::BankTransfer, "silent");
    payments
        .enable_method(&Actor::System, &transfer)
        .await
        .unwrap();
    // 25 card payments left pending, and 40 transfers waiting for the bank (more than a
    // pass may read: were they read, they would crowd the card payments out).
    let mut cards = Vec::new();
    for n in 0..65 {
        let payer = format!("payer{n}");
        let actor = Actor::payer(payer.as_str());
        let cart = payments
            .open_cart(&actor, fx.creditor.id, Fixture::payer(&payer))
            .await
            .unwrap();
        let item = NewItem::new(
            Source::new("tributi", format!("TARI-{n}")),
            fx.tari.id,
            "TARI 2026",
            Money::parse_eur("80.00").unwrap(),
        )
        .with_extra("year", "2026");
        payments.add_item(&actor, cart.id, item).await.unwrap();
        let method = if n < 25 {
            fx.method(MethodKind::Card).id
        } else {
            transfer.id
        };
        let c = payments
            .checkout(&actor, cart.id, method, "k")
            .await
            .unwrap();
        if n < 25 {
            cards.push(c.transaction.id);
        }
    }
    clock.advance(Duration::from_secs(600));
    // Ten a pass: three passes ask about every card payment, each pass goes on from where
    // the last stopped, and no pass reads a transfer.
    let mut asked_per_pass = Vec::new();
    for _ in 0..3 {
        let before = counting.1.lock().unwrap().len();
        let report = payments
            .reconcile_pending(Duration::from_secs(60), 10)
            .await
            .unwrap();
        assert_eq!(report.skipped, 0, "nothing read that could not be asked");
        asked_per_pass.push(counting.1.lock().unwrap().len() - before);
    }
    assert_eq!(asked_per_pass, [10, 10, 10]);
    let asked = counting.1.lock().unwrap().clone();
    let mut distinct = asked.clone();
    distinct.sort();
    distinct.dedup();
    cards.sort();
    assert_eq!(distinct, cards, "every card payment asked about in turn");
    // The first two passes asked about twenty different ones.
    let mut first = asked[..20].to_vec();
    first.sort();
    first.dedup();
    assert_eq!(first.len(), 20);
}
