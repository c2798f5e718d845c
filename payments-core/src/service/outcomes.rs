//! Outcomes: providers' callbacks, reconciliation, cancellation and expiry.
//!
//! Money is a fact. A provider's verified report that money was taken is recorded whatever
//! state the transaction is in: if it had ended (expired, cancelled, failed, rejected) its
//! items are settled by it when still free, and whatever does not fit — a late payment,
//! items another payment already settled, an amount that differs, a payment of nothing we
//! know — becomes an [`Exception`] operators see. Nothing here answers a provider with an
//! error it would retry for money already recorded.

use futures::StreamExt;

use super::{Change, Payments};
use crate::{
    Actor, CallbackEvent, CallbackPart, CallbackRequest, Conflict, Error, Exception, ExceptionKind,
    ExceptionQuery, ExpiryExtension, GatewayErrorKind, GatewayId, ItemId, ItemState, LinePayment,
    Money, NotificationKind, PaymentOutcome, Result, Transaction, TransactionId, TxStatus,
};

/// What a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackOutcome {
    /// The transaction after the callback.
    pub transaction: Transaction,
    /// Whether it changed anything: a state change, a line paid on its own, or an
    /// exception recorded (false for a replay or a "still pending").
    pub applied: bool,
    /// The exception recorded for the money, when it did not fit: a late or double
    /// payment, an amount that differs. For a replay, the one recorded the first time.
    pub exception: Option<Exception>,
}

impl CallbackOutcome {
    fn unchanged(transaction: Transaction) -> Self {
        CallbackOutcome {
            transaction,
            applied: false,
            exception: None,
        }
    }
}

/// What the provider says before a transaction's items are freed.
/// How many transactions of one provider [`Payments::expire_due`] asks about at once.
const EXPIRY_CONCURRENCY: usize = 4;

enum Verdict {
    /// Nothing is open there any more: free the items (with a note, when worth one).
    Free(Option<String>),
    /// The provider knows how it ended: record that instead.
    Outcome(PaymentOutcome),
    /// The payment is processing at the provider: wait.
    Processing,
    /// The provider could not be asked or could not close: why.
    Unreachable(String),
    /// The provider held receipts the service had not applied: they are applied now.
    Recovered,
}

impl Payments {
    /// Applies a provider's callback: the gateway verifies and reads it, the amount and
    /// currency are checked against the transaction, and the outcome is applied once. A
    /// replay changes nothing and answers `applied: false`.
    ///
    /// A payment is recorded whatever state the transaction is in (see the module): one
    /// that comes after the transaction ended is applied as a late payment, or, when
    /// another payment settled its items meanwhile, recorded with a
    /// [`ExceptionKind::DoublePayment`] exception; an amount that differs from the total
    /// is recorded as an [`ExceptionKind::AmountMismatch`] and not applied. All these
    /// answer `Ok`, with the exception in [`CallbackOutcome::exception`]. A payment of a
    /// notice that no transaction has is recorded as an [`ExceptionKind::UnknownPayment`]
    /// of the creditor the gateway names, and answered `NotFound` on `transaction`.
    ///
    /// A receipt the gateway attaches ([`CallbackEvent::with_receipt`]) is kept first,
    /// once. One of a payment in which the creditor is only a beneficiary
    /// ([`crate::ReceiptRole::Beneficiary`]: another body's notice) is only kept, and
    /// answered `NotFound` on `transaction`: there is nothing of the creditor's to apply.
    pub async fn handle_callback(
        &self,
        gateway: &str,
        request: &CallbackRequest,
    ) -> Result<CallbackOutcome> {
        let gateway = self.gateway(&GatewayId::from(gateway))?.clone();
        let event = gateway.parse_callback(request).await?;
        self.apply_event(&gateway, event).await
    }

    /// Applies what a provider says happened, from a callback or a receipt recovered from
    /// it ([`Gateway::fetch_receipts`](crate::Gateway::fetch_receipts)).
    pub(super) async fn apply_event(
        &self,
        gateway: &std::sync::Arc<dyn crate::Gateway>,
        mut event: CallbackEvent,
    ) -> Result<CallbackOutcome> {
        if let Some(mut receipt) = event.receipt.take() {
            // Kept first: a receipt whose payment cannot be applied now is still on record,
            // and the provider's retry changes nothing here.
            receipt.gateway_id = gateway.id();
            receipt.recorded_at = self.inner.clock.now();
            self.store_ref().insert_provider_receipt(&receipt).await?;
            if receipt.role == crate::ReceiptRole::Beneficiary {
                // Another body's notice, of which this creditor receives a share: on record
                // for its accounts, with no transaction of its own to apply.
                return Err(Error::not_found("transaction", &receipt.reference));
            }
        }
        // An outcome that ends a transaction this service started is applied to the copy
        // the start left: the compare-and-set checks it, and one that moved is read again.
        let ends = matches!(
            event.outcome,
            PaymentOutcome::Paid | PaymentOutcome::Failed | PaymentOutcome::Cancelled
        ) && event.refund.is_none()
            && event.part.is_none();
        let started = if ends {
            self.take_started(&gateway.id(), &event)
        } else {
            None
        };
        let from_copy = started.is_some();
        let tx = match event.transaction_id {
            _ if from_copy => started,
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
        if let Some(refund) = event.refund.take() {
            return self
                .apply_refund_event(&gateway.id(), tx, refund, event.amount)
                .await;
        }
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
            // Answered with the transaction as it is now, not as it was started.
            let tx = if from_copy {
                self.load_transaction(tx.id).await?
            } else {
                tx
            };
            // Recorded for operators, once per reported amount and outcome; not applied.
            let reference = event
                .provider_ref
                .clone()
                .or_else(|| event.record_ref.clone())
                .unwrap_or_else(|| tx.id.to_string());
            let exception = Exception::new(
                tx.creditor_id,
                ExceptionKind::AmountMismatch,
                format!(
                    "mismatch:{}:{reference}:{}:{:?}",
                    gateway.id(),
                    event.amount,
                    event.outcome
                ),
                format!(
                    "{} reported {} ({:?}) for transaction {}, whose total is {}: not applied",
                    gateway.id(),
                    event.amount,
                    event.outcome,
                    tx.id,
                    tx.total
                ),
                self.inner.clock.now(),
            )
            .with_transaction(tx.id)
            .with_amount(event.amount)
            .with_expected(tx.total)
            .with_provider_ref(reference);
            return self.recorded(tx, exception).await;
        }
        let actor = Actor::Gateway { id: gateway.id() };
        let change = Change {
            provider_ref: event.record_ref.or(event.provider_ref),
            note: event.note,
            ..Change::default()
        };
        self.apply_outcome(tx, event.outcome, &actor, change).await
    }

    /// Keeps `tx`, which its start left `Pending`, for its provider's outcome.
    pub(super) fn remember_started(&self, tx: &Transaction) {
        if tx.status != TxStatus::Pending {
            return;
        }
        if let Some(r) = &tx.provider_ref {
            self.inner
                .started_refs
                .put((tx.gateway_id.clone(), r.clone()), tx.id);
        }
        self.inner.started.put(tx.id, tx.clone());
    }

    /// The copy of the started transaction `event` is about, taken: it serves once.
    fn take_started(&self, gateway: &GatewayId, event: &CallbackEvent) -> Option<Transaction> {
        let id = event.transaction_id.or_else(|| {
            [&event.provider_ref, &event.record_ref]
                .into_iter()
                .flatten()
                .find_map(|r| self.inner.started_refs.take(&(gateway.clone(), r.clone())))
        })?;
        self.inner
            .started
            .take(&id)
            .filter(|t| t.gateway_id == *gateway)
    }

    /// Records `exception` (once per key) about `tx`, which does not change, and answers
    /// with it: the stored one for a replay.
    pub(super) async fn recorded(
        &self,
        tx: Transaction,
        exception: Exception,
    ) -> Result<CallbackOutcome> {
        let inserted = self.store_ref().insert_exception(&exception).await?;
        let exception = if inserted {
            exception
        } else {
            let mut q = ExceptionQuery::new(exception.creditor_id);
            q.key = Some(exception.key.clone());
            q.limit = 1;
            self.store_ref()
                .exceptions(&q)
                .await?
                .pop()
                .unwrap_or(exception)
        };
        Ok(CallbackOutcome {
            transaction: tx,
            applied: inserted,
            exception: Some(exception),
        })
    }

    /// Applies a callback that pays one line of a transaction (see [`CallbackPart`]).
    ///
    /// The store records the payment once per key and decides, atomically, whether it
    /// settles the line (its item is paid, its module told, the payer and the creditor
    /// get a receipt and a notice for it; the transaction is `Paid` with the last line)
    /// or pays it a second time (a double payment). An unknown line or notice, or an
    /// amount that differs from the line's, is recorded as an exception.
    pub(super) async fn apply_part(
        &self,
        gateway: &GatewayId,
        event: CallbackEvent,
        part: CallbackPart,
        tx: Option<Transaction>,
    ) -> Result<CallbackOutcome> {
        let now = self.inner.clock.now();
        let Some(creditor_id) = tx.as_ref().map(|t| t.creditor_id).or(part.creditor_id) else {
            // No transaction, and a body not served here: nothing of ours to record.
            return Err(Error::forbidden(format!(
                "{} is a payment of a body not served here",
                part.reference
            )));
        };
        let exception = |kind, reason: String| {
            Exception::new(creditor_id, kind, part.key.clone(), reason, now)
                .with_amount(event.amount)
                .with_provider_ref(part.reference.clone())
        };
        // A notice printed ahead (a debt position's) has its transaction once paid.
        let (tx, why) = match tx {
            Some(tx) => (Some(tx), None),
            None => match self
                .position_transaction(
                    gateway,
                    creditor_id,
                    &part.reference,
                    event.provider_ref.as_deref(),
                    &event.amount,
                )
                .await?
            {
                Ok(tx) => (Some(tx), None),
                Err(why) => (None, Some(why)),
            },
        };
        let Some(tx) = tx else {
            // Money for a notice nobody here can apply: kept for the creditor's operators.
            let (kind, why) = why.unwrap_or_else(|| {
                (
                    ExceptionKind::UnknownPayment,
                    "no transaction has this reference".into(),
                )
            });
            self.store_ref()
                .insert_exception(&exception(
                    kind,
                    format!(
                        "{} was paid ({}), but {why}: find what it pays, or give it back",
                        part.reference, event.amount,
                    ),
                ))
                .await?;
            return Err(Error::not_found("transaction", &part.reference));
        };
        if tx.gateway_id != *gateway {
            return Err(Error::forbidden(
                "the callback's gateway does not run this transaction",
            ));
        }
        let Some(line) = tx.lines.get(part.line) else {
            let e = exception(
                ExceptionKind::UnknownPayment,
                format!(
                    "{} was paid ({}), but transaction {} has no line {}",
                    part.reference,
                    event.amount,
                    tx.id,
                    part.line.saturating_add(1)
                ),
            )
            .with_transaction(tx.id);
            return self.recorded(tx, e).await;
        };
        if event.amount != line.amount {
            let e = exception(
                ExceptionKind::AmountMismatch,
                format!(
                    "pays {} for {}, which is of {}: not applied",
                    event.amount, part.reference, line.amount
                ),
            )
            .with_transaction(tx.id)
            .with_lines([part.line])
            .with_expected(line.amount);
            return self.recorded(tx, e).await;
        }
        let creditor = self.creditor(tx.creditor_id).await?;
        let telling = self.telling(&tx, &creditor).await?;
        let positions = [part.line];
        let summary = telling.summary(
            TxStatus::Paid,
            Some(part.reference.clone()),
            now,
            Some(&positions),
            None,
        );
        let mut outbox = telling.mails(
            Some(NotificationKind::Receipt),
            Some(NotificationKind::CreditorNotice),
            &summary,
        );
        outbox.extend(telling.settlement(part.line, now));
        let returned = telling.summary(
            TxStatus::Paid,
            Some(part.reference.clone()),
            now,
            Some(&positions),
            Some(event.amount),
        );
        let on_duplicate = telling.mails(Some(NotificationKind::DuplicatePayment), None, &returned);
        let duplicate = exception(
            ExceptionKind::DoublePayment,
            format!(
                "{} was already paid: this payment of {} pays it again; give it back",
                part.reference, event.amount
            ),
        )
        .with_transaction(tx.id)
        .with_lines([part.line])
        .excess();
        let late = Exception::new(
            creditor_id,
            ExceptionKind::LatePayment,
            format!("late:{}", part.key),
            format!(
                "{} was paid after its transaction ended: its item was still free and is \
                 now paid",
                part.reference
            ),
            now,
        )
        .with_transaction(tx.id)
        .with_lines([part.line])
        .with_amount(event.amount)
        .with_provider_ref(part.reference.clone());
        let mut payment = LinePayment::new(
            tx.id,
            part.line,
            part.key,
            part.reference,
            event.amount,
            Actor::Gateway {
                id: gateway.clone(),
            },
            now,
            duplicate,
            late,
        );
        payment.paid_on = part.paid_on;
        payment.debtor = part.debtor;
        payment.details = part.details;
        payment.outbox = outbox;
        payment.on_duplicate = on_duplicate;
        let paid = self.store_ref().pay_line(&payment).await?;
        Ok(CallbackOutcome {
            transaction: paid.transaction,
            applied: paid.recorded,
            exception: paid.exceptions.into_iter().next(),
        })
    }

    /// Asks the gateway where a transaction stands and applies the answer (a payment is
    /// recorded even when the transaction had ended).
    pub async fn reconcile(&self, transaction: TransactionId) -> Result<CallbackOutcome> {
        let tx = self.load_transaction(transaction).await?;
        let gateway = self.gateway(&tx.gateway_id)?.clone();
        // A provider that keeps receipts hands them over whole, each applied as its
        // callback would have been.
        match self.ask(&tx.gateway_id, gateway.fetch_receipts(&tx)).await {
            Ok(events) => {
                let mut outcome = CallbackOutcome::unchanged(tx.clone());
                for event in events {
                    let applied = self.apply_event(&gateway, event).await?;
                    outcome.applied |= applied.applied;
                    outcome.exception = applied.exception.or(outcome.exception);
                }
                outcome.transaction = self.load_transaction(tx.id).await?;
                return Ok(outcome);
            }
            Err(Error::Gateway {
                kind: GatewayErrorKind::NotSupported(_),
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        let outcome = self.ask(&tx.gateway_id, gateway.fetch_status(&tx)).await?;
        let actor = Actor::Gateway { id: gateway.id() };
        self.apply_outcome(tx, outcome, &actor, Change::note("reconciled"))
            .await
    }

    pub(super) async fn apply_outcome(
        &self,
        mut tx: Transaction,
        outcome: PaymentOutcome,
        actor: &Actor,
        change: Change,
    ) -> Result<CallbackOutcome> {
        let target = match outcome {
            PaymentOutcome::Pending | PaymentOutcome::Processing => {
                return Ok(CallbackOutcome::unchanged(tx));
            }
            PaymentOutcome::Paid => return self.apply_paid(tx, actor, change).await,
            PaymentOutcome::Failed => TxStatus::Failed,
            PaymentOutcome::Cancelled => TxStatus::Cancelled,
        };
        for _ in 0..4 {
            // A transaction that already ended is not failed or cancelled again: the news
            // is old (the provider telling of a session the expiry closed, say).
            if !tx.status.is_open() || !tx.status.can_move_to(target) {
                return Ok(CallbackOutcome::unchanged(tx));
            }
            match self.apply(&tx, target, actor, change.clone()).await {
                Ok(t) => {
                    return Ok(CallbackOutcome {
                        transaction: t,
                        applied: true,
                        exception: None,
                    });
                }
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

    /// Records that the whole of `tx` was paid, in whatever state it is.
    async fn apply_paid(
        &self,
        mut tx: Transaction,
        actor: &Actor,
        change: Change,
    ) -> Result<CallbackOutcome> {
        let mut read_items = false;
        for _ in 0..6 {
            if tx.status.is_paid() {
                return self.paid_again(tx, actor, &change).await;
            }
            let result = if tx.status == TxStatus::Created {
                // The gateway's start was never recorded: `Pending` first.
                self.apply(&tx, TxStatus::Pending, actor, change.clone())
                    .await
                    .map(|t| (t, None))
            } else {
                let mut change = change.clone();
                let line_paid = tx.lines.iter().any(|l| l.paid_at.is_some());
                if read_items || line_paid || tx.status.is_late() {
                    self.late_or_double(&tx, &mut change).await?;
                }
                let exception = change.exceptions.first().cloned();
                self.apply(&tx, TxStatus::Paid, actor, change)
                    .await
                    .map(|t| (t, exception))
            };
            match result {
                Ok((t, exception)) if t.status == TxStatus::Paid => {
                    return Ok(CallbackOutcome {
                        transaction: t,
                        applied: true,
                        exception,
                    });
                }
                Ok((t, _)) => tx = t,
                Err(Error::Conflict(Conflict::StaleState { .. })) => {
                    tx = self.load_transaction(tx.id).await?;
                }
                Err(Error::Conflict(Conflict::ItemsChanged { .. })) => {
                    // Another payment settled one of its items meanwhile: read them.
                    read_items = true;
                    tx = self.load_transaction(tx.id).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(Conflict::InProgress {
            what: format!("transaction {}", tx.id),
        }))
    }

    /// A payment of a transaction already paid: a replay when it carries the same
    /// reference (or none); otherwise a second payment. A gateway's is recorded as a
    /// double payment (no mail to the payer: the provider may be telling of the same money
    /// twice, which an operator checks); an operator's evidence (a bank credit) is refused
    /// with a `Conflict`, for the caller to record as its own exception.
    async fn paid_again(
        &self,
        tx: Transaction,
        actor: &Actor,
        change: &Change,
    ) -> Result<CallbackOutcome> {
        let (Some(new), Some(old)) = (change.provider_ref.as_deref(), tx.provider_ref.as_deref())
        else {
            return Ok(CallbackOutcome::unchanged(tx));
        };
        if new == old {
            return Ok(CallbackOutcome::unchanged(tx));
        }
        if !matches!(actor, Actor::Gateway { .. }) {
            return Err(Error::Conflict(Conflict::Other(format!(
                "transaction {} was already paid ({old}); {new} would pay it again",
                tx.id
            ))));
        }
        let exception = Exception::new(
            tx.creditor_id,
            ExceptionKind::DoublePayment,
            format!("double:{}:{new}", tx.id),
            format!(
                "paid again ({new}) after it was paid ({old}): check with the provider and \
                 give the second payment back"
            ),
            self.inner.clock.now(),
        )
        .with_transaction(tx.id)
        .with_amount(tx.total)
        .with_provider_ref(new)
        .excess();
        self.recorded(tx, exception).await
    }

    /// Reads which items of `tx` are already paid — by another transaction, or by `tx`
    /// itself line by line — and sets `change` up for a late or a double payment: those
    /// items are left as they are, an exception is recorded, and the payer is told what
    /// will be given back.
    async fn late_or_double(&self, tx: &Transaction, change: &mut Change) -> Result<()> {
        let now = self.inner.clock.now();
        let mut elsewhere: Vec<(usize, ItemId, TransactionId)> = Vec::new();
        let mut own: Vec<(usize, ItemId)> = Vec::new();
        for (position, line) in tx.lines.iter().enumerate() {
            if let Some(item) = self.store_ref().item(line.item_id).await?
                && let ItemState::Paid(by) = item.state
            {
                if by == tx.id {
                    own.push((position, item.id));
                } else {
                    elsewhere.push((position, item.id, by));
                }
            }
        }
        let reference = change
            .provider_ref
            .clone()
            .or_else(|| tx.provider_ref.clone());
        let when = if tx.status.is_late() {
            format!(" after the transaction was {}", tx.status)
        } else {
            String::new()
        };
        change.already_paid = elsewhere
            .iter()
            .map(|(_, item, _)| *item)
            .chain(own.iter().map(|(_, item)| *item))
            .collect();
        change.exceptions.clear();
        change.outbox.clear();
        let sum = |positions: &[usize]| {
            Money::sum(
                tx.total.currency(),
                positions.iter().map(|&p| &tx.lines[p].amount),
            )
            .map_err(|e| Error::invalid("amount", e.to_string()))
        };
        let numbers = |positions: &[usize]| {
            positions
                .iter()
                .map(|p| (p + 1).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut exceptions = Vec::new();
        if !elsewhere.is_empty() {
            let positions: Vec<usize> = elsewhere.iter().map(|(p, _, _)| *p).collect();
            let amount = sum(&positions)?;
            let mut others: Vec<String> = elsewhere.iter().map(|(_, _, t)| t.to_string()).collect();
            others.dedup();
            exceptions.push(
                Exception::new(
                    tx.creditor_id,
                    ExceptionKind::DoublePayment,
                    format!("double:{}", tx.id),
                    format!(
                        "paid{when}, but line {} had been paid meanwhile by {}: {amount} of it \
                         is paid twice; give it back",
                        numbers(&positions),
                        others.join(", ")
                    ),
                    now,
                )
                .with_lines(positions)
                .with_amount(amount),
            );
        }
        if !own.is_empty() {
            // Lines this transaction had already paid one by one: the whole payment pays
            // them again, beyond the transaction's own payment.
            let positions: Vec<usize> = own.iter().map(|(p, _)| *p).collect();
            let amount = sum(&positions)?;
            exceptions.push(
                Exception::new(
                    tx.creditor_id,
                    ExceptionKind::DoublePayment,
                    format!("double:{}:lines", tx.id),
                    format!(
                        "paid{when} as a whole, but line {} had already been paid on its own: \
                         {amount} is paid twice; give it back",
                        numbers(&positions)
                    ),
                    now,
                )
                .with_lines(positions)
                .with_amount(amount)
                .excess(),
            );
        }
        if exceptions.is_empty() {
            if !tx.status.is_late() {
                return Ok(());
            }
            exceptions.push(
                Exception::new(
                    tx.creditor_id,
                    ExceptionKind::LatePayment,
                    format!("late:{}", tx.id),
                    format!("paid{when}: its items were still free and are now paid by it"),
                    now,
                )
                .with_amount(tx.total),
            );
        } else {
            // One mail tells the payer all that will be given back.
            let positions: Vec<usize> = exceptions.iter().flat_map(|e| e.lines.clone()).collect();
            let returned = sum(&positions)?;
            let creditor = self.creditor(tx.creditor_id).await?;
            let telling = self.telling(tx, &creditor).await?;
            let summary = telling.summary(
                TxStatus::Paid,
                reference.clone(),
                now,
                Some(&positions),
                Some(returned),
            );
            change.outbox = telling.mails(Some(NotificationKind::DuplicatePayment), None, &summary);
        }
        let mut notes = Vec::new();
        for mut exception in exceptions {
            exception = exception.with_transaction(tx.id);
            if let Some(r) = &reference {
                exception = exception.with_provider_ref(r.clone());
            }
            notes.push(format!(
                "{} ({})",
                exception.kind.label(crate::Locale::En),
                exception.reason
            ));
            change.exceptions.push(exception);
        }
        let note = notes.join("; ");
        change.note = Some(match change.note.take() {
            Some(n) => format!("{note}; {n}"),
            None => note,
        })
        .map(|n| n.chars().take(500).collect());
        Ok(())
    }

    /// The payer gives up an unfinished transaction: → `Cancelled`; the items are payable
    /// again. The provider is asked first, and its session closed: if it says the payment
    /// went through, it is recorded instead (the answer is then the `Paid` transaction);
    /// a payment it is still processing (a SEPA debit) cannot be cancelled
    /// (`Conflict::InProgress`). When the provider cannot be reached, the transaction is
    /// cancelled all the same and a payment that comes later is recorded as late.
    pub async fn cancel(&self, actor: &Actor, transaction: TransactionId) -> Result<Transaction> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_payer_access(&tx.creditor_id, &tx.payer.id)?;
        if !tx.status.can_move_to(TxStatus::Cancelled) {
            return Err(Error::Conflict(Conflict::InvalidTransition {
                from: tx.status.to_string(),
                to: TxStatus::Cancelled.to_string(),
            }));
        }
        let mut tx = tx;
        let mut verdict = self.ask_before_freeing(&tx).await;
        if matches!(verdict, Verdict::Recovered) {
            // Receipts the provider kept were applied: what is left open is asked about
            // again (the lines still unpaid are closed).
            tx = self.load_transaction(tx.id).await?;
            if !tx.status.can_move_to(TxStatus::Cancelled) {
                return Ok(tx);
            }
            verdict = self.ask_before_freeing(&tx).await;
        }
        let note = match verdict {
            Verdict::Free(note) => note,
            Verdict::Outcome(outcome) => {
                let gateway = Actor::Gateway {
                    id: tx.gateway_id.clone(),
                };
                let change = Change::note("the provider answered before the cancellation");
                return Ok(self
                    .apply_outcome(tx, outcome, &gateway, change)
                    .await?
                    .transaction);
            }
            Verdict::Processing => {
                return Err(Error::Conflict(Conflict::InProgress {
                    what: format!("the payment of transaction {} at the provider", tx.id),
                }));
            }
            Verdict::Recovered => return self.load_transaction(tx.id).await,
            Verdict::Unreachable(why) => Some(format!(
                "cancelled without the provider ({why}): a payment it takes now is recorded \
                 as late"
            )),
        };
        self.apply(&tx, TxStatus::Cancelled, actor, Change::note_opt(note))
            .await
    }

    /// Expires the transactions whose time is up and frees their items, asking each
    /// provider first: a payment it says went through (or failed) is recorded instead; one
    /// it is still processing is never expired (the expiry waits
    /// [`PaymentsBuilder::expiry_recheck`](crate::PaymentsBuilder::expiry_recheck), with an
    /// event; past the provider's longest processing window it becomes an exception); its
    /// session is closed before the items are freed; a provider that cannot be reached is
    /// asked again later. Returns how many expired.
    pub async fn expire_due(&self) -> Result<u32> {
        let now = self.inner.clock.now();
        let due = self.store_ref().due_for_expiry(now, 500).await?;
        // Each provider's transactions apart, a few at a time, each call bounded by the
        // provider timeout: one slow provider delays its own transactions, not the others'.
        let mut by_gateway: std::collections::BTreeMap<GatewayId, Vec<Transaction>> =
            std::collections::BTreeMap::new();
        for tx in due {
            by_gateway
                .entry(tx.gateway_id.clone())
                .or_default()
                .push(tx);
        }
        let groups = by_gateway.into_values().map(|txs| {
            futures::stream::iter(txs)
                .map(|tx| self.expire_one(tx))
                .buffer_unordered(EXPIRY_CONCURRENCY)
                .collect::<Vec<Result<bool>>>()
        });
        let mut expired = 0;
        for r in futures::future::join_all(groups)
            .await
            .into_iter()
            .flatten()
        {
            if r? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Expires `tx` if its provider says nothing stops it; answers whether it did.
    async fn expire_one(&self, tx: Transaction) -> Result<bool> {
        match self.ask_before_freeing(&tx).await {
            Verdict::Free(note) => match self
                .apply(
                    &tx,
                    TxStatus::Expired,
                    &Actor::System,
                    Change::note_opt(note),
                )
                .await
            {
                Ok(_) => Ok(true),
                Err(Error::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            },
            Verdict::Outcome(outcome) => {
                let gateway = Actor::Gateway {
                    id: tx.gateway_id.clone(),
                };
                match self
                    .apply_outcome(tx, outcome, &gateway, Change::note("before expiry"))
                    .await
                {
                    Ok(_) | Err(Error::Conflict(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Verdict::Processing => {
                self.postpone(&tx, "the provider is still processing the payment", true)
                    .await?;
                Ok(false)
            }
            // Its receipts were applied; what is left unpaid is looked at next time.
            Verdict::Recovered => Ok(false),
            Verdict::Unreachable(why) => {
                self.postpone(
                    &tx,
                    &format!("the provider could not be asked: {why}"),
                    false,
                )
                .await?;
                Ok(false)
            }
        }
    }

    /// What the provider says of `tx` before its items are freed: its status, then the
    /// closing of its session.
    async fn ask_before_freeing(&self, tx: &Transaction) -> Verdict {
        let Some(gateway) = self.inner.gateways.get(&tx.gateway_id).cloned() else {
            return Verdict::Free(Some(format!(
                "gateway {} is not registered here",
                tx.gateway_id
            )));
        };
        let unreachable = |e: &Error| {
            matches!(
                e,
                Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                }
            )
        };
        let not_supported = |e: &Error| {
            matches!(
                e,
                Error::Gateway {
                    kind: GatewayErrorKind::NotSupported(_),
                    ..
                }
            )
        };
        // Receipts the provider keeps and the service never received come first: they are
        // the provider's word, whole.
        match self.ask(&tx.gateway_id, gateway.fetch_receipts(tx)).await {
            Ok(events) => {
                let mut applied = false;
                for event in events {
                    // Boxed: applying a receipt may itself come here again (a paid
                    // transaction's expiry), which an async fn cannot hold inline.
                    match Box::pin(self.apply_event(&gateway, event)).await {
                        Ok(outcome) => applied |= outcome.applied,
                        Err(e) => {
                            return Verdict::Unreachable(format!(
                                "a receipt it keeps could not be applied: {e}"
                            ));
                        }
                    }
                }
                if applied {
                    return Verdict::Recovered;
                }
            }
            Err(e) if not_supported(&e) => {}
            // A provider that keeps receipts and cannot hand them over may hold money: the
            // items wait (and after a day, operators are told).
            Err(e) => {
                return Verdict::Unreachable(format!("its receipts could not be read: {e}"));
            }
        }
        // The provider's word on the payment first; a provider that cannot say (it has no
        // status to ask, or does not know the payment) is not a reason to wait.
        let mut note = None;
        match self.ask(&tx.gateway_id, gateway.fetch_status(tx)).await {
            Ok(PaymentOutcome::Pending) => {}
            Ok(PaymentOutcome::Processing) => return Verdict::Processing,
            Ok(outcome) => return Verdict::Outcome(outcome),
            Err(e) if unreachable(&e) => return Verdict::Unreachable(e.to_string()),
            Err(e) if not_supported(&e) => {}
            Err(e) => note = Some(format!("the provider's status: {e}")),
        }
        // Then its page is closed before the items are freed.
        let closed = match self.ask(&tx.gateway_id, gateway.close(tx)).await {
            Ok(PaymentOutcome::Cancelled) => format!("{} closed its payment page", tx.gateway_id),
            Ok(PaymentOutcome::Processing) => return Verdict::Processing,
            Ok(PaymentOutcome::Pending) => {
                return Verdict::Unreachable(format!(
                    "{} did not close its payment page",
                    tx.gateway_id
                ));
            }
            Ok(outcome) => return Verdict::Outcome(outcome),
            Err(e) if unreachable(&e) => return Verdict::Unreachable(e.to_string()),
            Err(e) if not_supported(&e) => return Verdict::Free(note),
            Err(e) => format!(
                "{} could not close its page ({e}): a payment it takes now is recorded as late",
                tx.gateway_id
            ),
        };
        Verdict::Free(Some(match note {
            Some(n) => format!("{closed}; {n}"),
            None => closed,
        }))
    }

    /// Postpones the expiry of `tx` by the recheck wait, with an event; a payment still
    /// processing past its method's longest window becomes an exception, once.
    async fn postpone(&self, tx: &Transaction, why: &str, processing: bool) -> Result<()> {
        let now = self.inner.clock.now();
        let wait = chrono::Duration::from_std(self.inner.expiry_recheck)
            .unwrap_or(chrono::Duration::minutes(15));
        let mut exceptions = Vec::new();
        // A provider that could not be asked for a day past the end may hold money that is
        // not recorded: operators are told, once.
        if !processing && now > tx.expires_at + chrono::Duration::days(1) {
            exceptions.push(
                Exception::new(
                    tx.creditor_id,
                    ExceptionKind::ProviderUnanswered,
                    format!("unanswered:{}", tx.id),
                    format!(
                        "{} could not be asked about transaction {} for a day after it was \
                         due to end ({why}): a payment it took is not recorded; ask it",
                        tx.gateway_id, tx.id
                    )
                    .chars()
                    .take(500)
                    .collect::<String>(),
                    now,
                )
                .with_transaction(tx.id)
                .with_amount(tx.total),
            );
        }
        if processing
            && let Some(gateway) = self.inner.gateways.get(&tx.gateway_id)
            && let Some(window) = gateway.processing_window(tx.method_kind)
            && let Ok(window) = chrono::Duration::from_std(window)
            && now > tx.created_at + window
        {
            exceptions.push(
                Exception::new(
                    tx.creditor_id,
                    ExceptionKind::StillProcessing,
                    format!("processing:{}", tx.id),
                    format!(
                        "{} still says the payment is processing, {} days after it started: \
                         ask the provider",
                        tx.gateway_id,
                        (now - tx.created_at).num_days()
                    ),
                    now,
                )
                .with_transaction(tx.id)
                .with_amount(tx.total),
            );
        }
        let extension = ExpiryExtension {
            transaction: tx.id,
            status: tx.status,
            until: now + wait,
            actor: Actor::System,
            at: now,
            note: format!("expiry postponed: {why}")
                .chars()
                .take(500)
                .collect(),
            exceptions,
        };
        match self.store_ref().extend_expiry(&extension).await {
            Ok(_) | Err(Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::service::testkit::*;

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
                        OutboxPayload::Refund(_) => "refund",
                        OutboxPayload::Reminder(_) => "reminder",
                        OutboxPayload::Archive(_) => "archive",
                        OutboxPayload::Unreadable(_) => "unreadable",
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
    async fn an_amount_mismatch_is_recorded_as_an_exception_and_never_applied() {
        // Money is a fact (DESIGN.md): a payment of another amount is recorded for
        // operators and answered Ok, so the provider does not retry it.
        let (tx, _) = pending_transaction().await;
        let mut store = store_reading(&tx);
        store.expect_transition().never();
        let tx_id = tx.id;
        store
            .expect_insert_exception()
            .withf(move |e| {
                e.kind == ExceptionKind::AmountMismatch
                    && e.transaction_id == Some(tx_id)
                    && e.amount == Some(Money::parse_eur("10.01").unwrap())
                    && e.expected == Some(Money::parse_eur("10.00").unwrap())
            })
            .times(1)
            .returning(|_| Ok(true));
        let gateway = gateway_reporting(
            &tx,
            PaymentOutcome::Paid,
            Money::parse_eur("10.01").unwrap(),
        );
        let p = service(store, gateway, MockNotifier::new());
        let out = p
            .handle_callback("sandbox", &CallbackRequest::new("{}"))
            .await
            .unwrap();
        assert!(out.applied, "recorded");
        assert_eq!(out.transaction.status, TxStatus::Pending, "not applied");
        assert_eq!(
            out.exception.map(|e| e.kind),
            Some(ExceptionKind::AmountMismatch)
        );
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
}
