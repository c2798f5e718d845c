//! Refunds: money given back on a paid transaction, in full or in part, never more than
//! was paid less what earlier refunds gave back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Actor, CreditorId, Money, RefundId, TransactionEvent, TransactionId};

/// The longest refund key [`RefundRequest::key`] takes.
pub const MAX_REFUND_KEY_LEN: usize = 100;
/// The longest reason a refund keeps.
pub const MAX_REFUND_REASON_LEN: usize = 500;

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefundStatus {
    /// Recorded and counted against what may still be refunded; the provider has not
    /// answered yet (or could not be reached: asking again with the same key retries).
    Requested,
    /// The provider accepted it and is still giving the money back (Stripe's `pending`
    /// and `requires_action`); its webhook or the reconciliation sweep says how it ends.
    Pending,
    /// The provider gave the money back.
    Succeeded,
    /// The provider refused it; it no longer counts.
    Failed,
}

impl RefundStatus {
    /// The state as stored and shown: `requested`, `succeeded`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Requested => "requested",
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    /// Whether the refund counts against what may still be refunded.
    pub fn counts(self) -> bool {
        self != RefundStatus::Failed
    }

    /// Whether the provider has still to say how it ends (`Requested`, `Pending`).
    pub fn is_unfinished(self) -> bool {
        matches!(self, RefundStatus::Requested | RefundStatus::Pending)
    }

    /// Reads a name written by [`RefundStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            RefundStatus::Requested,
            RefundStatus::Pending,
            RefundStatus::Succeeded,
            RefundStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator asks for with [`Payments::refund`](crate::Payments::refund).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// How much to give back; `None` gives back all that is left.
    pub amount: Option<Money>,
    /// The caller's key: asking again with the same key returns the same refund (and
    /// retries the provider if it could not be reached), never a second one.
    pub key: String,
    /// Why, for the transaction's history.
    pub reason: Option<String>,
    /// Only these lines (their positions in the transaction); empty: the whole
    /// transaction. The amount is shared among them in order, each up to what is left of
    /// it.
    pub lines: Vec<usize>,
    /// A double payment given back ([`Payments::refund_exception`](crate::Payments::refund_exception)).
    pub(crate) excess: bool,
}

impl RefundRequest {
    /// A refund of all that is left, under `key`.
    pub fn full(key: impl Into<String>) -> Self {
        RefundRequest {
            amount: None,
            key: key.into(),
            reason: None,
            lines: Vec::new(),
            excess: false,
        }
    }

    /// A refund of `amount`, under `key`.
    pub fn partial(amount: Money, key: impl Into<String>) -> Self {
        RefundRequest {
            amount: Some(amount),
            key: key.into(),
            reason: None,
            lines: Vec::new(),
            excess: false,
        }
    }

    /// Gives back only (what is left of) these lines.
    pub fn of_lines(mut self, lines: impl IntoIterator<Item = usize>) -> Self {
        self.lines = lines.into_iter().collect();
        self
    }

    /// Adds the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Money given back on a paid transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Refund {
    /// Its id; gateways send it to the provider as the idempotency key.
    pub id: RefundId,
    /// The transaction refunded.
    pub transaction_id: TransactionId,
    /// Its creditor.
    pub creditor_id: CreditorId,
    /// How much.
    pub amount: Money,
    /// The caller's key, unique per transaction.
    pub key: String,
    /// Why.
    pub reason: Option<String>,
    /// Where it stands.
    pub status: RefundStatus,
    /// The provider's reference, once it confirmed.
    pub provider_ref: Option<String>,
    /// The provider's words when it refused.
    pub note: Option<String>,
    /// How the amount is shared among the transaction's lines: what each line gets back.
    #[serde(default)]
    pub lines: Vec<RefundLine>,
    /// Whether it gives back money beyond the transaction's own payment (a double payment
    /// of it, or of lines it had already paid): it then neither counts against what may be
    /// refunded of the payment, nor changes its items, its modules or its state.
    #[serde(default)]
    pub excess: bool,
    /// Who asked.
    pub requested_by: Actor,
    /// When it was asked.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The part of a refund that gives back (part of) one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefundLine {
    /// The line's position in the transaction.
    pub line: usize,
    /// What it gets back.
    pub amount: Money,
}

/// Shares `amount` among `lines` of `transaction` (all of them when empty), in order, each
/// getting up to its amount less what `earlier` refunds that count already gave it back.
/// `None` when the lines have less than `amount` left.
pub fn allocate_refund(
    transaction: &crate::Transaction,
    earlier: &[Refund],
    lines: &[usize],
    amount: Money,
) -> Option<Vec<RefundLine>> {
    let positions: Vec<usize> = if lines.is_empty() {
        (0..transaction.lines.len()).collect()
    } else {
        lines.to_vec()
    };
    let mut left = amount.minor_units();
    let mut out = Vec::new();
    for position in positions {
        if left == 0 {
            break;
        }
        let line = transaction.lines.get(position)?;
        let given: i64 = earlier
            .iter()
            .filter(|r| r.status.counts() && !r.excess)
            .flat_map(|r| r.lines.iter())
            .filter(|l| l.line == position)
            .map(|l| l.amount.minor_units())
            .sum();
        let room = line.amount.minor_units() - given;
        let take = room.min(left);
        if take > 0 {
            out.push(RefundLine {
                line: position,
                amount: Money::from_minor(take, amount.currency()).ok()?,
            });
            left -= take;
        }
    }
    (left == 0).then_some(out)
}

/// The lines of `transaction` that the succeeded `refunds` gave back in full.
pub fn lines_refunded_in_full(transaction: &crate::Transaction, refunds: &[Refund]) -> Vec<usize> {
    (0..transaction.lines.len())
        .filter(|&position| {
            let back: i64 = refunds
                .iter()
                .filter(|r| r.status == RefundStatus::Succeeded && !r.excess)
                .flat_map(|r| r.lines.iter())
                .filter(|l| l.line == position)
                .map(|l| l.amount.minor_units())
                .sum();
            back >= transaction.lines[position].amount.minor_units()
        })
        .collect()
}

/// Checks that `refund` fits what is left of `transaction` after the `earlier` refunds that
/// count, in total and on each of its lines; every store calls it under the transaction's
/// lock, so that two refunds asked at once can never both pass. A refund of a double
/// payment ([`Refund::excess`]) is beside the payment and always fits.
pub fn check_refund_fits(
    transaction: &crate::Transaction,
    earlier: &[Refund],
    refund: &Refund,
) -> crate::Result<()> {
    if refund.excess {
        return Ok(());
    }
    let counting = || earlier.iter().filter(|r| r.status.counts() && !r.excess);
    let refunded: i64 = counting().map(|r| r.amount.minor_units()).sum();
    if refund.amount.currency() != transaction.total.currency()
        || refunded + refund.amount.minor_units() > transaction.total.minor_units()
    {
        let refunded = Money::from_minor(refunded, transaction.total.currency())
            .unwrap_or_else(|_| Money::zero(transaction.total.currency()));
        return Err(crate::refund_exceeds(
            &transaction.total,
            &refunded,
            &refund.amount,
        ));
    }
    for part in &refund.lines {
        let Some(line) = transaction.lines.get(part.line) else {
            return Err(crate::Error::invalid(
                "lines",
                format!("the transaction has no line {}", part.line + 1),
            ));
        };
        let given: i64 = counting()
            .flat_map(|r| r.lines.iter())
            .filter(|l| l.line == part.line)
            .map(|l| l.amount.minor_units())
            .sum();
        if given + part.amount.minor_units() > line.amount.minor_units() {
            return Err(crate::Error::invalid(
                "lines",
                format!(
                    "line {} has {} and would get back more than that",
                    part.line + 1,
                    line.amount
                ),
            ));
        }
    }
    Ok(())
}

/// `messages` with the `in_full` of each of `refund`'s messages to modules set from
/// `full`, the lines of `transaction` given back in full: what a store enqueues, deciding
/// it under the transaction's lock.
pub fn with_lines_in_full(
    transaction: &crate::Transaction,
    refund: crate::RefundId,
    full: &[usize],
    messages: &[crate::NewOutboxMessage],
) -> Vec<crate::NewOutboxMessage> {
    messages
        .iter()
        .cloned()
        .map(|mut m| {
            if let crate::OutboxPayload::Refund(r) = &mut m.payload
                && r.refund_id == refund
            {
                r.in_full = transaction
                    .lines
                    .iter()
                    .position(|l| l.item_id == r.item_id)
                    .is_some_and(|p| full.contains(&p));
            }
            m
        })
        .collect()
}

/// A provider's answer about a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundAnswer {
    /// The provider's reference of the refund.
    pub provider_ref: String,
    /// `Succeeded`, `Pending` (accepted, still under way) or `Failed`.
    pub status: RefundStatus,
    /// The provider's words, for a failure.
    pub note: Option<String>,
}

impl RefundAnswer {
    /// The money was given back.
    pub fn succeeded(provider_ref: impl Into<String>) -> Self {
        RefundAnswer {
            provider_ref: provider_ref.into(),
            status: RefundStatus::Succeeded,
            note: None,
        }
    }

    /// Accepted; the provider is still giving the money back.
    pub fn pending(provider_ref: impl Into<String>) -> Self {
        RefundAnswer {
            provider_ref: provider_ref.into(),
            status: RefundStatus::Pending,
            note: None,
        }
    }

    /// It failed at the provider, with its words.
    pub fn failed(provider_ref: impl Into<String>, note: impl Into<String>) -> Self {
        RefundAnswer {
            provider_ref: provider_ref.into(),
            status: RefundStatus::Failed,
            note: Some(note.into()),
        }
    }
}

/// The result of [`Store::create_refund`](crate::Store::create_refund).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundCreated {
    /// The refund now in the store: the new one, or the one the key already had.
    pub refund: Refund,
    /// Whether it was inserted now.
    pub created: bool,
}

/// A compare-and-set on a refund: from `from` to `to`, with its event, messages and
/// exception, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundUpdate {
    /// The refund.
    pub refund: RefundId,
    /// The state it must be in: `Requested` or `Pending`.
    pub from: RefundStatus,
    /// `Pending`, `Succeeded` or `Failed`.
    pub to: RefundStatus,
    /// The provider's reference.
    pub provider_ref: Option<String>,
    /// The provider's words.
    pub note: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The event appended to the transaction's history in the same database transaction.
    pub event: TransactionEvent,
    /// Messages to enqueue with it: for a refund that succeeded, the payer's and the
    /// creditor's mail and each affected module's message.
    pub outbox: Vec<crate::NewOutboxMessage>,
    /// An exception to record with it: for a refund that failed.
    pub exception: Option<crate::Exception>,
}
