#![doc = include_str!("../README.md")]
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
mod problem;
mod provider_receipt;
mod query;
mod refund;
mod reporting;
mod service;
mod store;
mod transaction;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use actor::{Actor, Role};
pub use bank::{
    BankEntry, BankEntryOutcome, BankEntryQuery, BankStep, BankStepDone, MAX_BANK_REFERENCE_LEN,
    MAX_FILE_NAME_LEN, TransferReport,
};
pub use clock::{Clock, ManualClock, SystemClock, days_after, end_of_day, rome_day};
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
    RecoveredReceipts, RefundEvent, StartRequest, Started,
};
pub use ids::{
    CartId, CreditorId, DebtPositionId, EventId, ExceptionId, GatewayId, ItemId, MethodId,
    OutboxId, PayerId, PaymentTypeId, RefundId, TransactionId,
};
pub use item::{
    Cart, CartContents, FREE_PAYMENT_MODULE, ItemState, ItemUpdate, MAX_FORM_TOKEN_LEN,
    NewFreeItem, NewItem, PayableItem, Source,
};
pub use locale::Locale;
pub use memory::InMemoryStore;
pub use money::{Currency, Money, MoneyError};
pub use notify::{
    NoticeIssuer, Notifier, PositionArchive, RecordingListener, RecordingNotifier, RenderedMessage,
    SettlementListener, render_reminder, render_text,
};
pub use outbox::{
    ArchiveSync, NewOutboxMessage, Notification, NotificationKind, OutboxMessage, OutboxPayload,
    OutboxStatus, RefundSettlement, Reminder, RetryPolicy, Settlement, TransactionSummary,
    UnreadablePayload,
};
pub use position::{
    BulkReport, DebtPosition, MAX_INSTALMENTS, MAX_POSITION_KEY_LEN, MAX_REMITTANCE_LEN,
    MAX_TRANSFERS, NewDebtPosition, NewOption, OptionChange, OptionKind, OptionRefusal,
    PaymentOption, PositionChange, PositionEvent, PositionPayer, PositionQuery, PositionStatus,
    RefusedRow, ReminderPlan, Transfer, is_taxonomy_code, position_option_of,
};
pub use problem::Problem;
pub use provider_receipt::{ProviderReceipt, ProviderReceiptQuery, ReceiptRole, ReceiptShare};
pub use query::{
    HistoryEntry, HistoryQuery, MAX_PAGE_SIZE, MovementPage, MovementQuery, OutboxQuery, Page,
};
pub use refund::{
    MAX_REFUND_KEY_LEN, MAX_REFUND_REASON_LEN, Refund, RefundAnswer, RefundCreated, RefundLine,
    RefundRequest, RefundStatus, RefundUpdate, allocate_refund, check_refund_fits,
    lines_refunded_in_full, with_lines_in_full,
};
pub use reporting::{
    CreditCheck, FlowEvent, FlowPayment, FlowPaymentStatus, FlowQuery, FlowState, FlowStored,
    MAX_FLOW_ID_LEN, PaymentCheck, ReconcileOptions, ReconcileReport, ReportingFlow,
};
pub use service::{
    BankCredit, BankCreditDone, CallbackOutcome, Checkout, DELIVERY_CONCURRENCY, DailyCollection,
    DispatchReport, MAX_IDEMPOTENCY_KEY_LEN, MAX_OVERVIEW_DAYS, MAX_PROVIDER_REF_LEN,
    MAX_RESOLUTION_NOTE_LEN, OVERVIEW_LOOKBACK_DAYS, Overview, POSITIONS_CSV_HEADER, Payments,
    PaymentsBuilder, RECEIPTS_LOOKBACK, StoredTransaction, SweepReport,
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
pub use notify::{MockNoticeIssuer, MockNotifier, MockPositionArchive, MockSettlementListener};
#[cfg(any(test, feature = "mocks"))]
#[cfg_attr(docsrs, doc(cfg(feature = "mocks")))]
pub use store::MockStore;

impl From<MoneyError> for Error {
    /// A money error with no better field name is about `amount`.
    fn from(e: MoneyError) -> Self {
        Error::invalid("amount", e.to_string())
    }
}
