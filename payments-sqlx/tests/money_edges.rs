//! Money at the edges of a transaction's life, through the service, on every store: the
//! in-memory one, a SQLite file and (with `DATABASE_URL`) PostgreSQL.
//!
//! The rule these tests hold the library to is DESIGN.md's "Money is a fact": a
//! provider's verified report that money was taken is recorded whatever state the
//! transaction is in; each item settles once; anything odd is an exception an operator
//! sees; a double payment can be given back in one call.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::pagopa::{NoticeNumber, PagoPaCreditor, PagoPaGateway};
use payments_gateways::sandbox::{CallbackBody, SandboxGateway};

const PAGOPA_KEY: &str = "the station's key for receipts";

/// The stores to run on: memory and SQLite always, PostgreSQL when `DATABASE_URL` says.
async fn stores(test: &str) -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut out: Vec<(&'static str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(InMemoryStore::new())),
        ("sqlite", Arc::new(common::sqlite().await)),
    ];
    if let Some(url) = common::postgres_url(test) {
        out.push(("postgres", Arc::new(common::postgres(&url).await)));
    }
    out
}

struct Env {
    name: &'static str,
    payments: Payments,
    sandbox: Arc<SandboxGateway>,
    pagopa: Arc<PagoPaGateway>,
    notifier: Arc<RecordingNotifier>,
    tributi: Arc<RecordingListener>,
    clock: Arc<ManualClock>,
    fx: Fixture,
    manager: Actor,
}

impl Env {
    async fn new(name: &'static str, store: Arc<dyn Store>) -> Env {
        let sandbox = Arc::new(SandboxGateway::new("money-edges-key"));
        let pagopa = Arc::new(PagoPaGateway::new(store.clone(), PAGOPA_KEY).unwrap());
        let notifier = Arc::new(RecordingNotifier::new());
        let tributi = Arc::new(RecordingListener::new());
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
        ));
        let payments = Payments::builder()
            .store(store)
            .gateway(sandbox.clone())
            .gateway(pagopa.clone())
            .notifier(notifier.clone())
            .listener("tributi", tributi.clone())
            .clock(clock.clone())
            .config_cache_ttl(Duration::ZERO)
            .return_url("https://portale.example.it/esito")
            .build()
            .unwrap();
        let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
            .await
            .unwrap();
        let pagopa_method = PaymentMethod::new(fx.creditor.id, MethodKind::PagoPa, "pagopa");
        payments
            .enable_method(&Actor::System, &pagopa_method)
            .await
            .unwrap();
        pagopa
            .set_creditor(
                &fx.creditor,
                PagoPaCreditor::new("02").unwrap().notices_only(),
            )
            .unwrap();
        let manager = Actor::operator(fx.creditor.id, Role::Manager, "anna");
        Env {
            name,
            payments,
            sandbox,
            pagopa,
            notifier,
            tributi,
            clock,
            fx,
            manager,
        }
    }

    /// `payer`'s cart with TARI items `(key, amount)`.
    async fn cart(&self, payer: &str, items: &[(&str, &str)]) -> CartId {
        let actor = Actor::payer(payer);
        let cart = self
            .payments
            .open_cart(&actor, self.fx.creditor.id, Fixture::payer(payer))
            .await
            .unwrap();
        for (key, amount) in items {
            self.payments
                .add_item(&actor, cart.id, common::tari(&self.fx, key, amount))
                .await
                .unwrap();
        }
        cart.id
    }

    async fn checkout(&self, payer: &str, cart: CartId, kind: MethodKind, key: &str) -> Checkout {
        let method = self
            .payments
            .methods(self.fx.creditor.id)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.kind == kind)
            .unwrap();
        self.payments
            .checkout(&Actor::payer(payer), cart, method.id, key)
            .await
            .unwrap_or_else(|e| panic!("{}: checkout: {e}", self.name))
    }

    /// The callback the sandbox sends for `checkout` with `outcome`, signed, whatever the
    /// sandbox's page says now: a provider that took the money before its page closed.
    fn provider_says(&self, checkout: &Checkout, outcome: PaymentOutcome) -> CallbackRequest {
        self.sandbox.signed_callback(&CallbackBody {
            event_id: format!("evt-{}-{outcome:?}", checkout.transaction.id),
            session: common::session(checkout),
            transaction_id: checkout.transaction.id.to_string(),
            status: outcome,
            amount: checkout.transaction.total.amount().to_string(),
            currency: "EUR".into(),
        })
    }

    async fn tx(&self, id: TransactionId) -> Transaction {
        self.payments.transaction(&self.manager, id).await.unwrap()
    }

    async fn item_state(&self, checkout: &Checkout, line: usize) -> ItemState {
        self.payments
            .store()
            .item(checkout.transaction.lines[line].item_id)
            .await
            .unwrap()
            .unwrap()
            .state
    }

    async fn exceptions(&self) -> Vec<Exception> {
        self.payments
            .exceptions(&self.manager, &ExceptionQuery::new(self.fx.creditor.id))
            .await
            .unwrap()
    }

    /// Delivers the outbox twice (the second pass finds nothing due) and returns the kinds
    /// of the mails sent so far.
    async fn deliver(&self) -> Vec<NotificationKind> {
        self.payments.dispatch_outbox().await.unwrap();
        assert_eq!(
            self.payments.dispatch_outbox().await.unwrap().claimed(),
            0,
            "{}: each message once",
            self.name
        );
        self.notifier.sent().iter().map(|(n, _)| n.kind).collect()
    }

    /// A pagoPA receipt for `notice` of `cents`, as the node sends it.
    fn receipt(&self, receipt_id: &str, notice: &str, cents: i64) -> CallbackRequest {
        let n = NoticeNumber::parse(notice).unwrap();
        let euros = |c: i64| format!("{}.{:02}", c / 100, c % 100);
        let first = cents - cents / 4;
        let body = include_str!("../../payments-gateways/tests/data/pasendrt.xml")
            .replace("{RECEIPT_ID}", receipt_id)
            .replace("{NOTICE}", notice)
            .replace("{FISCAL}", &self.fx.creditor.fiscal_code)
            .replace("{IUV}", n.iuv())
            .replace("{AMOUNT}", &euros(cents))
            .replace("{TRANSFER_1}", &euros(first))
            .replace("{TRANSFER_2}", &euros(cents - first))
            .replace("{DESCRIPTION}", "TARI 2026")
            .replace("{PAID_AT}", "2026-11-20T17:48:22");
        self.pagopa.authenticated_request(body)
    }
}

/// How the first transaction ended before its money came.
#[derive(Debug, Clone, Copy)]
enum End {
    Expiry,
    Cancel,
    Failure,
}

async fn late_success(env: &Env, end: End, paid_meanwhile: bool) {
    let case = format!(
        "{} after {end:?}, paid meanwhile: {paid_meanwhile}",
        env.name
    );
    let payer = format!("p{}", uuid::Uuid::now_v7().simple());
    let cart = env.cart(&payer, &[("a", "80.00"), ("b", "20.00")]).await;
    let first = env.checkout(&payer, cart, MethodKind::Card, "first").await;
    let t1 = first.transaction.id;
    match end {
        End::Expiry => {
            env.clock.advance(Duration::from_secs(31 * 60));
            env.payments.expire_due().await.unwrap();
            assert_eq!(env.tx(t1).await.status, TxStatus::Expired, "{case}");
        }
        End::Cancel => {
            env.payments
                .cancel(&Actor::payer(payer.as_str()), t1)
                .await
                .unwrap();
        }
        End::Failure => {
            let failed = env.provider_says(&first, PaymentOutcome::Failed);
            env.payments
                .handle_callback("sandbox", &failed)
                .await
                .unwrap();
        }
    }
    let ended = env.tx(t1).await.status;
    assert!(ended.is_late(), "{case}: {ended}");
    assert_eq!(env.item_state(&first, 0).await, ItemState::Open, "{case}");

    // Meanwhile the payer pays the same items again, and that payment goes through.
    let second = if paid_meanwhile {
        let second = env.checkout(&payer, cart, MethodKind::Card, "second").await;
        let paid = env
            .sandbox
            .complete(&common::session(&second), PaymentOutcome::Paid);
        env.payments
            .handle_callback("sandbox", &paid.unwrap())
            .await
            .unwrap();
        assert_eq!(env.tx(second.transaction.id).await.status, TxStatus::Paid);
        Some(second)
    } else {
        None
    };
    let heard_before = env.tributi.heard().len();
    let mails_before = env.deliver().await.len();
    let heard_second = env.tributi.heard().len() - heard_before;

    // Then the first provider's success arrives: recorded, never refused.
    let late = env.provider_says(&first, PaymentOutcome::Paid);
    let out = env
        .payments
        .handle_callback("sandbox", &late)
        .await
        .unwrap_or_else(|e| panic!("{case}: a late payment must not be refused: {e}"));
    assert!(out.applied, "{case}");
    assert_eq!(
        out.transaction.status,
        TxStatus::Paid,
        "{case}: the body holds the money"
    );
    let exception = out.exception.clone().expect("an exception");
    let last = env
        .payments
        .events(&env.manager, t1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.from, last.to),
        (Some(ended), TxStatus::Paid),
        "{case}"
    );
    let replay = env
        .payments
        .handle_callback("sandbox", &late)
        .await
        .unwrap();
    assert!(!replay.applied, "{case}: once");

    let mut mails = env.deliver().await[mails_before..].to_vec();
    mails.sort_by_key(|k| format!("{k:?}"));
    let heard_late = env.tributi.heard().len() - heard_before - heard_second;
    match &second {
        None => {
            // The items were free: the late payment pays them, as a payment always does.
            assert_eq!(exception.kind, ExceptionKind::LatePayment, "{case}");
            assert!(
                last.note.as_deref().unwrap().contains("Late payment"),
                "{case}"
            );
            assert_eq!(
                env.item_state(&first, 0).await,
                ItemState::Paid(t1),
                "{case}"
            );
            assert_eq!(
                env.item_state(&first, 1).await,
                ItemState::Paid(t1),
                "{case}"
            );
            assert_eq!(heard_late, 2, "{case}: the module hears of both items");
            assert_eq!(
                mails,
                [NotificationKind::CreditorNotice, NotificationKind::Receipt],
                "{case}"
            );
        }
        Some(second) => {
            // Each item settles once: the second payment's; the first is the body's money
            // twice, named for operators, and the payer is told it will be given back.
            assert_eq!(exception.kind, ExceptionKind::DoublePayment, "{case}");
            assert_eq!(exception.lines, [0, 1], "{case}");
            assert_eq!(exception.amount, Some(first.transaction.total), "{case}");
            let s2 = second.transaction.id;
            assert_eq!(
                env.item_state(&first, 0).await,
                ItemState::Paid(s2),
                "{case}"
            );
            assert_eq!(
                env.item_state(&first, 1).await,
                ItemState::Paid(s2),
                "{case}"
            );
            assert_eq!(heard_second, 2, "{case}");
            assert_eq!(heard_late, 0, "{case}: no item is settled twice");
            assert_eq!(
                mails,
                [
                    NotificationKind::CreditorNotice,
                    NotificationKind::DuplicatePayment,
                    NotificationKind::Receipt,
                ],
                "{case}"
            );
            let told = env
                .notifier
                .sent()
                .into_iter()
                .map(|(n, _)| n)
                .find(|n| n.kind == NotificationKind::DuplicatePayment)
                .unwrap();
            assert_eq!(
                told.summary.returned,
                Some(first.transaction.total),
                "{case}"
            );

            // One call gives it back through the provider, and resolves the exception.
            let refund = env
                .payments
                .refund_exception(&env.manager, exception.id)
                .await
                .unwrap_or_else(|e| panic!("{case}: refund: {e}"));
            assert_eq!(refund.status, RefundStatus::Succeeded, "{case}");
            assert_eq!(refund.amount, first.transaction.total, "{case}");
            assert_eq!(
                env.sandbox.refunds(),
                [(t1, first.transaction.total)],
                "{case}: the provider gave it back"
            );
            let again = env
                .payments
                .refund_exception(&env.manager, exception.id)
                .await;
            assert!(matches!(again, Err(Error::Conflict(_))), "{case}: once");
            let resolved = env
                .payments
                .exception(&env.manager, exception.id)
                .await
                .unwrap();
            assert_eq!(resolved.status, ExceptionStatus::Resolved, "{case}");
            assert_eq!(resolved.refund_id, Some(refund.id), "{case}");
            assert_eq!(env.tx(t1).await.status, TxStatus::Refunded, "{case}");
            let refund_mails = env.deliver().await;
            assert_eq!(
                refund_mails[refund_mails.len() - 2..],
                [
                    NotificationKind::RefundReceipt,
                    NotificationKind::RefundNotice
                ],
                "{case}"
            );
            assert!(
                env.tributi.refunds().is_empty(),
                "{case}: the module was told of the second payment, which stands"
            );
            assert_eq!(
                env.item_state(&first, 0).await,
                ItemState::Paid(s2),
                "{case}: still paid"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_success_is_recorded_after_expiry_cancel_or_failure() {
    for (name, store) in stores("a_late_success_is_recorded_after_expiry_cancel_or_failure").await {
        for end in [End::Expiry, End::Cancel, End::Failure] {
            for paid_meanwhile in [false, true] {
                // A service of its own each time, on a store of its kind.
                let store: Arc<dyn Store> = match name {
                    "memory" => Arc::new(InMemoryStore::new()),
                    _ => store.clone(),
                };
                let env = Env::new(name, store).await;
                late_success(&env, end, paid_meanwhile).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notice_paid_on_its_own_survives_the_expiry_of_the_rest() {
    for (name, store) in stores("a_notice_paid_on_its_own_survives_the_expiry_of_the_rest").await {
        let env = Env::new(name, store).await;
        let mario = Actor::payer("mario");
        let cart = env
            .cart("mario", &[("tari-1", "120.50"), ("tari-2", "80.00")])
            .await;
        let checkout = env
            .checkout("mario", cart, MethodKind::PagoPa, "notices")
            .await;
        let Instruction::PagoPa(p) = &checkout.instruction else {
            panic!("{name}: notices")
        };
        let (n1, n2) = (p.notices[0].clone(), p.notices[1].clone());
        let t = checkout.transaction.id;

        // The first notice is paid at a post office.
        let paid = env
            .payments
            .handle_callback("pagopa", &env.receipt("r-1", &n1.notice_number, 12050))
            .await
            .unwrap();
        assert!(paid.applied);
        assert_eq!(paid.transaction.status, TxStatus::Pending, "{name}");
        assert_eq!(
            env.item_state(&checkout, 0).await,
            ItemState::Paid(t),
            "{name}"
        );
        env.deliver().await;
        assert_eq!(
            env.tributi
                .heard()
                .iter()
                .map(|s| s.source.key.as_str())
                .collect::<Vec<_>>(),
            ["tari-1"],
            "{name}: the module hears at once"
        );

        // The rest expires: the paid line stays paid, only the other item is free again.
        env.clock.advance(Duration::from_secs(31 * 24 * 3600));
        assert_eq!(env.payments.expire_due().await.unwrap(), 1, "{name}");
        let ended = env.tx(t).await;
        assert_eq!(ended.status, TxStatus::PartiallyPaid, "{name}");
        assert!(ended.lines[0].paid_at.is_some() && ended.lines[1].paid_at.is_none());
        assert_eq!(
            env.item_state(&checkout, 0).await,
            ItemState::Paid(t),
            "{name}"
        );
        assert_eq!(
            env.item_state(&checkout, 1).await,
            ItemState::Open,
            "{name}"
        );
        let contents = env.payments.cart(&mario, cart).await.unwrap();
        assert_eq!(
            contents
                .items
                .iter()
                .map(|i| i.source.key.as_str())
                .collect::<Vec<_>>(),
            ["tari-2"],
            "{name}: the paid notice never comes back to the cart"
        );
        let mut partly = MovementQuery::new(env.fx.creditor.id);
        partly.statuses = vec![TxStatus::PartiallyPaid];
        let found = env.payments.search(&env.manager, &partly).await.unwrap();
        assert_eq!(found.count, 1, "{name}: operators filter on it");

        // The other item is paid by card; the second notice's money, coming late, finds it
        // paid: a double payment, not a second settlement.
        let card = env.checkout("mario", cart, MethodKind::Card, "card").await;
        assert_eq!(card.transaction.lines.len(), 1);
        let ok = env
            .sandbox
            .complete(&common::session(&card), PaymentOutcome::Paid)
            .unwrap();
        env.payments.handle_callback("sandbox", &ok).await.unwrap();
        let late = env
            .payments
            .handle_callback("pagopa", &env.receipt("r-2", &n2.notice_number, 8000))
            .await
            .unwrap();
        let e = late.exception.expect("a double payment");
        assert_eq!(e.kind, ExceptionKind::DoublePayment, "{name}");
        assert_eq!(e.lines, [1], "{name}");
        assert_eq!(late.transaction.status, TxStatus::PartiallyPaid, "{name}");
        env.deliver().await;
        assert_eq!(
            env.tributi.heard().len(),
            2,
            "{name}: each item settled once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_receipts_for_one_notice_make_one_match() {
    for (name, store) in stores("sixteen_receipts_for_one_notice_make_one_match").await {
        let env = Arc::new(Env::new(name, store).await);
        let cart = env.cart("mario", &[("tari-1", "50.00")]).await;
        let checkout = env
            .checkout("mario", cart, MethodKind::PagoPa, "notice")
            .await;
        let Instruction::PagoPa(p) = &checkout.instruction else {
            panic!("notices")
        };
        let notice = p.notices[0].notice_number.clone();
        let mut tasks = Vec::new();
        for n in 0..16 {
            let env = env.clone();
            let notice = notice.clone();
            tasks.push(tokio::spawn(async move {
                let receipt = env.receipt(&format!("r-{n}"), &notice, 5000);
                env.payments.handle_callback("pagopa", &receipt).await
            }));
        }
        let mut matched = 0;
        let mut doubles = 0;
        for t in tasks {
            let out = t.await.unwrap().unwrap();
            assert!(out.applied, "{name}: every receipt is recorded");
            match out.exception.map(|e| e.kind) {
                None => matched += 1,
                Some(ExceptionKind::DoublePayment) => doubles += 1,
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!((matched, doubles), (1, 15), "{name}");
        assert_eq!(env.tx(checkout.transaction.id).await.status, TxStatus::Paid);
        let ledger = env.exceptions().await;
        assert_eq!(ledger.len(), 15, "{name}");
        env.deliver().await;
        assert_eq!(env.tributi.heard().len(), 1, "{name}: settled once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refund_tells_the_payer_the_body_and_each_module_once() {
    for (name, store) in stores("a_refund_tells_the_payer_the_body_and_each_module_once").await {
        let env = Env::new(name, store).await;
        let cart = env.cart("mario", &[("a", "80.00"), ("b", "20.00")]).await;
        let checkout = env.checkout("mario", cart, MethodKind::Card, "k").await;
        let ok = env
            .sandbox
            .complete(&common::session(&checkout), PaymentOutcome::Paid)
            .unwrap();
        env.payments.handle_callback("sandbox", &ok).await.unwrap();
        env.deliver().await;
        let t = checkout.transaction.id;

        // The second line, given back in full.
        let one = env
            .payments
            .refund(
                &env.manager,
                t,
                RefundRequest::partial(Money::parse_eur("20").unwrap(), "line-2").of_lines([1]),
            )
            .await
            .unwrap();
        assert_eq!(one.status, RefundStatus::Succeeded, "{name}");
        assert_eq!(one.lines.len(), 1);
        assert_eq!(one.lines[0].line, 1);
        let mails = env.deliver().await;
        assert_eq!(
            mails[mails.len() - 2..],
            [
                NotificationKind::RefundReceipt,
                NotificationKind::RefundNotice
            ],
            "{name}"
        );
        let told = env.notifier.sent().pop().unwrap().0;
        assert_eq!(told.summary.returned, Some(Money::parse_eur("20").unwrap()));
        let refunds = env.tributi.refunds();
        assert_eq!(refunds.len(), 1, "{name}");
        assert_eq!(refunds[0].source.key, "b");
        assert!(refunds[0].in_full, "{name}");
        assert_eq!(env.item_state(&checkout, 1).await, ItemState::Refunded(t));
        assert_eq!(env.item_state(&checkout, 0).await, ItemState::Paid(t));
        assert_eq!(env.tx(t).await.status, TxStatus::Paid, "{name}: partly");

        // The rest: the transaction is refunded, the first module told, each once.
        env.payments
            .refund(&env.manager, t, RefundRequest::full("rest"))
            .await
            .unwrap();
        env.deliver().await;
        let refunds = env.tributi.refunds();
        assert_eq!(
            refunds
                .iter()
                .map(|r| (r.source.key.as_str(), r.amount, r.in_full))
                .collect::<Vec<_>>(),
            [
                ("b", Money::parse_eur("20").unwrap(), true),
                ("a", Money::parse_eur("80").unwrap(), true)
            ],
            "{name}"
        );
        assert_eq!(env.tx(t).await.status, TxStatus::Refunded, "{name}");
        assert_eq!(
            env.notifier
                .sent()
                .iter()
                .filter(|(n, _)| n.kind == NotificationKind::RefundReceipt)
                .count(),
            2,
            "{name}: one receipt per refund"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_payment_of_a_paid_transaction_is_given_back_beside_it() {
    for (name, store) in
        stores("a_second_payment_of_a_paid_transaction_is_given_back_beside_it").await
    {
        let env = Env::new(name, store).await;
        let cart = env.cart("mario", &[("a", "80.00"), ("b", "20.00")]).await;
        let checkout = env.checkout("mario", cart, MethodKind::Card, "k").await;
        let ok = env
            .sandbox
            .complete(&common::session(&checkout), PaymentOutcome::Paid)
            .unwrap();
        env.payments.handle_callback("sandbox", &ok).await.unwrap();
        let t = checkout.transaction.id;
        env.deliver().await;

        // The provider tells of a second payment of the same transaction, under another
        // reference of its own: the body holds the money twice.
        let again = env.sandbox.signed_callback(&CallbackBody {
            event_id: "evt-second".into(),
            session: "sbx_second_payment".into(),
            transaction_id: t.to_string(),
            status: PaymentOutcome::Paid,
            amount: "100.00".into(),
            currency: "EUR".into(),
        });
        let out = env
            .payments
            .handle_callback("sandbox", &again)
            .await
            .unwrap();
        assert!(out.applied, "{name}");
        let e = out.exception.expect("a double payment");
        assert_eq!(e.kind, ExceptionKind::DoublePayment, "{name}");
        assert!(e.excess, "{name}: beyond the transaction's own payment");
        assert_eq!(e.amount, Some(checkout.transaction.total));
        assert_eq!(out.transaction.status, TxStatus::Paid);

        // Given back beside the payment, which stands with its items and modules.
        let refund = env
            .payments
            .refund_exception(&env.manager, e.id)
            .await
            .unwrap();
        assert!(refund.excess, "{name}");
        assert_eq!(refund.status, RefundStatus::Succeeded);
        assert_eq!(env.tx(t).await.status, TxStatus::Paid, "{name}: stands");
        assert_eq!(env.item_state(&checkout, 0).await, ItemState::Paid(t));
        let mails = env.deliver().await;
        assert_eq!(
            mails[mails.len() - 2..],
            [
                NotificationKind::RefundReceipt,
                NotificationKind::RefundNotice
            ],
            "{name}"
        );
        assert!(env.tributi.refunds().is_empty(), "{name}: no module told");

        // The payment itself can still be given back, in full.
        let full = env
            .payments
            .refund(&env.manager, t, RefundRequest::full("all"))
            .await
            .unwrap();
        assert_eq!(full.amount, checkout.transaction.total, "{name}");
        assert_eq!(env.tx(t).await.status, TxStatus::Refunded, "{name}");
        env.deliver().await;
        assert_eq!(env.tributi.refunds().len(), 2, "{name}: each module once");
        assert!(env.tributi.refunds().iter().all(|r| r.in_full));
    }
}

/// Two instances of the service on one store, as two servers behind a balancer. The one
/// that starts a payment keeps the transaction as its start left it, for the provider's
/// answer; the copy must never stand in for what the store holds. When the other
/// instance ends the transaction first, the provider's payment reaching the first one is
/// still recorded as a late payment ("money is a fact", DESIGN.md); when the other one
/// applied the payment first, the same callback is a replay, recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_reaching_the_instance_that_started_it_sees_what_the_other_did() {
    for (name, store) in
        stores("a_payment_reaching_the_instance_that_started_it_sees_what_the_other_did").await
    {
        let env = Env::new(name, store.clone()).await;
        let other = Payments::builder()
            .store(store)
            .gateway(env.sandbox.clone())
            .gateway(env.pagopa.clone())
            .notifier(env.notifier.clone())
            .listener("tributi", env.tributi.clone())
            .clock(env.clock.clone())
            .config_cache_ttl(Duration::ZERO)
            .build()
            .unwrap();

        // Ended by the other instance, then paid at the provider.
        let payer = format!("p{}", uuid::Uuid::now_v7().simple());
        let cart = env.cart(&payer, &[("a", "30.00")]).await;
        let first = env.checkout(&payer, cart, MethodKind::Card, "first").await;
        let t1 = first.transaction.id;
        other
            .cancel(&Actor::payer(payer.as_str()), t1)
            .await
            .unwrap();
        let late = env.provider_says(&first, PaymentOutcome::Paid);
        let out = env
            .payments
            .handle_callback("sandbox", &late)
            .await
            .unwrap_or_else(|e| panic!("{name}: a late payment must not be refused: {e}"));
        assert!(out.applied, "{name}");
        assert_eq!(out.transaction.status, TxStatus::Paid, "{name}");
        assert_eq!(
            out.exception.map(|e| e.kind),
            Some(ExceptionKind::LatePayment),
            "{name}: the cancelled transaction was paid late"
        );
        let events = env.payments.events(&env.manager, t1).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (last.from, last.to),
            (Some(TxStatus::Cancelled), TxStatus::Paid),
            "{name}: moved from the state the store held, not the started copy's"
        );
        assert_eq!(
            env.item_state(&first, 0).await,
            ItemState::Paid(t1),
            "{name}"
        );

        // Paid through the other instance; the provider's retry reaches the first one.
        let payer = format!("p{}", uuid::Uuid::now_v7().simple());
        let cart = env.cart(&payer, &[("b", "40.00")]).await;
        let second = env.checkout(&payer, cart, MethodKind::Card, "second").await;
        let t2 = second.transaction.id;
        let paid = env.provider_says(&second, PaymentOutcome::Paid);
        assert!(
            other
                .handle_callback("sandbox", &paid)
                .await
                .unwrap()
                .applied
        );
        let events = env.payments.events(&env.manager, t2).await.unwrap().len();
        let exceptions = env.exceptions().await.len();
        let replay = env
            .payments
            .handle_callback("sandbox", &paid)
            .await
            .unwrap();
        assert!(!replay.applied, "{name}: a replay");
        assert_eq!(replay.transaction.status, TxStatus::Paid, "{name}");
        assert_eq!(replay.exception, None, "{name}");
        assert_eq!(
            env.payments.events(&env.manager, t2).await.unwrap().len(),
            events,
            "{name}: paid once"
        );
        assert_eq!(env.exceptions().await.len(), exceptions, "{name}");
    }
}
