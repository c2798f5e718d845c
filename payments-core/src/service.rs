//! [`Payments`]: the service a portal's modules hold, composed of a store, gateways, a
//! notifier, settlement listeners and a clock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

mod refunds;
pub use refunds::SweepReport;

use crate::cache::Cached;
use crate::item::check_reason;
use crate::{
    Actor, CallbackEvent, CallbackPart, CallbackRequest, Cart, CartContents, CartId, Clock,
    Conflict, Creditor, CreditorId, Error, FREE_PAYMENT_MODULE, Gateway, GatewayErrorKind,
    GatewayId, HistoryEntry, HistoryQuery, Instruction, ItemId, ItemState, MAX_PAGE_SIZE, MethodId,
    Money, MovementPage, MovementQuery, NewFreeItem, NewItem, NewOutboxMessage, Notification,
    NotificationKind, Notifier, OutboxId, OutboxMessage, OutboxPayload, OutboxQuery, OverLimit,
    Page, PayableItem, Payer, PaymentMethod, PaymentOutcome, PaymentType, Result, RetryPolicy,
    Role, Settlement, SettlementListener, Source, StartRequest, Store, SystemClock, Transaction,
    TransactionEvent, TransactionId, TransactionSummary, Transition, TxStatus, ValidationErrors,
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
    return_url: Option<String>,
    dispatch_batch: u32,
    /// (how often, how old) for the worker's reconciliation sweep; `None`: never.
    sweep: Option<(Duration, Duration)>,
    creditors: Cached<CreditorId, Creditor>,
    types: Cached<crate::PaymentTypeId, PaymentType>,
    methods: Cached<MethodId, PaymentMethod>,
}

/// Builds a [`Payments`].
#[derive(Debug, Default)]
pub struct PaymentsBuilder {
    store: Option<Arc<dyn Store>>,
    gateways: Vec<Arc<dyn Gateway>>,
    notifier: Option<Arc<dyn Notifier>>,
    listeners: HashMap<String, Arc<dyn SettlementListener>>,
    clock: Option<Arc<dyn Clock>>,
    retry: Option<RetryPolicy>,
    transaction_ttl: Option<Duration>,
    return_url: Option<String>,
    dispatch_batch: Option<u32>,
    config_ttl: Option<Duration>,
    sweep: Option<Option<(Duration, Duration)>>,
}

impl PaymentsBuilder {
    /// A builder with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store (required).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a gateway; methods name it by its [`Gateway::id`].
    pub fn gateway(mut self, gateway: Arc<dyn Gateway>) -> Self {
        self.gateways.push(gateway);
        self
    }

    /// The notifier (required).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Registers the listener told when items of `module` are paid.
    pub fn listener(
        mut self,
        module: impl Into<String>,
        listener: Arc<dyn SettlementListener>,
    ) -> Self {
        self.listeners.insert(module.into(), listener);
        self
    }

    /// The clock (the system's by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How the outbox retries (see [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// How long an unfinished transaction holds its items (30 minutes by default; a
    /// gateway may ask for longer).
    pub fn transaction_ttl(mut self, ttl: Duration) -> Self {
        self.transaction_ttl = Some(ttl);
        self
    }

    /// Where hosted payment pages send the payer back.
    pub fn return_url(mut self, url: impl Into<String>) -> Self {
        self.return_url = Some(url.into());
        self
    }

    /// How long this instance trusts the creditors, payment types and methods it read
    /// (30 s by default; zero reads them on every use). Changes made through this instance
    /// apply at once; changes made elsewhere within this time.
    pub fn config_cache_ttl(mut self, ttl: Duration) -> Self {
        self.config_ttl = Some(ttl);
        self
    }

    /// How many outbox messages one dispatcher pass claims (50 by default).
    pub fn dispatch_batch(mut self, n: u32) -> Self {
        self.dispatch_batch = Some(n.max(1));
        self
    }

    /// How often [`Payments::run_worker`] runs the reconciliation sweep
    /// ([`Payments::reconcile_pending`]), and for transactions unchanged for how long: every
    /// 5 minutes, for those unchanged for 10, by default.
    pub fn reconcile_every(mut self, every: Duration, older_than: Duration) -> Self {
        self.sweep = Some(Some((every, older_than)));
        self
    }

    /// The worker never runs the reconciliation sweep (the host schedules its own).
    pub fn no_reconciliation(mut self) -> Self {
        self.sweep = Some(None);
        self
    }

    /// Builds the service; refuses a missing store or notifier, or two gateways with one id.
    pub fn build(self) -> Result<Payments> {
        let store = self
            .store
            .ok_or_else(|| Error::invalid("store", "required"))?;
        let notifier = self
            .notifier
            .ok_or_else(|| Error::invalid("notifier", "required"))?;
        let config_ttl = self.config_ttl.unwrap_or(Duration::from_secs(30));
        let mut gateways = HashMap::new();
        for g in self.gateways {
            let id = g.id();
            if gateways.insert(id.clone(), g).is_some() {
                return Err(Error::invalid(
                    "gateway",
                    format!("two gateways with id {id}"),
                ));
            }
        }
        Ok(Payments {
            inner: Arc::new(Inner {
                store,
                gateways,
                notifier,
                listeners: self.listeners,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                retry: self.retry.unwrap_or_default(),
                transaction_ttl: self.transaction_ttl.unwrap_or(Duration::from_secs(30 * 60)),
                return_url: self.return_url,
                dispatch_batch: self.dispatch_batch.unwrap_or(50),
                sweep: self
                    .sweep
                    .unwrap_or(Some((Duration::from_secs(300), Duration::from_secs(600)))),
                creditors: Cached::new(config_ttl),
                types: Cached::new(config_ttl),
                methods: Cached::new(config_ttl),
            }),
        })
    }
}

/// What [`Payments::checkout`] returns: the transaction and what the payer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The transaction (`Pending`, or `Paid` when the gateway completed it at once).
    pub transaction: Transaction,
    /// What the payer must do.
    pub instruction: Instruction,
}

/// What a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOutcome {
    /// The transaction after the callback.
    pub transaction: Transaction,
    /// Whether it changed anything: a state change, or a line paid on its own recorded
    /// (false for a replay or a "still pending").
    pub applied: bool,
}

/// What one pass of the outbox dispatcher did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Messages delivered.
    pub delivered: u32,
    /// Messages that failed and will be retried.
    pub retrying: u32,
    /// Messages given up on.
    pub dead: u32,
}

impl DispatchReport {
    /// How many messages the pass claimed.
    pub fn claimed(&self) -> u32 {
        self.delivered + self.retrying + self.dead
    }
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

    fn gateway(&self, id: &GatewayId) -> Result<&Arc<dyn Gateway>> {
        self.inner
            .gateways
            .get(id)
            .ok_or_else(|| Error::not_found("gateway", id))
    }

    // ---------------------------------------------------------------- configuration

    /// Registers or updates a creditor. Only the system (the host's set-up) may.
    pub async fn register_creditor(&self, actor: &Actor, creditor: &Creditor) -> Result<()> {
        if *actor != Actor::System {
            return Err(Error::forbidden("only the system registers creditors"));
        }
        creditor.validate()?;
        self.store_ref().put_creditor(creditor).await?;
        self.inner.creditors.put(creditor.id, creditor.clone());
        Ok(())
    }

    /// A creditor.
    pub async fn creditor(&self, id: CreditorId) -> Result<Creditor> {
        if let Some(c) = self.inner.creditors.get(&id) {
            return Ok(c);
        }
        let c = self
            .store_ref()
            .creditor(id)
            .await?
            .ok_or_else(|| Error::not_found("creditor", id))?;
        self.inner.creditors.put(id, c.clone());
        Ok(c)
    }

    /// A payment type, through the configuration cache.
    async fn payment_type(&self, id: crate::PaymentTypeId) -> Result<Option<PaymentType>> {
        if let Some(t) = self.inner.types.get(&id) {
            return Ok(Some(t));
        }
        let t = self.store_ref().payment_type(id).await?;
        if let Some(t) = &t {
            self.inner.types.put(id, t.clone());
        }
        Ok(t)
    }

    /// A payment method, through the configuration cache.
    async fn method(&self, id: MethodId) -> Result<Option<PaymentMethod>> {
        if let Some(m) = self.inner.methods.get(&id) {
            return Ok(Some(m));
        }
        let m = self.store_ref().method(id).await?;
        if let Some(m) = &m {
            self.inner.methods.put(id, m.clone());
        }
        Ok(m)
    }

    /// Defines or updates a payment type; a manager of its creditor, or the system.
    pub async fn define_payment_type(
        &self,
        actor: &Actor,
        payment_type: &PaymentType,
    ) -> Result<()> {
        actor.check_operator(&payment_type.creditor_id, Role::Manager)?;
        payment_type.validate()?;
        self.creditor(payment_type.creditor_id).await?;
        self.store_ref().put_payment_type(payment_type).await?;
        self.inner.types.put(payment_type.id, payment_type.clone());
        Ok(())
    }

    /// A creditor's payment types, as a free-payment form lists them.
    pub async fn payment_types(&self, creditor: CreditorId) -> Result<Vec<PaymentType>> {
        self.store_ref().payment_types(creditor).await
    }

    /// Enables or updates a payment method; a manager of its creditor, or the system. The
    /// gateway must be registered and serve the method's kind.
    pub async fn enable_method(&self, actor: &Actor, method: &PaymentMethod) -> Result<()> {
        actor.check_operator(&method.creditor_id, Role::Manager)?;
        let mut errors = ValidationErrors::default();
        crate::config::check_name(&mut errors, "label", &method.label);
        match self.inner.gateways.get(&method.gateway_id) {
            None => errors.push("gateway_id", "no such gateway is registered"),
            Some(g) if !g.kinds().contains(&method.kind) => errors.push(
                "kind",
                format!("gateway {} does not serve it", method.gateway_id),
            ),
            Some(_) => {}
        }
        errors.into_result()?;
        self.creditor(method.creditor_id).await?;
        self.store_ref().put_method(method).await?;
        self.inner.methods.put(method.id, method.clone());
        Ok(())
    }

    /// A creditor's enabled payment methods.
    pub async fn methods(&self, creditor: CreditorId) -> Result<Vec<PaymentMethod>> {
        let mut methods = self.store_ref().methods(creditor).await?;
        methods.retain(|m| m.enabled);
        Ok(methods)
    }

    // ---------------------------------------------------------------- cart

    /// The payer's cart at `creditor`, opened if they have none.
    pub async fn open_cart(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        payer: Payer,
    ) -> Result<Cart> {
        actor.check_payer_access(&creditor, &payer.id)?;
        payer.validate()?;
        self.creditor(creditor).await?;
        let cart = Cart {
            id: CartId::new(),
            creditor_id: creditor,
            payer,
            created_at: self.inner.clock.now(),
        };
        self.store_ref().open_cart(&cart).await
    }

    async fn cart_for(&self, actor: &Actor, cart: CartId) -> Result<Cart> {
        let cart = self
            .store_ref()
            .cart(cart)
            .await?
            .ok_or_else(|| Error::not_found("cart", cart))?;
        actor.check_payer_access(&cart.creditor_id, &cart.payer.id)?;
        Ok(cart)
    }

    async fn payment_type_of(
        &self,
        creditor: CreditorId,
        id: crate::PaymentTypeId,
        errors: &mut ValidationErrors,
    ) -> Result<Option<PaymentType>> {
        match self.payment_type(id).await? {
            Some(t) if t.creditor_id == creditor => Ok(Some(t)),
            _ => {
                errors.push("payment_type_id", "no such payment type at this creditor");
                Ok(None)
            }
        }
    }

    /// Puts an item a module wants paid in the cart. Adding the same source twice returns
    /// the first item unchanged (a removed item comes back).
    pub async fn add_item(
        &self,
        actor: &Actor,
        cart: CartId,
        item: NewItem,
    ) -> Result<PayableItem> {
        let cart = self.cart_for(actor, cart).await?;
        let creditor = self.creditor(cart.creditor_id).await?;
        let mut errors = ValidationErrors::default();
        item.source.check(&mut errors);
        let reason = check_reason(&mut errors, &item.reason);
        let mut extra = Default::default();
        if let Some(t) = self
            .payment_type_of(cart.creditor_id, item.payment_type_id, &mut errors)
            .await?
        {
            if let Err(reason) = t.check_amount(&item.amount, &creditor) {
                errors.push("amount", reason);
            }
            extra = t.check_extra(&item.extra, &mut errors);
        }
        errors.into_result()?;
        self.insert_item(
            &cart,
            item.source,
            item.payment_type_id,
            reason,
            item.amount,
            item.due_date,
            extra,
        )
        .await
    }

    /// Puts a free payment (*pagamento libero*) the payer filled in in the cart, after
    /// checking it against its payment type. All problems are reported at once, each with
    /// its field.
    pub async fn add_free_item(
        &self,
        actor: &Actor,
        cart: CartId,
        item: NewFreeItem,
    ) -> Result<PayableItem> {
        let cart = self.cart_for(actor, cart).await?;
        let creditor = self.creditor(cart.creditor_id).await?;
        let mut errors = ValidationErrors::default();
        let reason = check_reason(&mut errors, &item.reason);
        let Some(type_id) = item.payment_type_id else {
            errors.push("payment_type_id", "required");
            return Err(Error::Validation(errors));
        };
        let Some(t) = self
            .payment_type_of(cart.creditor_id, type_id, &mut errors)
            .await?
        else {
            return Err(Error::Validation(errors));
        };
        if !t.free_payments {
            errors.push(
                "payment_type_id",
                "free payments of this type are not allowed",
            );
        }
        let amount = match (item.amount.as_deref().map(str::trim), &t.amount_rule) {
            (None | Some(""), crate::AmountRule::Fixed { amount }) => Some(*amount),
            (None | Some(""), _) => {
                errors.push("amount", "required");
                None
            }
            (Some(text), _) => match Money::parse_eur(text) {
                Ok(m) => Some(m),
                Err(e) => {
                    errors.push("amount", e.to_string());
                    None
                }
            },
        };
        if let Some(amount) = &amount
            && let Err(reason) = t.check_amount(amount, &creditor)
        {
            errors.push("amount", reason);
        }
        let extra = t.check_extra(&item.extra, &mut errors);
        errors.into_result()?;
        let source = Source::new(FREE_PAYMENT_MODULE, uuid::Uuid::now_v7().to_string());
        let amount = amount.ok_or_else(|| Error::invalid("amount", "required"))?;
        self.insert_item(&cart, source, type_id, reason, amount, None, extra)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_item(
        &self,
        cart: &Cart,
        source: Source,
        payment_type_id: crate::PaymentTypeId,
        reason: String,
        amount: Money,
        due_date: Option<chrono::NaiveDate>,
        extra: std::collections::BTreeMap<String, String>,
    ) -> Result<PayableItem> {
        let item = PayableItem {
            id: ItemId::new(),
            creditor_id: cart.creditor_id,
            cart_id: cart.id,
            payer_id: cart.payer.id.clone(),
            source,
            payment_type_id,
            reason,
            amount,
            due_date,
            extra,
            state: ItemState::Open,
            created_at: self.inner.clock.now(),
        };
        let added = self.store_ref().add_item(&item).await?;
        if added.item.payer_id != cart.payer.id {
            return Err(Error::Conflict(Conflict::Other(format!(
                "source {}/{} belongs to another payer",
                item.source.module, item.source.key
            ))));
        }
        Ok(added.item)
    }

    /// Takes an open item out of the cart.
    pub async fn remove_item(
        &self,
        actor: &Actor,
        cart: CartId,
        item: ItemId,
    ) -> Result<PayableItem> {
        let cart = self.cart_for(actor, cart).await?;
        match self.store_ref().item(item).await? {
            Some(i) if i.cart_id == cart.id => self.store_ref().remove_item(item).await,
            _ => Err(Error::not_found("item", item)),
        }
    }

    /// What the cart holds: open items and items in an unfinished transaction; the total is
    /// that of the open ones, what a checkout would charge.
    pub async fn cart(&self, actor: &Actor, cart: CartId) -> Result<CartContents> {
        let cart = self.cart_for(actor, cart).await?;
        let items = self.store_ref().cart_items(cart.id).await?;
        let total = Money::sum(
            crate::Currency::Eur,
            items
                .iter()
                .filter(|i| i.state == ItemState::Open)
                .map(|i| &i.amount),
        )
        .map_err(|e| Error::invalid("total", e.to_string()))?;
        Ok(CartContents { cart, items, total })
    }

    /// The methods that can pay everything open in the cart: enabled at its creditor, served
    /// by a registered gateway, and accepted by every open item's payment type. This is the
    /// choice a checkout page offers; an empty cart can be paid by none.
    pub async fn cart_methods(&self, actor: &Actor, cart: CartId) -> Result<Vec<PaymentMethod>> {
        let cart = self.cart_for(actor, cart).await?;
        let items = self.store_ref().cart_items(cart.id).await?;
        let open: Vec<_> = items
            .iter()
            .filter(|i| i.state == ItemState::Open)
            .collect();
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let mut types = Vec::new();
        for item in &open {
            if !types
                .iter()
                .any(|t: &PaymentType| t.id == item.payment_type_id)
            {
                let t = self
                    .payment_type(item.payment_type_id)
                    .await?
                    .ok_or_else(|| Error::not_found("payment type", item.payment_type_id))?;
                types.push(t);
            }
        }
        let mut methods = self.methods(cart.creditor_id).await?;
        methods.retain(|m| {
            self.inner.gateways.contains_key(&m.gateway_id)
                && types.iter().all(|t| t.methods.contains(&m.kind))
        });
        Ok(methods)
    }

    // ---------------------------------------------------------------- checkout

    /// Pays the whole cart in one transaction with `method`.
    ///
    /// Checks that every item's type accepts the method and that the total is within the
    /// creditor's limit, locks the items (an item is in at most one open transaction; of
    /// concurrent checkouts of the same items exactly one wins, the others get a
    /// `Conflict`), and asks the gateway to start. The same `idempotency_key` from the same
    /// payer returns the same transaction and instruction, never a second transaction.
    pub async fn checkout(
        &self,
        actor: &Actor,
        cart: CartId,
        method: MethodId,
        idempotency_key: &str,
    ) -> Result<Checkout> {
        let cart = self.cart_for(actor, cart).await?;
        let key = idempotency_key.trim();
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || key.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must have 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable characters"),
            ));
        }
        let items = self.store_ref().cart_items(cart.id).await?;
        // A replay finds its items locked or paid: look the key up only then. Otherwise the
        // store's insert, idempotent on the key, settles any race.
        if (items.is_empty() || items.iter().any(|i| i.state != ItemState::Open))
            && let Some(existing) = self
                .store_ref()
                .transaction_by_key(&cart.payer.id, key)
                .await?
        {
            return Self::replayed_checkout(existing, cart.id);
        }
        let creditor = self.creditor(cart.creditor_id).await?;
        let method = match self.method(method).await? {
            Some(m) if m.creditor_id == cart.creditor_id && m.enabled => m,
            _ => return Err(Error::invalid("method", "not enabled at this creditor")),
        };
        let gateway = self.gateway(&method.gateway_id)?.clone();
        if let Some(locked) = items.iter().find(|i| i.state != ItemState::Open) {
            return Err(Error::Conflict(Conflict::ItemUnavailable {
                item: locked.id.to_string(),
                state: locked.state.name().into(),
            }));
        }
        if items.is_empty() {
            return Err(Error::invalid("cart", "is empty"));
        }
        let mut items = items;
        if let Some(limit) = gateway.line_limit()
            && items.len() > limit.max
        {
            match limit.over {
                OverLimit::Refuse => {
                    return Err(Error::invalid(
                        "cart",
                        format!(
                            "{} pays at most {} items at a time and this cart has {}: remove {} \
                             and pay them afterwards",
                            method.gateway_id,
                            limit.max,
                            items.len(),
                            items.len() - limit.max
                        ),
                    ));
                }
                // The oldest items now; the others stay open in the cart.
                OverLimit::Split => items.truncate(limit.max),
            }
        }
        let mut types: HashMap<crate::PaymentTypeId, PaymentType> = HashMap::new();
        for item in &items {
            if !types.contains_key(&item.payment_type_id) {
                let t = self
                    .payment_type(item.payment_type_id)
                    .await?
                    .ok_or_else(|| Error::not_found("payment type", item.payment_type_id))?;
                types.insert(t.id, t);
            }
            let t = &types[&item.payment_type_id];
            if !t.methods.contains(&method.kind) {
                return Err(Error::invalid(
                    "method",
                    format!("{} is not accepted for {}", method.kind.as_str(), t.name),
                ));
            }
        }
        let now = self.inner.clock.now();
        let ttl =
            chrono::Duration::from_std(self.inner.transaction_ttl).unwrap_or(chrono::Duration::MAX);
        let (tx, event) = Transaction::create(&cart, &method, &items, key, actor, now, now + ttl)?;
        if tx.total.compare(&creditor.max_transaction_amount) == Some(std::cmp::Ordering::Greater) {
            return Err(Error::invalid(
                "total",
                format!("must not exceed {}", creditor.max_transaction_amount),
            ));
        }
        let created = self.store_ref().create_transaction(&tx, &event).await?;
        if !created.created {
            return Self::replayed_checkout(created.transaction, cart.id);
        }
        let tx = created.transaction;

        let request = StartRequest {
            transaction: tx.clone(),
            creditor,
            method,
            return_url: self.inner.return_url.clone(),
        };
        let started = match gateway.start(&request).await {
            Ok(s) => s,
            Err(e) => {
                let note = format!("gateway start failed: {e}");
                // The transaction fails and frees its items; the gateway's error is returned.
                self.apply(&tx, TxStatus::Failed, &Actor::System, Change::note(note))
                    .await?;
                return Err(e);
            }
        };
        let change = Change {
            provider_ref: started.provider_ref.clone(),
            instruction: Some(started.instruction.clone()),
            expires_at: started.expires_at,
            note: None,
        };
        let actor = Actor::Gateway {
            id: tx.gateway_id.clone(),
        };
        let tx = match self.apply(&tx, TxStatus::Pending, &actor, change).await {
            Ok(t) => t,
            // A callback overtook the start (it moved the transaction on): show where it is.
            Err(Error::Conflict(Conflict::StaleState { .. })) => {
                self.load_transaction(tx.id).await?
            }
            Err(e) => return Err(e),
        };
        let tx = if started.instruction == Instruction::Completed && tx.status == TxStatus::Pending
        {
            self.apply(&tx, TxStatus::Paid, &actor, Change::default())
                .await?
        } else {
            tx
        };
        Ok(Checkout {
            transaction: tx,
            instruction: started.instruction,
        })
    }

    fn replayed_checkout(existing: Transaction, cart: CartId) -> Result<Checkout> {
        if existing.cart_id != cart {
            return Err(Error::Conflict(Conflict::Other(
                "this idempotency key was used for another cart".into(),
            )));
        }
        match existing.instruction.clone() {
            Some(instruction) => Ok(Checkout {
                transaction: existing,
                instruction,
            }),
            None if existing.status == TxStatus::Created => {
                Err(Error::Conflict(Conflict::InProgress {
                    what: format!("checkout {}", existing.id),
                }))
            }
            None => Err(Error::Conflict(Conflict::Other(format!(
                "the checkout with this key ended {}",
                existing.status
            )))),
        }
    }

    // ---------------------------------------------------------------- outcomes

    /// Applies a provider's callback: the gateway verifies and reads it, the amount and
    /// currency are checked against the transaction, and the outcome is applied once. A
    /// replay changes nothing and answers `applied: false`.
    pub async fn handle_callback(
        &self,
        gateway: &str,
        request: &CallbackRequest,
    ) -> Result<CallbackOutcome> {
        let gateway = self.gateway(&GatewayId::from(gateway))?.clone();
        let mut event = gateway.parse_callback(request).await?;
        let tx = match event.transaction_id {
            Some(id) => self.store_ref().transaction(id).await?,
            None => {
                // Found by the provider's reference; once applied, a transaction carries
                // the reference recorded instead, which is how a replay finds it.
                let mut found = None;
                for r in [&event.provider_ref, &event.record_ref]
                    .into_iter()
                    .flatten()
                {
                    found = self
                        .store_ref()
                        .transaction_by_provider_ref(&gateway.id(), r)
                        .await?;
                    if found.is_some() {
                        break;
                    }
                }
                found
            }
        };
        if let Some(part) = event.part.take() {
            return self.apply_part(&gateway.id(), event, part, tx).await;
        }
        let tx = tx.ok_or_else(|| {
            Error::not_found(
                "transaction",
                event
                    .transaction_id
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
            )
        })?;
        if tx.gateway_id != gateway.id() {
            return Err(Error::forbidden(
                "the callback's gateway does not run this transaction",
            ));
        }
        if event.amount != tx.total {
            // Flagged for operators, once per reported amount: the outcome is not applied.
            let reference = event
                .provider_ref
                .clone()
                .or_else(|| event.record_ref.clone())
                .unwrap_or_else(|| tx.id.to_string());
            let flag = crate::BankEntry {
                creditor_id: tx.creditor_id,
                key: format!("mismatch:{}:{reference}:{}", gateway.id(), event.amount),
                statement_id: format!("callback:{}", gateway.id()),
                imported_at: self.inner.clock.now(),
                booked_on: None,
                amount: event.amount.amount(),
                currency: event.amount.currency().code().to_owned(),
                debtor: None,
                remittance: event.note.clone().unwrap_or_default(),
                reference: Some(reference),
                outcome: crate::BankEntryOutcome::Exception {
                    reason: format!(
                        "{} reported {} ({:?}) for transaction {}, whose total is {}: not applied",
                        gateway.id(),
                        event.amount,
                        event.outcome,
                        tx.id,
                        tx.total
                    ),
                    transaction_id: Some(tx.id),
                },
            };
            self.store_ref().insert_bank_entry(&flag).await?;
            return Err(Error::gateway(
                gateway.id().0,
                GatewayErrorKind::AmountMismatch {
                    expected: tx.total.to_string(),
                    actual: event.amount.to_string(),
                },
            ));
        }
        let actor = Actor::Gateway { id: gateway.id() };
        let change = Change {
            provider_ref: event.record_ref.or(event.provider_ref),
            note: event.note,
            ..Change::default()
        };
        self.apply_outcome(tx, event.outcome, &actor, change).await
    }

    /// Applies a callback that pays one line of a transaction (see [`CallbackPart`]).
    ///
    /// The part is recorded once as a [`BankEntry`](crate::BankEntry): matched when it pays
    /// a line of an open transaction with the line's exact amount, an exception an operator
    /// sees otherwise (no such transaction, an amount that differs, a line already paid, a
    /// transaction no longer open). The transaction moves to `Paid` when every line is paid.
    /// A replay finds its entry and answers `applied: false`.
    async fn apply_part(
        &self,
        gateway: &GatewayId,
        event: CallbackEvent,
        part: CallbackPart,
        tx: Option<Transaction>,
    ) -> Result<CallbackOutcome> {
        let store = self.store_ref();
        let Some(creditor) = tx.as_ref().map(|t| t.creditor_id).or(part.creditor_id) else {
            return Err(Error::not_found("transaction", &part.reference));
        };
        let entry = |outcome: crate::BankEntryOutcome| crate::BankEntry {
            creditor_id: creditor,
            key: part.key.clone(),
            statement_id: part.key.clone(),
            imported_at: self.inner.clock.now(),
            booked_on: part.paid_on,
            amount: event.amount.amount(),
            currency: event.amount.currency().code().to_owned(),
            debtor: part.debtor.clone(),
            remittance: part.details.clone(),
            reference: Some(part.reference.clone()),
            outcome,
        };
        let exception = |reason: String, transaction_id: Option<TransactionId>| {
            entry(crate::BankEntryOutcome::Exception {
                reason,
                transaction_id,
            })
        };
        let Some(tx) = tx else {
            // Recorded once: a replay's insert finds the key taken and changes nothing.
            store
                .insert_bank_entry(&exception(
                    format!("no transaction has reference {}", part.reference),
                    None,
                ))
                .await?;
            return Err(Error::not_found("transaction", &part.reference));
        };
        if tx.gateway_id != *gateway {
            return Err(Error::forbidden(
                "the callback's gateway does not run this transaction",
            ));
        }
        // Every entry this part can have recorded names the transaction.
        let mut of_tx = crate::BankEntryQuery::new(creditor);
        of_tx.transaction_id = Some(tx.id);
        of_tx.limit = crate::MAX_PAGE_SIZE;
        let recorded = store.bank_entries(&of_tx).await?;
        if recorded.iter().any(|e| e.key == part.key) {
            return Ok(CallbackOutcome {
                transaction: tx,
                applied: false,
            });
        }
        let Some(line) = tx.lines.get(part.line) else {
            store
                .insert_bank_entry(&exception(
                    format!(
                        "transaction {} has no line {}",
                        tx.id,
                        part.line.saturating_add(1)
                    ),
                    Some(tx.id),
                ))
                .await?;
            return Err(Error::gateway(
                gateway.0.clone(),
                GatewayErrorKind::Malformed(format!(
                    "no line {} to pay",
                    part.line.saturating_add(1)
                )),
            ));
        };
        if event.amount != line.amount {
            store
                .insert_bank_entry(&exception(
                    format!(
                        "pays {} for {}, which is of {}",
                        event.amount, part.reference, line.amount
                    ),
                    Some(tx.id),
                ))
                .await?;
            return Err(Error::gateway(
                gateway.0.clone(),
                GatewayErrorKind::AmountMismatch {
                    expected: line.amount.to_string(),
                    actual: event.amount.to_string(),
                },
            ));
        }
        let paid_lines = |entries: &[crate::BankEntry]| -> std::collections::BTreeSet<String> {
            entries
                .iter()
                .filter(|e| !e.is_exception())
                .filter_map(|e| e.reference.clone())
                .collect()
        };
        let mut paid = paid_lines(&recorded);
        let reason = if paid.contains(&part.reference) {
            Some(format!(
                "{} was already paid: this is a second payment of it",
                part.reference
            ))
        } else if !tx.status.is_open() {
            Some(format!(
                "pays {} of transaction {}, which is {}",
                part.reference, tx.id, tx.status
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            let inserted = store
                .insert_bank_entry(&exception(reason, Some(tx.id)))
                .await?;
            return Ok(CallbackOutcome {
                transaction: tx,
                applied: inserted,
            });
        }
        let matched = entry(crate::BankEntryOutcome::Matched {
            transaction_id: tx.id,
        });
        if !store.insert_bank_entry(&matched).await? {
            return Ok(CallbackOutcome {
                transaction: tx,
                applied: false,
            });
        }
        paid.insert(part.reference.clone());
        if paid.len() < tx.lines.len() {
            // Another line may have been paid meanwhile: read again before deciding.
            paid = paid_lines(&store.bank_entries(&of_tx).await?);
        }
        if paid.len() < tx.lines.len() {
            return Ok(CallbackOutcome {
                transaction: tx,
                applied: true,
            });
        }
        let actor = Actor::Gateway {
            id: gateway.clone(),
        };
        let note = format!(
            "every line paid: {}",
            paid.into_iter().collect::<Vec<_>>().join(", ")
        );
        let mut outcome = self
            .apply_outcome(tx, PaymentOutcome::Paid, &actor, Change::note(note))
            .await?;
        // This part was recorded even when a concurrent part made the last move.
        outcome.applied = true;
        Ok(outcome)
    }

    /// Asks the gateway where an unfinished transaction stands and applies the answer.
    pub async fn reconcile(&self, transaction: TransactionId) -> Result<CallbackOutcome> {
        let tx = self.load_transaction(transaction).await?;
        let gateway = self.gateway(&tx.gateway_id)?.clone();
        let outcome = gateway.fetch_status(&tx).await?;
        let actor = Actor::Gateway { id: gateway.id() };
        self.apply_outcome(tx, outcome, &actor, Change::note("reconciled"))
            .await
    }

    async fn apply_outcome(
        &self,
        mut tx: Transaction,
        outcome: PaymentOutcome,
        actor: &Actor,
        change: Change,
    ) -> Result<CallbackOutcome> {
        let target = match outcome {
            PaymentOutcome::Pending => {
                return Ok(CallbackOutcome {
                    transaction: tx,
                    applied: false,
                });
            }
            PaymentOutcome::Paid => TxStatus::Paid,
            PaymentOutcome::Failed => TxStatus::Failed,
            PaymentOutcome::Cancelled => TxStatus::Cancelled,
        };
        for _ in 0..4 {
            if tx.status == target {
                return Ok(CallbackOutcome {
                    transaction: tx,
                    applied: false,
                });
            }
            let step = if tx.status == TxStatus::Created && target == TxStatus::Paid {
                TxStatus::Pending
            } else {
                target
            };
            match self.apply(&tx, step, actor, change.clone()).await {
                Ok(t) if t.status == target => {
                    return Ok(CallbackOutcome {
                        transaction: t,
                        applied: true,
                    });
                }
                Ok(t) => tx = t,
                Err(Error::Conflict(Conflict::StaleState { .. })) => {
                    tx = self.load_transaction(tx.id).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(Conflict::InProgress {
            what: format!("transaction {}", tx.id),
        }))
    }

    /// The payer says they made the bank transfer: `Pending` → `Reported`, and the payer
    /// and the creditor are told. The report is checked against the transaction (the
    /// amount is its total; the transfer was executed between its start and today) and
    /// recorded in the event; a refused report names its fields and changes nothing.
    pub async fn report_transfer(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        report: &crate::TransferReport,
    ) -> Result<Transaction> {
        let tx = self.load_transaction(transaction).await?;
        match actor {
            Actor::Payer { id } if *id == tx.payer.id => {}
            _ => return Err(Error::forbidden("only the payer reports their transfer")),
        }
        if tx.method_kind != crate::MethodKind::BankTransfer {
            return Err(Error::invalid("transaction", "is not a bank transfer"));
        }
        let today = self
            .inner
            .clock
            .now()
            .with_timezone(&chrono_tz::Europe::Rome)
            .date_naive();
        let report = report.validate_for(&tx, today)?;
        self.apply(
            &tx,
            TxStatus::Reported,
            actor,
            Change::note(format!("reported: {}", report.summary())),
        )
        .await
    }

    /// Records a payment an operator's evidence proves (an imported bank statement, most
    /// often): `Pending` or `Reported` → `Paid`, with `provider_ref` (the bank's reference of
    /// the credit) recorded. The amount must be the transaction's total. Only a manager of
    /// the transaction's creditor may do this; a transaction already paid answers
    /// `applied: false`.
    pub async fn record_payment(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        provider_ref: &str,
        amount: &Money,
        note: Option<String>,
    ) -> Result<CallbackOutcome> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_operator(&tx.creditor_id, Role::Manager)?;
        if *amount != tx.total {
            return Err(Error::gateway(
                tx.gateway_id.0.clone(),
                GatewayErrorKind::AmountMismatch {
                    expected: tx.total.to_string(),
                    actual: amount.to_string(),
                },
            ));
        }
        let provider_ref = provider_ref.trim();
        if provider_ref.is_empty()
            || provider_ref.len() > MAX_PROVIDER_REF_LEN
            || provider_ref.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "provider_ref",
                format!("must have 1 to {MAX_PROVIDER_REF_LEN} printable characters"),
            ));
        }
        let change = Change {
            provider_ref: Some(provider_ref.to_owned()),
            note: check_note(note)?,
            ..Change::default()
        };
        self.apply_outcome(tx, PaymentOutcome::Paid, actor, change)
            .await
    }

    /// Records a credit read from a bank statement, once per creditor and key: answers
    /// `false` when an entry with that key was already recorded (and changes nothing). Only
    /// a manager of the creditor may record.
    pub async fn record_bank_entry(&self, actor: &Actor, entry: &crate::BankEntry) -> Result<bool> {
        actor.check_operator(&entry.creditor_id, Role::Manager)?;
        self.store_ref().insert_bank_entry(entry).await
    }

    /// A creditor's bank entries (matched credits and exceptions), newest first, for its
    /// operators.
    pub async fn bank_entries(
        &self,
        actor: &Actor,
        query: &crate::BankEntryQuery,
    ) -> Result<Vec<crate::BankEntry>> {
        actor.check_operator(&query.creditor_id, Role::Viewer)?;
        check_limit(query.limit)?;
        self.store_ref().bank_entries(query).await
    }

    /// An operator confirms that the money arrived: `Pending` or `Reported` → `Paid`.
    pub async fn confirm_payment(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        note: Option<String>,
    ) -> Result<Transaction> {
        self.operator_move(actor, transaction, TxStatus::Paid, note)
            .await
    }

    /// An operator finds no transfer behind a report: `Reported` → `Rejected`; the items are
    /// payable again.
    pub async fn reject_report(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        note: Option<String>,
    ) -> Result<Transaction> {
        self.operator_move(actor, transaction, TxStatus::Rejected, note)
            .await
    }

    /// A move that only a manager of the transaction's creditor may make.
    async fn operator_move(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        to: TxStatus,
        note: Option<String>,
    ) -> Result<Transaction> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_operator(&tx.creditor_id, Role::Manager)?;
        let change = Change::note_opt(check_note(note)?);
        self.apply(&tx, to, actor, change).await
    }

    /// The payer gives up an unfinished transaction: → `Cancelled`; the items are payable
    /// again.
    pub async fn cancel(&self, actor: &Actor, transaction: TransactionId) -> Result<Transaction> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_payer_access(&tx.creditor_id, &tx.payer.id)?;
        self.apply(&tx, TxStatus::Cancelled, actor, Change::default())
            .await
    }

    /// Expires the transactions whose time is up and frees their items. A transaction whose
    /// gateway says it was paid meanwhile is marked paid instead. Returns how many expired.
    pub async fn expire_due(&self) -> Result<u32> {
        let now = self.inner.clock.now();
        let mut expired = 0;
        for tx in self.store_ref().due_for_expiry(now, 500).await? {
            if let Some(gateway) = self.inner.gateways.get(&tx.gateway_id).cloned()
                && tx.status == TxStatus::Pending
                && let Ok(PaymentOutcome::Paid) = gateway.fetch_status(&tx).await
            {
                let actor = Actor::Gateway { id: gateway.id() };
                self.apply_outcome(
                    tx,
                    PaymentOutcome::Paid,
                    &actor,
                    Change::note("paid before expiry"),
                )
                .await?;
                continue;
            }
            match self
                .apply(&tx, TxStatus::Expired, &Actor::System, Change::default())
                .await
            {
                Ok(_) => expired += 1,
                Err(Error::Conflict(Conflict::StaleState { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    /// The one function that moves a transaction: checks the state machine, builds the
    /// settlement messages for `Paid`, and asks the store for an atomic compare-and-set.
    async fn apply(
        &self,
        tx: &Transaction,
        to: TxStatus,
        actor: &Actor,
        change: Change,
    ) -> Result<Transaction> {
        if !tx.status.can_move_to(to) {
            return Err(Error::Conflict(Conflict::InvalidTransition {
                from: tx.status.to_string(),
                to: to.to_string(),
            }));
        }
        let now = self.inner.clock.now();
        // A payment, or a transfer the payer reports, is told to the payer and the creditor.
        let outbox = if to == TxStatus::Paid || to == TxStatus::Reported {
            let creditor = self.creditor(tx.creditor_id).await?;
            let provider_ref = change
                .provider_ref
                .clone()
                .or_else(|| tx.provider_ref.clone());
            let mut type_names = std::collections::BTreeMap::new();
            for line in &tx.lines {
                if let Some(t) = self.payment_type(line.payment_type_id).await? {
                    type_names.insert(t.id, t.name);
                }
            }
            messages_for_status(tx, &creditor, provider_ref, now, to, type_names)
        } else {
            Vec::new()
        };
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
        };
        self.store_ref().transition(&transition).await
    }

    // ---------------------------------------------------------------- reading

    async fn load_transaction(&self, id: TransactionId) -> Result<Transaction> {
        self.store_ref()
            .transaction(id)
            .await?
            .ok_or_else(|| Error::not_found("transaction", id))
    }

    /// A transaction, for its payer or an operator of its creditor.
    pub async fn transaction(&self, actor: &Actor, id: TransactionId) -> Result<Transaction> {
        let tx = self.load_transaction(id).await?;
        actor.check_payer_access(&tx.creditor_id, &tx.payer.id)?;
        Ok(tx)
    }

    /// A transaction's events, oldest first: its history.
    pub async fn events(&self, actor: &Actor, id: TransactionId) -> Result<Vec<TransactionEvent>> {
        self.transaction(actor, id).await?;
        self.store_ref().events(id).await
    }

    /// A payer's history, newest first: each transaction with its items and its events.
    /// Their own, or, for an operator, a payer's at the operator's creditor (`creditor_id`
    /// must be set).
    pub async fn history(&self, actor: &Actor, query: &HistoryQuery) -> Result<Page<HistoryEntry>> {
        check_limit(query.limit)?;
        match actor {
            Actor::Payer { id } if *id == query.payer_id => {}
            Actor::Payer { .. } => {
                return Err(Error::forbidden("a payer reaches only their own history"));
            }
            Actor::Operator { creditor, .. } if query.creditor_id == Some(*creditor) => {}
            Actor::Operator { .. } => {
                return Err(Error::forbidden(
                    "an operator reaches only their creditor's data",
                ));
            }
            Actor::System => {}
            Actor::Gateway { .. } => {
                return Err(Error::forbidden("a gateway acts only through callbacks"));
            }
        }
        let page = self.store_ref().history(query).await?;
        let ids: Vec<TransactionId> = page.items.iter().map(|t| t.id).collect();
        let mut events: HashMap<TransactionId, Vec<TransactionEvent>> = HashMap::new();
        for e in self.store_ref().events_of(&ids).await? {
            events.entry(e.transaction_id).or_default().push(e);
        }
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|t| HistoryEntry {
                    events: events.remove(&t.id).unwrap_or_default(),
                    transaction: t,
                })
                .collect(),
            next: page.next,
        })
    }

    /// An operator's search of their creditor's movements, with the count and total of the
    /// whole selection.
    pub async fn search(&self, actor: &Actor, query: &MovementQuery) -> Result<MovementPage> {
        actor.check_operator(&query.creditor_id, Role::Viewer)?;
        check_limit(query.limit)?;
        if let (Some(min), Some(max)) = (&query.min_total, &query.max_total)
            && min.minor_units() > max.minor_units()
        {
            return Err(Error::invalid("min_total", "greater than max_total"));
        }
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from > to
        {
            return Err(Error::invalid("from", "after to"));
        }
        self.store_ref().search(query).await
    }

    // ---------------------------------------------------------------- outbox

    /// Delivers the outbox messages that are due, once each: receipts and notices through
    /// the notifier, settlements to the module's listener. A failure is retried later with
    /// exponential backoff; after the policy's last attempt the message is `Dead` until an
    /// operator retries it. Run it periodically ([`Payments::run_worker`] does).
    pub async fn dispatch_outbox(&self) -> Result<DispatchReport> {
        let now = self.inner.clock.now();
        let lease =
            chrono::Duration::from_std(self.inner.retry.lease).unwrap_or(chrono::Duration::MAX);
        let claimed = self
            .store_ref()
            .claim_outbox(now, now + lease, self.inner.dispatch_batch)
            .await?;
        let results: Vec<(OutboxMessage, Result<()>)> = futures::stream::iter(claimed)
            .map(|m| async move {
                let r = self.deliver(&m).await;
                (m, r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut report = DispatchReport::default();
        for (message, result) in results {
            match result {
                Ok(()) => {
                    self.store_ref()
                        .outbox_delivered(message.id, self.inner.clock.now())
                        .await?;
                    report.delivered += 1;
                }
                Err(e) => {
                    let retry_at = if e.is_retryable() {
                        self.inner.retry.delay_after(message.attempts).map(|d| {
                            now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
                        })
                    } else {
                        None
                    };
                    if retry_at.is_some() {
                        report.retrying += 1;
                    } else {
                        report.dead += 1;
                    }
                    self.store_ref()
                        .outbox_failed(message.id, &e.to_string(), retry_at)
                        .await?;
                }
            }
        }
        Ok(report)
    }

    async fn deliver(&self, message: &OutboxMessage) -> Result<()> {
        match &message.payload {
            OutboxPayload::Notification(n) => self.inner.notifier.send(n).await,
            OutboxPayload::Settlement(s) => match self.inner.listeners.get(&s.source.module) {
                Some(listener) => listener.settled(s).await,
                None => Err(Error::Notification {
                    message: format!("no settlement listener for module {}", s.source.module),
                    transient: true,
                    source: None,
                }),
            },
        }
    }

    /// Runs the background work until `shutdown` completes: every `interval`, delivers the
    /// due outbox messages and expires the transactions whose time is up; and, as often as
    /// the builder's [`PaymentsBuilder::reconcile_every`] says (every 5 minutes by
    /// default), runs the reconciliation sweep. Errors are retried on the next round.
    pub async fn run_worker(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_sweep: Option<tokio::time::Instant> = None;
        loop {
            if let Some((every, older_than)) = self.inner.sweep
                && last_sweep.is_none_or(|t| t.elapsed() >= every)
            {
                last_sweep = Some(tokio::time::Instant::now());
                let _ = self.reconcile_pending(older_than, 500).await;
            }
            // Keep draining while whole batches come back.
            while let Ok(r) = self.dispatch_outbox().await {
                if r.claimed() < self.inner.dispatch_batch {
                    break;
                }
            }
            let _ = self.expire_due().await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Outbox messages of the operator's creditor (for instance the `Dead` ones).
    pub async fn outbox(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        mut query: OutboxQuery,
    ) -> Result<Vec<OutboxMessage>> {
        actor.check_operator(&creditor, Role::Viewer)?;
        query.creditor_id = Some(creditor);
        self.store_ref().outbox(&query).await
    }

    /// Puts a `Dead` message back in the queue, due now; a manager of its creditor.
    pub async fn retry_message(&self, actor: &Actor, id: OutboxId) -> Result<OutboxMessage> {
        let message = self
            .store_ref()
            .outbox_message(id)
            .await?
            .ok_or_else(|| Error::not_found("outbox message", id))?;
        actor.check_operator(&message.creditor_id, Role::Manager)?;
        self.store_ref()
            .outbox_retry(id, self.inner.clock.now())
            .await
    }
}

/// What a transition records beside the state.
#[derive(Debug, Clone, Default)]
struct Change {
    provider_ref: Option<String>,
    instruction: Option<Instruction>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    note: Option<String>,
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

/// The messages a transaction reaching `status` leaves: the payer's receipt (when they gave
/// an email address) and the creditor's notice; when `Paid`, also one settlement for each
/// item that came from a module (free payments have no module to tell).
pub(crate) fn messages_for_status(
    tx: &Transaction,
    creditor: &Creditor,
    provider_ref: Option<String>,
    paid_at: chrono::DateTime<chrono::Utc>,
    status: TxStatus,
    type_names: std::collections::BTreeMap<crate::PaymentTypeId, String>,
) -> Vec<NewOutboxMessage> {
    let summary = TransactionSummary {
        status,
        type_names,
        transaction_id: tx.id,
        provider_ref,
        creditor_id: creditor.id,
        creditor_name: creditor.name.clone(),
        creditor_fiscal_code: creditor.fiscal_code.clone(),
        payer_id: tx.payer.id.clone(),
        payer_name: tx.payer.name.clone(),
        payer_fiscal_code: tx.payer.fiscal_code.clone(),
        method_kind: tx.method_kind,
        lines: tx.lines.clone(),
        total: tx.total,
        paid_at,
    };
    let mut out = Vec::new();
    let mut notify = |kind, to: &str, locale| {
        let id = OutboxId::new();
        out.push(NewOutboxMessage {
            id,
            transaction_id: tx.id,
            payload: OutboxPayload::Notification(Notification {
                id,
                kind,
                to: to.to_owned(),
                locale,
                summary: summary.clone(),
            }),
        });
    };
    if let Some(email) = &tx.payer.email {
        notify(NotificationKind::Receipt, email, tx.payer.locale);
    }
    notify(
        NotificationKind::CreditorNotice,
        &creditor.notification_email,
        crate::Locale::It,
    );
    for line in tx
        .lines
        .iter()
        .filter(|l| status == TxStatus::Paid && l.source.module != FREE_PAYMENT_MODULE)
    {
        let id = OutboxId::new();
        out.push(NewOutboxMessage {
            id,
            transaction_id: tx.id,
            payload: OutboxPayload::Settlement(Settlement {
                id,
                source: line.source.clone(),
                item_id: line.item_id,
                transaction_id: tx.id,
                amount: line.amount,
                paid_at,
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    //! The service's decisions, with the store, gateway and notifier mocked.

    use super::*;
    use crate::testing::store::{Sample, t0};
    use crate::{
        CallbackEvent, Conflict, MockClock, MockGateway, MockNotifier, MockStore, NewOutboxMessage,
        OutboxStatus,
    };
    use mockall::predicate::eq;

    /// A sample creditor, type (card only), cart with one item, built on a scratch store.
    async fn sample() -> (Sample, PayableItem) {
        let scratch = crate::InMemoryStore::new();
        let mut s = Sample::install(&scratch).await;
        s.payment_type.methods = vec![crate::MethodKind::Card];
        let item = s
            .item(&scratch, &s.cart.clone(), "tributi", "a", "10.00")
            .await;
        (s, item)
    }

    fn clock() -> Arc<MockClock> {
        let mut c = MockClock::new();
        c.expect_now().returning(t0);
        Arc::new(c)
    }

    fn gateway_with(setup: impl FnOnce(&mut MockGateway)) -> Arc<MockGateway> {
        let mut g = MockGateway::new();
        g.expect_id().returning(|| GatewayId::from("sandbox"));
        g.expect_kinds()
            .returning(|| vec![crate::MethodKind::Card, crate::MethodKind::BankTransfer]);
        g.expect_line_limit().returning(|| None);
        setup(&mut g);
        Arc::new(g)
    }

    fn service(store: MockStore, gateway: Arc<MockGateway>, notifier: MockNotifier) -> Payments {
        Payments::builder()
            .store(Arc::new(store))
            .gateway(gateway)
            .notifier(Arc::new(notifier))
            .clock(clock())
            .build()
            .unwrap()
    }

    /// A store that answers the reads a checkout makes.
    fn store_for_checkout(s: &Sample, item: &PayableItem) -> MockStore {
        let mut store = MockStore::new();
        let (cart, creditor, method, ptype, item) = (
            s.cart.clone(),
            s.creditor.clone(),
            s.method.clone(),
            s.payment_type.clone(),
            item.clone(),
        );
        store
            .expect_cart()
            .returning(move |_| Ok(Some(cart.clone())));
        store.expect_transaction_by_key().returning(|_, _| Ok(None));
        store
            .expect_creditor()
            .returning(move |_| Ok(Some(creditor.clone())));
        store
            .expect_method()
            .returning(move |_| Ok(Some(method.clone())));
        store
            .expect_cart_items()
            .returning(move |_| Ok(vec![item.clone()]));
        store
            .expect_payment_type()
            .returning(move |_| Ok(Some(ptype.clone())));
        store
    }

    #[tokio::test]
    async fn checkout_refuses_a_method_the_type_does_not_accept_before_touching_anything() {
        let (mut s, item) = sample().await;
        s.method.kind = crate::MethodKind::BankTransfer;
        let mut store = store_for_checkout(&s, &item);
        store.expect_create_transaction().never();
        store.expect_transition().never();
        let gateway = gateway_with(|g| {
            g.expect_start().never();
        });
        let p = service(store, gateway, MockNotifier::new());
        let err = p
            .checkout(&Actor::payer("alice"), s.cart.id, s.method.id, "k")
            .await
            .unwrap_err();
        assert_eq!(err.validation_errors().unwrap().fields(), ["method"]);
    }

    #[tokio::test]
    async fn a_gateway_that_fails_to_start_fails_the_transaction_and_frees_the_items() {
        let (s, item) = sample().await;
        let (mut failed, _) = pending_transaction().await;
        failed.status = TxStatus::Failed;
        let mut store = store_for_checkout(&s, &item);
        store
            .expect_create_transaction()
            .times(1)
            .returning(|tx, _| {
                Ok(crate::TransactionCreated {
                    transaction: tx.clone(),
                    created: true,
                })
            });
        // The store frees the items on a move to Failed (its contract); the service asks for it.
        store
            .expect_transition()
            .withf(|t| {
                t.from == TxStatus::Created
                    && t.to == TxStatus::Failed
                    && t.outbox.is_empty()
                    && t.note.as_deref().is_some_and(|n| n.contains("unavailable"))
            })
            .times(1)
            .returning(move |_| Ok(failed.clone()));
        let gateway = gateway_with(|g| {
            g.expect_start()
                .times(1)
                .returning(|_| Err(Error::gateway("sandbox", GatewayErrorKind::Unavailable)));
        });
        let p = service(store, gateway, MockNotifier::new());
        let err = p
            .checkout(&Actor::payer("alice"), s.cart.id, s.method.id, "k")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }

    /// A `Pending` transaction of alice's over one € 10,00 item, and its creditor.
    async fn pending_transaction() -> (Transaction, Creditor) {
        let scratch = crate::InMemoryStore::new();
        let s = Sample::install(&scratch).await;
        let item = s.item(&scratch, &s.cart, "tributi", "a", "10.00").await;
        let mut tx = s.checkout(&scratch, &s.cart, &[item], "k", t0()).await;
        tx.status = TxStatus::Pending;
        (tx, s.creditor)
    }

    /// A store whose reads of any transaction return `tx`.
    fn store_reading(tx: &Transaction) -> MockStore {
        let mut store = MockStore::new();
        let read = tx.clone();
        store
            .expect_transaction()
            .returning(move |_| Ok(Some(read.clone())));
        store
    }

    fn gateway_reporting(
        tx: &Transaction,
        outcome: PaymentOutcome,
        amount: Money,
    ) -> Arc<MockGateway> {
        let id = tx.id;
        gateway_with(move |g| {
            g.expect_parse_callback().returning(move |_| {
                Ok(CallbackEvent {
                    transaction_id: Some(id),
                    provider_ref: Some("p".into()),
                    record_ref: None,
                    outcome,
                    amount,
                    note: None,
                    part: None,
                })
            });
        })
    }

    #[tokio::test]
    async fn a_paid_callback_enqueues_receipt_notice_and_settlement_in_the_transition() {
        let (tx, creditor) = pending_transaction().await;
        let mut store = MockStore::new();
        let read = tx.clone();
        store
            .expect_transaction()
            .with(eq(tx.id))
            .returning(move |_| Ok(Some(read.clone())));
        store
            .expect_creditor()
            .returning(move |_| Ok(Some(creditor.clone())));
        store.expect_payment_type().returning(|_| Ok(None));
        let mut paid = tx.clone();
        paid.status = TxStatus::Paid;
        store
            .expect_transition()
            .withf(|t| {
                let kinds: Vec<&str> = t
                    .outbox
                    .iter()
                    .map(|m: &NewOutboxMessage| match &m.payload {
                        OutboxPayload::Notification(n) if n.kind == NotificationKind::Receipt => {
                            "receipt"
                        }
                        OutboxPayload::Notification(_) => "notice",
                        OutboxPayload::Settlement(_) => "settlement",
                    })
                    .collect();
                t.from == TxStatus::Pending
                    && t.to == TxStatus::Paid
                    && t.provider_ref.as_deref() == Some("p")
                    && kinds == ["receipt", "notice", "settlement"]
            })
            .times(1)
            .returning(move |_| Ok(paid.clone()));
        let p = service(
            store,
            gateway_reporting(&tx, PaymentOutcome::Paid, tx.total),
            MockNotifier::new(),
        );
        let out = p
            .handle_callback("sandbox", &CallbackRequest::new("{}"))
            .await
            .unwrap();
        assert!(out.applied);
        assert_eq!(out.transaction.status, TxStatus::Paid);
    }

    #[tokio::test]
    async fn an_amount_mismatch_is_flagged_and_never_applied() {
        let (tx, _) = pending_transaction().await;
        let mut store = store_reading(&tx);
        store.expect_transition().never();
        let tx_id = tx.id;
        store
            .expect_insert_bank_entry()
            .withf(move |e| {
                e.is_exception()
                    && e.transaction_id() == Some(tx_id)
                    && e.amount == rust_decimal::Decimal::new(1001, 2)
            })
            .times(1)
            .returning(|_| Ok(true));
        let gateway = gateway_reporting(
            &tx,
            PaymentOutcome::Paid,
            Money::parse_eur("10.01").unwrap(),
        );
        let p = service(store, gateway, MockNotifier::new());
        let err = p
            .handle_callback("sandbox", &CallbackRequest::new("{}"))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Gateway {
                kind: GatewayErrorKind::AmountMismatch { .. },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_still_pending_callback_changes_nothing() {
        let (tx, _) = pending_transaction().await;
        let mut store = store_reading(&tx);
        store.expect_transition().never();
        let p = service(
            store,
            gateway_reporting(&tx, PaymentOutcome::Pending, tx.total),
            MockNotifier::new(),
        );
        let out = p
            .handle_callback("sandbox", &CallbackRequest::new("{}"))
            .await
            .unwrap();
        assert!(!out.applied);
    }

    #[tokio::test]
    async fn a_lost_race_on_a_callback_is_a_replay_not_an_error() {
        let (pending, creditor) = pending_transaction().await;
        let mut paid = pending.clone();
        paid.status = TxStatus::Paid;
        let mut store = MockStore::new();
        let mut seq = mockall::Sequence::new();
        let (first, second) = (pending.clone(), paid);
        store
            .expect_transaction()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| Ok(Some(first.clone())));
        store
            .expect_creditor()
            .returning(move |_| Ok(Some(creditor.clone())));
        store.expect_payment_type().returning(|_| Ok(None));
        store
            .expect_transition()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|t| {
                Err(Error::Conflict(Conflict::StaleState {
                    transaction: t.transaction.to_string(),
                    expected: "pending".into(),
                    actual: "paid".into(),
                }))
            });
        store
            .expect_transaction()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| Ok(Some(second.clone())));
        let p = service(
            store,
            gateway_reporting(&pending, PaymentOutcome::Paid, pending.total),
            MockNotifier::new(),
        );
        let out = p
            .handle_callback("sandbox", &CallbackRequest::new("{}"))
            .await
            .unwrap();
        assert!(
            !out.applied,
            "another instance applied it: this one is a replay"
        );
        assert_eq!(out.transaction.status, TxStatus::Paid);
    }

    fn message(attempts: u32) -> OutboxMessage {
        let n = crate::testing::notifier::sample_notification(
            NotificationKind::Receipt,
            "a@example.it",
            crate::Locale::It,
        );
        OutboxMessage {
            id: n.id,
            transaction_id: n.summary.transaction_id,
            creditor_id: n.summary.creditor_id,
            payload: OutboxPayload::Notification(n),
            status: OutboxStatus::Pending,
            attempts,
            next_attempt_at: t0(),
            last_error: None,
            created_at: t0(),
            delivered_at: None,
        }
    }

    async fn dispatch_one(
        attempts: u32,
        error: Error,
    ) -> (DispatchReport, Option<chrono::DateTime<chrono::Utc>>) {
        let m = message(attempts);
        let mut store = MockStore::new();
        let claimed = m.clone();
        store
            .expect_claim_outbox()
            .withf(|now, lease, _| *now == t0() && *lease == t0() + chrono::Duration::seconds(300))
            .returning(move |_, _, _| Ok(vec![claimed.clone()]));
        let seen = Arc::new(std::sync::Mutex::new(None));
        let seen2 = seen.clone();
        store
            .expect_outbox_failed()
            .with(
                eq(m.id),
                mockall::predicate::always(),
                mockall::predicate::always(),
            )
            .times(1)
            .returning(move |_, _, retry_at| {
                *seen2.lock().unwrap() = Some(retry_at);
                Ok(())
            });
        store.expect_outbox_delivered().never();
        let mut notifier = MockNotifier::new();
        let mut error = Some(error);
        notifier
            .expect_send()
            .times(1)
            .returning(move |_| Err(error.take().unwrap()));
        let p = service(store, gateway_with(|_| {}), notifier);
        let report = p.dispatch_outbox().await.unwrap();
        let retry_at = seen.lock().unwrap().take().unwrap();
        (report, retry_at)
    }

    fn transient() -> Error {
        Error::Notification {
            message: "down".into(),
            transient: true,
            source: None,
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_with_exponential_backoff() {
        let (report, retry) = dispatch_one(1, transient()).await;
        assert_eq!(
            report,
            DispatchReport {
                delivered: 0,
                retrying: 1,
                dead: 0
            }
        );
        assert_eq!(retry, Some(t0() + chrono::Duration::seconds(30)));
        let (_, retry) = dispatch_one(3, transient()).await;
        assert_eq!(
            retry,
            Some(t0() + chrono::Duration::seconds(120)),
            "30 s doubled twice"
        );
    }

    #[tokio::test]
    async fn the_last_attempt_or_a_permanent_failure_gives_up() {
        let (report, retry) = dispatch_one(10, transient()).await;
        assert_eq!((report.dead, retry), (1, None));
        let permanent = Error::Notification {
            message: "no such mailbox".into(),
            transient: false,
            source: None,
        };
        let (report, retry) = dispatch_one(1, permanent).await;
        assert_eq!((report.dead, retry), (1, None));
    }
}
