//! The ledger of exceptions: listed for a creditor's operators, resolved by its managers.

use super::{Payments, check_limit};
use crate::{
    Actor, Conflict, Error, EventId, Exception, ExceptionId, ExceptionKind, ExceptionQuery,
    ExceptionResolution, ExceptionUpdate, Refund, RefundRequest, RefundStatus, Result, Role,
    TransactionEvent,
};

/// The longest note a resolution keeps.
pub const MAX_RESOLUTION_NOTE_LEN: usize = 500;

impl Payments {
    /// A creditor's exceptions, newest first, for its operators (viewers too).
    pub async fn exceptions(
        &self,
        actor: &Actor,
        query: &ExceptionQuery,
    ) -> Result<Vec<Exception>> {
        actor.check_operator(&query.creditor_id, Role::Viewer)?;
        check_limit(query.limit)?;
        self.store_ref().exceptions(query).await
    }

    /// One exception, for its creditor's operators.
    pub async fn exception(&self, actor: &Actor, id: ExceptionId) -> Result<Exception> {
        let e = self
            .store_ref()
            .exception(id)
            .await?
            .ok_or_else(|| Error::not_found("exception", id))?;
        actor.check_operator(&e.creditor_id, Role::Viewer)?;
        Ok(e)
    }

    /// A manager of its creditor resolves an open exception, saying what was done (1 to
    /// 500 characters). The resolution is an event in its transaction's history, when it
    /// has one. An exception already resolved is a `Conflict`.
    pub async fn resolve_exception(
        &self,
        actor: &Actor,
        id: ExceptionId,
        note: &str,
    ) -> Result<Exception> {
        let e = self.exception(actor, id).await?;
        actor.check_operator(&e.creditor_id, Role::Manager)?;
        let note = note.trim();
        if note.is_empty()
            || note.chars().count() > MAX_RESOLUTION_NOTE_LEN
            || note.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(Error::invalid(
                "note",
                format!("say what was done, in 1 to {MAX_RESOLUTION_NOTE_LEN} characters"),
            ));
        }
        self.resolve(&e, actor, note.to_owned(), None).await
    }

    /// A manager gives back the money of an open double payment through the gateway that
    /// took it ([`Payments::refund`] of the exception's amount and lines, keyed by the
    /// exception, so a second click makes no second refund), and the exception is
    /// resolved with the refund. Money beyond the transaction's own payment
    /// ([`Exception::excess`]) is given back beside it: the payment, its items and its
    /// modules stand. Otherwise (a late payment of items another payment had settled)
    /// the transaction's own payment is what is given back. A gateway that cannot refund answers `NotSupported`:
    /// give the money back by other means and resolve the exception with a note.
    pub async fn refund_exception(&self, actor: &Actor, id: ExceptionId) -> Result<Refund> {
        let e = self.exception(actor, id).await?;
        actor.check_operator(&e.creditor_id, Role::Manager)?;
        let (ExceptionKind::DoublePayment, Some(tx), Some(amount)) =
            (e.kind, e.transaction_id, e.amount)
        else {
            return Err(Error::invalid(
                "exception",
                "only a double payment of a known transaction is given back from here",
            ));
        };
        if !e.is_open() {
            return Err(Error::Conflict(Conflict::Other(format!(
                "exception {id} is already resolved"
            ))));
        }
        let mut request = RefundRequest::partial(amount, format!("exception:{id}"))
            .of_lines(e.lines.iter().copied())
            .with_reason(
                format!("double payment: {}", e.reason)
                    .chars()
                    .take(500)
                    .collect::<String>(),
            );
        request.excess = e.excess;
        let refund = self.refund(actor, tx, request).await?;
        if refund.status.counts() {
            let note = format!(
                "given back: refund {} of {} ({})",
                refund.id,
                refund.amount,
                match refund.status {
                    RefundStatus::Succeeded => "done",
                    _ => "under way",
                }
            );
            match self.resolve(&e, actor, note, Some(refund.id)).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(refund)
    }

    async fn resolve(
        &self,
        e: &Exception,
        actor: &Actor,
        note: String,
        refund: Option<crate::RefundId>,
    ) -> Result<Exception> {
        let now = self.inner.clock.now();
        let event = match e.transaction_id {
            Some(t) => {
                let tx = self.load_transaction(t).await?;
                Some(TransactionEvent {
                    id: EventId::new(),
                    transaction_id: tx.id,
                    actor: actor.clone(),
                    at: now,
                    from: Some(tx.status),
                    to: tx.status,
                    provider_ref: tx.provider_ref.clone(),
                    note: Some(
                        format!(
                            "{} resolved: {note}",
                            e.kind.label(crate::Locale::En).to_lowercase()
                        )
                        .chars()
                        .take(500)
                        .collect(),
                    ),
                })
            }
            None => None,
        };
        let mut update = ExceptionUpdate::new(
            e.id,
            ExceptionResolution {
                by: actor.clone(),
                at: now,
                note,
            },
        );
        update.refund_id = refund;
        update.event = event;
        self.store_ref().resolve_exception(&update).await
    }
}
