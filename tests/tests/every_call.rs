//! Every public `Payments` call that takes an actor, run by every kind of actor: the payer,
//! another payer, a viewer and a manager of this body and of another, the system and a
//! gateway. Each answer is checked: allowed (any answer but `Forbidden`: the call may still
//! find the state wrong) or refused with `Forbidden`, and a refused call changes nothing.
//!
//! The calls that take no actor are the host's own (the worker's loops, callbacks a
//! provider signs, the configuration a portal reads): `handle_callback`, `dispatch_outbox`,
//! `expire_due`, `expire_positions`, `send_reminders`, `reconcile`, `reconcile_pending`,
//! `run_worker`, `creditor`, `payment_types`, `methods`, `position_option_of`,
//! `refundable`, `clock`, `store`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;
use rust_decimal::Decimal;

const KEY: &str = "every-call-signing-key";
const FISCAL_CODE: &str = "RSSMRA85T10A562S";

/// Notice numbers in sequence, and every transfer to the body's own account.
#[derive(Debug, Default)]
struct Notices(AtomicU64);

#[async_trait]
impl NoticeIssuer for Notices {
    async fn issue(&self, _: &Creditor, count: u32) -> Result<Vec<String>> {
        Ok((0..count)
            .map(|_| format!("30100000000{:07}", self.0.fetch_add(1, Ordering::Relaxed)))
            .collect())
    }
    fn default_transfer(
        &self,
        creditor: &Creditor,
        _: &PaymentType,
        amount: &Money,
        remittance: &str,
    ) -> Result<Transfer> {
        Ok(Transfer::to_iban(
            creditor.fiscal_code.as_str(),
            "IT60X0542811101000000123456",
            *amount,
            remittance,
            "9/0101101IM/",
        ))
    }
}

/// Who may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Reads what a payer has: the payer, an operator of the body, the system.
    PayerRead,
    /// Acts for a payer: the payer, a manager of the body, the system.
    PayerAct,
    /// Only the payer themself (reporting their own bank transfer).
    PayerOnly,
    /// Reads the body's data: its operators, the system.
    OperatorRead,
    /// Changes the body's data: its managers, the system.
    Manager,
    /// The system alone.
    System,
    /// The gateway the thing came through, alone.
    Gateway,
}

/// The kinds of actor, each with a name for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Payer,
    OtherPayer,
    Viewer,
    Manager,
    OtherViewer,
    OtherManager,
    System,
    Gateway,
}

const EVERYONE: [Who; 8] = [
    Who::Payer,
    Who::OtherPayer,
    Who::Viewer,
    Who::Manager,
    Who::OtherViewer,
    Who::OtherManager,
    Who::System,
    Who::Gateway,
];

impl Access {
    fn allows(self, who: Who) -> bool {
        use Who::*;
        match self {
            Access::PayerRead => matches!(who, Payer | Viewer | Manager | System),
            Access::PayerAct => matches!(who, Payer | Manager | System),
            Access::PayerOnly => who == Payer,
            Access::OperatorRead => matches!(who, Viewer | Manager | System),
            Access::Manager => matches!(who, Manager | System),
            Access::System => who == System,
            Access::Gateway => who == Gateway,
        }
    }
}

macro_rules! calls {
    ($($name:ident => $access:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(clippy::enum_variant_names)]
        enum Call { $($name),* }
        const CALLS: &[(Call, Access)] = &[$((Call::$name, Access::$access)),*];
    };
}

calls! {
    Transaction => PayerRead,
    Receipt => PayerRead,
    LinePayments => PayerRead,
    TransactionReceipts => PayerRead,
    Events => PayerRead,
    History => PayerRead,
    Refunds => PayerRead,
    Cart => PayerRead,
    CartMethods => PayerRead,
    Position => PayerRead,
    PayerPositions => PayerRead,
    OpenCart => PayerAct,
    AddItem => PayerAct,
    AddFreeItem => PayerAct,
    RemoveItem => PayerAct,
    Checkout => PayerAct,
    Cancel => PayerAct,
    AddPositionOption => PayerAct,
    ReportTransfer => PayerOnly,
    Search => OperatorRead,
    BankEntries => OperatorRead,
    ProviderReceipts => OperatorRead,
    Exceptions => OperatorRead,
    Exception => OperatorRead,
    Outbox => OperatorRead,
    Positions => OperatorRead,
    PositionEvents => OperatorRead,
    UpdateItem => Manager,
    WithdrawItem => Manager,
    RecordPayment => Manager,
    RecordBankEntry => Manager,
    ConfirmPayment => Manager,
    RejectReport => Manager,
    DefinePaymentType => Manager,
    EnableMethod => Manager,
    ResolveException => Manager,
    RefundException => Manager,
    RetryMessage => Manager,
    RegisterPosition => Manager,
    RegisterPositions => Manager,
    ImportPositionsCsv => Manager,
    PublishPosition => Manager,
    UpdatePosition => Manager,
    InvalidatePosition => Manager,
    SyncPosition => Manager,
    Refund => Manager,
    RetryRefund => Manager,
    RegisterCreditor => System,
    RecoverReceipts => System,
    RecordProviderReceipt => Gateway,
}

/// A body with everything a call can be about: Alice's cart with an open item, her
/// pending and paid transactions, an exception, outbox messages, a debt position of hers,
/// and another body.
struct World {
    payments: Payments,
    sandbox: Arc<SandboxGateway>,
    fx: Fixture,
    other: Creditor,
    cart: CartId,
    item: ItemId,
    pending: TransactionId,
    paid: TransactionId,
    exception: ExceptionId,
    message: OutboxId,
    position: DebtPositionId,
}

async fn world() -> World {
    let sandbox = Arc::new(SandboxGateway::new(KEY));
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 5, 4, 10, 0, 0).single().unwrap(),
    ));
    let payments = Payments::builder()
        .store(Arc::new(InMemoryStore::new()))
        .gateway(sandbox.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .listener("tributi", Arc::new(RecordingListener::new()))
        .notice_issuer(Arc::new(Notices::default()))
        .clock(clock)
        .return_url("http://localhost:3000/return")
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    let other = Creditor::new("Comune di Altrove", "00488410010", "altrove@example.it").unwrap();
    payments
        .register_creditor(&Actor::System, &other)
        .await
        .unwrap();
    let alice = Actor::payer("alice");
    let card = fx.method(MethodKind::Card).id;
    let tari = |key: &str| {
        NewItem::new(
            Source::new("tributi", key),
            fx.tari.id,
            format!("TARI {key}"),
            Money::parse_eur("80.00").unwrap(),
        )
        .with_extra("year", "2026")
    };
    let cart = payments
        .open_cart(&alice, fx.creditor.id, Fixture::payer("alice"))
        .await
        .unwrap();
    let pay = |c: &Checkout| {
        let Instruction::Redirect { url, .. } = &c.instruction else {
            panic!("a hosted page")
        };
        sandbox
            .complete(url.rsplit('/').next().unwrap(), PaymentOutcome::Paid)
            .unwrap()
    };
    let mut checkouts = Vec::new();
    for key in ["paid", "late", "pending"] {
        payments.add_item(&alice, cart.id, tari(key)).await.unwrap();
        let c = payments.checkout(&alice, cart.id, card, key).await.unwrap();
        match key {
            "paid" => {
                payments.handle_callback("sandbox", &pay(&c)).await.unwrap();
            }
            "late" => {
                // A verified payment of another amount: an exception for the operators.
                let Instruction::Redirect { url, .. } = &c.instruction else {
                    panic!("a hosted page")
                };
                let odd = sandbox.signed_callback(&payments_gateways::sandbox::CallbackBody {
                    event_id: "odd".into(),
                    session: url.rsplit('/').next().unwrap().to_owned(),
                    transaction_id: c.transaction.id.to_string(),
                    status: PaymentOutcome::Paid,
                    amount: "79.99".into(),
                    currency: "EUR".into(),
                });
                payments.handle_callback("sandbox", &odd).await.unwrap();
                payments.cancel(&alice, c.transaction.id).await.unwrap();
            }
            _ => {}
        }
        checkouts.push(c);
    }
    let exception = payments
        .exceptions(&Actor::System, &ExceptionQuery::new(fx.creditor.id))
        .await
        .unwrap()[0]
        .id;
    let item = payments
        .add_item(&alice, cart.id, tari("open"))
        .await
        .unwrap()
        .id;
    let message = payments
        .outbox(&Actor::System, fx.creditor.id, OutboxQuery::default())
        .await
        .unwrap()[0]
        .id;
    let position = payments
        .register_position(
            &Actor::System,
            fx.creditor.id,
            new_position("P1", fx.tari.id),
        )
        .await
        .unwrap()
        .id;
    World {
        payments,
        sandbox,
        fx,
        other,
        cart: cart.id,
        item,
        pending: checkouts[2].transaction.id,
        paid: checkouts[0].transaction.id,
        exception,
        message,
        position,
    }
}

fn new_position(key: &str, payment_type: PaymentTypeId) -> NewDebtPosition {
    NewDebtPosition::new(
        "tributi",
        key,
        PositionPayer::new(FISCAL_CODE, "Mario Rossi").with_email("mario@example.it"),
        payment_type,
        "TARI 2026",
    )
    .valid_until(NaiveDate::from_ymd_opt(2026, 12, 31).unwrap())
    .with_single(NewOption::new(
        Money::parse_eur("300.00").unwrap(),
        NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
    ))
}

impl World {
    /// The actor of `who`; the payer is the one the call is about (Alice, or the debt
    /// position's payer for the calls about positions).
    fn actor(&self, who: Who, call: Call) -> Actor {
        let payer = match call {
            Call::Position | Call::PayerPositions | Call::AddPositionOption => FISCAL_CODE,
            _ => "alice",
        };
        match who {
            Who::Payer => Actor::payer(payer),
            Who::OtherPayer => Actor::payer("bob"),
            Who::Viewer => Actor::operator(self.fx.creditor.id, Role::Viewer, "vera"),
            Who::Manager => Actor::operator(self.fx.creditor.id, Role::Manager, "anna"),
            Who::OtherViewer => Actor::operator(self.other.id, Role::Viewer, "vito"),
            Who::OtherManager => Actor::operator(self.other.id, Role::Manager, "bruno"),
            Who::System => Actor::System,
            Who::Gateway => Actor::Gateway {
                id: GatewayId::from("sandbox"),
            },
        }
    }

    /// A digest of everything the calls can change, to show a refusal changed nothing.
    async fn state(&self) -> String {
        let p = &self.payments;
        let s = Actor::System;
        let c = self.fx.creditor.id;
        let mut out = String::new();
        for tx in [self.pending, self.paid] {
            out += &format!("{:?}", p.transaction(&s, tx).await.unwrap());
            out += &format!("{:?}", p.events(&s, tx).await.unwrap().len());
            out += &format!("{:?}", p.refunds(&s, tx).await.unwrap());
        }
        out += &format!("{:?}", p.cart(&s, self.cart).await.unwrap());
        out += &format!(
            "{:?}",
            p.exceptions(&s, &ExceptionQuery::new(c)).await.unwrap()
        );
        out += &format!(
            "{:?}",
            p.outbox(&s, c, OutboxQuery::default()).await.unwrap().len()
        );
        out += &format!(
            "{:?}",
            p.positions(&s, c, PositionQuery::of(c)).await.unwrap()
        );
        out += &format!("{:?}", p.payment_types(c).await.unwrap());
        out += &format!("{:?}", p.creditor(self.other.id).await.unwrap());
        out += &format!("{:?}", p.creditor(c).await.unwrap());
        out += &format!("{:?}", p.methods(c).await.unwrap());
        out += &format!(
            "{:?}",
            p.bank_entries(&s, &BankEntryQuery::new(c)).await.unwrap()
        );
        out += &format!(
            "{:?}",
            p.provider_receipts(&s, &ProviderReceiptQuery::new(c))
                .await
                .unwrap()
        );
        out
    }

    async fn call(&self, call: Call, actor: &Actor) -> Result<()> {
        let p = &self.payments;
        let c = self.fx.creditor.id;
        let eur = |s: &str| Money::parse_eur(s).unwrap();
        match call {
            Call::Transaction => p.transaction(actor, self.pending).await.map(drop),
            Call::Receipt => p.receipt(actor, self.paid).await.map(drop),
            Call::LinePayments => p.line_payments(actor, self.paid).await.map(drop),
            Call::TransactionReceipts => p.transaction_receipts(actor, self.paid).await.map(drop),
            Call::Events => p.events(actor, self.pending).await.map(drop),
            Call::History => p
                .history(
                    actor,
                    &HistoryQuery {
                        creditor_id: Some(c),
                        ..HistoryQuery::new("alice")
                    },
                )
                .await
                .map(drop),
            Call::Refunds => p.refunds(actor, self.paid).await.map(drop),
            Call::Cart => p.cart(actor, self.cart).await.map(drop),
            Call::CartMethods => p.cart_methods(actor, self.cart).await.map(drop),
            Call::Position => p.position(actor, self.position).await.map(drop),
            Call::PayerPositions => p.payer_positions(actor, c, FISCAL_CODE).await.map(drop),
            Call::OpenCart => p
                .open_cart(actor, c, Fixture::payer("alice"))
                .await
                .map(drop),
            Call::AddItem => p
                .add_item(
                    actor,
                    self.cart,
                    NewItem::new(
                        Source::new("tributi", "new"),
                        self.fx.tari.id,
                        "TARI new",
                        eur("3.00"),
                    )
                    .with_extra("year", "2026"),
                )
                .await
                .map(drop),
            Call::AddFreeItem => p
                .add_free_item(
                    actor,
                    self.cart,
                    NewFreeItem::new(self.fx.fees.id, "5", "Diritti pratica 2026/7")
                        .with_extra("case_number", "2026/7")
                        .with_extra("office", "edilizia"),
                )
                .await
                .map(drop),
            Call::RemoveItem => p.remove_item(actor, self.cart, self.item).await.map(drop),
            Call::Checkout => p
                .checkout(
                    actor,
                    self.cart,
                    self.fx.method(MethodKind::Card).id,
                    "again",
                )
                .await
                .map(drop),
            Call::Cancel => p.cancel(actor, self.pending).await.map(drop),
            Call::AddPositionOption => p
                .add_position_option(actor, self.position, 0)
                .await
                .map(drop),
            Call::ReportTransfer => {
                let report = TransferReport::parse("2026-05-04", "80,00", "CRO1", "", "")?;
                p.report_transfer(actor, self.pending, &report)
                    .await
                    .map(drop)
            }
            Call::Search => p.search(actor, &MovementQuery::new(c)).await.map(drop),
            Call::BankEntries => p
                .bank_entries(actor, &BankEntryQuery::new(c))
                .await
                .map(drop),
            Call::ProviderReceipts => p
                .provider_receipts(actor, &ProviderReceiptQuery::new(c))
                .await
                .map(drop),
            Call::Exceptions => p.exceptions(actor, &ExceptionQuery::new(c)).await.map(drop),
            Call::Exception => p.exception(actor, self.exception).await.map(drop),
            Call::Outbox => p.outbox(actor, c, OutboxQuery::default()).await.map(drop),
            Call::Positions => p.positions(actor, c, PositionQuery::of(c)).await.map(drop),
            Call::PositionEvents => p.position_events(actor, self.position).await.map(drop),
            Call::UpdateItem => p
                .update_item(actor, self.item, ItemUpdate::new().amount(eur("90.00")))
                .await
                .map(drop),
            Call::WithdrawItem => p.withdraw_item(actor, self.item).await.map(drop),
            Call::RecordPayment => p
                .record_payment(actor, self.pending, "TRN-1", &eur("80.00"), None)
                .await
                .map(drop),
            Call::RecordBankEntry => p
                .record_bank_entry(
                    actor,
                    &BankEntry {
                        creditor_id: c,
                        key: "E1".into(),
                        statement_id: "S1".into(),
                        imported_at: Utc::now(),
                        booked_on: None,
                        value_on: None,
                        info: None,
                        amount: Decimal::new(8000, 2),
                        currency: "EUR".into(),
                        debtor: None,
                        remittance: "TARI".into(),
                        reference: None,
                        outcome: BankEntryOutcome::Exception {
                            reason: "unknown".into(),
                            transaction_id: None,
                        },
                    },
                )
                .await
                .map(drop),
            Call::ConfirmPayment => p.confirm_payment(actor, self.pending, None).await.map(drop),
            Call::RejectReport => p.reject_report(actor, self.pending, None).await.map(drop),
            Call::DefinePaymentType => {
                let mut changed = self.fx.tari.clone();
                changed.name = "TARI - Tassa sui rifiuti".into();
                p.define_payment_type(actor, &changed).await
            }
            Call::EnableMethod => {
                let mut changed = self.fx.method(MethodKind::Card).clone();
                changed.enabled = false;
                p.enable_method(actor, &changed).await
            }
            Call::ResolveException => p
                .resolve_exception(actor, self.exception, "seen")
                .await
                .map(drop),
            Call::RefundException => p.refund_exception(actor, self.exception).await.map(drop),
            Call::RetryMessage => p.retry_message(actor, self.message).await.map(drop),
            Call::RegisterPosition => p
                .register_position(actor, c, new_position("P2", self.fx.tari.id))
                .await
                .map(drop),
            Call::RegisterPositions => p
                .register_positions(actor, c, [new_position("P3", self.fx.tari.id)])
                .await
                .map(drop),
            Call::ImportPositionsCsv => p
                .import_positions_csv(actor, c, "tributi", &b"key\n"[..])
                .await
                .map(drop),
            Call::PublishPosition => p.publish_position(actor, self.position).await.map(drop),
            Call::UpdatePosition => p
                .update_position(
                    actor,
                    self.position,
                    PositionChange {
                        reason: Some("TARI 2026 ricalcolata".into()),
                        options: Vec::new(),
                    },
                )
                .await
                .map(drop),
            Call::InvalidatePosition => p
                .invalidate_position(actor, self.position, "sent in error")
                .await
                .map(drop),
            Call::SyncPosition => p.sync_position(actor, self.position).await,
            Call::Refund => p
                .refund(actor, self.paid, RefundRequest::full("r1"))
                .await
                .map(drop),
            Call::RetryRefund => p
                .retry_refund(actor, self.paid, RefundId::new())
                .await
                .map(drop),
            Call::RegisterCreditor => {
                let mut changed = self.other.clone();
                changed.name = "Comune di Altrove (nuovo nome)".into();
                p.register_creditor(actor, &changed).await
            }
            Call::RecoverReceipts => p
                .recover_receipts(actor, Utc::now() - chrono::Duration::days(1))
                .await
                .map(drop),
            Call::RecordProviderReceipt => p
                .record_provider_receipt(
                    actor,
                    &ProviderReceipt {
                        creditor_id: c,
                        gateway_id: GatewayId::from("sandbox"),
                        key: "K1".into(),
                        receipt_id: "R1".into(),
                        reference: "301000000000000001".into(),
                        role: ReceiptRole::Issuer,
                        amount: eur("80.00"),
                        share: eur("80.00"),
                        transfers: Vec::new(),
                        psp_id: None,
                        psp_name: None,
                        channel_id: None,
                        payment_method: None,
                        fee: None,
                        payer: None,
                        debtor: None,
                        paid_at: None,
                        transfer_date: None,
                        document: "<receipt/>".into(),
                        media_type: "application/xml".into(),
                        recorded_at: Utc::now(),
                    },
                )
                .await
                .map(drop),
        }
    }
}

#[tokio::test]
async fn every_call_answers_every_kind_of_actor_as_its_rule_says() {
    let mut checked = 0;
    for &(call, access) in CALLS {
        for who in EVERYONE {
            // A fresh body for each, so no call sees another's effects.
            let w = world().await;
            let _ = &w.sandbox;
            let actor = w.actor(who, call);
            let before = w.state().await;
            let result = w.call(call, &actor).await;
            let refused = matches!(result, Err(Error::Forbidden { .. }));
            assert_eq!(
                refused,
                !access.allows(who),
                "{call:?} ({access:?}) by {who:?}: {result:?}"
            );
            if refused {
                assert_eq!(
                    w.state().await,
                    before,
                    "{call:?} refused to {who:?} changed something"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, CALLS.len() * EVERYONE.len());
}
