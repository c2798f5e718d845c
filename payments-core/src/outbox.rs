//! The outbox: messages written in the same database transaction as the payment they come
//! from, delivered afterwards at least once, with retries and exponential backoff.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    CreditorId, ItemId, Locale, MethodKind, Money, OutboxId, PayerId, Source, TransactionId,
    TransactionLine, TxStatus,
};

/// What a payment leaves to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutboxPayload {
    /// An email (or other notification) for a person.
    Notification(Notification),
    /// News for the module that created an item: it was paid.
    Settlement(Settlement),
    /// News for the module that created an item: money paid for it was given back.
    Refund(RefundSettlement),
    /// A reminder to a debt position's payer of a due date, with the notice to pay it.
    Reminder(Reminder),
    /// A debt position changed: the [`PositionArchive`](crate::PositionArchive) is told
    /// its state at delivery.
    Archive(ArchiveSync),
    /// A stored message whose payload does not read (written by a newer version, or edited
    /// by hand): stores hand it over as this, never written. Its delivery fails alone, with
    /// why, and is tried again with the backoff (a newer instance may deliver it
    /// meanwhile); after the last attempt it is `Dead` and an operator sees it.
    Unreadable(UnreadablePayload),
}

/// The payload of a stored message that does not read ([`OutboxPayload::Unreadable`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadablePayload {
    /// The payload as stored, cut to 1,000 characters.
    pub text: String,
    /// Why it does not read.
    pub error: String,
}

/// A debt position to bring up to date in the [`PositionArchive`](crate::PositionArchive)
/// (pagoPA's GPD or ACA): the position is read again at delivery, so messages of older
/// versions deliver the latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSync {
    /// The outbox message id.
    pub id: OutboxId,
    /// The position.
    pub position_id: crate::DebtPositionId,
    /// Its version when the message was written.
    pub version: u32,
}

/// A reminder of a debt position's due date
/// ([`Payments::send_reminders`](crate::Payments::send_reminders)): the position as it
/// was when the reminder was written, so the notice attached is the one the payer can pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    /// The outbox message id (the mail's Message-ID is derived from it).
    pub id: OutboxId,
    /// The payer's address.
    pub to: String,
    /// The payer's language.
    pub locale: Locale,
    /// The creditor, for the notice's header.
    pub creditor: crate::Creditor,
    /// The position.
    pub position: crate::DebtPosition,
    /// The option whose due date it is about.
    pub option: usize,
    /// Days from the due date: −7 a week before, 3 three days after.
    pub offset_days: i64,
}

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationKind {
    /// The payer's receipt.
    Receipt,
    /// The creditor's notice of a completed payment.
    CreditorNotice,
    /// The payer's receipt of a refund: [`TransactionSummary::returned`] was given back.
    RefundReceipt,
    /// The creditor's notice of a refund.
    RefundNotice,
    /// The payer is told that part of a payment ([`TransactionSummary::returned`]) paid
    /// items already paid, and will be given back.
    DuplicatePayment,
}

impl NotificationKind {
    /// Whether it goes to the payer (receipts and news of their money), or else to the
    /// creditor.
    pub fn is_for_payer(self) -> bool {
        matches!(
            self,
            NotificationKind::Receipt
                | NotificationKind::RefundReceipt
                | NotificationKind::DuplicatePayment
        )
    }
}

/// A transaction as a receipt or a notice tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionSummary {
    /// `Paid`, or `Reported` for a bank transfer the payer reported and the creditor has yet
    /// to verify.
    pub status: TxStatus,
    /// The payment identifier.
    pub transaction_id: TransactionId,
    /// The provider's reference.
    pub provider_ref: Option<String>,
    /// The creditor's id.
    pub creditor_id: CreditorId,
    /// The creditor's name.
    pub creditor_name: String,
    /// The creditor's fiscal code.
    pub creditor_fiscal_code: String,
    /// The payer's id.
    pub payer_id: PayerId,
    /// The payer's name.
    pub payer_name: String,
    /// The payer's fiscal code, if known.
    pub payer_fiscal_code: Option<String>,
    /// How it was paid.
    pub method_kind: MethodKind,
    /// What was paid.
    pub lines: Vec<TransactionLine>,
    /// The names of the lines' payment types.
    #[serde(default)]
    pub type_names: std::collections::BTreeMap<crate::PaymentTypeId, String>,
    /// The total.
    pub total: Money,
    /// When it was paid (or reported, or refunded).
    pub paid_at: DateTime<Utc>,
    /// For a refund, what was given back; for a double payment, what will be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned: Option<Money>,
    /// Each line's reference, as its receipt prints it: the pagoPA notice number it was
    /// paid with, or its module and key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
}

/// A notification to deliver: who to, in which language, about which payment. A
/// [`Notifier`](crate::Notifier) renders and sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The outbox message it travels in: the same on every attempt, so a notifier can make
    /// deliveries idempotent (for instance as the email's Message-ID).
    pub id: OutboxId,
    /// Receipt or creditor notice.
    pub kind: NotificationKind,
    /// The recipient's email address.
    pub to: String,
    /// The language.
    pub locale: Locale,
    /// The payment.
    pub summary: TransactionSummary,
}

/// What a module learns when one of its items is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The outbox message it travels in: the same on every attempt.
    pub id: OutboxId,
    /// The item's module and key.
    pub source: Source,
    /// The item.
    pub item_id: ItemId,
    /// The transaction that paid it.
    pub transaction_id: TransactionId,
    /// The amount paid for it.
    pub amount: Money,
    /// When.
    pub paid_at: DateTime<Utc>,
}

/// What a module learns when money paid for one of its items is given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundSettlement {
    /// The outbox message it travels in: the same on every attempt.
    pub id: OutboxId,
    /// The item's module and key.
    pub source: Source,
    /// The item.
    pub item_id: ItemId,
    /// The transaction that had paid it.
    pub transaction_id: TransactionId,
    /// The refund.
    pub refund_id: crate::RefundId,
    /// What was given back for this item.
    pub amount: Money,
    /// Whether the item's whole amount has now been given back: the item is no longer
    /// paid ([`ItemState::Refunded`](crate::ItemState::Refunded)).
    pub in_full: bool,
    /// When.
    pub refunded_at: DateTime<Utc>,
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOutboxMessage {
    /// Its id.
    pub id: OutboxId,
    /// The transaction it comes from.
    pub transaction_id: TransactionId,
    /// What to deliver.
    pub payload: OutboxPayload,
}

/// Where an outbox message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutboxStatus {
    /// To deliver (again) at `next_attempt_at`.
    Pending,
    /// Delivered.
    Delivered,
    /// Given up after too many attempts; an operator can see it and retry it.
    Dead,
}

impl OutboxStatus {
    /// The snake_case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
        }
    }

    /// Reads a name written by [`OutboxStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            OutboxStatus::Pending,
            OutboxStatus::Delivered,
            OutboxStatus::Dead,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Its id.
    pub id: OutboxId,
    /// The transaction it comes from.
    pub transaction_id: TransactionId,
    /// The creditor of that transaction.
    pub creditor_id: CreditorId,
    /// What to deliver.
    pub payload: OutboxPayload,
    /// Where it stands.
    pub status: OutboxStatus,
    /// How many deliveries were started.
    pub attempts: u32,
    /// When it may be claimed next.
    pub next_attempt_at: DateTime<Utc>,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// When to try a failed delivery again, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each further one.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// After this many failed attempts the message is `Dead`.
    pub max_attempts: u32,
    /// How long a claimed message is left to its dispatcher before another may take it.
    pub lease: Duration,
}

impl Default for RetryPolicy {
    /// 30 s, doubling up to 1 h, giving up after 10 attempts; 5 min lease.
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            max_attempts: 10,
            lease: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt (1-based), or `None` to give up.
    pub fn delay_after(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        Some(self.base_delay.saturating_mul(factor).min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_survive_json() {
        let n = crate::testing::notifier::sample_notification(
            NotificationKind::Receipt,
            "a@example.it",
            Locale::En,
        );
        let payload = OutboxPayload::Notification(n);
        let json = serde_json::to_string(&payload).unwrap();
        assert_eq!(
            serde_json::from_str::<OutboxPayload>(&json).unwrap(),
            payload
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let p = RetryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
            lease: Duration::from_secs(1),
        };
        let delays: Vec<_> = (1..=5)
            .map(|a| p.delay_after(a).map(|d| d.as_secs()))
            .collect();
        assert_eq!(delays, vec![Some(10), Some(20), Some(40), Some(60), None]);
    }
}
