//! Reading: a transaction and its events, a payer's history, an operator's search.

use std::collections::HashMap;

use super::{Payments, check_limit};
use crate::{
    Actor, Error, HistoryEntry, HistoryQuery, MovementPage, MovementQuery, Page, Result, Role,
    Transaction, TransactionEvent, TransactionId,
};

impl Payments {
    // ---------------------------------------------------------------- reading

    pub(super) async fn load_transaction(&self, id: TransactionId) -> Result<Transaction> {
        self.store_ref()
            .transaction(id)
            .await?
            .ok_or_else(|| Error::not_found("transaction", id))
    }

    /// A transaction, for its payer or an operator of its creditor.
    pub async fn transaction(&self, actor: &Actor, id: TransactionId) -> Result<Transaction> {
        let tx = self.load_transaction(id).await?;
        actor.check_payer_read(&tx.creditor_id, &tx.payer.id)?;
        Ok(tx)
    }

    /// What a receipt of the transaction prints (the PDF of `payments_pdf::receipt_pdf`):
    /// its lines that were paid, their references, the method, the provider's reference
    /// and when it was paid. Only of money taken: `Paid`, `Refunded` (as it was paid), or
    /// the paid lines of a `PartiallyPaid` one; a `Conflict` otherwise. For its payer and
    /// its creditor's operators.
    pub async fn receipt(
        &self,
        actor: &Actor,
        id: TransactionId,
    ) -> Result<crate::TransactionSummary> {
        let tx = self.transaction(actor, id).await?;
        let lines: Option<Vec<usize>> = match tx.status {
            crate::TxStatus::Paid | crate::TxStatus::Refunded => None,
            crate::TxStatus::PartiallyPaid => Some(
                (0..tx.lines.len())
                    .filter(|&i| tx.lines[i].paid_at.is_some())
                    .collect(),
            ),
            s => {
                return Err(Error::Conflict(crate::Conflict::Other(format!(
                    "transaction {id} is {}: there is no receipt of money not taken",
                    s.as_str()
                ))));
            }
        };
        let events = self.store_ref().events(id).await?;
        let paid_at = events
            .iter()
            .rev()
            .find(|e| e.to == crate::TxStatus::Paid)
            .map_or(tx.updated_at, |e| e.at);
        let creditor = self.creditor(tx.creditor_id).await?;
        let telling = self.telling(&tx, &creditor).await?;
        Ok(telling.summary(
            tx.status,
            tx.provider_ref.clone(),
            paid_at,
            lines.as_deref(),
            None,
        ))
    }

    /// The payments of single lines recorded for a transaction (pagoPA receipts), oldest
    /// first: each with what became of it (it settled its line, or paid it twice). For its
    /// payer and its creditor's operators.
    pub async fn line_payments(
        &self,
        actor: &Actor,
        id: TransactionId,
    ) -> Result<Vec<crate::LinePaymentRecord>> {
        self.transaction(actor, id).await?;
        self.store_ref().line_payments(id).await
    }

    /// The providers' receipts of a transaction's lines, kept whole (pagoPA's `paSendRT`:
    /// the PSP, its receipt id, the channel, the fee), oldest first. For its payer and its
    /// creditor's operators.
    pub async fn transaction_receipts(
        &self,
        actor: &Actor,
        id: TransactionId,
    ) -> Result<Vec<crate::ProviderReceipt>> {
        let tx = self.transaction(actor, id).await?;
        let mut receipts = Vec::new();
        for payment in self.store_ref().line_payments(id).await? {
            let mut q = crate::ProviderReceiptQuery::new(tx.creditor_id);
            q.key = Some(payment.key);
            q.limit = 1;
            receipts.extend(self.store_ref().provider_receipts(&q).await?);
        }
        Ok(receipts)
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
}
