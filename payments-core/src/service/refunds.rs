//! Refunds and the reconciliation sweep.

use std::time::Duration;

use super::{Change, check_note};
use crate::{
    Actor, Conflict, Error, EventId, GatewayErrorKind, MAX_REFUND_KEY_LEN, Money, Payments, Refund,
    RefundId, RefundRequest, RefundStatus, RefundUpdate, Result, Role, Transaction,
    TransactionEvent, TransactionId, TxStatus,
};

/// What one pass of [`Payments::reconcile_pending`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
}

impl Payments {
    /// Gives back money of a `Paid` transaction, all that is left or `request.amount` of
    /// it, through the transaction's gateway. For an operator (manager) of its creditor.
    ///
    /// The refund is recorded, with an event, before the provider is asked, and the store
    /// refuses any refund that would take the refunds past what was paid, also when two
    /// are asked at once. The provider's answer then marks it `Succeeded` or `Failed`,
    /// with another event; when the refunds that succeeded add up to the total the
    /// transaction moves to `Refunded`. If the provider cannot be reached the refund stays
    /// `Requested` (it still counts) and the error is returned: asking again with the same
    /// key asks the provider again, with the same refund id, never for a second refund.
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
        if tx.status != TxStatus::Paid {
            return Err(Error::Conflict(Conflict::InvalidTransition {
                from: tx.status.to_string(),
                to: TxStatus::Refunded.to_string(),
            }));
        }
        let currency = tx.total.currency();
        let refunded: i64 = earlier
            .iter()
            .filter(|r| r.status.counts())
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

    /// A transaction's refunds, oldest first: for its payer and its creditor's operators.
    pub async fn refunds(&self, actor: &Actor, transaction: TransactionId) -> Result<Vec<Refund>> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_payer_access(&tx.creditor_id, &tx.payer.id)?;
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
        let answer = gateway.refund(tx, &refund).await;
        let now = self.inner.clock.now();
        let (to, provider_ref, note, error) = match answer {
            Ok(provider_ref) => (RefundStatus::Succeeded, Some(provider_ref), None, None),
            Err(
                e @ Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                },
            ) => return Err(e),
            Err(e) => (RefundStatus::Failed, None, Some(e.to_string()), Some(e)),
        };
        let text = match (&provider_ref, &note) {
            (Some(r), _) => format!("refund of {} done by the provider: {r}", refund.amount),
            (None, Some(n)) => format!("refund of {} refused: {n}", refund.amount),
            (None, None) => format!("refund of {} refused", refund.amount),
        };
        let update = RefundUpdate {
            refund: refund.id,
            to,
            provider_ref,
            note,
            at: now,
            event: refund_event(tx, actor, now, text),
        };
        let done = match self.store_ref().finish_refund(&update).await {
            Ok(done) => done,
            // Settled meanwhile by a concurrent call with the same key.
            Err(Error::Conflict(_)) => self
                .store_ref()
                .refunds(tx.id)
                .await?
                .into_iter()
                .find(|r| r.id == refund.id)
                .ok_or_else(|| Error::not_found("refund", refund.id))?,
            Err(e) => return Err(e),
        };
        if let Some(e) = error {
            return Err(e);
        }
        let succeeded: i64 = self
            .store_ref()
            .refunds(tx.id)
            .await?
            .iter()
            .filter(|r| r.status == RefundStatus::Succeeded)
            .map(|r| r.amount.minor_units())
            .sum();
        if succeeded == tx.total.minor_units() {
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
        }
        Ok(done)
    }

    /// The reconciliation sweep a host schedules (every few minutes, say): asks each
    /// registered gateway where its transactions stand that are still unfinished
    /// `older_than` after their last change, and applies the answers, as
    /// [`Payments::reconcile`] does one by one. A callback the provider never delivered,
    /// or that failed, is recovered this way. Asks about no more than `limit` transactions;
    /// those of a provider that cannot be asked (bank transfer, pagoPA) are skipped and do
    /// not count. [`Payments::run_worker`] runs it every 5 minutes unless the builder says
    /// otherwise.
    pub async fn reconcile_pending(&self, older_than: Duration, limit: u32) -> Result<SweepReport> {
        let before = self.inner.clock.now()
            - chrono::Duration::from_std(older_than)
                .map_err(|_| Error::invalid("older_than", "too long"))?;
        let mut report = SweepReport::default();
        let mut after = None;
        'pages: while report.checked < limit {
            let page = self.store_ref().unfinished(before, after, 100).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for tx in page {
                if report.checked >= limit {
                    break 'pages;
                }
                if !self.inner.gateways.contains_key(&tx.gateway_id) {
                    report.skipped += 1;
                    continue;
                }
                match self.reconcile(tx.id).await {
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
        }
        Ok(report)
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
        from: Some(TxStatus::Paid),
        to: TxStatus::Paid,
        provider_ref: tx.provider_ref.clone(),
        note: Some(note),
    }
}
