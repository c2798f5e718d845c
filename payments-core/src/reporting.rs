//! Reporting flows: how a payment service provider accounts for the money it pays into a
//! body's account. pagoPA's PSPs publish, for each body and each day, a *flusso di
//! rendicontazione* (FdR): the payments it covers (IUV, receipt id, transfer, amount,
//! outcome) and the one bank transfer (*riversamento*) that carries their total, whose
//! remittance reads `/PUR/LGPE-RIVERSAMENTO/URI/<flow id>`.
//!
//! The accounting loop closes three ways: each payment of a flow is matched to the receipt
//! the body holds ([`crate::ProviderReceipt`]), each flow to its credit on the bank
//! statement ([`crate::BankEntryOutcome::Flow`]), and each receipt must appear in some
//! flow within a few days. [`Payments::reconcile_flows`](crate::Payments::reconcile_flows)
//! does the matching, records each outcome on the flow, and writes every discrepancy as a
//! [`ReportingMismatch`](crate::ExceptionKind::ReportingMismatch) exception.
//!
//! A flow is stored once per creditor, flow id, PSP and revision. A PSP that corrects a
//! flow publishes a new revision: it replaces the old one, which is kept, marked replaced,
//! and whose outcome no longer counts.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{CreditorId, Locale, Money};

/// The longest flow id, PSP id, IUV or receipt id kept (pagoPA's are at most 35).
pub const MAX_FLOW_ID_LEN: usize = 35;

/// What the PSP says of one payment of a flow (FdR `payStatus`; SANP's
/// `codiceEsitoSingoloPagamento` 0, 3, 4, 8, 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum FlowPaymentStatus {
    /// Paid (0).
    Executed,
    /// Revoked (3): the PSP took the money back; no receipt pays it.
    Revoked,
    /// Paid while pagoPA's node ran in stand-in (4): a receipt is still sent.
    StandIn,
    /// Paid in stand-in without a payment request (8).
    StandInNoRpt,
    /// Paid without a payment request (9): the body holds no receipt for it.
    NoRpt,
}

impl FlowPaymentStatus {
    /// Every status.
    pub const ALL: [FlowPaymentStatus; 5] = [
        FlowPaymentStatus::Executed,
        FlowPaymentStatus::Revoked,
        FlowPaymentStatus::StandIn,
        FlowPaymentStatus::StandInNoRpt,
        FlowPaymentStatus::NoRpt,
    ];

    /// Its name in the FdR API.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowPaymentStatus::Executed => "EXECUTED",
            FlowPaymentStatus::Revoked => "REVOKED",
            FlowPaymentStatus::StandIn => "STAND_IN",
            FlowPaymentStatus::StandInNoRpt => "STAND_IN_NO_RPT",
            FlowPaymentStatus::NoRpt => "NO_RPT",
        }
    }

    /// Reads a name written by [`FlowPaymentStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the body should hold a receipt of the payment: one paid with a payment
    /// request, normally or in stand-in.
    pub fn expects_receipt(self) -> bool {
        matches!(
            self,
            FlowPaymentStatus::Executed | FlowPaymentStatus::StandIn
        )
    }
}

/// What matching found for one payment of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PaymentCheck {
    /// Not matched yet.
    Unchecked,
    /// Its receipt was found, with the same amount.
    Matched {
        /// The receipt's key.
        receipt_key: String,
    },
    /// The body holds no receipt with its IUV and receipt id.
    ReceiptMissing,
    /// The receipt says another amount for this transfer.
    AmountDiffers {
        /// The receipt's key.
        receipt_key: String,
        /// What the receipt says.
        expected: Money,
    },
    /// A payment no receipt is expected for (revoked, or paid without a payment request):
    /// counted in the flow, for an operator to account for.
    NoReceipt,
}

impl PaymentCheck {
    /// Whether it is a discrepancy an operator must look at.
    pub fn is_discrepancy(&self) -> bool {
        matches!(
            self,
            PaymentCheck::ReceiptMissing | PaymentCheck::AmountDiffers { .. }
        )
    }
}

/// One payment of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowPayment {
    /// Its position in the flow, from 1, unique in it.
    pub index: u64,
    /// The IUV paid.
    pub iuv: String,
    /// The receipt's id (*identificativo univoco di riscossione*).
    pub iur: String,
    /// Which transfer of the payment this is (1 to 5).
    pub transfer: u8,
    /// The amount of this transfer.
    pub amount: Money,
    /// What the PSP says of it.
    pub status: FlowPaymentStatus,
    /// When it was paid.
    pub paid_at: DateTime<Utc>,
    /// What matching found.
    pub check: PaymentCheck,
}

/// What matching found for a flow's money on the bank statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CreditCheck {
    /// No credit quoting the flow has been imported yet.
    Awaited,
    /// The credit quoting the flow carries its total.
    Matched {
        /// The bank entry's key.
        entry_key: String,
    },
    /// The credit quoting the flow carries another amount.
    AmountDiffers {
        /// The bank entry's key.
        entry_key: String,
        /// What was credited.
        credited: Money,
    },
}

/// Where a flow stands, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FlowState {
    /// Stored, not yet matched.
    Received,
    /// Every payment matched to its receipt; the money not yet seen on the statement.
    Matched,
    /// Every payment matched and the money found on the statement: closed.
    Paid,
    /// Something does not match: see the flow's payments and its exceptions.
    Discrepancies,
}

impl FlowState {
    /// Every state.
    pub const ALL: [FlowState; 4] = [
        FlowState::Received,
        FlowState::Matched,
        FlowState::Paid,
        FlowState::Discrepancies,
    ];

    /// Its name in storage and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Received => "received",
            FlowState::Matched => "matched",
            FlowState::Paid => "paid",
            FlowState::Discrepancies => "discrepancies",
        }
    }

    /// Reads a name written by [`FlowState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The state's name for an operator.
    pub fn label(self, locale: Locale) -> &'static str {
        let it = locale == Locale::It;
        match self {
            FlowState::Received if it => "Ricevuto",
            FlowState::Received => "Received",
            FlowState::Matched if it => "Abbinato alle ricevute",
            FlowState::Matched => "Matched to receipts",
            FlowState::Paid if it => "Riversato sul conto",
            FlowState::Paid => "Paid into the account",
            FlowState::Discrepancies if it => "Con discordanze",
            FlowState::Discrepancies => "Discrepancies",
        }
    }
}

/// Something that happened to a flow: received, replaced, matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// What, in words an operator reads.
    pub note: String,
}

/// A PSP's reporting flow for a creditor, one revision of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingFlow {
    /// The creditor it reports to.
    pub creditor_id: CreditorId,
    /// The flow's id (`fdr`): the day, the PSP and a progressive.
    pub flow_id: String,
    /// The PSP's id.
    pub psp_id: String,
    /// The revision, from 1.
    pub revision: u32,
    /// The PSP's name.
    pub psp_name: Option<String>,
    /// The flow's date.
    pub flow_date: DateTime<Utc>,
    /// When pagoPA published it.
    pub published_at: DateTime<Utc>,
    /// The bank transfer that carries its money (`regulation`, the SCT's id).
    pub regulation: Option<String>,
    /// The day of that transfer.
    pub regulation_date: Option<NaiveDate>,
    /// The BIC of the bank credited.
    pub bic: Option<String>,
    /// The total the PSP declares (`sumPayments`).
    pub total: Money,
    /// How many payments it declares (`totPayments`).
    pub count: u64,
    /// The payments, in index order.
    pub payments: Vec<FlowPayment>,
    /// What matching found for its money on the statement.
    pub credit: CreditCheck,
    /// The revision it replaced, if any.
    pub replaces: Option<u32>,
    /// Whether a later revision replaced it.
    pub replaced: bool,
    /// When it was stored.
    pub received_at: DateTime<Utc>,
    /// When it was last matched.
    pub checked_at: Option<DateTime<Utc>>,
    /// Bumped by each update; an update applies only to the version it read.
    pub version: u32,
    /// What happened to it, oldest first.
    pub events: Vec<FlowEvent>,
}

impl ReportingFlow {
    /// The sum of its payments' amounts (revoked ones included, as the PSP counts them);
    /// `None` when it does not fit or mixes currencies.
    pub fn payments_total(&self) -> Option<Money> {
        Money::sum(
            self.total.currency(),
            self.payments.iter().map(|p| &p.amount),
        )
        .ok()
    }

    /// How many of its payments, and of its credit, do not match.
    pub fn discrepancies(&self) -> usize {
        self.payments
            .iter()
            .filter(|p| p.check.is_discrepancy())
            .count()
            + usize::from(matches!(self.credit, CreditCheck::AmountDiffers { .. }))
            + usize::from(self.payments_total() != Some(self.total))
    }

    /// Where it stands.
    pub fn state(&self) -> FlowState {
        if self.checked_at.is_none() {
            FlowState::Received
        } else if self.discrepancies() > 0 {
            FlowState::Discrepancies
        } else if matches!(self.credit, CreditCheck::Matched { .. }) {
            FlowState::Paid
        } else {
            FlowState::Matched
        }
    }
}

/// What storing a flow did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowStored {
    /// The first revision seen of the flow.
    Inserted,
    /// A later revision: it replaced `previous`, kept and marked replaced.
    Replaced {
        /// The revision replaced.
        previous: u32,
    },
    /// This revision was already stored: nothing changed.
    Known,
    /// An older revision than the one stored: nothing changed.
    Outdated {
        /// The revision stored.
        current: u32,
    },
}

/// A listing of a creditor's flows, newest published first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowQuery {
    /// The creditor.
    pub creditor_id: CreditorId,
    /// Only this flow.
    pub flow_id: Option<String>,
    /// Only this PSP's flows.
    pub psp_id: Option<String>,
    /// Also revisions replaced by later ones.
    pub include_replaced: bool,
    /// Only flows published before this one (published time, flow id, PSP id): the last
    /// of the previous page.
    pub before: Option<(DateTime<Utc>, String, String)>,
    /// At most this many, 1 to [`crate::MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl FlowQuery {
    /// The latest 50 current flows of `creditor`.
    pub fn new(creditor_id: CreditorId) -> Self {
        FlowQuery {
            creditor_id,
            flow_id: None,
            psp_id: None,
            include_replaced: false,
            before: None,
            limit: 50,
        }
    }

    /// Whether `flow` passes the filters (not the page). Stores that filter in memory
    /// use this.
    pub fn matches(&self, flow: &ReportingFlow) -> bool {
        flow.creditor_id == self.creditor_id
            && self.flow_id.as_ref().is_none_or(|f| *f == flow.flow_id)
            && self.psp_id.as_ref().is_none_or(|p| *p == flow.psp_id)
            && (self.include_replaced || !flow.replaced)
            && self.before.as_ref().is_none_or(|(at, f, p)| {
                (flow.published_at, &flow.flow_id, &flow.psp_id) < (*at, f, p)
            })
    }
}

/// How [`Payments::reconcile_flows`](crate::Payments::reconcile_flows) matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// A receipt that no flow has reported this many days after it was recorded is an
    /// exception (SANP: PSPs report each day's payments the next working day).
    pub unreported_after_days: u32,
    /// A flow whose money is not on the statement this many days after its regulation
    /// date (or its flow date) is an exception.
    pub credit_after_days: u32,
}

impl Default for ReconcileOptions {
    /// Five days for both.
    fn default() -> Self {
        ReconcileOptions {
            unreported_after_days: 5,
            credit_after_days: 5,
        }
    }
}

/// What a reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Flows looked at.
    pub flows: usize,
    /// Flows closed (every payment matched, money on the statement).
    pub paid: usize,
    /// Payments matched to their receipts.
    pub payments_matched: usize,
    /// Exceptions recorded (each once; those already recorded are not counted).
    pub exceptions: usize,
}
