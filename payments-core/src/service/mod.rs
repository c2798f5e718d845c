//! [`Payments`]: the service a portal's modules hold, composed of a store, gateways, a
//! notifier, settlement listeners and a clock.
//!
//! One file per concern, each with its tests:
//!
//! | file | what |
//! | --- | --- |
//! | `config.rs` | the builder; creditors, payment types and methods |
//! | `cart.rs` | carts, items and free payments |
//! | `checkout.rs` | one transaction for a cart |
//! | `outcomes.rs` | callbacks, reconciliation, cancellation, expiry |
//! | `bank.rs` | transfer reports, confirmations, bank statement entries |
//! | `reading.rs` | a transaction, its events, history, search |
//! | `outbox.rs` | delivering messages; the worker |
//! | `refunds.rs` | refunds; the reconciliation sweep |
//! | `exceptions.rs` | the ledger of exceptions operators resolve |
//! | `positions.rs` | debt positions: registration, bulk and CSV, changes, reminders |
//!
//! Every state change goes through one function here, `Payments::apply`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod bank;
mod cart;
mod checkout;
mod config;
mod exceptions;
mod outbox;
mod outcomes;
mod overview;
mod positions;
mod reading;
mod refunds;
mod reporting;
#[cfg(test)]
mod testkit;

pub use bank::{BankCredit, BankCreditDone, StoredTransaction};
pub use checkout::Checkout;
pub use config::PaymentsBuilder;
pub use exceptions::MAX_RESOLUTION_NOTE_LEN;
pub(crate) use outbox::messages_for_status;
pub use outbox::{DELIVERY_CONCURRENCY, DispatchReport};
pub use outcomes::CallbackOutcome;
pub use overview::{DailyCollection, MAX_OVERVIEW_DAYS, OVERVIEW_LOOKBACK_DAYS, Overview};
pub use positions::POSITIONS_CSV_HEADER;
pub use refunds::{RECEIPTS_LOOKBACK, SweepReport};

use crate::cache::Cached;
use crate::{
    Actor, Clock, Conflict, Creditor, CreditorId, Error, Exception, Gateway, GatewayId,
    Instruction, ItemId, MAX_PAGE_SIZE, MethodId, NewOutboxMessage, Notifier, PaymentMethod,
    PaymentType, Result, RetryPolicy, SettlementListener, Store, Transaction, Transition, TxStatus,
};

/// The longest provider reference [`Payments::record_payment`] records.
pub const MAX_PROVIDER_REF_LEN: usize = 200;

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// The payments service. Cheap to clone: every clone shares the same parts.
///
/// Build it with [`Payments::builder`]; see the crate documentation for the whole flow.
#[derive(Clone, Debug)]
pub struct Payments {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    gateways: HashMap<GatewayId, Arc<dyn Gateway>>,
    notifier: Arc<dyn Notifier>,
    listeners: HashMap<String, Arc<dyn SettlementListener>>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    transaction_ttl: Duration,
    /// How long an expiry waits when the provider says the payment is still processing,
    /// or cannot be asked.
    expiry_recheck: Duration,
    return_url: Option<String>,
    dispatch_batch: u32,
    /// (how often, how old) for the worker's reconciliation sweep; `None`: never.
    sweep: Option<(Duration, Duration)>,
    creditors: Cached<CreditorId, Creditor>,
    types: Cached<crate::PaymentTypeId, PaymentType>,
    methods: Cached<MethodId, PaymentMethod>,
    /// Whose each cart is (its creditor and payer), which never changes once it is
    /// opened: an item added to a cart is checked against it without reading the cart.
    cart_owners: Cached<crate::CartId, cart::CartOwner>,
    /// The transactions this service started, as the start left them (`Pending`), until
    /// their provider's outcome: a callback applies its outcome to this copy instead of
    /// reading the transaction first. The store's compare-and-set checks the copy, and a
    /// transaction that moved meanwhile (another instance, the expiry) is read again.
    started: Cached<crate::TransactionId, Transaction>,
    /// The started transactions by their provider's reference, for callbacks that name
    /// only that.
    started_refs: Cached<(GatewayId, String), crate::TransactionId>,
    /// What gives debt positions their notice numbers.
    notices: Option<Arc<dyn crate::NoticeIssuer>>,
    /// Where debt positions are copied for pagoPA's node.
    archive: Option<Arc<dyn crate::PositionArchive>>,
    /// How far back the sweep asks providers for the receipts they keep.
    receipts_lookback: Duration,
    /// The longest wait for one answer of a provider the service asks on its own.
    provider_timeout: Duration,
    /// Where the reconciliation sweep stopped: the next pass goes on from there, so that
    /// every unfinished transaction is asked about in turn, however many there are.
    sweep_cursor: std::sync::Mutex<Option<crate::TransactionId>>,
}

impl Payments {
    /// Starts building the service.
    pub fn builder() -> PaymentsBuilder {
        PaymentsBuilder::new()
    }

    /// The store, for adapters' own operations (exports, migrations).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    fn store_ref(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// `call` to a provider, given up after the builder's
    /// [`provider_timeout`](PaymentsBuilder::provider_timeout) as unreachable.
    async fn ask<T>(
        &self,
        gateway: &GatewayId,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.provider_timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::gateway(
                gateway.as_str(),
                crate::GatewayErrorKind::Unavailable,
            )),
        }
    }

    fn gateway(&self, id: &GatewayId) -> Result<&Arc<dyn Gateway>> {
        self.inner
            .gateways
            .get(id)
            .ok_or_else(|| Error::not_found("gateway", id))
    }
}

impl Payments {
    /// The one function that moves a transaction: checks the state machine (and that only
    /// a gateway or an operator with evidence records money that arrives late), builds the
    /// messages for `Paid` and `Reported`, and asks the store for an atomic compare-and-set.
    async fn apply(
        &self,
        tx: &Transaction,
        to: TxStatus,
        actor: &Actor,
        change: Change,
    ) -> Result<Transaction> {
        let transition = self.transition_for(tx, to, actor, change).await?;
        let moved = self.store_ref().transition(&transition).await?;
        if moved.status != TxStatus::Pending {
            // Moved on here: the copy its start left is not what it is any more.
            self.inner.started.take(&moved.id);
        }
        Ok(moved)
    }

    /// The state change `apply` asks the store for: checked (the move is allowed; late
    /// money needs evidence), with the messages the new state sends.
    async fn transition_for(
        &self,
        tx: &Transaction,
        to: TxStatus,
        actor: &Actor,
        change: Change,
    ) -> Result<Transition> {
        // Money that arrives after the end is recorded on a provider's word, or on an
        // operator's evidence (a bank credit's reference): never by hand alone.
        let late_money = tx.status.is_late() && matches!(to, TxStatus::Paid);
        let evidence = match actor {
            Actor::Gateway { .. } => true,
            Actor::Operator { .. } => change.provider_ref.is_some(),
            _ => false,
        };
        if !tx.status.can_move_to(to) || (late_money && !evidence) {
            return Err(Error::Conflict(Conflict::InvalidTransition {
                from: tx.status.to_string(),
                to: to.to_string(),
            }));
        }
        let now = self.inner.clock.now();
        // A payment, or a transfer the payer reports, is told to the payer and the creditor;
        // each line paid now is told to its module (not those paid elsewhere, nor those
        // already paid on their own).
        let mut outbox = if to == TxStatus::Paid || to == TxStatus::Reported {
            let creditor = self.creditor(tx.creditor_id).await?;
            let provider_ref = change
                .provider_ref
                .clone()
                .or_else(|| tx.provider_ref.clone());
            let type_names = self.type_names(tx).await?;
            let settle = |p: usize| {
                let line = &tx.lines[p];
                line.paid_at.is_none() && !change.already_paid.contains(&line.item_id)
            };
            messages_for_status(tx, &creditor, provider_ref, now, to, type_names, &settle)
        } else {
            Vec::new()
        };
        outbox.extend(change.outbox);
        let transition = Transition {
            transaction: tx.id,
            from: tx.status,
            to,
            actor: actor.clone(),
            at: now,
            provider_ref: change.provider_ref,
            instruction: change.instruction,
            expires_at: change.expires_at,
            note: change.note,
            outbox,
            already_paid: change.already_paid,
            exceptions: change.exceptions,
        };
        Ok(transition)
    }

    /// The names of the payment types of a transaction's lines, for its messages.
    async fn type_names(
        &self,
        tx: &Transaction,
    ) -> Result<std::collections::BTreeMap<crate::PaymentTypeId, String>> {
        let mut names = std::collections::BTreeMap::new();
        for line in &tx.lines {
            if !names.contains_key(&line.payment_type_id)
                && let Some(t) = self.payment_type(line.payment_type_id).await?
            {
                names.insert(t.id, t.name);
            }
        }
        Ok(names)
    }

    /// How a transaction's messages tell it.
    async fn telling<'a>(
        &self,
        tx: &'a Transaction,
        creditor: &'a Creditor,
    ) -> Result<outbox::Telling<'a>> {
        Ok(outbox::Telling {
            tx,
            creditor,
            type_names: self.type_names(tx).await?,
        })
    }
}

/// What a transition records beside the state.
#[derive(Debug, Clone, Default)]
struct Change {
    provider_ref: Option<String>,
    instruction: Option<Instruction>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    note: Option<String>,
    /// For `Paid`: the items already paid, by another transaction or by this one line by
    /// line (their lines are not settled again).
    already_paid: Vec<ItemId>,
    /// Exceptions recorded with the move.
    exceptions: Vec<Exception>,
    /// Messages enqueued with the move beside those of its state.
    outbox: Vec<NewOutboxMessage>,
}

impl Change {
    fn note(note: impl Into<String>) -> Self {
        Change {
            note: Some(note.into()),
            ..Change::default()
        }
    }

    fn note_opt(note: Option<String>) -> Self {
        Change {
            note,
            ..Change::default()
        }
    }
}

fn check_note(note: Option<String>) -> Result<Option<String>> {
    match note.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) if n.chars().count() > 500 => Err(Error::invalid("note", "at most 500 characters")),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(Error::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(())
}
