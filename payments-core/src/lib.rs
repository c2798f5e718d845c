//! # payments-core
//!
//! The domain, rules and traits of a payments library for public bodies' service portals. A
//! citizen puts what they owe in a **cart** — items from the portal's modules (taxes, fees,
//! building charges) and **free payments** they fill in themselves — and pays it all in
//! **one transaction**. The body is told of every payment, each module learns its items
//! were paid, and nothing is paid twice.
//!
//! This crate holds no I/O: it composes the parts a host chooses.
//!
//! | part | trait | here | elsewhere |
//! | --- | --- | --- | --- |
//! | persistence | [`Store`] | [`InMemoryStore`] | `payments-sqlx` (SQLite, PostgreSQL) |
//! | payment providers | [`Gateway`] | — | `payments-gateways` (sandbox, bank transfer, pagoPA, Stripe, Nexi XPay) |
//! | receipts and notices | [`Notifier`] | [`RecordingNotifier`] | `payments-mail` (SMTP, files) |
//! | modules told of payments | [`SettlementListener`] | [`RecordingListener`] | the host's modules |
//! | time | [`Clock`] | [`SystemClock`], [`ManualClock`] | |
//!
//! ## The flow
//! 1. **Items in.** A module calls [`Payments::add_item`] with its [`Source`]; adding the
//!    same source twice is idempotent. A payer adds a free item with
//!    [`Payments::add_free_item`], checked against its [`PaymentType`]: every problem is a
//!    [`Error::Validation`] naming the field.
//! 2. **Checkout.** [`Payments::checkout`] locks the cart's items in one [`Transaction`]
//!    and asks the gateway to start it; the answer is an [`Instruction`]. The same
//!    idempotency key returns the same transaction.
//! 3. **Outcome.** [`Payments::handle_callback`] applies a provider's verified callback
//!    once; a bank transfer is reported by the payer ([`Payments::report_transfer`]) and
//!    confirmed by an operator ([`Payments::confirm_payment`]). A callback that never came
//!    is recovered by asking the provider ([`Payments::reconcile_pending`], a sweep the
//!    host schedules). Unfinished transactions expire ([`Payments::expire_due`]) and free
//!    their items.
//! 4. **Settlement.** Marking a transaction `Paid` enqueues, atomically, the payer's
//!    receipt, the creditor's notice and a settlement per module item;
//!    [`Payments::dispatch_outbox`] delivers them at least once, with backoff.
//! 5. **Afterwards.** [`Payments::history`] for the payer, [`Payments::search`] for
//!    operators, and [`Payments::refund`] (full or partial, never more than was paid) for
//!    the body's managers.
//!
//! Money is exact ([`Money`] over `rust_decimal`, never a float); every state change is a
//! compare-and-set that leaves a [`TransactionEvent`]; every call names its [`Actor`].
//!
//! ## Example
//! The whole flow with a bank-transfer gateway written in a few lines (the real one, with
//! creditor references, EPC QR codes and statement matching, is
//! `payments_gateways::bank_transfer`):
//! ```
//! use std::sync::Arc;
//! use payments_core::*;
//!
//! /// Tells the payer where to send the money; the body confirms it arrived.
//! #[derive(Debug)]
//! struct Transfer;
//!
//! #[async_trait::async_trait]
//! impl Gateway for Transfer {
//!     fn id(&self) -> GatewayId { "transfer".into() }
//!     fn kinds(&self) -> Vec<MethodKind> { vec![MethodKind::BankTransfer] }
//!     async fn start(&self, req: &StartRequest) -> Result<Started> {
//!         let t = &req.transaction;
//!         Ok(Started {
//!             instruction: Instruction::BankTransfer(BankTransferDetails {
//!                 iban: "IT60X0542811101000000123456".into(),
//!                 bic: None,
//!                 beneficiary: req.creditor.name.clone(),
//!                 amount: t.total,
//!                 reference: format!("RF{}", t.id.as_uuid().simple()),
//!                 reason: "TARI 2025".into(),
//!                 epc_qr_payload: String::new(),
//!             }),
//!             provider_ref: None,
//!             expires_at: None,
//!         })
//!     }
//!     async fn parse_callback(&self, _: &CallbackRequest) -> Result<CallbackEvent> {
//!         Err(Error::gateway("transfer", GatewayErrorKind::NotSupported("callbacks")))
//!     }
//!     async fn fetch_status(&self, _: &Transaction) -> Result<PaymentOutcome> {
//!         Ok(PaymentOutcome::Pending)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let notifier = Arc::new(RecordingNotifier::new());
//! let tributi = Arc::new(RecordingListener::new());
//! let payments = Payments::builder()
//!     .store(Arc::new(InMemoryStore::new()))
//!     .gateway(Arc::new(Transfer))
//!     .notifier(notifier.clone())
//!     .listener("tributi", tributi.clone())
//!     .build()?;
//!
//! // Set-up, once: the body, a payment type, a method.
//! let system = Actor::System;
//! let comune = Creditor::new("Comune di Esempio", "00488410010", "ragioneria@comune.example.it")?;
//! payments.register_creditor(&system, &comune).await?;
//! let tari = PaymentType::new(comune.id, "tari", "TARI")
//!     .with_field(FieldSpec::required("year", "Anno", FieldKind::Integer { min: Some(2000), max: None }));
//! payments.define_payment_type(&system, &tari).await?;
//! let transfer = PaymentMethod::new(comune.id, MethodKind::BankTransfer, "transfer");
//! payments.enable_method(&system, &transfer).await?;
//!
//! // A citizen's cart; the taxes module adds what they owe.
//! let citizen = Actor::payer("RSSMRA85T10A562S");
//! let payer = Payer::new("RSSMRA85T10A562S", "Mario Rossi").with_email("mario@example.it");
//! let cart = payments.open_cart(&citizen, comune.id, payer).await?;
//! let item = NewItem::new(Source::new("tributi", "tari-2025-1"), tari.id, "TARI 2025, rata 1", Money::parse_eur("120,50")?)
//!     .with_extra("year", "2025");
//! payments.add_item(&citizen, cart.id, item.clone()).await?;
//! payments.add_item(&citizen, cart.id, item).await?; // idempotent
//!
//! // One checkout for the whole cart.
//! let checkout = payments.checkout(&citizen, cart.id, transfer.id, "click-1").await?;
//! assert!(matches!(checkout.instruction, Instruction::BankTransfer(_)));
//! let tx = checkout.transaction.id;
//!
//! // The citizen reports the transfer; an operator confirms it.
//! let report = TransferReport {
//!     executed_on: chrono::Utc::now().date_naive(),
//!     amount: checkout.transaction.total,
//!     bank_reference: "0306909606510".into(),
//!     ordering_iban: None,
//!     receipt_file: None,
//! };
//! payments.report_transfer(&citizen, tx, &report).await?;
//! let operator = Actor::operator(comune.id, Role::Manager, "anna");
//! let paid = payments.confirm_payment(&operator, tx, Some("seen on the statement".into())).await?;
//! assert_eq!(paid.status, TxStatus::Paid);
//!
//! // The outbox delivers: for the report, a receipt saying it awaits verification and a
//! // notice to the body; for the payment, the receipt, the notice and the settlement.
//! let report = payments.dispatch_outbox().await?;
//! assert_eq!(report.delivered, 5);
//! assert_eq!(notifier.sent().len(), 4);
//! assert_eq!(tributi.heard()[0].source.key, "tari-2025-1");
//!
//! // Every step left an event.
//! let steps: Vec<_> = payments.events(&citizen, tx).await?.iter().map(|e| e.to).collect();
//! assert_eq!(steps, [TxStatus::Created, TxStatus::Pending, TxStatus::Reported, TxStatus::Paid]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//! - `testing`: conformance suites in `payments_core::testing` that every `Store`, `Gateway` and
//!   `Notifier` implementation runs.
//! - `mocks`: mockall mocks of the traits (`MockStore`, `MockGateway`, `MockNotifier`,
//!   `MockSettlementListener`, `MockClock`).

#![cfg_attr(docsrs, feature(doc_cfg))]

mod actor;
mod bank;
mod cache;
mod clock;
mod config;
mod error;
mod exception;
mod fiscal_code;
mod gateway;
mod ids;
mod item;
mod locale;
mod memory;
mod money;
mod notify;
mod outbox;
mod position;
mod query;
mod refund;
mod service;
mod store;
mod transaction;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use actor::{Actor, Role};
pub use bank::{
    BankEntry, BankEntryOutcome, BankEntryQuery, MAX_BANK_REFERENCE_LEN, MAX_FILE_NAME_LEN,
    TransferReport,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AmountRule, Creditor, CreditorNotice, FieldKind, FieldSpec, MAX_KEY_LEN, MAX_NAME_LEN,
    MAX_REASON_LEN, MAX_SOURCE_KEY_LEN, MAX_TEXT_FIELD_LEN, MethodKind, Payer, PaymentMethod,
    PaymentType,
};
pub use error::{
    BoxError, Conflict, Error, FieldError, GatewayErrorKind, Result, ValidationErrors,
};
pub use exception::{
    Exception, ExceptionKind, ExceptionQuery, ExceptionResolution, ExceptionStatus,
    ExceptionUpdate, MAX_EXCEPTION_KEY_LEN,
};
pub use gateway::{
    CallbackEvent, CallbackPart, CallbackRequest, Gateway, LineLimit, OverLimit, PaymentOutcome,
    RefundEvent, StartRequest, Started,
};
pub use ids::{
    CartId, CreditorId, DebtPositionId, EventId, ExceptionId, GatewayId, ItemId, MethodId,
    OutboxId, PayerId, PaymentTypeId, RefundId, TransactionId,
};
pub use item::{
    Cart, CartContents, FREE_PAYMENT_MODULE, ItemState, NewFreeItem, NewItem, PayableItem, Source,
};
pub use locale::Locale;
pub use memory::InMemoryStore;
pub use money::{Currency, Money, MoneyError};
pub use notify::{
    NoticeIssuer, Notifier, RecordingListener, RecordingNotifier, RenderedMessage,
    SettlementListener, render_reminder, render_text,
};
pub use outbox::{
    NewOutboxMessage, Notification, NotificationKind, OutboxMessage, OutboxPayload, OutboxStatus,
    RefundSettlement, Reminder, RetryPolicy, Settlement, TransactionSummary,
};
pub use position::{
    BulkReport, DebtPosition, MAX_INSTALMENTS, MAX_POSITION_KEY_LEN, MAX_REMITTANCE_LEN,
    MAX_TRANSFERS, NewDebtPosition, NewOption, OptionChange, OptionKind, OptionRefusal,
    PaymentOption, PositionChange, PositionEvent, PositionPayer, PositionQuery, PositionStatus,
    RefusedRow, ReminderPlan, Transfer,
};
pub use query::{
    HistoryEntry, HistoryQuery, MAX_PAGE_SIZE, MovementPage, MovementQuery, OutboxQuery, Page,
};
pub use refund::{
    MAX_REFUND_KEY_LEN, MAX_REFUND_REASON_LEN, Refund, RefundAnswer, RefundCreated, RefundLine,
    RefundRequest, RefundStatus, RefundUpdate, allocate_refund, check_refund_fits,
    lines_refunded_in_full, with_lines_in_full,
};
pub use service::{
    CallbackOutcome, Checkout, DispatchReport, MAX_IDEMPOTENCY_KEY_LEN, MAX_PROVIDER_REF_LEN,
    MAX_RESOLUTION_NOTE_LEN, POSITIONS_CSV_HEADER, Payments, PaymentsBuilder, SweepReport,
};
pub use store::{
    ItemAdded, MAX_SEQUENCE_NAME_LEN, Store, TransactionCreated, check_sequence, refund_exceeds,
};
pub use transaction::{
    BankTransferDetails, ExpiryExtension, FormField, Instruction, LinePaid, LinePayment,
    LinePaymentOutcome, LinePaymentRecord, PagoPaNotice, PagoPaPayment, RedirectMethod,
    Transaction, TransactionEvent, TransactionLine, Transition, TxStatus,
};

#[cfg(any(test, feature = "mocks"))]
#[cfg_attr(docsrs, doc(cfg(feature = "mocks")))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
#[cfg_attr(docsrs, doc(cfg(feature = "mocks")))]
pub use gateway::MockGateway;
#[cfg(any(test, feature = "mocks"))]
#[cfg_attr(docsrs, doc(cfg(feature = "mocks")))]
pub use notify::{MockNotifier, MockSettlementListener};
#[cfg(any(test, feature = "mocks"))]
#[cfg_attr(docsrs, doc(cfg(feature = "mocks")))]
pub use store::MockStore;

impl From<MoneyError> for Error {
    /// A money error with no better field name is about `amount`.
    fn from(e: MoneyError) -> Self {
        Error::invalid("amount", e.to_string())
    }
}
