//! Refunds and the reconciliation sweep.

use std::time::Duration;

use futures::StreamExt;

use super::{CallbackOutcome, Change, check_note};
use crate::{
    Actor, Conflict, Error, EventId, Exception, ExceptionKind, GatewayErrorKind, GatewayId,
    ItemState, MAX_REFUND_KEY_LEN, Money, NewOutboxMessage, NotificationKind, Payments, Refund,
    RefundAnswer, RefundEvent, RefundId, RefundRequest, RefundStatus, RefundUpdate, Result, Role,
    Transaction, TransactionEvent, TransactionId, TxStatus,
};

/// What one pass of [`Payments::reconcile_pending`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Transactions whose gateway was asked.
    pub checked: u32,
    /// Of those, how many changed state (paid, failed or cancelled meanwhile).
    pub applied: u32,
    /// Of those, how many could not be asked (the provider unreachable, or refusing);
    /// the next pass asks again.
    pub failed: u32,
    /// Transactions skipped: their gateway is not registered, or cannot be asked.
    pub skipped: u32,
    /// Unfinished refunds whose provider was asked.
    pub refunds_checked: u32,
    /// Of those, how many ended (succeeded or failed) or were accepted meanwhile.
    pub refunds_applied: u32,
    /// Receipts the providers kept that the service had not applied
    /// ([`Gateway::recover_receipts`](crate::Gateway::recover_receipts)), applied now.
    pub receipts_recovered: u32,
    /// Providers whose receipts could not be asked for (unreachable, or refusing); the
    /// next pass asks again.
    pub receipts_failed: u32,
}

/// How many transactions the sweep asks their providers about at once.
const SWEEP_CONCURRENCY: usize = 4;

/// How far back the sweep asks providers for receipts it may have missed
/// ([`Gateway::recover_receipts`](crate::Gateway::recover_receipts)), unless the builder
/// says otherwise ([`PaymentsBuilder::receipts_lookback`](crate::PaymentsBuilder::receipts_lookback)).
pub const RECEIPTS_LOOKBACK: Duration = Duration::from_secs(3 * 24 * 3600);

impl Payments {
    /// Gives back money of a `Paid` transaction, all that is left or `request.amount` of
    /// it (of `request.lines` only, when given), through the transaction's gateway. For an
    /// operator (manager) of its creditor.
    ///
    /// The refund is recorded, with an event, before the provider is asked, and the store
    /// refuses any refund that would take the refunds past what was paid, also when two
    /// are asked at once. The amount is shared among the lines in order, each up to what
    /// is left of it. The provider's answer then marks it `Succeeded`, `Pending` (accepted,
    /// still under way: its webhook or the reconciliation sweep tells how it ends) or
    /// `Failed` (an exception operators see, and may retry with
    /// [`Payments::retry_refund`]), with another event. A refund that succeeds puts in the
    /// outbox a mail to the payer, a notice to the creditor, and a message to the module of
    /// each line it gives back ([`SettlementListener::refunded`](crate::SettlementListener::refunded));
    /// when the refunds that succeeded add up to the total the transaction moves to
    /// `Refunded`. If the provider cannot be reached the refund stays `Requested` (it still
    /// counts) and the error is returned: asking again with the same key asks the provider
    /// again, with the same refund id, never for a second refund.
    pub async fn refund(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        request: RefundRequest,
    ) -> Result<Refund> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_operator(&tx.creditor_id, Role::Manager)?;
        let key = request.key.trim();
        if key.is_empty()
            || key.chars().count() > MAX_REFUND_KEY_LEN
            || key.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "key",
                format!("must have 1 to {MAX_REFUND_KEY_LEN} printable characters"),
            ));
        }
        let reason = check_note(request.reason)
            .map_err(|_| Error::invalid("reason", "at most 500 characters"))?;
        if let Some(bad) = request.lines.iter().find(|&&l| l >= tx.lines.len()) {
            return Err(Error::invalid(
                "lines",
                format!("the transaction has no line {}", bad + 1),
            ));
        }
        let store = self.store_ref();
        let earlier = store.refunds(tx.id).await?;
        if let Some(same) = earlier.iter().find(|r| r.key == key) {
            if request.amount.is_some_and(|a| a != same.amount) {
                return Err(Error::invalid(
                    "key",
                    format!("already names a refund of {}", same.amount),
                ));
            }
            return self.settle_refund(&tx, same.clone(), actor).await;
        }
        if !self.refundable(&tx) {
            return Err(Error::gateway(
                tx.gateway_id.0.clone(),
                GatewayErrorKind::NotSupported("refund"),
            ));
        }
        let currency = tx.total.currency();
        let (amount, lines) = if request.excess {
            // A double payment: money beside the transaction's own payment, of the amount
            // its exception names; the payment and what may be refunded of it stay.
            let amount = request
                .amount
                .ok_or_else(|| Error::invalid("amount", "required"))?;
            let mut left = amount.minor_units();
            let mut lines = Vec::new();
            for &position in &request.lines {
                let take = tx.lines[position].amount.minor_units().min(left);
                if take > 0 {
                    lines.push(crate::RefundLine {
                        line: position,
                        amount: Money::from_minor(take, currency)?,
                    });
                    left -= take;
                }
            }
            (amount, lines)
        } else {
            if tx.status != TxStatus::Paid {
                return Err(Error::Conflict(Conflict::InvalidTransition {
                    from: tx.status.to_string(),
                    to: TxStatus::Refunded.to_string(),
                }));
            }
            let refunded: i64 = earlier
                .iter()
                .filter(|r| r.status.counts() && !r.excess)
                .map(|r| r.amount.minor_units())
                .sum();
            let left = Money::from_minor(tx.total.minor_units() - refunded, currency)?;
            let amount = request.amount.unwrap_or(left);
            if amount.currency() != currency {
                return Err(Error::invalid(
                    "amount",
                    format!("must be in {}, the transaction's currency", currency.code()),
                ));
            }
            if !amount.is_positive() {
                return Err(Error::invalid(
                    "amount",
                    if left.is_positive() {
                        "must be more than zero".to_owned()
                    } else {
                        format!("nothing is left to refund of {}", tx.total)
                    },
                ));
            }
            if amount.minor_units() > left.minor_units() {
                let refunded = Money::from_minor(refunded, currency)?;
                return Err(crate::refund_exceeds(&tx.total, &refunded, &amount));
            }
            let Some(lines) = crate::allocate_refund(&tx, &earlier, &request.lines, amount) else {
                return Err(Error::invalid(
                    "amount",
                    format!("{amount} is more than what is left of the lines chosen"),
                ));
            };
            (amount, lines)
        };
        if !amount.is_positive() {
            return Err(Error::invalid("amount", "must be more than zero"));
        }
        let now = self.inner.clock.now();
        let refund = Refund {
            id: RefundId::new(),
            transaction_id: tx.id,
            creditor_id: tx.creditor_id,
            amount,
            key: key.to_owned(),
            reason: reason.clone(),
            status: RefundStatus::Requested,
            provider_ref: None,
            note: None,
            lines,
            excess: request.excess,
            requested_by: actor.clone(),
            created_at: now,
            updated_at: now,
        };
        let note = match &reason {
            Some(r) => format!("refund of {amount} requested: {r}"),
            None => format!("refund of {amount} requested"),
        };
        let event = refund_event(&tx, actor, now, note);
        let created = store.create_refund(&refund, &event).await?;
        if !created.created {
            // Another call with this key recorded it a moment ago and is asking the
            // provider: one asker is enough.
            return Ok(created.refund);
        }
        self.settle_refund(&tx, created.refund, actor).await
    }

    /// Whether the gateway of `tx` is registered here and can give money back.
    pub fn refundable(&self, tx: &Transaction) -> bool {
        self.inner
            .gateways
            .get(&tx.gateway_id)
            .is_some_and(|g| g.supports_refunds())
    }

    /// Asks again for a refund that failed: a new refund of the same amount and lines,
    /// keyed by the failed one (so asking twice makes one). For a manager of the
    /// creditor.
    pub async fn retry_refund(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        refund: RefundId,
    ) -> Result<Refund> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_operator(&tx.creditor_id, Role::Manager)?;
        let failed = self
            .store_ref()
            .refunds(tx.id)
            .await?
            .into_iter()
            .find(|r| r.id == refund)
            .ok_or_else(|| Error::not_found("refund", refund))?;
        if failed.status != RefundStatus::Failed {
            return Err(Error::Conflict(Conflict::Other(format!(
                "refund {refund} is {}, not failed",
                failed.status
            ))));
        }
        let mut request = RefundRequest::partial(failed.amount, format!("retry:{refund}"))
            .of_lines(failed.lines.iter().map(|l| l.line));
        request.reason = failed.reason.clone();
        request.excess = failed.excess;
        self.refund(actor, tx.id, request).await
    }

    /// A transaction's refunds, oldest first: for its payer and its creditor's operators.
    pub async fn refunds(&self, actor: &Actor, transaction: TransactionId) -> Result<Vec<Refund>> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_payer_read(&tx.creditor_id, &tx.payer.id)?;
        self.store_ref().refunds(tx.id).await
    }

    /// Asks the provider for a `Requested` refund and records its answer; any other refund
    /// is returned as it is.
    async fn settle_refund(
        &self,
        tx: &Transaction,
        refund: Refund,
        actor: &Actor,
    ) -> Result<Refund> {
        if refund.status != RefundStatus::Requested {
            return Ok(refund);
        }
        let gateway = self.gateway(&tx.gateway_id)?.clone();
        let (answer, error) = match gateway.refund(tx, &refund).await {
            Ok(answer) => (answer, None),
            Err(
                e @ Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                },
            ) => return Err(e),
            Err(e) => (
                RefundAnswer {
                    provider_ref: String::new(),
                    status: RefundStatus::Failed,
                    note: Some(e.to_string()),
                },
                Some(e),
            ),
        };
        let done = self.finish_refund(tx, &refund, answer, actor).await?;
        match error {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Records the provider's answer about an unfinished refund: the state, the event, and
    /// for one that succeeded its messages (then `Refunded` when all is given back); for
    /// one that failed, an exception.
    async fn finish_refund(
        &self,
        tx: &Transaction,
        refund: &Refund,
        answer: RefundAnswer,
        actor: &Actor,
    ) -> Result<Refund> {
        let now = self.inner.clock.now();
        let provider_ref = Some(answer.provider_ref.clone()).filter(|r| !r.is_empty());
        let amount = refund.amount;
        let text = match (answer.status, &provider_ref, &answer.note) {
            (RefundStatus::Succeeded, Some(r), _) => {
                format!("refund of {amount} done by the provider: {r}")
            }
            (RefundStatus::Succeeded, None, _) => {
                format!("refund of {amount} done by the provider")
            }
            (RefundStatus::Pending, r, _) => format!(
                "refund of {amount} accepted by the provider, under way{}",
                r.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
            ),
            (_, _, Some(n)) => format!("refund of {amount} failed: {n}"),
            (_, _, None) => format!("refund of {amount} failed"),
        };
        let mut outbox = Vec::new();
        let mut exception = None;
        match answer.status {
            RefundStatus::Succeeded => outbox = self.refund_messages(tx, refund, now).await?,
            RefundStatus::Failed => {
                exception = Some(
                    Exception::new(
                        tx.creditor_id,
                        ExceptionKind::RefundFailed,
                        format!("refund:{}", refund.id),
                        format!("{text}; the money is still with the body: retry the refund"),
                        now,
                    )
                    .with_transaction(tx.id)
                    .with_lines(refund.lines.iter().map(|l| l.line))
                    .with_amount(amount),
                );
                if let Some(r) = &provider_ref
                    && let Some(e) = exception.as_mut()
                {
                    e.provider_ref = Some(r.clone());
                }
            }
            _ => {}
        }
        let update = RefundUpdate {
            refund: refund.id,
            from: refund.status,
            to: answer.status,
            provider_ref,
            note: answer.note,
            at: now,
            event: refund_event(tx, actor, now, text.chars().take(500).collect()),
            outbox,
            exception,
        };
        let done = match self.store_ref().finish_refund(&update).await {
            Ok(done) => done,
            // Settled meanwhile by a concurrent call with the same key.
            Err(Error::Conflict(_)) => {
                return self
                    .store_ref()
                    .refunds(tx.id)
                    .await?
                    .into_iter()
                    .find(|r| r.id == refund.id)
                    .ok_or_else(|| Error::not_found("refund", refund.id));
            }
            Err(e) => return Err(e),
        };
        if done.status == RefundStatus::Succeeded && !done.excess {
            self.refunded_in_full(tx, actor).await?;
        }
        Ok(done)
    }

    /// Moves a transaction whose succeeded refunds of its own payment add up to its total
    /// to `Refunded`.
    async fn refunded_in_full(&self, tx: &Transaction, actor: &Actor) -> Result<()> {
        let succeeded: i64 = self
            .store_ref()
            .refunds(tx.id)
            .await?
            .iter()
            .filter(|r| r.status == RefundStatus::Succeeded && !r.excess)
            .map(|r| r.amount.minor_units())
            .sum();
        if succeeded != tx.total.minor_units() {
            return Ok(());
        }
        let current = self.load_transaction(tx.id).await?;
        if current.status == TxStatus::Paid {
            let note = format!("refunded in full: {}", tx.total);
            match self
                .apply(&current, TxStatus::Refunded, actor, Change::note(note))
                .await
            {
                Ok(_) | Err(Error::Conflict(Conflict::StaleState { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// What a refund that succeeded tells: the payer (when they gave an email address),
    /// the creditor, and the module of each line it gives back that this transaction had
    /// paid (a line whose item another payment settled was never this one's to tell).
    async fn refund_messages(
        &self,
        tx: &Transaction,
        refund: &Refund,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<NewOutboxMessage>> {
        let creditor = self.creditor(tx.creditor_id).await?;
        let telling = self.telling(tx, &creditor).await?;
        let positions: Vec<usize> = refund.lines.iter().map(|l| l.line).collect();
        let summary = telling.summary(
            TxStatus::Refunded,
            tx.provider_ref.clone(),
            now,
            (!positions.is_empty()).then_some(positions.as_slice()),
            Some(refund.amount),
        );
        let mut out = telling.mails(
            Some(NotificationKind::RefundReceipt),
            Some(NotificationKind::RefundNotice),
            &summary,
        );
        if refund.excess {
            // A double payment given back: the payment, its items and its modules stand.
            return Ok(out);
        }
        // Whether each line is now given back in full is decided by the store, under the
        // transaction's lock, as it enqueues these (`with_lines_in_full`).
        for part in &refund.lines {
            let Some(line) = tx.lines.get(part.line) else {
                continue;
            };
            let ours = self.store_ref().item(line.item_id).await?.is_some_and(
                |i| matches!(i.state, ItemState::Paid(t) | ItemState::Refunded(t) if t == tx.id),
            );
            if ours {
                out.extend(telling.refund_settlement(part.line, refund.id, part.amount, now));
            }
        }
        Ok(out)
    }

    /// Applies a provider's news about a refund (a webhook): an unfinished refund moves to
    /// where the provider says; a refund that had succeeded and now fails is recorded as an
    /// exception (the money came back to the body); anything else is a replay.
    pub(super) async fn apply_refund_event(
        &self,
        gateway: &GatewayId,
        tx: Option<Transaction>,
        news: RefundEvent,
        amount: Money,
    ) -> Result<CallbackOutcome> {
        let tx = tx.ok_or_else(|| Error::not_found("transaction", &news.provider_ref))?;
        if tx.gateway_id != *gateway {
            return Err(Error::forbidden(
                "the callback's gateway does not run this transaction",
            ));
        }
        let refund = self
            .store_ref()
            .refunds(tx.id)
            .await?
            .into_iter()
            .find(|r| {
                Some(r.id) == news.refund_id
                    || r.provider_ref.as_deref() == Some(news.provider_ref.as_str())
            });
        let Some(refund) = refund else {
            // Money that left the body's account without the library asking (a refund made
            // in the provider's dashboard): recorded, and acknowledged.
            let exception = Exception::new(
                tx.creditor_id,
                ExceptionKind::OutsideRefund,
                format!("refund:{}", news.provider_ref),
                format!(
                    "{gateway} tells of a refund {} of {amount} ({}) that was not asked here: \
                     check it and record how the payment stands",
                    news.provider_ref, news.status
                ),
                self.inner.clock.now(),
            )
            .with_transaction(tx.id)
            .with_amount(amount)
            .with_provider_ref(news.provider_ref.clone());
            return self.recorded(tx, exception).await;
        };
        let actor = Actor::Gateway {
            id: gateway.clone(),
        };
        if refund.status == RefundStatus::Succeeded && news.status == RefundStatus::Failed {
            let now = self.inner.clock.now();
            let exception = Exception::new(
                tx.creditor_id,
                ExceptionKind::RefundFailed,
                format!("refund:{}:failed-after-success", refund.id),
                format!(
                    "the refund of {} ({}) failed after it had succeeded{}: the money is back \
                     with the body; give it back another way",
                    refund.amount,
                    news.provider_ref,
                    news.note
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ),
                now,
            )
            .with_transaction(tx.id)
            .with_amount(refund.amount)
            .with_provider_ref(news.provider_ref.clone());
            return self.recorded(tx, exception).await;
        }
        if !refund.status.is_unfinished()
            || news.status == refund.status
            || news.status == RefundStatus::Requested
        {
            return Ok(CallbackOutcome {
                transaction: tx,
                applied: false,
                exception: None,
            });
        }
        let answer = RefundAnswer {
            provider_ref: news.provider_ref,
            status: news.status,
            note: news.note,
        };
        let done = self.finish_refund(&tx, &refund, answer, &actor).await?;
        let exception = if done.status == RefundStatus::Failed {
            let q = crate::ExceptionQuery::new(tx.creditor_id).of_transaction(tx.id);
            self.store_ref()
                .exceptions(&q)
                .await?
                .into_iter()
                .find(|e| e.key == format!("refund:{}", refund.id))
        } else {
            None
        };
        Ok(CallbackOutcome {
            transaction: self.load_transaction(tx.id).await?,
            applied: true,
            exception,
        })
    }

    /// The reconciliation sweep a host schedules (every few minutes, say): asks each
    /// registered gateway where its transactions stand that are still unfinished
    /// `older_than` after their last change, and applies the answers, as
    /// [`Payments::reconcile`] does one by one; then asks again about the refunds still
    /// requested (the provider could not be reached) or pending (accepted, under way) for
    /// as long. A callback the provider never delivered, or that failed, is recovered this
    /// way. Asks about no more than `limit` transactions a pass, going on the next pass
    /// from where this one stopped (so all are asked in turn, however many); those of a
    /// provider with nothing to ask ([`Gateway::answers_status`](crate::Gateway::answers_status)
    /// false: bank transfer) are not even read.
    /// [`Payments::run_worker`] runs it every 5 minutes unless the builder says otherwise.
    pub async fn reconcile_pending(&self, older_than: Duration, limit: u32) -> Result<SweepReport> {
        let before = self.inner.clock.now()
            - chrono::Duration::from_std(older_than)
                .map_err(|_| Error::invalid("older_than", "too long"))?;
        let mut report = SweepReport::default();
        let mut asked: Vec<GatewayId> = self
            .inner
            .gateways
            .iter()
            .filter(|(_, g)| g.answers_status())
            .map(|(id, _)| id.clone())
            .collect();
        asked.sort();
        let start = *self
            .inner
            .sweep_cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut after = start;
        let mut wrapped = start.is_none();
        // Transactions read this pass: asked, or skipped by a provider that had nothing to
        // say about them; the next pass goes on after the last one.
        let mut seen = 0u32;
        'pages: while seen < limit {
            let page = self
                .store_ref()
                .unfinished(before, &asked, after, 100)
                .await?;
            if page.is_empty() {
                if wrapped {
                    after = None;
                    break;
                }
                // The end: round once to the beginning, up to where this pass started.
                wrapped = true;
                after = None;
                continue;
            }
            let mut asking = Vec::new();
            let mut round_done = false;
            for tx in page {
                if seen >= limit {
                    break;
                }
                // Round once: up to the last one the previous pass asked about.
                if wrapped && start.is_some_and(|s| tx.id >= s) {
                    round_done = true;
                    break;
                }
                seen += 1;
                after = Some(tx.id);
                asking.push(tx.id);
            }
            // A few at a time, each provider call bounded by the provider timeout.
            let answers: Vec<Result<CallbackOutcome>> = futures::stream::iter(asking)
                .map(|id| self.reconcile(id))
                .buffer_unordered(SWEEP_CONCURRENCY)
                .collect()
                .await;
            for answer in answers {
                match answer {
                    Ok(outcome) => {
                        report.checked += 1;
                        if outcome.applied {
                            report.applied += 1;
                        }
                    }
                    Err(Error::Gateway {
                        kind: GatewayErrorKind::NotSupported(_),
                        ..
                    }) => report.skipped += 1,
                    Err(Error::Conflict(_)) => report.checked += 1,
                    Err(_) => {
                        report.checked += 1;
                        report.failed += 1;
                    }
                }
            }
            if round_done {
                after = None;
                break 'pages;
            }
        }
        *self
            .inner
            .sweep_cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = after;
        // Receipts kept by the providers (pagoPA's debt-position service), of notices the
        // service may never have heard of: a debt position paid at a bank whose receipt
        // was lost.
        let lookback = chrono::Duration::from_std(self.inner.receipts_lookback)
            .unwrap_or(chrono::Duration::days(3));
        self.recover_since(self.inner.clock.now() - lookback, &mut report)
            .await?;
        let mut after = None;
        'refunds: while report.refunds_checked < limit {
            let page = self.store_ref().unfinished_refunds(after, 100).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for refund in page {
                if report.refunds_checked >= limit {
                    break 'refunds;
                }
                if refund.updated_at > before {
                    continue;
                }
                if let Ok(true) = self.reconcile_refund(refund).await {
                    report.refunds_applied += 1;
                }
                report.refunds_checked += 1;
            }
        }
        Ok(report)
    }

    /// Asks every gateway for the receipts it kept since `since` and applies those not
    /// applied yet, as [`Payments::reconcile_pending`] does over the builder's
    /// [`receipts_lookback`](crate::PaymentsBuilder::receipts_lookback): for the system,
    /// after an outage longer than that (a key refused for a week, say). Answers what it
    /// did in the receipts' fields of the report.
    pub async fn recover_receipts(
        &self,
        actor: &Actor,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<SweepReport> {
        if *actor != Actor::System {
            return Err(Error::forbidden("only the system recovers receipts"));
        }
        let mut report = SweepReport::default();
        self.recover_since(since, &mut report).await?;
        Ok(report)
    }

    async fn recover_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        report: &mut SweepReport,
    ) -> Result<()> {
        let now = self.inner.clock.now();
        let mut gateways: Vec<_> = self.inner.gateways.values().cloned().collect();
        gateways.sort_by_key(|g| g.id());
        for gateway in gateways {
            // Not cut off as a whole: a provider's recovery asks many things, each bounded by
            // its own client's timeouts, and may take long after an outage.
            let recovered = match gateway.recover_receipts(since).await {
                Ok(r) => r,
                Err(Error::Gateway {
                    kind: GatewayErrorKind::NotSupported(_),
                    ..
                }) => continue,
                Err(_) => {
                    report.receipts_failed += 1;
                    continue;
                }
            };
            for event in recovered.events {
                match self.apply_event(&gateway, event).await {
                    Ok(outcome) if outcome.applied => report.receipts_recovered += 1,
                    // Known already, or an unknown notice now on record for operators.
                    Ok(_) | Err(Error::NotFound { .. }) | Err(Error::Conflict(_)) => {}
                    Err(_) => report.receipts_failed += 1,
                }
            }
            // A creditor whose receipts could not be read is told once a day: until they
            // are, money the provider took for it is not recorded.
            for (creditor, why) in recovered.failures {
                report.receipts_failed += 1;
                let exception = crate::Exception::new(
                    creditor,
                    crate::ExceptionKind::ProviderUnanswered,
                    format!("unanswered:{}:{}", gateway.id(), now.date_naive()),
                    format!(
                        "{}'s receipts since {} could not be read back: {why}. Payments it \
                         took are not recorded until they are; the sweep asks again.",
                        gateway.id(),
                        since.date_naive()
                    ),
                    now,
                );
                self.store_ref().insert_exception(&exception).await?;
            }
        }
        Ok(())
    }

    /// Asks the provider about one unfinished refund; answers whether it moved.
    async fn reconcile_refund(&self, refund: Refund) -> Result<bool> {
        let tx = self.load_transaction(refund.transaction_id).await?;
        let Some(gateway) = self.inner.gateways.get(&tx.gateway_id).cloned() else {
            return Ok(false);
        };
        let actor = Actor::Gateway { id: gateway.id() };
        if refund.status == RefundStatus::Requested {
            let before = refund.status;
            let done = match self.settle_refund(&tx, refund, &actor).await {
                Ok(done) => done.status,
                Err(Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                }) => return Ok(false),
                Err(_) => RefundStatus::Failed,
            };
            return Ok(done != before);
        }
        let answer = gateway.refund_status(&tx, &refund).await?;
        if answer.status == refund.status || answer.status == RefundStatus::Requested {
            return Ok(false);
        }
        self.finish_refund(&tx, &refund, answer, &actor).await?;
        Ok(true)
    }
}

fn refund_event(
    tx: &Transaction,
    actor: &Actor,
    at: chrono::DateTime<chrono::Utc>,
    note: String,
) -> TransactionEvent {
    TransactionEvent {
        id: EventId::new(),
        transaction_id: tx.id,
        actor: actor.clone(),
        at,
        from: Some(tx.status),
        to: tx.status,
        provider_ref: tx.provider_ref.clone(),
        note: Some(note),
    }
}
