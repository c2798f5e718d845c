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
pub enum RefundStatus {
    /// Recorded and counted against what may still be refunded; the provider has not
    /// confirmed it yet (or could not be reached: asking again with the same key retries).
    Requested,
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
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    /// Whether the refund counts against what may still be refunded.
    pub fn counts(self) -> bool {
        self != RefundStatus::Failed
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
}

impl RefundRequest {
    /// A refund of all that is left, under `key`.
    pub fn full(key: impl Into<String>) -> Self {
        RefundRequest {
            amount: None,
            key: key.into(),
            reason: None,
        }
    }

    /// A refund of `amount`, under `key`.
    pub fn partial(amount: Money, key: impl Into<String>) -> Self {
        RefundRequest {
            amount: Some(amount),
            key: key.into(),
            reason: None,
        }
    }

    /// Adds the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Money given back on a paid transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Who asked.
    pub requested_by: Actor,
    /// When it was asked.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The result of [`Store::create_refund`](crate::Store::create_refund).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundCreated {
    /// The refund now in the store: the new one, or the one the key already had.
    pub refund: Refund,
    /// Whether it was inserted now.
    pub created: bool,
}

/// A compare-and-set on a refund: from `Requested` to `to`, with its event, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundUpdate {
    /// The refund.
    pub refund: RefundId,
    /// `Succeeded` or `Failed`.
    pub to: RefundStatus,
    /// The provider's reference.
    pub provider_ref: Option<String>,
    /// The provider's words.
    pub note: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The event appended to the transaction's history in the same database transaction.
    pub event: TransactionEvent,
}
