//! Bank transfers: the payer's report, an operator's confirmation or rejection, and
//! payments recorded from bank statements.

use super::{CallbackOutcome, Change, MAX_PROVIDER_REF_LEN, Payments, check_limit, check_note};
use crate::{
    Actor, Error, GatewayErrorKind, Money, PaymentOutcome, Result, Role, Transaction,
    TransactionId, TxStatus,
};

impl Payments {
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

    /// Records a chunk of credits read from a bank statement in one database transaction:
    /// the fast path of a statement's import. Each entry is recorded once per creditor
    /// and key; an entry whose `pays` is set (its outcome
    /// [`Matched`](crate::BankEntryOutcome::Matched) a transaction, for its whole total)
    /// also pays it, as [`record_payment`](Self::record_payment) would, with the entry's key
    /// as the provider's reference — in the same database transaction, so that a crash
    /// leaves both or neither. Each transaction is the one the credit carries
    /// ([`BankCredit::with_read`]: read by [`Payments::transactions_by_provider_refs`], only
    /// `Payments` makes one), or else read here; either way the store's compare-and-set
    /// checks that it is still in the state it was read in, with none of its items paid
    /// meanwhile, and a credit whose transaction changed is answered
    /// [`BankCreditDone::Alone`].
    ///
    /// Only the plain case is taken here: a transaction `Pending` or `Reported`, none of
    /// whose lines was paid on its own. Any other (ended, late, partly paid, or changed
    /// since `pays` was read) answers [`BankCreditDone::Alone`] and nothing of that entry
    /// is written: the caller records it on its own, with `record_payment` and
    /// [`record_bank_entry`](Self::record_bank_entry), which handle every case. Only a
    /// manager of each entry's creditor may record.
    pub async fn record_bank_credits(
        &self,
        actor: &Actor,
        credits: &[BankCredit],
    ) -> Result<Vec<BankCreditDone>> {
        // The transactions as stored, not as the caller says: the copies the credits carry
        // (reads that only `Payments` makes), and a read here of the others. Each check
        // below, and the messages, go by them; the store checks that none changed since.
        for credit in credits {
            actor.check_operator(&credit.entry.creditor_id, Role::Manager)?;
        }
        let mut stored: std::collections::HashMap<TransactionId, &Transaction> =
            std::collections::HashMap::with_capacity(credits.len());
        let mut ids: Vec<TransactionId> = Vec::new();
        for credit in credits {
            if let crate::BankEntryOutcome::Matched { transaction_id } = credit.entry.outcome {
                match &credit.read {
                    Some(read) if read.id == transaction_id => {
                        stored.insert(transaction_id, read);
                    }
                    _ => ids.push(transaction_id),
                }
            }
        }
        ids.retain(|id| !stored.contains_key(id));
        let fresh = if ids.is_empty() {
            Vec::new()
        } else {
            self.store_ref().transactions_of(&ids).await?
        };
        stored.extend(fresh.iter().map(|t| (t.id, t)));
        let mut steps = Vec::with_capacity(credits.len());
        let mut alone = vec![false; credits.len()];
        for (n, credit) in credits.iter().enumerate() {
            let matched = match &credit.entry.outcome {
                crate::BankEntryOutcome::Matched { transaction_id } => Some(transaction_id),
                _ => None,
            };
            if !credit.pays {
                // An entry that says it paid a transaction without paying it now must find
                // that transaction paid by its own key (an import that stopped between the
                // two); otherwise it is decided on its own.
                let settled = matched.is_none_or(|id| {
                    stored.get(id).is_some_and(|t| {
                        t.status.is_paid()
                            && t.provider_ref.as_deref() == Some(credit.entry.key.as_str())
                    })
                });
                if settled {
                    steps.push(crate::BankStep::new(credit.entry.clone(), None));
                } else {
                    alone[n] = true;
                }
                continue;
            }
            let tx = matched.and_then(|id| stored.get(id).copied());
            let Some(tx) = tx else {
                alone[n] = true;
                continue;
            };
            let plain = tx.creditor_id == credit.entry.creditor_id
                && matches!(tx.status, TxStatus::Pending | TxStatus::Reported)
                && tx.lines.iter().all(|l| l.paid_at.is_none())
                && credit.entry.currency == tx.total.currency().code()
                && credit.entry.amount == tx.total.amount();
            let provider_ref = credit.entry.key.trim();
            if !plain
                || provider_ref.is_empty()
                || provider_ref.len() > MAX_PROVIDER_REF_LEN
                || provider_ref.chars().any(char::is_control)
            {
                alone[n] = true;
                continue;
            }
            let change = Change {
                provider_ref: Some(provider_ref.to_owned()),
                note: check_note(credit.note.clone())?,
                ..Change::default()
            };
            let payment = self
                .transition_for(tx, TxStatus::Paid, actor, change)
                .await?;
            steps.push(crate::BankStep::new(credit.entry.clone(), Some(payment)));
        }
        let mut recorded = self
            .store_ref()
            .record_bank_entries(&steps)
            .await?
            .into_iter();
        let mut done = Vec::with_capacity(credits.len());
        for is_alone in alone {
            done.push(if is_alone {
                BankCreditDone::Alone
            } else {
                match recorded.next() {
                    Some(crate::BankStepDone::Recorded(_)) => BankCreditDone::Recorded,
                    Some(crate::BankStepDone::AlreadyRecorded) => BankCreditDone::AlreadyRecorded,
                    Some(crate::BankStepDone::Conflict(_)) => BankCreditDone::Alone,
                    None => {
                        return Err(Error::Storage {
                            message: "the store answered for fewer bank entries than it was given"
                                .into(),
                            source: None,
                        });
                    }
                }
            });
        }
        if recorded.next().is_some() {
            return Err(Error::Storage {
                message: "the store answered for more bank entries than it was given".into(),
                source: None,
            });
        }
        Ok(done)
    }

    /// The transactions of `gateway` whose provider's reference is one of `refs`, as the
    /// store holds them now: for a statement's import to match its credits against, and to
    /// hand back to [`record_bank_credits`](Self::record_bank_credits) with each credit
    /// ([`BankCredit::with_read`]), which then does not read them again. Reads only.
    pub async fn transactions_by_provider_refs(
        &self,
        gateway: &crate::GatewayId,
        refs: &[String],
    ) -> Result<Vec<StoredTransaction>> {
        Ok(self
            .store_ref()
            .transactions_by_provider_refs(gateway, refs)
            .await?
            .into_iter()
            .map(|t| StoredTransaction(std::sync::Arc::new(t)))
            .collect())
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

    /// Records a provider's receipt (kept whole, see [`crate::ProviderReceipt`]) once per
    /// creditor and key: answers `false` when it was already recorded. Only the gateway
    /// it came through records it; [`Payments::handle_callback`] does so for the receipts
    /// its gateway reads, and a gateway records the receipts of payments in which the
    /// creditor is only a beneficiary (pagoPA's receipts of another body's notice).
    pub async fn record_provider_receipt(
        &self,
        actor: &Actor,
        receipt: &crate::ProviderReceipt,
    ) -> Result<bool> {
        match actor {
            Actor::Gateway { id } if *id == receipt.gateway_id => {}
            _ => {
                return Err(Error::forbidden(
                    "only the gateway a receipt came through records it",
                ));
            }
        }
        self.store_ref().insert_provider_receipt(receipt).await
    }

    /// A creditor's provider receipts, newest first, for its operators: the documents as
    /// they arrived, with the PSP, the channel, the fee and the transfers as data.
    pub async fn provider_receipts(
        &self,
        actor: &Actor,
        query: &crate::ProviderReceiptQuery,
    ) -> Result<Vec<crate::ProviderReceipt>> {
        actor.check_operator(&query.creditor_id, Role::Viewer)?;
        check_limit(query.limit)?;
        self.store_ref().provider_receipts(query).await
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
    pub(super) async fn operator_move(
        &self,
        actor: &Actor,
        transaction: TransactionId,
        to: TxStatus,
        note: Option<String>,
    ) -> Result<Transaction> {
        let tx = self.load_transaction(transaction).await?;
        actor.check_operator(&tx.creditor_id, Role::Manager)?;
        let change = Change::note_opt(check_note(note)?);
        if to == TxStatus::Paid && tx.status.is_open() {
            // Through the payment path, which settles each item once.
            return Ok(self
                .apply_outcome(tx, crate::PaymentOutcome::Paid, actor, change)
                .await?
                .transaction);
        }
        self.apply(&tx, to, actor, change).await
    }
}

/// A transaction as the store held it when [`Payments`] read it
/// ([`Payments::transactions_by_provider_refs`]). Only `Payments` makes one: a caller hands
/// back a read, never its own version of a transaction. Cheap to clone; derefs to the
/// [`Transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransaction(std::sync::Arc<Transaction>);

impl std::ops::Deref for StoredTransaction {
    type Target = Transaction;

    fn deref(&self) -> &Transaction {
        &self.0
    }
}

/// A credit of a bank statement for [`Payments::record_bank_credits`]: the entry as the
/// import decided it, and whether it pays its `Matched` transaction now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BankCredit {
    /// The entry.
    pub entry: crate::BankEntry,
    /// Whether it pays the transaction its outcome names (`Matched`), in full, now. A
    /// `Matched` entry that does not pay is recorded only if that transaction is already
    /// paid by the entry's key; otherwise it is left to the caller
    /// ([`BankCreditDone::Alone`]).
    pub pays: bool,
    /// The payment's note, for the transaction's event.
    pub note: Option<String>,
    /// The `Matched` transaction as read for this import, if the caller has it
    /// ([`with_read`](Self::with_read)); otherwise `record_bank_credits` reads it.
    pub read: Option<StoredTransaction>,
}

impl BankCredit {
    /// An entry that pays its `Matched` transaction (`pays`) or only is recorded, with a
    /// note for the payment's event.
    pub fn new(entry: crate::BankEntry, pays: bool, note: Option<String>) -> Self {
        BankCredit {
            entry,
            pays,
            note,
            read: None,
        }
    }

    /// The same credit, carrying its `Matched` transaction as read
    /// ([`Payments::transactions_by_provider_refs`]), so that
    /// [`Payments::record_bank_credits`] does not read it again. A copy of another
    /// transaction than the entry's is ignored.
    pub fn with_read(mut self, read: StoredTransaction) -> Self {
        self.read = Some(read);
        self
    }
}

/// What became of one [`BankCredit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BankCreditDone {
    /// Recorded (and its transaction paid, when it pays).
    Recorded,
    /// Its key was already recorded: nothing changed.
    AlreadyRecorded,
    /// Not the plain case, or its transaction changed meanwhile: nothing was written; the
    /// caller records it on its own.
    Alone,
}

#[cfg(test)]
mod tests {
    use crate::service::testkit::*;

    /// A chunk whose credits carry their transactions as `Payments` read them is recorded
    /// without reading them again; a credit without one is read.
    #[tokio::test]
    async fn credits_carrying_their_read_are_not_read_again() {
        let (mut tx, creditor) = pending_transaction().await;
        tx.provider_ref = Some("RF18000000000000000000001".into());
        let mut other = tx.clone();
        other.id = TransactionId::new();
        other.provider_ref = Some("RF18000000000000000000002".into());
        let mut store = MockStore::new();
        let copy = tx.clone();
        store
            .expect_transactions_by_provider_refs()
            .times(1)
            .returning(move |_, _| Ok(vec![copy.clone()]));
        // Only the credit without a copy is read.
        let read = other.clone();
        store
            .expect_transactions_of()
            .withf({
                let id = other.id;
                move |ids: &[TransactionId]| ids == [id]
            })
            .times(1)
            .returning(move |_| Ok(vec![read.clone()]));
        store
            .expect_creditor()
            .returning(move |_| Ok(Some(creditor.clone())));
        store.expect_payment_type().returning(|_| Ok(None));
        store
            .expect_record_bank_entries()
            .withf(|steps: &[crate::BankStep]| {
                steps.len() == 2
                    && steps.iter().all(|s| {
                        s.payment
                            .as_ref()
                            .is_some_and(|t| t.from == TxStatus::Pending)
                    })
            })
            .times(1)
            .returning(|steps| {
                Ok(steps
                    .iter()
                    .map(|_| crate::BankStepDone::Recorded(None))
                    .collect())
            });
        let p = service(store, gateway_with(|_| {}), MockNotifier::new());
        let stored = p
            .transactions_by_provider_refs(&crate::GatewayId::from("sandbox"), &["r".into()])
            .await
            .unwrap();
        let entry = |t: &Transaction, key: &str| crate::BankEntry {
            creditor_id: t.creditor_id,
            key: key.into(),
            statement_id: "S-1".into(),
            imported_at: t0(),
            booked_on: None,
            value_on: None,
            amount: t.total.amount(),
            currency: "EUR".into(),
            debtor: None,
            remittance: String::new(),
            reference: t.provider_ref.clone(),
            info: None,
            outcome: crate::BankEntryOutcome::Matched {
                transaction_id: t.id,
            },
        };
        let credits = [
            BankCredit::new(entry(&tx, "A-1"), true, None).with_read(stored[0].clone()),
            BankCredit::new(entry(&other, "B-1"), true, None),
        ];
        let operator = Actor::operator(tx.creditor_id, Role::Manager, "anna");
        let done = p.record_bank_credits(&operator, &credits).await.unwrap();
        assert_eq!(done, [BankCreditDone::Recorded, BankCreditDone::Recorded]);
    }
}
