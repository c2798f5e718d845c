//! [`InMemoryStore`]: a [`Store`] in process memory, for tests, examples and trying the
//! library. It keeps every promise of the trait (each call holds one lock, so each is
//! atomic) but nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    Cart, CartId, Conflict, Creditor, CreditorId, Currency, Error, EventId, GatewayId,
    HistoryQuery, ItemAdded, ItemId, ItemState, MethodId, Money, MovementPage, MovementQuery,
    NewOutboxMessage, OutboxId, OutboxMessage, OutboxQuery, OutboxStatus, Page, PayableItem,
    PayerId, PaymentMethod, PaymentType, PaymentTypeId, Result, Store, Transaction,
    TransactionCreated, TransactionEvent, TransactionId, Transition, TxStatus,
};

#[derive(Debug, Default)]
struct State {
    creditors: HashMap<CreditorId, Creditor>,
    payment_types: BTreeMap<PaymentTypeId, PaymentType>,
    methods: BTreeMap<MethodId, PaymentMethod>,
    carts: HashMap<CartId, Cart>,
    items: BTreeMap<ItemId, PayableItem>,
    transactions: BTreeMap<TransactionId, Transaction>,
    events: BTreeMap<EventId, TransactionEvent>,
    outbox: BTreeMap<OutboxId, OutboxMessage>,
    bank_entries: BTreeMap<(CreditorId, String), crate::BankEntry>,
    provider_receipts: BTreeMap<(CreditorId, String), crate::ProviderReceipt>,
    /// The flow that reported each receipt (creditor, receipt key).
    reported_receipts: HashMap<(CreditorId, String), String>,
    /// Reporting flows by (creditor, flow id, PSP id, revision).
    flows: BTreeMap<(CreditorId, String, String, u32), crate::ReportingFlow>,
    /// Bank entry keys by transaction and by reference, as the SQL indexes find them.
    entries_by_tx: HashMap<TransactionId, Vec<(CreditorId, String)>>,
    entries_by_reference: HashMap<(CreditorId, String), Vec<(CreditorId, String)>>,
    sequences: HashMap<String, u64>,
    refunds: BTreeMap<crate::RefundId, crate::Refund>,
    refunds_by_tx: HashMap<TransactionId, Vec<crate::RefundId>>,
    exceptions: BTreeMap<crate::ExceptionId, crate::Exception>,
    exception_by_key: HashMap<(CreditorId, String), crate::ExceptionId>,
    line_payments: HashMap<(CreditorId, String), crate::LinePaymentRecord>,
    line_payments_by_tx: HashMap<TransactionId, Vec<(CreditorId, String)>>,
    // Indexes, as a SQL store has them, so the store stays fast with many rows.
    cart_by_payer: HashMap<(CreditorId, PayerId), CartId>,
    item_by_source: HashMap<(CreditorId, crate::Source), ItemId>,
    items_by_cart: HashMap<CartId, std::collections::BTreeSet<ItemId>>,
    tx_by_key: HashMap<(PayerId, String), TransactionId>,
    /// Transactions by gateway and provider reference, as a SQL index would find them.
    by_provider_ref: HashMap<(GatewayId, String), std::collections::BTreeSet<TransactionId>>,
    positions: BTreeMap<crate::DebtPositionId, crate::DebtPosition>,
    position_by_key: HashMap<(CreditorId, String, String), crate::DebtPositionId>,
    position_by_notice: HashMap<(CreditorId, String), crate::DebtPositionId>,
    position_by_source: HashMap<(CreditorId, crate::Source), (crate::DebtPositionId, usize)>,
    position_events: HashMap<crate::DebtPositionId, Vec<crate::PositionEvent>>,
    enqueued_keys: std::collections::HashSet<String>,
}

impl State {
    /// Records the debt position options that `lines` of `tx` pay (the store contract's
    /// rule for positions).
    fn positions_paid(&mut self, tx: &Transaction, lines: &[usize], at: DateTime<Utc>) {
        for &line in lines {
            let Some((id, option)) = self.option_of_line(tx, line) else {
                continue;
            };
            let Some(position) = self.positions.get_mut(&id) else {
                continue;
            };
            if let Some((event, twice)) = position.record_payment(option, tx.id, at) {
                let exception = twice.then(|| position.double_payment(option, tx.id, line, at));
                // The other way of paying is closed: its items leave the carts.
                let closed: Vec<crate::Source> = if twice {
                    Vec::new()
                } else {
                    position
                        .closed_by(option)
                        .into_iter()
                        .flat_map(|j| position.sources_of(j))
                        .collect()
                };
                self.position_events.entry(id).or_default().push(event);
                if let Some(e) = exception {
                    self.insert_exception(&e);
                }
                let closed: Vec<ItemId> = closed
                    .into_iter()
                    .filter_map(|source| {
                        self.item_by_source.get(&(tx.creditor_id, source)).copied()
                    })
                    .collect();
                self.remove_open(&closed);
            }
        }
    }

    /// Records the debt position options whose payment by `tx` (its `lines`) was given
    /// back in full.
    fn positions_refunded(&mut self, tx: &Transaction, lines: &[usize], at: DateTime<Utc>) {
        for &line in lines {
            let Some((id, option)) = self.option_of_line(tx, line) else {
                continue;
            };
            let Some(position) = self.positions.get_mut(&id) else {
                continue;
            };
            if let Some(event) = position.record_refund(option, tx.id, at) {
                self.position_events.entry(id).or_default().push(event);
            }
        }
    }

    /// The items of a position's options (every revision), for a change: refused when one
    /// is in a payment in progress, else the open ones are taken out of their carts.
    fn withdraw_position_items(&mut self, p: &crate::DebtPosition) -> Result<()> {
        let ids: Vec<ItemId> = (0..p.options.len())
            .flat_map(|i| p.sources_of(i))
            .filter_map(|s| self.item_by_source.get(&(p.creditor_id, s)).copied())
            .collect();
        if let Some(locked) = ids
            .iter()
            .filter_map(|i| self.items.get(i))
            .find(|i| matches!(i.state, ItemState::Locked(_)))
        {
            return Err(Error::Conflict(Conflict::ItemUnavailable {
                item: locked.id.to_string(),
                state: "in a payment in progress".into(),
            }));
        }
        self.remove_open(&ids);
        Ok(())
    }

    /// The debt position option that line `line` of `tx` pays, by its item's source.
    fn option_of_line(
        &self,
        tx: &Transaction,
        line: usize,
    ) -> Option<(crate::DebtPositionId, usize)> {
        let l = tx.lines.get(line)?;
        self.position_by_source
            .get(&(tx.creditor_id, l.source.clone()))
            .copied()
    }

    /// Takes the open ones of `items` out of their carts.
    fn remove_open(&mut self, items: &[ItemId]) {
        for id in items {
            if let Some(item) = self.items.get_mut(id)
                && item.state == ItemState::Open
            {
                item.state = ItemState::Removed;
            }
        }
    }

    fn index_position(&mut self, p: &crate::DebtPosition) {
        self.position_by_key
            .insert((p.creditor_id, p.module.clone(), p.key.clone()), p.id);
        for (i, o) in p.options.iter().enumerate() {
            self.position_by_notice
                .insert((p.creditor_id, o.notice_number.clone()), p.id);
            if let Some(source) = p.source(i) {
                self.position_by_source
                    .insert((p.creditor_id, source), (p.id, i));
            }
        }
    }

    /// Records an exception once per creditor and key; answers whether it was new.
    fn insert_exception(&mut self, e: &crate::Exception) -> bool {
        let key = (e.creditor_id, e.key.clone());
        if self.exception_by_key.contains_key(&key) {
            return false;
        }
        self.exception_by_key.insert(key, e.id);
        self.exceptions.insert(e.id, e.clone());
        true
    }

    fn enqueue(&mut self, creditor: CreditorId, at: DateTime<Utc>, messages: &[NewOutboxMessage]) {
        for m in messages {
            self.outbox.insert(
                m.id,
                OutboxMessage {
                    id: m.id,
                    transaction_id: m.transaction_id,
                    creditor_id: creditor,
                    payload: m.payload.clone(),
                    status: OutboxStatus::Pending,
                    attempts: 0,
                    next_attempt_at: at,
                    last_error: None,
                    created_at: at,
                    delivered_at: None,
                },
            );
        }
    }

    fn event(
        &mut self,
        tx: &Transaction,
        actor: &crate::Actor,
        at: DateTime<Utc>,
        from: TxStatus,
        note: Option<String>,
    ) {
        let event = TransactionEvent {
            id: EventId::new(),
            transaction_id: tx.id,
            actor: actor.clone(),
            at,
            from: Some(from),
            to: tx.status,
            provider_ref: tx.provider_ref.clone(),
            note,
        };
        self.events.insert(event.id, event);
    }

    /// Applies a transition; every check comes before the first change, so an error
    /// changes nothing.
    fn transition(&mut self, t: &Transition) -> Result<Transaction> {
        let s = self;
        let tx = s
            .transactions
            .get(&t.transaction)
            .ok_or_else(|| Error::not_found("transaction", t.transaction))?
            .clone();
        if tx.status != t.from {
            return Err(Error::Conflict(Conflict::StaleState {
                transaction: tx.id.to_string(),
                expected: t.from.to_string(),
                actual: tx.status.to_string(),
            }));
        }
        let paid_by = |s: &State, item: &ItemId| match s.items.get(item).map(|i| i.state) {
            Some(ItemState::Paid(by)) => Some(by),
            _ => None,
        };
        let mut to = t.to;
        if to == TxStatus::Paid {
            // Whether an item is already paid is decided here, under the lock.
            for line in &tx.lines {
                let paid = paid_by(s, &line.item_id).is_some();
                if paid != t.already_paid.contains(&line.item_id) {
                    return Err(Error::Conflict(Conflict::ItemsChanged {
                        transaction: tx.id.to_string(),
                    }));
                }
            }
        } else if to.frees_items()
            && tx
                .lines
                .iter()
                .any(|l| paid_by(s, &l.item_id) == Some(tx.id))
        {
            to = TxStatus::PartiallyPaid;
        }
        let old_ref = tx.provider_ref.clone();
        let mut moved = tx;
        moved.status = to;
        moved.updated_at = t.at;
        if t.provider_ref.is_some() {
            moved.provider_ref.clone_from(&t.provider_ref);
        }
        if t.instruction.is_some() {
            moved.instruction.clone_from(&t.instruction);
        }
        if let Some(e) = t.expires_at {
            moved.expires_at = e;
        }
        s.transactions.insert(moved.id, moved.clone());
        s.index_provider_ref(&moved, old_ref.as_deref());
        let mut settled = Vec::new();
        for (n, line) in moved.lines.iter().enumerate() {
            if let Some(i) = s.items.get_mut(&line.item_id) {
                if to == TxStatus::Paid {
                    if !matches!(i.state, ItemState::Paid(_)) {
                        i.state = ItemState::Paid(moved.id);
                        settled.push(n);
                    }
                } else if to.frees_items() && i.state == ItemState::Locked(moved.id) {
                    i.state = ItemState::Open;
                }
            }
        }
        s.positions_paid(&moved, &settled, t.at);
        let note = t.note_for(to);
        s.event(&moved, &t.actor, t.at, t.from, note);
        s.enqueue(moved.creditor_id, t.at, &t.outbox);
        for e in &t.exceptions {
            s.insert_exception(e);
        }
        Ok(moved)
    }

    fn insert_bank_entry(&mut self, entry: &crate::BankEntry) -> bool {
        let state = self;
        let key = (entry.creditor_id, entry.key.clone());
        if state.bank_entries.contains_key(&key) {
            return false;
        }
        if let Some(t) = entry.transaction_id() {
            state.entries_by_tx.entry(t).or_default().push(key.clone());
        }
        if let Some(r) = &entry.reference {
            state
                .entries_by_reference
                .entry((entry.creditor_id, r.clone()))
                .or_default()
                .push(key.clone());
        }
        state.bank_entries.insert(key, entry.clone());
        if let Some(e) = crate::Exception::for_bank_entry(entry) {
            state.insert_exception(&e);
        }
        true
    }

    fn index_provider_ref(&mut self, tx: &Transaction, old: Option<&str>) {
        if old == tx.provider_ref.as_deref() {
            return;
        }
        if let Some(old) = old
            && let Some(set) = self
                .by_provider_ref
                .get_mut(&(tx.gateway_id.clone(), old.to_owned()))
        {
            set.remove(&tx.id);
        }
        if let Some(new) = &tx.provider_ref {
            self.by_provider_ref
                .entry((tx.gateway_id.clone(), new.clone()))
                .or_default()
                .insert(tx.id);
        }
    }
}

/// A [`Store`] in memory. Suitable for tests and examples; not for production.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn page_of<'a>(
    iter: impl Iterator<Item = &'a Transaction>,
    after: Option<TransactionId>,
    limit: u32,
) -> Page<Transaction> {
    let items = iter
        .filter(|t| after.is_none_or(|a| t.id < a))
        .take(limit as usize + 1)
        .cloned()
        .collect();
    Page::from_overfetch(items, limit)
}

#[async_trait]
impl Store for InMemoryStore {
    async fn put_creditor(&self, creditor: &Creditor) -> Result<()> {
        self.lock().creditors.insert(creditor.id, creditor.clone());
        Ok(())
    }

    async fn creditor(&self, id: CreditorId) -> Result<Option<Creditor>> {
        Ok(self.lock().creditors.get(&id).cloned())
    }

    async fn put_payment_type(&self, payment_type: &PaymentType) -> Result<()> {
        self.lock()
            .payment_types
            .insert(payment_type.id, payment_type.clone());
        Ok(())
    }

    async fn payment_type(&self, id: PaymentTypeId) -> Result<Option<PaymentType>> {
        Ok(self.lock().payment_types.get(&id).cloned())
    }

    async fn payment_types(&self, creditor: CreditorId) -> Result<Vec<PaymentType>> {
        Ok(self
            .lock()
            .payment_types
            .values()
            .filter(|t| t.creditor_id == creditor)
            .cloned()
            .collect())
    }

    async fn put_method(&self, method: &PaymentMethod) -> Result<()> {
        self.lock().methods.insert(method.id, method.clone());
        Ok(())
    }

    async fn method(&self, id: MethodId) -> Result<Option<PaymentMethod>> {
        Ok(self.lock().methods.get(&id).cloned())
    }

    async fn methods(&self, creditor: CreditorId) -> Result<Vec<PaymentMethod>> {
        Ok(self
            .lock()
            .methods
            .values()
            .filter(|m| m.creditor_id == creditor)
            .cloned()
            .collect())
    }

    async fn open_cart(&self, cart: &Cart) -> Result<Cart> {
        let mut s = self.lock();
        let key = (cart.creditor_id, cart.payer.id.clone());
        if let Some(id) = s.cart_by_payer.get(&key).copied()
            && let Some(existing) = s.carts.get_mut(&id)
        {
            existing.payer = cart.payer.clone();
            return Ok(existing.clone());
        }
        s.carts.insert(cart.id, cart.clone());
        s.cart_by_payer.insert(key, cart.id);
        Ok(cart.clone())
    }

    async fn cart(&self, id: CartId) -> Result<Option<Cart>> {
        Ok(self.lock().carts.get(&id).cloned())
    }

    async fn add_item(&self, item: &PayableItem) -> Result<ItemAdded> {
        let mut s = self.lock();
        let key = (item.creditor_id, item.source.clone());
        if let Some(id) = s.item_by_source.get(&key).copied()
            && let Some(existing) = s.items.get_mut(&id)
        {
            let mut moved = None;
            if matches!(existing.state, ItemState::Removed | ItemState::Refunded(_))
                && existing.payer_id == item.payer_id
            {
                existing.state = ItemState::Open;
                if existing.cart_id != item.cart_id {
                    moved = Some(existing.cart_id);
                    existing.cart_id = item.cart_id;
                }
            }
            let existing = existing.clone();
            if let Some(old_cart) = moved {
                if let Some(set) = s.items_by_cart.get_mut(&old_cart) {
                    set.remove(&existing.id);
                }
                s.items_by_cart
                    .entry(existing.cart_id)
                    .or_default()
                    .insert(existing.id);
            }
            return Ok(ItemAdded {
                item: existing,
                created: false,
            });
        }
        s.items.insert(item.id, item.clone());
        s.item_by_source.insert(key, item.id);
        s.items_by_cart
            .entry(item.cart_id)
            .or_default()
            .insert(item.id);
        Ok(ItemAdded {
            item: item.clone(),
            created: true,
        })
    }

    async fn item(&self, id: ItemId) -> Result<Option<PayableItem>> {
        Ok(self.lock().items.get(&id).cloned())
    }

    async fn cart_items(&self, cart: CartId) -> Result<Vec<PayableItem>> {
        let s = self.lock();
        Ok(s.items_by_cart
            .get(&cart)
            .into_iter()
            .flatten()
            .filter_map(|id| s.items.get(id))
            .filter(|i| {
                i.cart_id == cart && matches!(i.state, ItemState::Open | ItemState::Locked(_))
            })
            .cloned()
            .collect())
    }

    async fn update_item(&self, item: &PayableItem) -> Result<PayableItem> {
        let mut s = self.lock();
        let i = s
            .items
            .get_mut(&item.id)
            .ok_or_else(|| Error::not_found("item", item.id))?;
        if i.state != ItemState::Open {
            return Err(Error::Conflict(Conflict::ItemUnavailable {
                item: item.id.to_string(),
                state: i.state.name().into(),
            }));
        }
        i.reason = item.reason.clone();
        i.amount = item.amount;
        i.due_date = item.due_date;
        Ok(i.clone())
    }

    async fn remove_item(&self, item: ItemId) -> Result<PayableItem> {
        let mut s = self.lock();
        let i = s
            .items
            .get_mut(&item)
            .ok_or_else(|| Error::not_found("item", item))?;
        if i.state != ItemState::Open {
            return Err(Error::Conflict(Conflict::ItemUnavailable {
                item: item.to_string(),
                state: i.state.name().into(),
            }));
        }
        i.state = ItemState::Removed;
        Ok(i.clone())
    }

    async fn create_transaction(
        &self,
        transaction: &Transaction,
        event: &TransactionEvent,
    ) -> Result<TransactionCreated> {
        let mut s = self.lock();
        let key = (
            transaction.payer.id.clone(),
            transaction.idempotency_key.clone(),
        );
        if let Some(existing) = s.tx_by_key.get(&key).and_then(|id| s.transactions.get(id)) {
            return Ok(TransactionCreated {
                transaction: existing.clone(),
                created: false,
            });
        }
        for line in &transaction.lines {
            match s.items.get(&line.item_id) {
                Some(i)
                    if i.state == ItemState::Open
                        && i.cart_id == transaction.cart_id
                        && i.amount == line.amount => {}
                // Changed since the cart was read: an old amount is never what gets paid.
                Some(i) if i.state == ItemState::Open && i.amount != line.amount => {
                    return Err(Error::Conflict(Conflict::Other(format!(
                        "item {} is now of {}, not {}: check out again",
                        i.id, i.amount, line.amount
                    ))));
                }
                Some(i) => {
                    return Err(Error::Conflict(Conflict::ItemUnavailable {
                        item: i.id.to_string(),
                        state: i.state.name().into(),
                    }));
                }
                None => return Err(Error::not_found("item", line.item_id)),
            }
        }
        for line in &transaction.lines {
            if let Some(i) = s.items.get_mut(&line.item_id) {
                i.state = ItemState::Locked(transaction.id);
            }
        }
        s.transactions.insert(transaction.id, transaction.clone());
        s.tx_by_key.insert(key, transaction.id);
        s.index_provider_ref(transaction, None);
        s.events.insert(event.id, event.clone());
        Ok(TransactionCreated {
            transaction: transaction.clone(),
            created: true,
        })
    }

    async fn transaction(&self, id: TransactionId) -> Result<Option<Transaction>> {
        Ok(self.lock().transactions.get(&id).cloned())
    }

    async fn transaction_by_key(
        &self,
        payer: &PayerId,
        idempotency_key: &str,
    ) -> Result<Option<Transaction>> {
        let s = self.lock();
        Ok(s.tx_by_key
            .get(&(payer.clone(), idempotency_key.to_owned()))
            .and_then(|id| s.transactions.get(id))
            .cloned())
    }

    async fn transaction_by_provider_ref(
        &self,
        gateway: &GatewayId,
        provider_ref: &str,
    ) -> Result<Option<Transaction>> {
        let s = self.lock();
        Ok(s.by_provider_ref
            .get(&(gateway.clone(), provider_ref.to_owned()))
            .and_then(|ids| ids.last())
            .and_then(|id| s.transactions.get(id))
            .cloned())
    }

    async fn transition(&self, t: &Transition) -> Result<Transaction> {
        self.lock().transition(t)
    }

    async fn pay_line(&self, p: &crate::LinePayment) -> Result<crate::LinePaid> {
        let mut s = self.lock();
        let mut tx = s
            .transactions
            .get(&p.transaction)
            .ok_or_else(|| Error::not_found("transaction", p.transaction))?
            .clone();
        let line = tx
            .lines
            .get(p.line)
            .ok_or_else(|| Error::invalid("line", "the transaction has no such line"))?
            .clone();
        let key = (tx.creditor_id, p.key.clone());
        if let Some(earlier) = s.line_payments.get(&key) {
            return Ok(crate::LinePaid {
                transaction: tx,
                outcome: earlier.outcome,
                recorded: false,
                exceptions: Vec::new(),
            });
        }
        // Paid, or paid and given back: either way this money is a second payment.
        let already_paid = matches!(
            s.items.get(&line.item_id).map(|i| i.state),
            Some(ItemState::Paid(_) | ItemState::Refunded(_))
        );
        let from = tx.status;
        let mut exceptions = Vec::new();
        let outcome = if already_paid {
            if s.insert_exception(&p.duplicate) {
                exceptions.push(p.duplicate.clone());
            }
            s.enqueue(tx.creditor_id, p.at, &p.on_duplicate);
            let note = format!(
                "line {} ({}) paid a second time, by {}: recorded as a double payment",
                p.line + 1,
                p.reference,
                p.key
            );
            s.event(&tx, &p.actor, p.at, from, Some(note));
            crate::LinePaymentOutcome::Duplicate
        } else {
            if let Some(i) = s.items.get_mut(&line.item_id) {
                i.state = ItemState::Paid(tx.id);
            }
            tx.lines[p.line].paid_at = Some(p.at);
            tx.updated_at = p.at;
            s.positions_paid(&tx, &[p.line], p.at);
            if tx.status.is_late() && s.insert_exception(&p.late) {
                exceptions.push(p.late.clone());
            }
            s.enqueue(tx.creditor_id, p.at, &p.outbox);
            let note = format!("line {} ({}) paid by {}", p.line + 1, p.reference, p.key);
            s.event(&tx, &p.actor, p.at, from, Some(note));
            if tx.lines.iter().all(|l| l.paid_at.is_some()) && !from.is_paid() {
                tx.status = TxStatus::Paid;
                s.event(&tx, &p.actor, p.at, from, Some("every line paid".into()));
            } else if from.is_late() && from != TxStatus::PartiallyPaid {
                tx.status = TxStatus::PartiallyPaid;
                s.event(
                    &tx,
                    &p.actor,
                    p.at,
                    from,
                    Some("a line paid after the end: partially paid".into()),
                );
            }
            s.transactions.insert(tx.id, tx.clone());
            crate::LinePaymentOutcome::Settled
        };
        s.line_payments.insert(
            key.clone(),
            crate::LinePaymentRecord::of(p, tx.creditor_id, outcome),
        );
        s.line_payments_by_tx.entry(tx.id).or_default().push(key);
        Ok(crate::LinePaid {
            transaction: tx,
            outcome,
            recorded: true,
            exceptions,
        })
    }

    async fn line_payment(
        &self,
        creditor: CreditorId,
        key: &str,
    ) -> Result<Option<crate::LinePaymentRecord>> {
        Ok(self
            .lock()
            .line_payments
            .get(&(creditor, key.to_owned()))
            .cloned())
    }

    async fn line_payments(
        &self,
        transaction: TransactionId,
    ) -> Result<Vec<crate::LinePaymentRecord>> {
        let s = self.lock();
        let mut records: Vec<crate::LinePaymentRecord> = s
            .line_payments_by_tx
            .get(&transaction)
            .into_iter()
            .flatten()
            .filter_map(|k| s.line_payments.get(k).cloned())
            .collect();
        // As the SQL stores order them.
        records.sort_by(|a, b| (a.recorded_at, &a.key).cmp(&(b.recorded_at, &b.key)));
        Ok(records)
    }

    async fn insert_exception(&self, exception: &crate::Exception) -> Result<bool> {
        Ok(self.lock().insert_exception(exception))
    }

    async fn exception(&self, id: crate::ExceptionId) -> Result<Option<crate::Exception>> {
        Ok(self.lock().exceptions.get(&id).cloned())
    }

    async fn exceptions(&self, query: &crate::ExceptionQuery) -> Result<Vec<crate::Exception>> {
        let s = self.lock();
        Ok(s.exceptions
            .values()
            .rev()
            .filter(|e| query.matches(e))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn resolve_exception(&self, u: &crate::ExceptionUpdate) -> Result<crate::Exception> {
        let mut s = self.lock();
        let e = s
            .exceptions
            .get_mut(&u.exception)
            .ok_or_else(|| Error::not_found("exception", u.exception))?;
        if !e.is_open() {
            return Err(Error::Conflict(Conflict::Other(format!(
                "exception {} is already resolved",
                e.id
            ))));
        }
        e.status = crate::ExceptionStatus::Resolved;
        e.resolution = Some(u.resolution.clone());
        if u.refund_id.is_some() {
            e.refund_id = u.refund_id;
        }
        let done = e.clone();
        if let Some(event) = &u.event {
            s.events.insert(event.id, event.clone());
        }
        Ok(done)
    }

    async fn extend_expiry(&self, x: &crate::ExpiryExtension) -> Result<Transaction> {
        let mut s = self.lock();
        let tx = s
            .transactions
            .get_mut(&x.transaction)
            .ok_or_else(|| Error::not_found("transaction", x.transaction))?;
        if tx.status != x.status {
            return Err(Error::Conflict(Conflict::StaleState {
                transaction: tx.id.to_string(),
                expected: x.status.to_string(),
                actual: tx.status.to_string(),
            }));
        }
        tx.expires_at = x.until;
        let tx = tx.clone();
        s.event(&tx, &x.actor, x.at, x.status, Some(x.note.clone()));
        for e in &x.exceptions {
            s.insert_exception(e);
        }
        Ok(tx)
    }

    async fn events(&self, transaction: TransactionId) -> Result<Vec<TransactionEvent>> {
        Ok(self
            .lock()
            .events
            .values()
            .filter(|e| e.transaction_id == transaction)
            .cloned()
            .collect())
    }

    async fn events_of(&self, transactions: &[TransactionId]) -> Result<Vec<TransactionEvent>> {
        Ok(self
            .lock()
            .events
            .values()
            .filter(|e| transactions.contains(&e.transaction_id))
            .cloned()
            .collect())
    }

    async fn due_for_expiry(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Transaction>> {
        let mut due: Vec<Transaction> = self
            .lock()
            .transactions
            .values()
            .filter(|t| {
                matches!(t.status, TxStatus::Created | TxStatus::Pending) && t.expires_at <= now
            })
            .cloned()
            .collect();
        due.sort_by_key(|t| (t.expires_at, t.id));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn create_refund(
        &self,
        refund: &crate::Refund,
        event: &TransactionEvent,
    ) -> Result<crate::RefundCreated> {
        let mut s = self.lock();
        let earlier: Vec<crate::Refund> = s
            .refunds_by_tx
            .get(&refund.transaction_id)
            .into_iter()
            .flatten()
            .filter_map(|id| s.refunds.get(id).cloned())
            .collect();
        if let Some(existing) = earlier.iter().find(|r| r.key == refund.key) {
            return Ok(crate::RefundCreated {
                refund: existing.clone(),
                created: false,
            });
        }
        let tx = s
            .transactions
            .get(&refund.transaction_id)
            .ok_or_else(|| Error::not_found("transaction", refund.transaction_id))?;
        if tx.status != TxStatus::Paid && !refund.excess {
            return Err(Error::Conflict(Conflict::StaleState {
                transaction: tx.id.to_string(),
                expected: TxStatus::Paid.to_string(),
                actual: tx.status.to_string(),
            }));
        }
        crate::check_refund_fits(tx, &earlier, refund)?;
        s.refunds.insert(refund.id, refund.clone());
        s.refunds_by_tx
            .entry(refund.transaction_id)
            .or_default()
            .push(refund.id);
        s.events.insert(event.id, event.clone());
        Ok(crate::RefundCreated {
            refund: refund.clone(),
            created: true,
        })
    }

    async fn finish_refund(&self, update: &crate::RefundUpdate) -> Result<crate::Refund> {
        let mut s = self.lock();
        let refund = s
            .refunds
            .get_mut(&update.refund)
            .ok_or_else(|| Error::not_found("refund", update.refund))?;
        if refund.status != update.from {
            return Err(Error::Conflict(Conflict::Other(format!(
                "refund {} is {}, not {}",
                refund.id, refund.status, update.from
            ))));
        }
        refund.status = update.to;
        refund.provider_ref = update.provider_ref.clone().or(refund.provider_ref.take());
        refund.note = update.note.clone();
        refund.updated_at = update.at;
        let done = refund.clone();
        s.events.insert(update.event.id, update.event.clone());
        if let Some(tx) = s.transactions.get(&done.transaction_id).cloned() {
            let mut outbox = update.outbox.clone();
            if update.to == crate::RefundStatus::Succeeded {
                let refunds: Vec<crate::Refund> = s
                    .refunds_by_tx
                    .get(&tx.id)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| s.refunds.get(id).cloned())
                    .collect();
                let full = crate::lines_refunded_in_full(&tx, &refunds);
                outbox = crate::with_lines_in_full(&tx, done.id, &full, &outbox);
                let mut given_back = Vec::new();
                for position in full {
                    if let Some(i) = s.items.get_mut(&tx.lines[position].item_id)
                        && i.state == ItemState::Paid(tx.id)
                    {
                        i.state = ItemState::Refunded(tx.id);
                        given_back.push(position);
                    }
                }
                s.positions_refunded(&tx, &given_back, update.at);
            }
            s.enqueue(tx.creditor_id, update.at, &outbox);
            if let Some(e) = &update.exception {
                s.insert_exception(e);
            }
        }
        Ok(done)
    }

    async fn unfinished_refunds(
        &self,
        after: Option<crate::RefundId>,
        limit: u32,
    ) -> Result<Vec<crate::Refund>> {
        let s = self.lock();
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        Ok(s.refunds
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| r.status.is_unfinished())
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn refunds(&self, transaction: TransactionId) -> Result<Vec<crate::Refund>> {
        let s = self.lock();
        let mut list: Vec<crate::Refund> = s
            .refunds_by_tx
            .get(&transaction)
            .into_iter()
            .flatten()
            .filter_map(|id| s.refunds.get(id).cloned())
            .collect();
        list.sort_by_key(|r| r.id);
        Ok(list)
    }

    async fn unfinished(
        &self,
        before: DateTime<Utc>,
        gateways: &[crate::GatewayId],
        after: Option<TransactionId>,
        limit: u32,
    ) -> Result<Vec<Transaction>> {
        let s = self.lock();
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        Ok(s.transactions
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, t)| t)
            .filter(|t| {
                matches!(t.status, TxStatus::Created | TxStatus::Pending)
                    && t.updated_at <= before
                    && gateways.contains(&t.gateway_id)
            })
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>> {
        let mut s = self.lock();
        let mut claimed = Vec::new();
        for m in s.outbox.values_mut() {
            if claimed.len() >= limit as usize {
                break;
            }
            if m.status == OutboxStatus::Pending && m.next_attempt_at <= now {
                m.attempts += 1;
                m.next_attempt_at = lease_until;
                claimed.push(m.clone());
            }
        }
        Ok(claimed)
    }

    async fn outbox_delivered(&self, id: OutboxId, at: DateTime<Utc>) -> Result<()> {
        let mut s = self.lock();
        let m = s
            .outbox
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("outbox message", id))?;
        m.status = OutboxStatus::Delivered;
        m.delivered_at = Some(at);
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let mut s = self.lock();
        let m = s
            .outbox
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("outbox message", id))?;
        if m.status == OutboxStatus::Delivered {
            return Ok(());
        }
        m.last_error = Some(error.chars().take(1000).collect());
        match retry_at {
            Some(at) => m.next_attempt_at = at,
            None => m.status = OutboxStatus::Dead,
        }
        Ok(())
    }

    async fn outbox_retry(&self, id: OutboxId, at: DateTime<Utc>) -> Result<OutboxMessage> {
        let mut s = self.lock();
        let m = s
            .outbox
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("outbox message", id))?;
        if m.status != OutboxStatus::Dead {
            return Err(Error::Conflict(Conflict::Other(format!(
                "outbox message {id} is {}, not dead",
                m.status.as_str()
            ))));
        }
        m.status = OutboxStatus::Pending;
        m.attempts = 0;
        m.next_attempt_at = at;
        Ok(m.clone())
    }

    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>> {
        Ok(self.lock().outbox.get(&id).cloned())
    }

    async fn outbox(&self, query: &OutboxQuery) -> Result<Vec<OutboxMessage>> {
        let s = self.lock();
        let iter = s.outbox.values().filter(|m| {
            query.creditor_id.is_none_or(|c| m.creditor_id == c)
                && query.transaction_id.is_none_or(|t| m.transaction_id == t)
                && query.status.is_none_or(|st| m.status == st)
        });
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit as usize
        };
        Ok(iter.take(limit).cloned().collect())
    }

    async fn insert_bank_entry(&self, entry: &crate::BankEntry) -> Result<bool> {
        Ok(self.lock().insert_bank_entry(entry))
    }

    async fn record_bank_entries(
        &self,
        steps: &[crate::BankStep],
    ) -> Result<Vec<crate::BankStepDone>> {
        let mut state = self.lock();
        // Every error but a step's own conflict comes before the first change: the chunk is
        // whole or absent, as in a database transaction.
        if let Some(t) = steps
            .iter()
            .filter_map(|s| s.payment.as_ref())
            .find(|t| !state.transactions.contains_key(&t.transaction))
        {
            return Err(Error::not_found("transaction", t.transaction));
        }
        let mut done = Vec::with_capacity(steps.len());
        for step in steps {
            let entry = &step.entry;
            if state
                .bank_entries
                .contains_key(&(entry.creditor_id, entry.key.clone()))
            {
                done.push(crate::BankStepDone::AlreadyRecorded);
                continue;
            }
            let moved = match &step.payment {
                Some(t) => match state.transition(t) {
                    Ok(moved) => Some(moved),
                    Err(Error::Conflict(c)) => {
                        done.push(crate::BankStepDone::Conflict(c));
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                None => None,
            };
            state.insert_bank_entry(entry);
            done.push(crate::BankStepDone::Recorded(moved.map(Box::new)));
        }
        Ok(done)
    }

    async fn insert_provider_receipt(&self, receipt: &crate::ProviderReceipt) -> Result<bool> {
        let mut state = self.lock();
        let key = (receipt.creditor_id, receipt.key.clone());
        if state.provider_receipts.contains_key(&key) {
            return Ok(false);
        }
        state.provider_receipts.insert(key, receipt.clone());
        Ok(true)
    }

    async fn put_flow(&self, flow: &crate::ReportingFlow) -> Result<crate::FlowStored> {
        let mut state = self.lock();
        let prefix = (flow.creditor_id, flow.flow_id.clone(), flow.psp_id.clone());
        let current = state
            .flows
            .range((prefix.0, prefix.1.clone(), prefix.2.clone(), 0)..)
            .take_while(|((c, f, p, _), _)| (c, f, p) == (&prefix.0, &prefix.1, &prefix.2))
            .map(|((_, _, _, r), _)| *r)
            .max();
        let key = (prefix.0, prefix.1, prefix.2, flow.revision);
        match current {
            Some(r) if r == flow.revision => Ok(crate::FlowStored::Known),
            Some(r) if r > flow.revision => Ok(crate::FlowStored::Outdated { current: r }),
            Some(previous) => {
                let old = (key.0, key.1.clone(), key.2.clone(), previous);
                if let Some(old) = state.flows.get_mut(&old) {
                    old.replaced = true;
                }
                state.flows.insert(key, flow.clone());
                Ok(crate::FlowStored::Replaced { previous })
            }
            None => {
                state.flows.insert(key, flow.clone());
                Ok(crate::FlowStored::Inserted)
            }
        }
    }

    async fn flows(&self, query: &crate::FlowQuery) -> Result<Vec<crate::ReportingFlow>> {
        let state = self.lock();
        let mut found: Vec<crate::ReportingFlow> = state
            .flows
            .range((query.creditor_id, String::new(), String::new(), 0)..)
            .take_while(|((c, _, _, _), _)| *c == query.creditor_id)
            .map(|(_, f)| f)
            .filter(|f| query.matches(f))
            .cloned()
            .collect();
        found.sort_by(|a, b| {
            (b.published_at, &b.flow_id, &b.psp_id, b.revision).cmp(&(
                a.published_at,
                &a.flow_id,
                &a.psp_id,
                a.revision,
            ))
        });
        found.truncate(query.limit as usize);
        Ok(found)
    }

    async fn update_flow(
        &self,
        flow: &crate::ReportingFlow,
        exceptions: &[crate::Exception],
        reported: &[String],
    ) -> Result<bool> {
        let mut state = self.lock();
        let key = (
            flow.creditor_id,
            flow.flow_id.clone(),
            flow.psp_id.clone(),
            flow.revision,
        );
        match state.flows.get(&key) {
            Some(stored) if !stored.replaced && stored.version + 1 == flow.version => {}
            _ => return Ok(false),
        }
        state.flows.insert(key, flow.clone());
        for e in exceptions {
            state.insert_exception(e);
        }
        let by = format!("{}/{}/{}", flow.flow_id, flow.psp_id, flow.revision);
        for r in reported {
            state
                .reported_receipts
                .entry((flow.creditor_id, r.clone()))
                .or_insert_with(|| by.clone());
        }
        Ok(true)
    }

    async fn unreported_receipts(
        &self,
        creditor: CreditorId,
        gateway: &GatewayId,
        before: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<crate::ProviderReceipt>> {
        let state = self.lock();
        let mut found: Vec<crate::ProviderReceipt> = state
            .provider_receipts
            .range((creditor, String::new())..)
            .take_while(|((c, _), _)| *c == creditor)
            .filter(|(k, r)| {
                r.gateway_id == *gateway
                    && r.recorded_at < before
                    && after
                        .as_ref()
                        .is_none_or(|(at, key)| (r.recorded_at, &r.key) > (*at, key))
                    && !state.reported_receipts.contains_key(*k)
            })
            .map(|(_, r)| r.clone())
            .collect();
        found.sort_by(|a, b| (a.recorded_at, &a.key).cmp(&(b.recorded_at, &b.key)));
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn provider_receipts(
        &self,
        query: &crate::ProviderReceiptQuery,
    ) -> Result<Vec<crate::ProviderReceipt>> {
        let state = self.lock();
        let mut found: Vec<crate::ProviderReceipt> = state
            .provider_receipts
            .range((query.creditor_id, String::new())..)
            .take_while(|((c, _), _)| *c == query.creditor_id)
            .map(|(_, r)| r)
            .filter(|r| query.matches(r))
            .cloned()
            .collect();
        found.sort_by(|a, b| (b.recorded_at, &b.key).cmp(&(a.recorded_at, &a.key)));
        found.truncate(query.limit as usize);
        Ok(found)
    }

    async fn bank_entries(&self, query: &crate::BankEntryQuery) -> Result<Vec<crate::BankEntry>> {
        let state = self.lock();
        let by_keys = |keys: Option<&Vec<(CreditorId, String)>>| -> Vec<crate::BankEntry> {
            keys.into_iter()
                .flatten()
                .filter_map(|k| state.bank_entries.get(k))
                .filter(|e| query.matches(e))
                .cloned()
                .collect()
        };
        let mut entries: Vec<crate::BankEntry> =
            match (&query.key, query.transaction_id, &query.reference) {
                (Some(key), _, _) => state
                    .bank_entries
                    .get(&(query.creditor_id, key.clone()))
                    .filter(|e| query.matches(e))
                    .cloned()
                    .into_iter()
                    .collect(),
                (None, Some(t), _) => by_keys(state.entries_by_tx.get(&t)),
                (None, None, Some(r)) => by_keys(
                    state
                        .entries_by_reference
                        .get(&(query.creditor_id, r.clone())),
                ),
                (None, None, None) => state
                    .bank_entries
                    .values()
                    .filter(|e| query.matches(e))
                    .cloned()
                    .collect(),
            };
        entries.sort_by(|a, b| (b.imported_at, &b.key).cmp(&(a.imported_at, &a.key)));
        entries.truncate(query.limit as usize);
        Ok(entries)
    }

    async fn allocate_sequence(&self, name: &str, count: u32) -> Result<u64> {
        crate::store::check_sequence(name, count)?;
        let mut state = self.lock();
        let next = state.sequences.entry(name.to_owned()).or_insert(1);
        let first = *next;
        *next = first
            .checked_add(u64::from(count))
            .ok_or_else(|| crate::Error::invalid("count", "the counter would overflow"))?;
        Ok(first)
    }

    async fn insert_positions(
        &self,
        positions: &[crate::DebtPosition],
        events: &[crate::PositionEvent],
        messages: &[NewOutboxMessage],
    ) -> Result<Vec<bool>> {
        let mut s = self.lock();
        // A notice number taken refuses the whole batch: checked before anything is written.
        let mut seen = std::collections::HashSet::new();
        for p in positions {
            if s.position_by_key
                .contains_key(&(p.creditor_id, p.module.clone(), p.key.clone()))
            {
                continue;
            }
            for o in &p.options {
                if s.position_by_notice
                    .contains_key(&(p.creditor_id, o.notice_number.clone()))
                    || !seen.insert((p.creditor_id, o.notice_number.clone()))
                {
                    return Err(Error::Conflict(Conflict::Other(format!(
                        "notice number {} is taken",
                        o.notice_number
                    ))));
                }
            }
        }
        let mut inserted = Vec::with_capacity(positions.len());
        for (i, p) in positions.iter().enumerate() {
            if s.position_by_key
                .contains_key(&(p.creditor_id, p.module.clone(), p.key.clone()))
            {
                inserted.push(false);
                continue;
            }
            if let Some(o) = p.options.iter().find(|o| {
                s.position_by_notice
                    .contains_key(&(p.creditor_id, o.notice_number.clone()))
            }) {
                return Err(Error::Conflict(Conflict::Other(format!(
                    "notice number {} is taken",
                    o.notice_number
                ))));
            }
            s.index_position(p);
            s.positions.insert(p.id, p.clone());
            if let Some(m) = messages.get(i) {
                let at = events.get(i).map_or(p.created_at, |e| e.at);
                s.enqueue(p.creditor_id, at, std::slice::from_ref(m));
            }
            if let Some(e) = events.get(i) {
                s.position_events.entry(p.id).or_default().push(e.clone());
            }
            inserted.push(true);
        }
        Ok(inserted)
    }

    async fn position(&self, id: crate::DebtPositionId) -> Result<Option<crate::DebtPosition>> {
        Ok(self.lock().positions.get(&id).cloned())
    }

    async fn position_by_key(
        &self,
        creditor: CreditorId,
        module: &str,
        key: &str,
    ) -> Result<Option<crate::DebtPosition>> {
        let s = self.lock();
        Ok(s.position_by_key
            .get(&(creditor, module.to_owned(), key.to_owned()))
            .and_then(|id| s.positions.get(id))
            .cloned())
    }

    async fn position_by_notice(
        &self,
        creditor: CreditorId,
        notice_number: &str,
    ) -> Result<Option<crate::DebtPosition>> {
        let s = self.lock();
        Ok(s.position_by_notice
            .get(&(creditor, notice_number.to_owned()))
            .and_then(|id| s.positions.get(id))
            .cloned())
    }

    async fn positions(&self, query: &crate::PositionQuery) -> Result<Vec<crate::DebtPosition>> {
        let s = self.lock();
        Ok(s.positions
            .values()
            .rev()
            .filter(|p| query.matches(p))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn update_position(
        &self,
        position: &crate::DebtPosition,
        event: &crate::PositionEvent,
        messages: &[NewOutboxMessage],
    ) -> Result<crate::DebtPosition> {
        let mut s = self.lock();
        let stored = s
            .positions
            .get(&position.id)
            .ok_or_else(|| Error::not_found("debt position", position.id))?;
        if stored.version + 1 != position.version {
            return Err(Error::Conflict(Conflict::PositionChanged {
                position: position.id.to_string(),
                why: format!("version {} is not {}", stored.version, position.version - 1),
            }));
        }
        // Every revision's items, as the stored position names them and as the new one does.
        let stored = stored.clone();
        s.withdraw_position_items(&stored)?;
        s.withdraw_position_items(position)?;
        s.index_position(position);
        s.positions.insert(position.id, position.clone());
        s.position_events
            .entry(position.id)
            .or_default()
            .push(event.clone());
        s.enqueue(position.creditor_id, event.at, messages);
        Ok(position.clone())
    }

    async fn position_events(
        &self,
        position: crate::DebtPositionId,
    ) -> Result<Vec<crate::PositionEvent>> {
        Ok(self
            .lock()
            .position_events
            .get(&position)
            .cloned()
            .unwrap_or_default())
    }

    async fn enqueue_once(
        &self,
        key: &str,
        creditor: CreditorId,
        message: &NewOutboxMessage,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut s = self.lock();
        if !s.enqueued_keys.insert(key.to_owned()) {
            return Ok(false);
        }
        s.enqueue(creditor, at, std::slice::from_ref(message));
        Ok(true)
    }

    async fn search(&self, query: &MovementQuery) -> Result<MovementPage> {
        let s = self.lock();
        let mut selected: Vec<&Transaction> = s
            .transactions
            .values()
            .filter(|t| query.matches(t))
            .collect();
        // Newest first by creation time, then id, as `Store::search` says.
        selected.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        let total = Money::sum(Currency::Eur, selected.iter().map(|t| &t.total))
            .map_err(|e| Error::storage("summing the selection", e))?;
        let cursor = query
            .after
            .map(|a| s.transactions.get(&a).map(|t| (t.created_at, t.id)));
        let items = selected
            .iter()
            .filter(|t| match cursor {
                None => true,
                Some(None) => false,
                Some(Some(c)) => (t.created_at, t.id) < c,
            })
            .take(query.limit as usize + 1)
            .map(|t| (*t).clone())
            .collect();
        Ok(MovementPage {
            count: selected.len() as u64,
            total,
            page: Page::from_overfetch(items, query.limit),
        })
    }

    async fn history(&self, query: &HistoryQuery) -> Result<Page<Transaction>> {
        let s = self.lock();
        let iter = s.transactions.values().rev().filter(|t| {
            t.payer.id == query.payer_id && query.creditor_id.is_none_or(|c| t.creditor_id == c)
        });
        Ok(page_of(iter, query.after, query.limit))
    }
}
