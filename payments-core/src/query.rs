//! Reading back: a payer's history and an operator's search of movements, paged by keyset.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    CreditorId, Currency, MethodKind, Money, OutboxStatus, PayerId, PaymentTypeId, Transaction,
    TransactionId, TxStatus,
};

/// The most rows one page returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// An operator's search of a creditor's movements (transactions). Every filter is optional
/// and they combine with AND; results come newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementQuery {
    /// The creditor searched.
    pub creditor_id: CreditorId,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
    /// In one of these states (any state when empty).
    pub statuses: Vec<TxStatus>,
    /// With at least one item of this type.
    pub payment_type_id: Option<PaymentTypeId>,
    /// Paid with this kind of method.
    pub method_kind: Option<MethodKind>,
    /// With at least one item from this module.
    pub module: Option<String>,
    /// By this payer.
    pub payer_id: Option<PayerId>,
    /// With a total of at least this.
    pub min_total: Option<Money>,
    /// With a total of at most this.
    pub max_total: Option<Money>,
    /// Continue after this transaction (the previous page's `next`).
    pub after: Option<TransactionId>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl MovementQuery {
    /// Every movement of `creditor`, 50 a page.
    pub fn new(creditor_id: CreditorId) -> Self {
        MovementQuery {
            creditor_id,
            from: None,
            to: None,
            statuses: Vec::new(),
            payment_type_id: None,
            method_kind: None,
            module: None,
            payer_id: None,
            min_total: None,
            max_total: None,
            after: None,
            limit: 50,
        }
    }

    /// Whether `tx` passes every filter (the cursor and the page size aside). Stores that
    /// filter in memory use this; SQL stores must agree with it.
    pub fn matches(&self, tx: &Transaction) -> bool {
        tx.creditor_id == self.creditor_id
            && self.from.is_none_or(|f| tx.created_at >= f)
            && self.to.is_none_or(|t| tx.created_at < t)
            && (self.statuses.is_empty() || self.statuses.contains(&tx.status))
            && self
                .payment_type_id
                .is_none_or(|p| tx.lines.iter().any(|l| l.payment_type_id == p))
            && self.method_kind.is_none_or(|m| tx.method_kind == m)
            && self
                .module
                .as_ref()
                .is_none_or(|m| tx.lines.iter().any(|l| &l.source.module == m))
            && self.payer_id.as_ref().is_none_or(|p| &tx.payer.id == p)
            && self
                .min_total
                .is_none_or(|m| tx.total.minor_units() >= m.minor_units())
            && self
                .max_total
                .is_none_or(|m| tx.total.minor_units() <= m.minor_units())
    }
}

/// A payer's own transactions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Whose.
    pub payer_id: PayerId,
    /// Only at this creditor, if set.
    pub creditor_id: Option<CreditorId>,
    /// Continue after this transaction (the previous page's `next`).
    pub after: Option<TransactionId>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl HistoryQuery {
    /// The first 20 transactions of `payer`, everywhere.
    pub fn new(payer_id: impl Into<PayerId>) -> Self {
        HistoryQuery {
            payer_id: payer_id.into(),
            creditor_id: None,
            after: None,
            limit: 20,
        }
    }
}

/// One page of results, and the cursor to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<TransactionId>,
}

impl Page<Transaction> {
    /// A page from up to `limit + 1` rows fetched in order: the extra row, if any, only
    /// tells that another page follows, after the last row kept.
    pub fn from_overfetch(mut items: Vec<Transaction>, limit: u32) -> Self {
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|t| t.id)
        } else {
            None
        };
        Page { items, next }
    }
}

/// One transaction of a payer's history, with its items (its lines) and its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The transaction and its items.
    pub transaction: Transaction,
    /// Its state changes, oldest first.
    pub events: Vec<crate::TransactionEvent>,
}

/// A page of movements, with the count and total of the whole selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementPage {
    /// This page.
    pub page: Page<Transaction>,
    /// How many transactions the filters select, all pages together.
    pub count: u64,
    /// Their total, all pages together.
    pub total: Money,
}

impl MovementPage {
    /// An empty result.
    pub fn empty() -> Self {
        MovementPage {
            page: Page {
                items: Vec::new(),
                next: None,
            },
            count: 0,
            total: Money::zero(Currency::Eur),
        }
    }
}

/// Which outbox messages to list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutboxQuery {
    /// Only of this creditor.
    pub creditor_id: Option<CreditorId>,
    /// Only of this transaction.
    pub transaction_id: Option<TransactionId>,
    /// Only in this state.
    pub status: Option<OutboxStatus>,
    /// At most this many (all when 0).
    pub limit: u32,
}
