//! Building the service, and the configuration it serves: creditors, payment types and
//! methods, read through a short cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Inner, Payments, cart};
use crate::cache::Cached;
use crate::{
    Actor, Clock, Creditor, CreditorId, Error, Gateway, MethodId, Notifier, PaymentMethod,
    PaymentType, Result, RetryPolicy, Role, SettlementListener, Store, SystemClock,
    ValidationErrors,
};

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
    expiry_recheck: Option<Duration>,
    return_url: Option<String>,
    dispatch_batch: Option<u32>,
    config_ttl: Option<Duration>,
    sweep: Option<Option<(Duration, Duration)>>,
    notices: Option<Arc<dyn crate::NoticeIssuer>>,
    archive: Option<Arc<dyn crate::PositionArchive>>,
    receipts_lookback: Option<Duration>,
    provider_timeout: Option<Duration>,
}

impl PaymentsBuilder {
    /// A builder with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// What gives debt positions their notice numbers (the pagoPA gateway); without it,
    /// registering a debt position is refused.
    pub fn notice_issuer(mut self, issuer: Arc<dyn crate::NoticeIssuer>) -> Self {
        self.notices = Some(issuer);
        self
    }

    /// Where debt positions are copied for pagoPA's node (GPD or ACA: the pagoPA gateway);
    /// each change of a position is then told to it through the outbox.
    pub fn position_archive(mut self, archive: Arc<dyn crate::PositionArchive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// How far back the reconciliation sweep asks providers for the receipts they keep
    /// ([`Gateway::recover_receipts`](crate::Gateway::recover_receipts)); 3 days by
    /// default ([`RECEIPTS_LOOKBACK`](crate::RECEIPTS_LOOKBACK)). Longer than the longest
    /// outage the host expects; [`Payments::recover_receipts`] reaches further once.
    pub fn receipts_lookback(mut self, lookback: Duration) -> Self {
        self.receipts_lookback = Some(lookback);
        self
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

    /// How long the expiry of a transaction waits before asking again when its provider
    /// says the payment is still processing, or cannot be reached (15 minutes by default).
    /// A transaction is never expired while its provider says it is processing.
    pub fn expiry_recheck(mut self, wait: Duration) -> Self {
        self.expiry_recheck = Some(wait.max(Duration::from_secs(1)));
        self
    }

    /// Where hosted payment pages send the payer back.
    pub fn return_url(mut self, url: impl Into<String>) -> Self {
        self.return_url = Some(url.into());
        self
    }

    /// How long this instance trusts the creditors, payment types and methods it read
    /// (30 s by default; zero reads them on every use). Changes made through this instance
    /// apply at once; changes made elsewhere within this time. (Whose each cart is, which
    /// never changes, is kept apart from this: for an hour after it was read.)
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

    /// The longest the service waits for one answer of a provider when it asks on its own
    /// (the sweep, expiry, cancellation): 60 s by default. A provider that takes longer is
    /// taken as unreachable for that call (the expiry waits, the sweep asks again), so one
    /// hanging provider never holds up the others.
    pub fn provider_timeout(mut self, timeout: Duration) -> Self {
        self.provider_timeout = Some(timeout);
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
        let transaction_ttl = self.transaction_ttl.unwrap_or(Duration::from_secs(30 * 60));
        Ok(Payments {
            inner: Arc::new(Inner {
                store,
                gateways,
                notifier,
                listeners: self.listeners,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                retry: self.retry.unwrap_or_default(),
                transaction_ttl,
                expiry_recheck: self.expiry_recheck.unwrap_or(Duration::from_secs(15 * 60)),
                return_url: self.return_url,
                dispatch_batch: self.dispatch_batch.unwrap_or(50),
                sweep: self
                    .sweep
                    .unwrap_or(Some((Duration::from_secs(300), Duration::from_secs(600)))),
                creditors: Cached::new(config_ttl),
                types: Cached::new(config_ttl),
                methods: Cached::new(config_ttl),
                cart_owners: Cached::new(cart::CART_OWNER_TTL),
                // Past its time a started transaction is expired or about to be: read.
                started: Cached::new(transaction_ttl),
                started_refs: Cached::new(transaction_ttl),
                notices: self.notices,
                archive: self.archive,
                receipts_lookback: self
                    .receipts_lookback
                    .unwrap_or(super::refunds::RECEIPTS_LOOKBACK),
                provider_timeout: self.provider_timeout.unwrap_or(Duration::from_secs(60)),
                sweep_cursor: std::sync::Mutex::new(None),
            }),
        })
    }
}

impl Payments {
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
    pub(super) async fn payment_type(
        &self,
        id: crate::PaymentTypeId,
    ) -> Result<Option<PaymentType>> {
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
    pub(super) async fn method(&self, id: MethodId) -> Result<Option<PaymentMethod>> {
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
}
