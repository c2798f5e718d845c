//! The [`Store`] trait: all persistence, and the atomicity the rules depend on.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    Cart, CartId, Creditor, CreditorId, GatewayId, HistoryQuery, ItemId, MethodId, MovementPage,
    MovementQuery, OutboxId, OutboxMessage, OutboxQuery, Page, PayableItem, PayerId, PaymentMethod,
    PaymentType, PaymentTypeId, Result, Transaction, TransactionEvent, TransactionId, Transition,
};

/// The result of [`Store::add_item`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemAdded {
    /// The item now in the store: the new one, or the one that already had that source.
    pub item: PayableItem,
    /// Whether it was inserted now.
    pub created: bool,
}

/// The result of [`Store::create_transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionCreated {
    /// The transaction now in the store: the new one, or the one that already had that
    /// payer's idempotency key.
    pub transaction: Transaction,
    /// Whether it was inserted now.
    pub created: bool,
}

/// All persistence.
///
/// # Contract
/// Every implementation keeps these promises; the conformance suite
/// (`payments_core::testing::store`, feature `testing`) checks them.
/// - Each method is atomic: it happens whole or not at all, even when many callers run at
///   once, in one process or in several sharing the database.
/// - [`Store::add_item`] is idempotent on `(creditor, source)`.
/// - [`Store::create_transaction`] is idempotent on `(payer, idempotency key)`, and locks the
///   items of its lines only if every one is `Open` in the transaction's cart: an item is in
///   at most one open transaction, and a paid item is never locked again.
/// - [`Store::transition`] is a compare-and-set: it applies only if the transaction is in
///   `from`, and then in one database transaction it moves the state, appends the event,
///   settles (`Paid`) or frees (`Failed`, `Cancelled`, `Expired`, `Rejected`,
///   `PartiallyPaid`) the items, enqueues the outbox messages and records the exceptions.
///   Otherwise it changes nothing and returns
///   [`Conflict::StaleState`](crate::Conflict::StaleState).
///   - A move to `Paid` settles every line's item, whatever its state (`Open`, `Locked` by
///     any transaction, `Removed`, `Refunded`), except those in `already_paid`, which
///     must be `Paid` (by another transaction, or by this one line by line) and stay so.
///     If an item is `Paid` without being in `already_paid`, or one in it is not, nothing
///     changes and the answer is [`Conflict::ItemsChanged`](crate::Conflict::ItemsChanged):
///     whether an item is already paid is decided here, atomically.
///   - A move to a state that frees items, of a transaction some of whose lines were
///     paid on their own ([`Store::pay_line`]), ends in `PartiallyPaid` instead (the event
///     says so): the paid items stay paid, only the others are freed.
/// - [`Store::pay_line`] records a line's payment once per key and decides, atomically,
///   whether it settles the line or pays it a second time.
/// - [`Store::insert_bank_entry`] and [`Store::insert_exception`] record once per key;
///   a bank entry that is an exception records its [`Exception::for_bank_entry`](crate::Exception::for_bank_entry) with it.
/// - [`Store::claim_outbox`] hands a due message to one claimer until its lease ends.
/// - Listings come newest first (by id, which is time-ordered) and page by keyset.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// Inserts or replaces a creditor.
    async fn put_creditor(&self, creditor: &Creditor) -> Result<()>;
    /// A creditor.
    async fn creditor(&self, id: CreditorId) -> Result<Option<Creditor>>;
    /// Inserts or replaces a payment type.
    async fn put_payment_type(&self, payment_type: &PaymentType) -> Result<()>;
    /// A payment type.
    async fn payment_type(&self, id: PaymentTypeId) -> Result<Option<PaymentType>>;
    /// A creditor's payment types.
    async fn payment_types(&self, creditor: CreditorId) -> Result<Vec<PaymentType>>;
    /// Inserts or replaces a payment method.
    async fn put_method(&self, method: &PaymentMethod) -> Result<()>;
    /// A payment method.
    async fn method(&self, id: MethodId) -> Result<Option<PaymentMethod>>;
    /// A creditor's payment methods.
    async fn methods(&self, creditor: CreditorId) -> Result<Vec<PaymentMethod>>;

    /// The payer's cart at the creditor, with the payer's details updated from `cart`;
    /// inserts `cart` when they have none.
    async fn open_cart(&self, cart: &Cart) -> Result<Cart>;
    /// A cart.
    async fn cart(&self, id: CartId) -> Result<Option<Cart>>;
    /// Inserts an item, unless the creditor already has one with its source: then returns
    /// that one, and if it was `Removed` or `Refunded` and belongs to the same payer, puts
    /// it back `Open` in the new item's cart.
    async fn add_item(&self, item: &PayableItem) -> Result<ItemAdded>;
    /// Replaces the reason, amount and due date of the item with `item.id` by `item`'s, if
    /// it is still `Open` (compare-and-set); otherwise
    /// [`Conflict::ItemUnavailable`](crate::Conflict::ItemUnavailable) naming its state, and
    /// nothing changes.
    async fn update_item(&self, item: &PayableItem) -> Result<PayableItem>;
    /// An item.
    async fn item(&self, id: ItemId) -> Result<Option<PayableItem>>;
    /// A cart's items that are `Open` or `Locked`, oldest first.
    async fn cart_items(&self, cart: CartId) -> Result<Vec<PayableItem>>;
    /// A cart with its items that are `Open` or `Locked`, oldest first (as
    /// [`cart`](Self::cart) and [`cart_items`](Self::cart_items) answer), in one read where
    /// the store can: a checkout reads them together.
    async fn cart_with_items(&self, cart: CartId) -> Result<Option<(Cart, Vec<PayableItem>)>> {
        let Some(found) = self.cart(cart).await? else {
            return Ok(None);
        };
        Ok(Some((found, self.cart_items(cart).await?)))
    }
    /// Moves an item from `Open` to `Removed`; a `Conflict` in any other state.
    async fn remove_item(&self, item: ItemId) -> Result<PayableItem>;

    /// Inserts a `Created` transaction with its first event and locks its items, each only
    /// while still open at the amount its line charges (an item changed meanwhile is a
    /// `Conflict` and nothing is written); see the contract above.
    async fn create_transaction(
        &self,
        transaction: &Transaction,
        event: &TransactionEvent,
    ) -> Result<TransactionCreated>;
    /// A transaction.
    async fn transaction(&self, id: TransactionId) -> Result<Option<Transaction>>;
    /// The transaction a payer created with an idempotency key.
    async fn transaction_by_key(
        &self,
        payer: &PayerId,
        idempotency_key: &str,
    ) -> Result<Option<Transaction>>;
    /// The transaction a gateway knows by its own reference.
    async fn transaction_by_provider_ref(
        &self,
        gateway: &GatewayId,
        provider_ref: &str,
    ) -> Result<Option<Transaction>>;
    /// The transactions of `ids` that exist, in one read where the store can.
    async fn transactions_of(&self, ids: &[TransactionId]) -> Result<Vec<Transaction>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.transaction(*id).await? {
                found.push(t);
            }
        }
        Ok(found)
    }
    /// For each of `provider_refs`, the transaction the gateway knows by it (as
    /// [`transaction_by_provider_ref`](Self::transaction_by_provider_ref) answers), in one
    /// read where the store can.
    async fn transactions_by_provider_refs(
        &self,
        gateway: &GatewayId,
        provider_refs: &[String],
    ) -> Result<Vec<Transaction>> {
        let mut found = Vec::new();
        for r in provider_refs {
            if let Some(t) = self.transaction_by_provider_ref(gateway, r).await? {
                found.push(t);
            }
        }
        Ok(found)
    }
    /// Applies a compare-and-set state change; see the contract above.
    async fn transition(&self, transition: &Transition) -> Result<Transaction>;
    /// A transaction's events, oldest first.
    async fn events(&self, transaction: TransactionId) -> Result<Vec<TransactionEvent>>;
    /// The events of several transactions (a page of history), each transaction's oldest
    /// first.
    async fn events_of(&self, transactions: &[TransactionId]) -> Result<Vec<TransactionEvent>>;
    /// Up to `limit` transactions still `Created` or `Pending` whose `expires_at` is not
    /// after `now`, soonest first.
    async fn due_for_expiry(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Transaction>>;

    /// Claims up to `limit` `Pending` messages due at `now`: each gets one more attempt and
    /// is not due again before `lease_until`, so no other claimer takes it meanwhile.
    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>>;
    /// Marks a message delivered.
    async fn outbox_delivered(&self, id: OutboxId, at: DateTime<Utc>) -> Result<()>;
    /// Records a failed delivery: due again at `retry_at`, or `Dead` when `None`.
    async fn outbox_failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()>;
    /// Makes a `Dead` message `Pending` again, due at `at`, with its attempts reset.
    async fn outbox_retry(&self, id: OutboxId, at: DateTime<Utc>) -> Result<OutboxMessage>;
    /// An outbox message.
    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>>;
    /// Outbox messages, oldest first.
    async fn outbox(&self, query: &OutboxQuery) -> Result<Vec<OutboxMessage>>;

    /// Inserts a bank entry unless the creditor already has one with its key; answers
    /// whether it was inserted. An entry whose outcome is an exception records, in the
    /// same database transaction, the ledger's [`Exception::for_bank_entry`](crate::Exception::for_bank_entry) (once per
    /// key).
    async fn insert_bank_entry(&self, entry: &crate::BankEntry) -> Result<bool>;
    /// Records a chunk of bank entries in one database transaction, step by step in order:
    /// a step whose key the creditor already has changes nothing
    /// ([`BankStepDone::AlreadyRecorded`](crate::BankStepDone::AlreadyRecorded)); otherwise
    /// its entry is inserted (with its exception, as [`insert_bank_entry`](Self::insert_bank_entry)
    /// does) and its payment applied as [`transition`](Self::transition) applies one. A
    /// payment refused as a `Conflict` undoes its own step only
    /// ([`BankStepDone::Conflict`](crate::BankStepDone::Conflict)); any other error undoes
    /// the whole chunk. A crash leaves every chunk whole or absent.
    async fn record_bank_entries(
        &self,
        steps: &[crate::BankStep],
    ) -> Result<Vec<crate::BankStepDone>>;
    /// Of `keys`, those the creditor already has bank entries for.
    async fn bank_entry_keys(&self, creditor: CreditorId, keys: &[String]) -> Result<Vec<String>> {
        let mut known = Vec::new();
        for key in keys {
            let mut q = crate::BankEntryQuery::new(creditor);
            q.key = Some(key.clone());
            q.limit = 1;
            if !self.bank_entries(&q).await?.is_empty() {
                known.push(key.clone());
            }
        }
        Ok(known)
    }

    /// Records the payment of one line of a transaction, atomically:
    /// - a payment whose key the creditor already has is a replay: nothing changes, and
    ///   the answer says what became of it the first time (`recorded: false`);
    /// - if the line's item is already `Paid` (by this transaction or another), the
    ///   payment (or paid and given back, `Refunded`) is recorded as a
    ///   [`LinePaymentOutcome::Duplicate`](crate::LinePaymentOutcome::Duplicate)
    ///   with its `duplicate` exception and an event;
    /// - otherwise the item becomes `Paid` by this transaction whatever its state (`Open`,
    ///   `Locked` by any transaction, `Removed`, `Refunded`), the line's `paid_at` is set,
    ///   the payment's messages are enqueued and an event appended; if the transaction had
    ///   ended (`is_late`), the `late` exception is recorded too. When every line is then
    ///   paid, the transaction moves to `Paid` (from any state but `Paid` and `Refunded`,
    ///   with its own event); when it had ended without all of them, to `PartiallyPaid`.
    async fn pay_line(&self, payment: &crate::LinePayment) -> Result<crate::LinePaid>;
    /// The line payment a creditor recorded with `key` (a provider's receipt key), if any:
    /// how a receipt read back again is known to be applied already.
    async fn line_payment(
        &self,
        creditor: CreditorId,
        key: &str,
    ) -> Result<Option<crate::LinePaymentRecord>>;
    /// The line payments recorded for a transaction, oldest first (by the time recorded,
    /// then by key).
    async fn line_payments(
        &self,
        transaction: TransactionId,
    ) -> Result<Vec<crate::LinePaymentRecord>>;

    /// Records an exception unless the creditor already has one with its key; answers
    /// whether it was inserted.
    async fn insert_exception(&self, exception: &crate::Exception) -> Result<bool>;
    /// An exception.
    async fn exception(&self, id: crate::ExceptionId) -> Result<Option<crate::Exception>>;
    /// A creditor's exceptions, newest first (by id), paged by `before`.
    async fn exceptions(&self, query: &crate::ExceptionQuery) -> Result<Vec<crate::Exception>>;
    /// Resolves an open exception and appends the update's event, atomically; a
    /// `Conflict` if it is no longer open.
    async fn resolve_exception(&self, update: &crate::ExceptionUpdate) -> Result<crate::Exception>;

    /// Postpones the expiry of a transaction still in `extension.status`, appends an
    /// event with the note (from and to that state) and records the exceptions;
    /// [`Conflict::StaleState`](crate::Conflict::StaleState) if it moved meanwhile.
    async fn extend_expiry(&self, extension: &crate::ExpiryExtension) -> Result<Transaction>;
    /// A creditor's bank entries, newest first (by import time, then key).
    async fn bank_entries(&self, query: &crate::BankEntryQuery) -> Result<Vec<crate::BankEntry>>;

    /// Records a provider's receipt unless the creditor already has one with its key;
    /// answers whether it was inserted (a receipt sent again changes nothing).
    async fn insert_provider_receipt(&self, receipt: &crate::ProviderReceipt) -> Result<bool>;
    /// A creditor's provider receipts, newest first (by the time recorded, then key).
    async fn provider_receipts(
        &self,
        query: &crate::ProviderReceiptQuery,
    ) -> Result<Vec<crate::ProviderReceipt>>;

    /// Stores a revision of a reporting flow, once per creditor, flow id, PSP and revision.
    /// A later revision than the one stored replaces it in one database transaction (the
    /// old one is kept, marked replaced); the same revision again, or an older one, changes
    /// nothing.
    async fn put_flow(&self, flow: &crate::ReportingFlow) -> Result<crate::FlowStored>;
    /// A creditor's flows, newest published first (then by flow id and PSP id).
    async fn flows(&self, query: &crate::FlowQuery) -> Result<Vec<crate::ReportingFlow>>;
    /// Replaces the stored revision of `flow` with it, records `exceptions` (each once, as
    /// [`Store::insert_exception`]) and marks the creditor's receipts with the keys
    /// `reported` as reported by the flow, in one database transaction. A compare-and-set:
    /// it applies only if the stored revision's version is `flow.version - 1` and no later
    /// revision replaced it, and answers whether it applied.
    async fn update_flow(
        &self,
        flow: &crate::ReportingFlow,
        exceptions: &[crate::Exception],
        reported: &[String],
    ) -> Result<bool>;
    /// A creditor's receipts that came through `gateway`, recorded before `before`, that
    /// no flow reported ([`Store::update_flow`]), oldest first (by the time recorded, then
    /// key), after `after` (the last of the previous page).
    async fn unreported_receipts(
        &self,
        creditor: CreditorId,
        gateway: &GatewayId,
        before: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<crate::ProviderReceipt>>;

    /// Reserves `count` (at least 1) consecutive values of the counter `name` and returns
    /// the first. A counter starts at 1. Values are never handed out twice, also to callers
    /// in several processes sharing the database; a value reserved and never used is
    /// skipped. pagoPA allocates the bases of its notice numbers with it.
    async fn allocate_sequence(&self, name: &str, count: u32) -> Result<u64>;

    /// Records a refund of a `Paid` transaction with its event, atomically: idempotent on
    /// `(transaction, key)` (the refund the key already has is returned, `created: false`);
    /// otherwise refused with a `Conflict` unless the transaction is `Paid` (any state for
    /// a refund of a double payment, [`Refund::excess`](crate::Refund::excess)), and with a
    /// validation error unless it fits what is left, in total and line by line
    /// ([`check_refund_fits`](crate::check_refund_fits), under the transaction's lock). Two
    /// refunds asked at once can never both pass.
    async fn create_refund(
        &self,
        refund: &crate::Refund,
        event: &TransactionEvent,
    ) -> Result<crate::RefundCreated>;
    /// Moves a refund from `update.from` to `update.to` (a `Conflict` if it is in another
    /// state), and in the same database transaction appends the event, enqueues the
    /// messages and records the exception. When it moves to `Succeeded`, the items of the
    /// lines that the succeeded refunds now give back in full
    /// ([`lines_refunded_in_full`](crate::lines_refunded_in_full)) and that this
    /// transaction had paid become [`ItemState::Refunded`](crate::ItemState::Refunded), and
    /// the messages to modules say so ([`with_lines_in_full`](crate::with_lines_in_full)):
    /// decided under the transaction's lock, so two refunds finishing at once see each
    /// other.
    async fn finish_refund(&self, update: &crate::RefundUpdate) -> Result<crate::Refund>;
    /// A transaction's refunds, oldest first.
    async fn refunds(&self, transaction: TransactionId) -> Result<Vec<crate::Refund>>;
    /// Up to `limit` refunds still `Requested` or `Pending`, by id, after `after`: what the
    /// reconciliation sweep asks providers about.
    async fn unfinished_refunds(
        &self,
        after: Option<crate::RefundId>,
        limit: u32,
    ) -> Result<Vec<crate::Refund>>;

    /// Up to `limit` transactions of the `gateways` still `Created` or `Pending` that last
    /// changed at or before `before`, by id, after `after`: what a reconciliation sweep
    /// asks providers about (only those that answer; none when `gateways` is empty).
    async fn unfinished(
        &self,
        before: DateTime<Utc>,
        gateways: &[crate::GatewayId],
        after: Option<TransactionId>,
        limit: u32,
    ) -> Result<Vec<Transaction>>;

    /// Inserts each debt position unless its creditor already has one with its module and
    /// key, with its event (the one at the same index in `events`) and its outbox message
    /// (the one at the same index in `messages`, if any, enqueued for the position's
    /// creditor at the event's time), in batches of database transactions; answers, per
    /// position, whether it was inserted. Notice numbers are unique per creditor: a
    /// position naming one already taken is refused whole (a `Conflict`) and nothing of its
    /// batch is written.
    async fn insert_positions(
        &self,
        positions: &[crate::DebtPosition],
        events: &[crate::PositionEvent],
        messages: &[crate::NewOutboxMessage],
    ) -> Result<Vec<bool>>;
    /// A debt position.
    async fn position(&self, id: crate::DebtPositionId) -> Result<Option<crate::DebtPosition>>;
    /// The debt position a creditor's module registered with `key`.
    async fn position_by_key(
        &self,
        creditor: CreditorId,
        module: &str,
        key: &str,
    ) -> Result<Option<crate::DebtPosition>>;
    /// The debt position one of whose options has `notice_number` at `creditor`.
    async fn position_by_notice(
        &self,
        creditor: CreditorId,
        notice_number: &str,
    ) -> Result<Option<crate::DebtPosition>>;
    /// Debt positions, newest first (by id), paged by `before`.
    async fn positions(&self, query: &crate::PositionQuery) -> Result<Vec<crate::DebtPosition>>;
    /// Replaces a debt position with `position` if its stored version is still
    /// `position.version - 1`, appends `event` and enqueues `messages` (for the position's
    /// creditor, at the event's time), atomically; otherwise
    /// [`Conflict::StaleState`](crate::Conflict::StaleState)-like `Conflict` and nothing
    /// changes.
    async fn update_position(
        &self,
        position: &crate::DebtPosition,
        event: &crate::PositionEvent,
        messages: &[crate::NewOutboxMessage],
    ) -> Result<crate::DebtPosition>;
    /// A debt position's events, oldest first.
    async fn position_events(
        &self,
        position: crate::DebtPositionId,
    ) -> Result<Vec<crate::PositionEvent>>;
    /// Enqueues `message` for `creditor`, due at `at`, unless a message was already
    /// enqueued with `key`; answers whether it was. Reminders go out once per option and
    /// step this way.
    async fn enqueue_once(
        &self,
        key: &str,
        creditor: CreditorId,
        message: &crate::NewOutboxMessage,
        at: DateTime<Utc>,
    ) -> Result<bool>;

    /// An operator's search; the count and total cover the whole selection. Pages go
    /// newest first by creation time, then by id; `after` continues after that
    /// transaction in this order (an unknown cursor gives an empty page).
    async fn search(&self, query: &MovementQuery) -> Result<MovementPage>;
    /// A payer's transactions.
    async fn history(&self, query: &HistoryQuery) -> Result<Page<Transaction>>;
}

/// The longest counter name [`Store::allocate_sequence`] takes.
pub const MAX_SEQUENCE_NAME_LEN: usize = 100;

/// Checks the arguments of [`Store::allocate_sequence`], for every store.
pub fn check_sequence(name: &str, count: u32) -> Result<()> {
    if name.is_empty() || name.len() > MAX_SEQUENCE_NAME_LEN || name.chars().any(char::is_control) {
        return Err(crate::Error::invalid(
            "name",
            format!("must have 1 to {MAX_SEQUENCE_NAME_LEN} printable characters"),
        ));
    }
    if count == 0 {
        return Err(crate::Error::invalid("count", "must be at least 1"));
    }
    Ok(())
}

/// The error a store gives when a refund of `amount` would exceed what is left of `total`
/// after `refunded`.
pub fn refund_exceeds(
    total: &crate::Money,
    refunded: &crate::Money,
    amount: &crate::Money,
) -> crate::Error {
    let left = crate::Money::from_minor(
        total.minor_units() - refunded.minor_units(),
        total.currency(),
    )
    .unwrap_or_else(|_| crate::Money::zero(total.currency()));
    crate::Error::invalid(
        "amount",
        format!("{amount} is more than the {left} left to refund of {total}"),
    )
}
