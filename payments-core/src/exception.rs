//! The ledger of exceptions (*anomalie*): whatever needs a person's eye.
//!
//! Money a provider reports is a fact: it is always recorded. When it does not fit — it
//! arrived after its transaction ended, it pays items another payment already settled, its
//! amount differs from what was due, nobody knows what it pays — the library records it
//! and writes an [`Exception`] that the creditor's operators list
//! ([`Payments::exceptions`](crate::Payments::exceptions)) and that a manager resolves with
//! a note ([`Payments::resolve_exception`](crate::Payments::resolve_exception)), or, for
//! a double payment, by giving the money back
//! ([`Payments::refund_exception`](crate::Payments::refund_exception)).
//!
//! Each exception is recorded once: its [`Exception::key`] is unique per creditor, so the
//! same fact reported again (a provider's retry, a statement imported twice) finds it and
//! adds nothing. Bank entries stay what the bank said, and receipts what the provider
//! sent; the exception only points at them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Actor, BankEntry, CreditorId, ExceptionId, Locale, Money, RefundId, TransactionEvent,
    TransactionId,
};

/// The longest exception key a store must keep.
pub const MAX_EXCEPTION_KEY_LEN: usize = 400;

/// What kind of thing needs an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExceptionKind {
    /// Money arrived for a transaction that had already ended (expired, cancelled, failed,
    /// rejected); its items were still free, and are now paid by it.
    LatePayment,
    /// Money arrived for items that another payment had already settled: the body holds
    /// it twice and should give it back.
    DoublePayment,
    /// A provider reported a payment of another amount than was due: recorded, not
    /// applied.
    AmountMismatch,
    /// A payment for no transaction or notice the library knows.
    UnknownPayment,
    /// A credit on a bank statement that could not be applied to a payment.
    UnmatchedCredit,
    /// A refund the provider refused, or that failed after it was accepted.
    RefundFailed,
    /// A payment the provider still calls processing after the longest time its method
    /// may take.
    StillProcessing,
    /// A refund the provider made that the library did not ask for (one made in the
    /// provider's dashboard, say): the money left the body's account.
    OutsideRefund,
    /// A provider that may hold money for the body did not answer: its receipts could not
    /// be read back, or a transaction's end could not be asked for a day. Until it does,
    /// a payment it took is not recorded.
    ProviderUnanswered,
    /// The bank reversed a credit that had paid a transaction (`RvslInd`): the money went
    /// back to the payer, and the transaction, paid in the books, is no longer paid in the
    /// account.
    ReturnedByBank,
    /// The accounting loop does not close: a payment in a PSP's reporting flow (pagoPA's
    /// FdR) without its receipt, or of another amount; a receipt no flow reported in time;
    /// a flow's money not found on the statement, or of another amount.
    ReportingMismatch,
}

impl ExceptionKind {
    /// Every kind.
    pub const ALL: [ExceptionKind; 11] = [
        ExceptionKind::LatePayment,
        ExceptionKind::DoublePayment,
        ExceptionKind::AmountMismatch,
        ExceptionKind::UnknownPayment,
        ExceptionKind::UnmatchedCredit,
        ExceptionKind::RefundFailed,
        ExceptionKind::StillProcessing,
        ExceptionKind::OutsideRefund,
        ExceptionKind::ProviderUnanswered,
        ExceptionKind::ReturnedByBank,
        ExceptionKind::ReportingMismatch,
    ];

    /// The snake_case name used in storage and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionKind::LatePayment => "late_payment",
            ExceptionKind::DoublePayment => "double_payment",
            ExceptionKind::AmountMismatch => "amount_mismatch",
            ExceptionKind::UnknownPayment => "unknown_payment",
            ExceptionKind::UnmatchedCredit => "unmatched_credit",
            ExceptionKind::RefundFailed => "refund_failed",
            ExceptionKind::StillProcessing => "still_processing",
            ExceptionKind::OutsideRefund => "outside_refund",
            ExceptionKind::ProviderUnanswered => "provider_unanswered",
            ExceptionKind::ReturnedByBank => "returned_by_bank",
            ExceptionKind::ReportingMismatch => "reporting_mismatch",
        }
    }

    /// Reads a name written by [`ExceptionKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        ExceptionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind's name for an operator.
    pub fn label(self, locale: Locale) -> &'static str {
        let it = locale == Locale::It;
        match self {
            ExceptionKind::LatePayment if it => "Pagamento tardivo",
            ExceptionKind::LatePayment => "Late payment",
            ExceptionKind::DoublePayment if it => "Pagamento doppio",
            ExceptionKind::DoublePayment => "Double payment",
            ExceptionKind::AmountMismatch if it => "Importo diverso",
            ExceptionKind::AmountMismatch => "Amount differs",
            ExceptionKind::UnknownPayment if it => "Pagamento sconosciuto",
            ExceptionKind::UnknownPayment => "Unknown payment",
            ExceptionKind::UnmatchedCredit if it => "Accredito non abbinato",
            ExceptionKind::UnmatchedCredit => "Unmatched credit",
            ExceptionKind::RefundFailed if it => "Rimborso non riuscito",
            ExceptionKind::RefundFailed => "Refund failed",
            ExceptionKind::StillProcessing if it => "Pagamento ancora in lavorazione",
            ExceptionKind::StillProcessing => "Still processing",
            ExceptionKind::OutsideRefund if it => "Rimborso fatto fuori dal sistema",
            ExceptionKind::OutsideRefund => "Refund made elsewhere",
            ExceptionKind::ProviderUnanswered if it => "Il fornitore non risponde",
            ExceptionKind::ProviderUnanswered => "Provider not answering",
            ExceptionKind::ReturnedByBank if it => "Restituito dalla banca",
            ExceptionKind::ReturnedByBank => "Returned by the bank",
            ExceptionKind::ReportingMismatch if it => "Discordanza di rendicontazione",
            ExceptionKind::ReportingMismatch => "Reporting discrepancy",
        }
    }
}

impl std::fmt::Display for ExceptionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an exception still waits for someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExceptionStatus {
    /// Waiting for an operator.
    Open,
    /// A manager looked at it and said what was done.
    Resolved,
}

impl ExceptionStatus {
    /// The snake_case name used in storage and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionStatus::Open => "open",
            ExceptionStatus::Resolved => "resolved",
        }
    }

    /// Reads a name written by [`ExceptionStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [ExceptionStatus::Open, ExceptionStatus::Resolved]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Who resolved an exception, when, and what they said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionResolution {
    /// The manager (or the system, for a refund it completed).
    pub by: Actor,
    /// When.
    pub at: DateTime<Utc>,
    /// What was done.
    pub note: String,
}

/// One thing that needs a person's eye. Build one with [`Exception::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Exception {
    /// Its id.
    pub id: ExceptionId,
    /// The creditor whose operators see it.
    pub creditor_id: CreditorId,
    /// What kind of thing it is.
    pub kind: ExceptionKind,
    /// Unique per creditor: the same fact recorded again finds this exception (the
    /// provider's payment id, the bank entry's key, …).
    pub key: String,
    /// The transaction it concerns, when known.
    pub transaction_id: Option<TransactionId>,
    /// The transaction's lines it concerns (their positions), when not the whole of it.
    #[serde(default)]
    pub lines: Vec<usize>,
    /// The money in question: received, or to give back.
    pub amount: Option<Money>,
    /// What was due, when it differs.
    pub expected: Option<Money>,
    /// The provider's or the bank's reference of the money.
    pub provider_ref: Option<String>,
    /// Why, in words an operator acts on.
    pub reason: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Open or resolved.
    pub status: ExceptionStatus,
    /// Who resolved it, when, and how.
    pub resolution: Option<ExceptionResolution>,
    /// The refund that gave the money back, when one did.
    pub refund_id: Option<RefundId>,
    /// Whether the money is beyond what the transaction's own payment records — a second
    /// payment of the transaction, or of lines it had already paid — so that giving it back
    /// changes nothing of the transaction, its items or its modules. False when the money
    /// is the transaction's own payment of items another payment had already settled.
    #[serde(default)]
    pub excess: bool,
}

impl Exception {
    /// An open exception of `kind` for `creditor`, recorded once per `key`.
    pub fn new(
        creditor_id: CreditorId,
        kind: ExceptionKind,
        key: impl Into<String>,
        reason: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        let key: String = key.into();
        Exception {
            id: ExceptionId::new(),
            creditor_id,
            kind,
            key: key.chars().take(MAX_EXCEPTION_KEY_LEN).collect(),
            transaction_id: None,
            lines: Vec::new(),
            amount: None,
            expected: None,
            provider_ref: None,
            reason: reason.into().chars().take(1000).collect(),
            created_at: at,
            status: ExceptionStatus::Open,
            resolution: None,
            refund_id: None,
            excess: false,
        }
    }

    /// The money is beyond the transaction's own payment (see [`Exception::excess`]).
    pub fn excess(mut self) -> Self {
        self.excess = true;
        self
    }

    /// The transaction it concerns.
    pub fn with_transaction(mut self, id: TransactionId) -> Self {
        self.transaction_id = Some(id);
        self
    }

    /// The lines of the transaction it concerns.
    pub fn with_lines(mut self, lines: impl IntoIterator<Item = usize>) -> Self {
        self.lines = lines.into_iter().collect();
        self
    }

    /// The money in question.
    pub fn with_amount(mut self, amount: Money) -> Self {
        self.amount = Some(amount);
        self
    }

    /// What was due.
    pub fn with_expected(mut self, expected: Money) -> Self {
        self.expected = Some(expected);
        self
    }

    /// The provider's or bank's reference.
    pub fn with_provider_ref(mut self, reference: impl Into<String>) -> Self {
        self.provider_ref = Some(reference.into());
        self
    }

    /// Whether it still waits for someone.
    pub fn is_open(&self) -> bool {
        self.status == ExceptionStatus::Open
    }

    /// The exception a bank entry whose outcome is an exception stands for (keyed by the
    /// entry's key), or `None` for a matched entry. Every store records it in the same
    /// database transaction as the entry ([`Store::insert_bank_entry`](crate::Store::insert_bank_entry)).
    pub fn for_bank_entry(entry: &BankEntry) -> Option<Exception> {
        let (kind, reason, transaction_id) = match &entry.outcome {
            crate::BankEntryOutcome::Exception {
                reason,
                transaction_id,
            } => (
                ExceptionKind::UnmatchedCredit,
                reason.clone(),
                transaction_id,
            ),
            crate::BankEntryOutcome::Returned {
                transaction_id,
                credit,
            } => (
                ExceptionKind::ReturnedByBank,
                format!(
                    "returned by the bank: the credit {credit} that paid this transaction was \
                     reversed{}; the payment is no longer in the account",
                    entry
                        .booked_on
                        .map(|d| format!(" on {d}"))
                        .unwrap_or_default()
                ),
                &Some(*transaction_id),
            ),
            _ => return None,
        };
        let mut e = Exception::new(
            entry.creditor_id,
            kind,
            format!("bank:{}", entry.key),
            reason,
            entry.imported_at,
        );
        e.transaction_id = *transaction_id;
        e.provider_ref = Some(entry.key.clone());
        if let Ok(currency) = entry.currency.parse::<crate::Currency>() {
            e.amount = Money::new(entry.amount, currency).ok();
        }
        Some(e)
    }
}

/// A listing of a creditor's exceptions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExceptionQuery {
    /// The creditor.
    pub creditor_id: CreditorId,
    /// Only this kind.
    pub kind: Option<ExceptionKind>,
    /// Only open or only resolved ones.
    pub status: Option<ExceptionStatus>,
    /// Only those about this transaction.
    pub transaction_id: Option<TransactionId>,
    /// Only the one with this key.
    pub key: Option<String>,
    /// Only those older than this one (the last of the previous page).
    pub before: Option<ExceptionId>,
    /// At most this many, 1 to [`crate::MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl ExceptionQuery {
    /// The latest 50 exceptions of `creditor`.
    pub fn new(creditor_id: CreditorId) -> Self {
        ExceptionQuery {
            creditor_id,
            kind: None,
            status: None,
            transaction_id: None,
            key: None,
            before: None,
            limit: 50,
        }
    }

    /// Only open ones.
    pub fn open(mut self) -> Self {
        self.status = Some(ExceptionStatus::Open);
        self
    }

    /// Only this kind.
    pub fn of_kind(mut self, kind: ExceptionKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only those about this transaction.
    pub fn of_transaction(mut self, id: TransactionId) -> Self {
        self.transaction_id = Some(id);
        self
    }

    /// Whether `e` passes the filters (the cursor included). Stores that filter in memory
    /// use this.
    pub fn matches(&self, e: &Exception) -> bool {
        e.creditor_id == self.creditor_id
            && self.kind.is_none_or(|k| e.kind == k)
            && self.status.is_none_or(|s| e.status == s)
            && self
                .transaction_id
                .is_none_or(|t| e.transaction_id == Some(t))
            && self.key.as_ref().is_none_or(|k| &e.key == k)
            && self.before.is_none_or(|b| e.id < b)
    }
}

/// A compare-and-set on an exception: from `Open` to `Resolved`, with the event appended
/// to its transaction's history (when it has one) in the same database transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExceptionUpdate {
    /// The exception.
    pub exception: ExceptionId,
    /// Who, when, and the note.
    pub resolution: ExceptionResolution,
    /// The refund that gave the money back, if one did.
    pub refund_id: Option<RefundId>,
    /// The event for the transaction's history.
    pub event: Option<TransactionEvent>,
}

impl ExceptionUpdate {
    /// Resolves `exception` with `resolution`.
    pub fn new(exception: ExceptionId, resolution: ExceptionResolution) -> Self {
        ExceptionUpdate {
            exception,
            resolution,
            refund_id: None,
            event: None,
        }
    }
}
