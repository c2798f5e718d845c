//! The [`Gateway`] trait: a payment provider, or bank transfer, behind one interface.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Creditor, Error, GatewayErrorKind, GatewayId, Instruction, MethodKind, Money, PaymentMethod,
    Result, Transaction, TransactionId,
};

/// What a gateway needs to start a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The transaction, `Created`, with its lines and total.
    pub transaction: Transaction,
    /// The creditor paid.
    pub creditor: Creditor,
    /// The method chosen.
    pub method: PaymentMethod,
    /// Where the provider's page sends the payer back, if the host set one.
    pub return_url: Option<String>,
}

/// A gateway's answer to [`Gateway::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Started {
    /// What the payer must do.
    pub instruction: Instruction,
    /// The provider's reference for this payment, if it gave one.
    pub provider_ref: Option<String>,
    /// A later expiry than the service's default, for slow methods (bank transfer,
    /// pagoPA notices).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Started {
    /// The payer must follow `instruction`; no provider reference yet, the service's
    /// default expiry.
    pub fn new(instruction: Instruction) -> Self {
        Started {
            instruction,
            provider_ref: None,
            expires_at: None,
        }
    }

    /// With the provider's reference for this payment.
    pub fn with_provider_ref(mut self, provider_ref: impl Into<String>) -> Self {
        self.provider_ref = Some(provider_ref.into());
        self
    }

    /// With a later expiry than the service's default.
    pub fn with_expires_at(mut self, expires_at: DateTime<Utc>) -> Self {
        self.expires_at = Some(expires_at);
        self
    }
}

/// A provider's callback as it arrived over HTTP: what a gateway verifies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackRequest {
    /// Headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// The raw body: signatures are over these exact bytes.
    pub body: Vec<u8>,
}

impl CallbackRequest {
    /// A request with `body` and no headers.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        CallbackRequest {
            body: body.into(),
            ..Default::default()
        }
    }

    /// Adds a header (its name is stored in lower case).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// A header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What a provider handed back of the receipts it keeps ([`Gateway::recover_receipts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveredReceipts {
    /// The receipts, as the callbacks that would have brought them.
    pub events: Vec<CallbackEvent>,
    /// The creditors whose receipts could not be read (the provider down, a key refused, a
    /// receipt that does not read), and why; the others' are in `events`.
    pub failures: Vec<(crate::CreditorId, String)>,
}

/// The outcome of a payment as a provider reports it.
///
/// Deliberately exhaustive, unlike the library's other enums: it is the contract between
/// gateways and the core, and a new outcome must make every gateway (and every test driver
/// of one) say what it means for its provider, rather than fall into a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentOutcome {
    /// Not finished yet: the payer has not paid (the provider's page is still open).
    Pending,
    /// The payer authorised it and the provider has not finished (a SEPA direct debit
    /// takes days, a bank's own approval may come late): never expire it meanwhile.
    Processing,
    /// Paid.
    Paid,
    /// Refused.
    Failed,
    /// Abandoned by the payer.
    Cancelled,
}

/// A verified callback: what the provider says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackEvent {
    /// Our transaction id, when the provider echoes it.
    pub transaction_id: Option<TransactionId>,
    /// The provider's reference, by which the transaction is found when the provider does
    /// not echo our id.
    pub provider_ref: Option<String>,
    /// The reference to record on the transaction once the outcome is applied, when it is
    /// not `provider_ref`: a bank transfer is found by its creditor reference (`RF…`) and
    /// recorded by the bank's reference of the credit.
    pub record_ref: Option<String>,
    /// What happened.
    pub outcome: PaymentOutcome,
    /// The amount and currency the provider handled; checked against the transaction.
    pub amount: Money,
    /// The provider's own words, for the event's note.
    pub note: Option<String>,
    /// Set when the provider pays a transaction line by line (pagoPA sends one receipt per
    /// notice): which line this callback pays. `amount` is then the line's amount, and the
    /// transaction is paid when every line is.
    pub part: Option<CallbackPart>,
    /// Set when the callback is about a refund, not a payment (Stripe's `refund.updated`):
    /// `outcome` is then ignored and `amount` is the refund's.
    pub refund: Option<RefundEvent>,
    /// The provider's receipt, kept whole for the creditor's operators
    /// ([`crate::ProviderReceipt`]); recorded once, before the payment is applied.
    pub receipt: Option<Box<crate::ProviderReceipt>>,
}

impl CallbackEvent {
    /// The provider says `outcome` of a payment of `amount`; the transaction is found by
    /// the references added with the `with_` methods.
    pub fn new(outcome: PaymentOutcome, amount: Money) -> Self {
        CallbackEvent {
            transaction_id: None,
            provider_ref: None,
            record_ref: None,
            outcome,
            amount,
            note: None,
            part: None,
            refund: None,
            receipt: None,
        }
    }

    /// Our transaction id, when the provider echoes it (`None` leaves it unknown).
    pub fn with_transaction_id(mut self, id: impl Into<Option<TransactionId>>) -> Self {
        self.transaction_id = id.into();
        self
    }

    /// The provider's reference of the payment.
    pub fn with_provider_ref(mut self, provider_ref: impl Into<String>) -> Self {
        self.provider_ref = Some(provider_ref.into());
        self
    }

    /// The reference to record on the transaction, when it is not the provider's.
    pub fn with_record_ref(mut self, record_ref: impl Into<String>) -> Self {
        self.record_ref = Some(record_ref.into());
        self
    }

    /// The provider's own words, for the event's note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The line this callback pays, for a provider that pays line by line.
    pub fn with_part(mut self, part: CallbackPart) -> Self {
        self.part = Some(part);
        self
    }

    /// News about a refund rather than a payment.
    pub fn with_refund(mut self, refund: RefundEvent) -> Self {
        self.refund = Some(refund);
        self
    }

    /// The provider's receipt, to keep whole.
    pub fn with_receipt(mut self, receipt: crate::ProviderReceipt) -> Self {
        self.receipt = Some(Box::new(receipt));
        self
    }
}

/// A provider's news about a refund, read from a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundEvent {
    /// Our refund id, when the provider echoes it.
    pub refund_id: Option<crate::RefundId>,
    /// The provider's reference of the refund, by which it is found otherwise.
    pub provider_ref: String,
    /// `Pending`, `Succeeded` or `Failed`.
    pub status: crate::RefundStatus,
    /// The provider's words.
    pub note: Option<String>,
}

impl RefundEvent {
    /// The refund the provider knows as `provider_ref` is now `status`.
    pub fn new(provider_ref: impl Into<String>, status: crate::RefundStatus) -> Self {
        RefundEvent {
            refund_id: None,
            provider_ref: provider_ref.into(),
            status,
            note: None,
        }
    }

    /// Our refund id, when the provider echoes it.
    pub fn with_refund_id(mut self, id: impl Into<Option<crate::RefundId>>) -> Self {
        self.refund_id = id.into();
        self
    }

    /// The provider's words.
    pub fn with_note(mut self, note: impl Into<Option<String>>) -> Self {
        self.note = note.into();
        self
    }
}

/// One line of a transaction paid on its own, as a provider that settles line by line
/// reports it. The service records each part once, as a [`BankEntry`](crate::BankEntry)
/// keyed by [`CallbackPart::key`], and moves the transaction to `Paid` with the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPart {
    /// The creditor, when the gateway knows it from the callback itself; an unknown
    /// payment can then be recorded as an exception for it.
    pub creditor_id: Option<crate::CreditorId>,
    /// The line paid: its index in the transaction's lines.
    pub line: usize,
    /// Unique per creditor and payment: a replay carries the same key.
    pub key: String,
    /// The reference the line was paid with (a pagoPA notice number).
    pub reference: String,
    /// The day it was paid, as the provider says (for pagoPA, what discharges the debtor).
    pub paid_on: Option<chrono::NaiveDate>,
    /// Who paid, as the provider names them.
    pub debtor: Option<String>,
    /// The provider's account of the payment, kept with the entry for operators.
    pub details: String,
}

/// What checkout does with a cart of more lines than a gateway takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverLimit {
    /// Refuse the checkout, naming the cart.
    Refuse,
    /// Pay the oldest `max` items now; the others stay in the cart for a later checkout.
    Split,
}

/// The most lines one transaction may have with a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LineLimit {
    /// At most this many lines.
    pub max: usize,
    /// What to do with a larger cart.
    pub over: OverLimit,
}

/// A payment provider (or bank transfer, or pagoPA) behind one interface.
///
/// # Contract
/// The conformance suite (`payments_core::testing::gateway`, feature `testing`) checks:
/// - [`Gateway::start`] answers with an [`Instruction`] for one of [`Gateway::kinds`].
/// - [`Gateway::parse_callback`] verifies before it trusts anything: a callback whose
///   signature does not verify is `Gateway { kind: InvalidSignature }`. It never changes
///   state: parsing the same callback twice gives the same event, and the service decides
///   what to apply.
/// - Secrets (API keys, signing keys) never appear in `Debug` output or errors, and
///   signatures are compared in constant time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Gateway: std::fmt::Debug + Send + Sync + 'static {
    /// The id methods are bound to: `"sandbox"`, `"stripe"`, …
    fn id(&self) -> GatewayId;
    /// The method kinds it serves.
    fn kinds(&self) -> Vec<MethodKind>;
    /// The most lines one transaction may have, if the provider limits them (pagoPA's
    /// checkout pays at most five notices at once). `None`: no limit.
    fn line_limit(&self) -> Option<LineLimit> {
        None
    }
    /// Starts a payment and tells the payer what to do.
    async fn start(&self, request: &StartRequest) -> Result<Started>;
    /// Verifies and reads a callback. Must not mutate anything.
    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent>;
    /// Asks the provider where a payment stands, for reconciliation, and before the
    /// service expires or cancels a transaction.
    async fn fetch_status(&self, transaction: &Transaction) -> Result<PaymentOutcome>;
    /// The provider's receipts of `transaction` that may never have reached the service
    /// (pagoPA's debt-position service keeps every receipt of the notices it holds), as
    /// the callbacks that would have brought them; the service applies each as it would a
    /// callback, so one already applied changes nothing. Empty when the provider has none.
    /// A provider that keeps no receipts to ask for answers
    /// [`GatewayErrorKind::NotSupported`] (the default); the service then asks
    /// [`Gateway::fetch_status`].
    async fn fetch_receipts(&self, transaction: &Transaction) -> Result<Vec<CallbackEvent>> {
        let _ = transaction;
        Err(Error::gateway(
            self.id().0,
            GatewayErrorKind::NotSupported("fetch_receipts"),
        ))
    }
    /// The receipts the provider issued since `since` for any of its creditors whose
    /// payment the service may not have applied, as the callbacks that would have brought
    /// them, for the reconciliation sweep: how a payment of a notice the service never saw
    /// a callback for (a debt position paid at a bank, whose receipt was lost) is
    /// recovered. The service applies each as a callback; a creditor whose receipts could
    /// not be read is named in [`RecoveredReceipts::failures`], and its operators see it.
    /// [`GatewayErrorKind::NotSupported`] by default.
    async fn recover_receipts(&self, since: DateTime<Utc>) -> Result<RecoveredReceipts> {
        let _ = since;
        Err(Error::gateway(
            self.id().0,
            GatewayErrorKind::NotSupported("recover_receipts"),
        ))
    }
    /// Closes the provider's session of an unfinished payment so that it can no longer
    /// take money; the service calls it before it frees the items of a transaction it
    /// expires or the payer cancels. Answers `Cancelled` once closed (or when nothing was
    /// open), or the outcome that stops it: `Paid` (the service then records the payment
    /// instead), `Processing` (the expiry waits). A provider that has nothing to close
    /// answers [`GatewayErrorKind::NotSupported`] (the default), and its documentation
    /// says what happens to money that comes later (it is recorded as a late payment).
    async fn close(&self, transaction: &Transaction) -> Result<PaymentOutcome> {
        let _ = transaction;
        Err(Error::gateway(
            self.id().0,
            GatewayErrorKind::NotSupported("close"),
        ))
    }
    /// The longest a payment of `kind` may stay processing at the provider (SEPA direct
    /// debit: 14 business days), if the provider says. A payment still processing after
    /// that becomes an exception for operators; it is never expired while the provider
    /// says it is processing.
    fn processing_window(&self, kind: MethodKind) -> Option<std::time::Duration> {
        let _ = kind;
        None
    }
    /// Whether the reconciliation sweep has anything to ask this provider about its
    /// unfinished transactions ([`Gateway::fetch_receipts`] or [`Gateway::fetch_status`]);
    /// true by default. A provider that answers neither (a bank transfer, told by the bank
    /// statement) says false, and the sweep does not even read its transactions.
    fn answers_status(&self) -> bool {
        true
    }
    /// Whether [`Gateway::refund`] can give money back (false by default). Hosts show a
    /// refund button only where it can.
    fn supports_refunds(&self) -> bool {
        false
    }
    /// Gives back `refund.amount` of a paid transaction; answers the provider's reference
    /// of the refund and where it stands: succeeded, pending (accepted, still under way:
    /// its end comes by callback or [`Gateway::refund_status`]) or failed. The service has
    /// already checked the amount against what is left and recorded the refund;
    /// `refund.id` is stable across retries, so a provider with idempotency keys gets it
    /// as one. An answer that leaves the outcome unknown (the provider could not be
    /// reached, or timed out) must be [`GatewayErrorKind::Unavailable`]: the refund then
    /// stays requested and may be retried; any other error marks it failed.
    async fn refund(
        &self,
        transaction: &Transaction,
        refund: &crate::Refund,
    ) -> Result<crate::RefundAnswer> {
        let _ = (transaction, refund);
        Err(Error::gateway(
            self.id().0,
            GatewayErrorKind::NotSupported("refund"),
        ))
    }
    /// Asks the provider where a refund it accepted stands, for the reconciliation sweep.
    async fn refund_status(
        &self,
        transaction: &Transaction,
        refund: &crate::Refund,
    ) -> Result<crate::RefundAnswer> {
        let _ = (transaction, refund);
        Err(Error::gateway(
            self.id().0,
            GatewayErrorKind::NotSupported("refund_status"),
        ))
    }
}
