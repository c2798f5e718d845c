//! Outcomes: providers' callbacks, reconciliation, cancellation and expiry.

use super::{Change, Payments};
use crate::{
    Actor, CallbackEvent, CallbackPart, CallbackRequest, Conflict, Error, GatewayErrorKind,
    GatewayId, PaymentOutcome, Result, Transaction, TransactionId, TxStatus,
};

/// What a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOutcome {
    /// The transaction after the callback.
    pub transaction: Transaction,
    /// Whether it changed anything: a state change, or a line paid on its own recorded
    /// (false for a replay or a "still pending").
    pub applied: bool,
}

impl Payments {
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
    pub(super) async fn apply_part(
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

    pub(super) async fn apply_outcome(
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
}
