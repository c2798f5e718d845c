//! What there is to pay: items (*partite*) from the portal's modules or created by the
//! payer, gathered in a cart.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{MAX_REASON_LEN, MAX_SOURCE_KEY_LEN, check_key};
use crate::{
    CartId, CreditorId, ItemId, Money, Payer, PayerId, PaymentTypeId, TransactionId,
    ValidationErrors,
};

/// The module name of items a payer creates as free payments.
pub const FREE_PAYMENT_MODULE: &str = "free-payment";

/// Where an item comes from: the portal module that created it and that module's own key.
/// Adding an item with the same source twice is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    /// The module: `"tributi"`, `"pratiche-edilizie"`, …
    pub module: String,
    /// The module's key for the item: its own record id.
    pub key: String,
}

impl Source {
    /// A source.
    pub fn new(module: impl Into<String>, key: impl Into<String>) -> Self {
        Source {
            module: module.into(),
            key: key.into(),
        }
    }

    pub(crate) fn check(&self, errors: &mut ValidationErrors) {
        check_key(errors, "source.module", &self.module);
        if self.key.trim().is_empty()
            || self.key.len() > MAX_SOURCE_KEY_LEN
            || self.key.chars().any(char::is_control)
        {
            errors.push(
                "source.key",
                format!("must have 1 to {MAX_SOURCE_KEY_LEN} printable characters"),
            );
        }
    }
}

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", content = "transaction", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemState {
    /// In the cart, payable.
    Open,
    /// In an open transaction: not payable by another one.
    Locked(TransactionId),
    /// Paid by this transaction: never payable again.
    Paid(TransactionId),
    /// Taken out of the cart by the payer; adding its source again brings it back.
    Removed,
    /// Paid by this transaction, then given back in full: no longer paid. Its module was
    /// told ([`SettlementListener::refunded`](crate::SettlementListener::refunded)) and
    /// decides whether it is owed again; adding its source again brings it back `Open`.
    Refunded(TransactionId),
}

impl ItemState {
    /// The state's name: `open`, `locked`, `paid`, `removed`, `refunded`.
    pub fn name(&self) -> &'static str {
        match self {
            ItemState::Open => "open",
            ItemState::Locked(_) => "locked",
            ItemState::Paid(_) => "paid",
            ItemState::Removed => "removed",
            ItemState::Refunded(_) => "refunded",
        }
    }
}

/// Something a payer owes a creditor (*partita*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayableItem {
    /// Its id.
    pub id: ItemId,
    /// The creditor it is owed to.
    pub creditor_id: CreditorId,
    /// The cart it is in.
    pub cart_id: CartId,
    /// Who owes it.
    pub payer_id: PayerId,
    /// The module and key that created it.
    pub source: Source,
    /// Its payment type.
    pub payment_type_id: PaymentTypeId,
    /// The reason (*causale*).
    pub reason: String,
    /// How much.
    pub amount: Money,
    /// When it is due, if it has a due date.
    pub due_date: Option<NaiveDate>,
    /// The extra fields its type asks for, validated and normalised.
    pub extra: BTreeMap<String, String>,
    /// Where it stands.
    pub state: ItemState,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An item a module asks to be paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewItem {
    /// The module and its key; the same source added twice gives the same item.
    pub source: Source,
    /// The payment type.
    pub payment_type_id: PaymentTypeId,
    /// The reason (*causale*), at most 140 characters.
    pub reason: String,
    /// How much.
    pub amount: Money,
    /// When it is due.
    pub due_date: Option<NaiveDate>,
    /// Extra values, raw; checked against the type's field specs.
    pub extra: BTreeMap<String, String>,
}

impl NewItem {
    /// An item with no due date and no extra values.
    pub fn new(
        source: Source,
        payment_type_id: PaymentTypeId,
        reason: impl Into<String>,
        amount: Money,
    ) -> Self {
        NewItem {
            source,
            payment_type_id,
            reason: reason.into(),
            amount,
            due_date: None,
            extra: BTreeMap::new(),
        }
    }

    /// Sets an extra value.
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Sets the due date.
    pub fn with_due_date(mut self, date: NaiveDate) -> Self {
        self.due_date = Some(date);
        self
    }
}

/// A change a module makes to one of its items still open in a cart
/// ([`Payments::update_item`](crate::Payments::update_item)): a due recalculated, a reason
/// reworded, a due date moved. Fields left `None` stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ItemUpdate {
    /// A new amount.
    pub amount: Option<Money>,
    /// A new reason.
    pub reason: Option<String>,
    /// A new due date (`Some(None)` takes it away).
    pub due_date: Option<Option<NaiveDate>>,
}

impl ItemUpdate {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new amount.
    pub fn amount(mut self, amount: Money) -> Self {
        self.amount = Some(amount);
        self
    }

    /// A new reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// A new due date, or none.
    pub fn due_date(mut self, due_date: Option<NaiveDate>) -> Self {
        self.due_date = Some(due_date);
        self
    }
}

/// A free payment (*pagamento libero*) as the payer filled it in: raw text, as a form sends
/// it. Every problem is reported with its field name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFreeItem {
    /// The payment type chosen.
    pub payment_type_id: Option<PaymentTypeId>,
    /// The amount as typed (`"12,30"`); may be left out when the type's amount is fixed.
    pub amount: Option<String>,
    /// The reason (*causale*).
    pub reason: String,
    /// The extra fields as typed.
    pub extra: BTreeMap<String, String>,
    /// The form's one-time token ([`NewFreeItem::with_token`]): the same form sent twice
    /// (a double click, a reload) adds one item.
    #[serde(default)]
    pub token: Option<String>,
}

/// The longest form token a free payment carries.
pub const MAX_FORM_TOKEN_LEN: usize = 64;

impl NewFreeItem {
    /// A free item of `payment_type` with `amount` and `reason`.
    pub fn new(
        payment_type: PaymentTypeId,
        amount: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        NewFreeItem {
            payment_type_id: Some(payment_type),
            amount: Some(amount.into()),
            reason: reason.into(),
            extra: BTreeMap::new(),
            token: None,
        }
    }

    /// The one-time token of the form it was filled in (a UUID the page put in a hidden
    /// field, 1 to [`MAX_FORM_TOKEN_LEN`] letters, digits, `-` or `_`): sending the same
    /// form again adds nothing and answers the item it added the first time.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets an extra value.
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// Checks a reason (*causale*) and returns it trimmed.
pub(crate) fn check_reason(errors: &mut ValidationErrors, reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() {
        errors.push("reason", crate::Problem::Required);
    } else if reason.chars().count() > MAX_REASON_LEN {
        errors.push(
            "reason",
            crate::Problem::TooLong {
                max: MAX_REASON_LEN,
            },
        );
    } else if reason.chars().any(char::is_control) {
        errors.push("reason", crate::Problem::ControlCharacters);
    }
    reason.to_owned()
}

/// A payer's cart at one creditor: the items they are about to pay in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    /// Its id.
    pub id: CartId,
    /// The creditor its items are owed to.
    pub creditor_id: CreditorId,
    /// Whose cart it is.
    pub payer: Payer,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
}

/// What a cart holds now: its open items and their total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartContents {
    /// The cart.
    pub cart: Cart,
    /// The items still to pay (open or in an unfinished transaction), oldest first.
    pub items: Vec<PayableItem>,
    /// The exact sum of the open items.
    pub total: Money,
}
