//! The outbox: delivering receipts, notices and settlements at least once, and the
//! background worker.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;

use super::Payments;

/// How often the worker expires debt positions and writes reminders.
const POSITIONS_EVERY: Duration = Duration::from_secs(3600);
use crate::{
    Actor, Creditor, CreditorId, Error, FREE_PAYMENT_MODULE, Money, NewOutboxMessage, Notification,
    NotificationKind, OutboxId, OutboxMessage, OutboxPayload, OutboxQuery, Result, Role,
    Settlement, Transaction, TransactionSummary, TxStatus,
};

/// How many outbox messages are delivered at once; [`Payments::dispatch_outbox`] claims
/// them this many at a time.
pub const DELIVERY_CONCURRENCY: u32 = 8;

/// How one delivery went.
enum Delivery {
    Delivered,
    Retrying,
    Dead,
}

/// What one pass of the outbox dispatcher did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    // ---------------------------------------------------------------- outbox

    /// Delivers the outbox messages that are due, once each: receipts and notices through
    /// the notifier, settlements to the module's listener. A failure is retried later with
    /// exponential backoff; after the policy's last attempt the message is `Dead` until an
    /// operator retries it. Run it periodically ([`Payments::run_worker`] does).
    ///
    /// Up to the builder's batch size per call, claimed [`DELIVERY_CONCURRENCY`] at a time
    /// and delivered together: a claim's lease only has to outlast one delivery, which is
    /// cut off at three quarters of the lease ([`RetryPolicy::lease`](crate::RetryPolicy::lease))
    /// and retried, so another instance never takes a message still in flight. Each message is
    /// marked delivered as soon as its own delivery succeeds: a crash sends again at most
    /// what was in flight at that instant.
    pub async fn dispatch_outbox(&self) -> Result<DispatchReport> {
        let lease =
            chrono::Duration::from_std(self.inner.retry.lease).unwrap_or(chrono::Duration::MAX);
        // Recorded before the lease ends, whatever the provider does.
        let cutoff = self.inner.retry.lease.mul_f32(0.75);
        let mut report = DispatchReport::default();
        while report.claimed() < self.inner.dispatch_batch {
            let now = self.inner.clock.now();
            let round = DELIVERY_CONCURRENCY.min(self.inner.dispatch_batch - report.claimed());
            let claimed = self
                .store_ref()
                .claim_outbox(now, now + lease, round)
                .await?;
            let count = claimed.len() as u32;
            // Counted from the claim, not from each delivery's start: the lease began then.
            let deadline = tokio::time::Instant::now() + cutoff;
            let outcomes: Vec<Result<Delivery>> = futures::stream::iter(claimed)
                .map(|m| async move {
                    let result = match tokio::time::timeout_at(deadline, self.deliver(&m)).await {
                        Ok(result) => result,
                        Err(_) => Err(Error::Notification {
                            message: format!(
                                "no answer in {} s: tried again later",
                                cutoff.as_secs()
                            ),
                            transient: true,
                            source: None,
                        }),
                    };
                    self.record_delivery(&m, result, now).await
                })
                .buffer_unordered(DELIVERY_CONCURRENCY as usize)
                .collect()
                .await;
            for outcome in outcomes {
                match outcome? {
                    Delivery::Delivered => report.delivered += 1,
                    Delivery::Retrying => report.retrying += 1,
                    Delivery::Dead => report.dead += 1,
                }
            }
            if count < round {
                break;
            }
        }
        Ok(report)
    }

    /// Records how one delivery went, at once.
    async fn record_delivery(
        &self,
        message: &OutboxMessage,
        result: Result<()>,
        claimed_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Delivery> {
        match result {
            Ok(()) => {
                self.store_ref()
                    .outbox_delivered(message.id, self.inner.clock.now())
                    .await?;
                Ok(Delivery::Delivered)
            }
            Err(e) => {
                let retry_at = if e.is_retryable() {
                    self.inner.retry.delay_after(message.attempts).map(|d| {
                        claimed_at + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
                    })
                } else {
                    None
                };
                self.store_ref()
                    .outbox_failed(message.id, &e.to_string(), retry_at)
                    .await?;
                Ok(if retry_at.is_some() {
                    Delivery::Retrying
                } else {
                    Delivery::Dead
                })
            }
        }
    }

    fn listener(&self, module: &str) -> Result<&std::sync::Arc<dyn crate::SettlementListener>> {
        self.inner
            .listeners
            .get(module)
            .ok_or_else(|| Error::Notification {
                message: format!("no settlement listener for module {module}"),
                transient: true,
                source: None,
            })
    }

    pub(super) async fn deliver(&self, message: &OutboxMessage) -> Result<()> {
        match &message.payload {
            OutboxPayload::Notification(n) => self.inner.notifier.send(n).await,
            OutboxPayload::Settlement(s) => {
                // An option of a debt position paid here (by card, say) must stop being
                // payable wherever pagoPA's node looks for it: its archive is told.
                if self.inner.archive.is_some()
                    && let Some((p, _)) = self
                        .position_option_of(message.creditor_id, &s.source)
                        .await?
                {
                    self.archive_later(&p).await?;
                }
                self.listener(&s.source.module)?.settled(s).await
            }
            OutboxPayload::Refund(r) => {
                // An option given back in full is payable again: its archive is told.
                if self.inner.archive.is_some()
                    && let Some((p, _)) = self
                        .position_option_of(message.creditor_id, &r.source)
                        .await?
                {
                    self.archive_later(&p).await?;
                }
                self.listener(&r.source.module)?.refunded(r).await
            }
            // Perhaps written by a newer version running beside this one: tried again with
            // the backoff (that version delivers it meanwhile), dead after the last attempt.
            OutboxPayload::Unreadable(u) => Err(Error::Notification {
                message: format!("this message cannot be read here ({})", u.error),
                transient: true,
                source: None,
            }),
            OutboxPayload::Archive(a) => {
                let Some(archive) = &self.inner.archive else {
                    return Err(Error::Notification {
                        message: "the service was built without a position archive".into(),
                        transient: false,
                        source: None,
                    });
                };
                // Deleted meanwhile: nothing left to copy.
                let Some(p) = self.store_ref().position(a.position_id).await? else {
                    return Ok(());
                };
                let creditor = self.creditor(p.creditor_id).await?;
                archive.sync(&creditor, &p).await
            }
            OutboxPayload::Reminder(r) => {
                // Written days before, perhaps: not sent once the option is paid, closed or
                // its position withdrawn meanwhile.
                let still_due = self
                    .store_ref()
                    .position(r.position.id)
                    .await?
                    .is_some_and(|p| p.check_payable(r.option).is_ok());
                if still_due {
                    self.inner.notifier.remind(r).await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Runs the background work until `shutdown` completes, as independent loops so that
    /// one stuck (a provider that hangs) never holds up the others:
    /// - the outbox: every `interval`, delivers the due messages (drained while whole
    ///   batches come back);
    /// - expiry: every `interval`, expires the transactions whose time is up, a few at a
    ///   time, each provider call bounded by
    ///   [`PaymentsBuilder::provider_timeout`](crate::PaymentsBuilder::provider_timeout);
    /// - the reconciliation sweep: as often as
    ///   [`PaymentsBuilder::reconcile_every`](crate::PaymentsBuilder::reconcile_every) says
    ///   (every 5 minutes by default);
    /// - debt positions: once an hour, expires those whose validity ended and writes the
    ///   reminders due ([`Payments::send_reminders`]).
    ///
    /// Errors are retried on the loop's next round. Work under way when `shutdown`
    /// completes is dropped where it stands, as a crash would: what it had claimed is taken
    /// up again after its lease.
    pub async fn run_worker(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let outbox = async {
            loop {
                // Keep draining while whole batches come back.
                while let Ok(r) = self.dispatch_outbox().await {
                    if r.claimed() < self.inner.dispatch_batch {
                        break;
                    }
                }
                tokio::time::sleep(interval).await;
            }
        };
        let expiry = async {
            loop {
                let _ = self.expire_due().await;
                tokio::time::sleep(interval).await;
            }
        };
        let sweep = async {
            let Some((every, older_than)) = self.inner.sweep else {
                return std::future::pending::<()>().await;
            };
            loop {
                let _ = self.reconcile_pending(older_than, 500).await;
                tokio::time::sleep(every).await;
            }
        };
        let positions = async {
            loop {
                // Debt positions go by the day: once an hour is enough.
                let _ = self.expire_positions().await;
                let _ = self.send_reminders().await;
                tokio::time::sleep(POSITIONS_EVERY).await;
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = async { tokio::join!(outbox, expiry, sweep, positions) } => {}
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

/// A payment as its messages tell it: a transaction (or some of its lines) with its
/// creditor, and the names of its payment types.
pub(crate) struct Telling<'a> {
    pub(crate) tx: &'a Transaction,
    pub(crate) creditor: &'a Creditor,
    pub(crate) type_names: std::collections::BTreeMap<crate::PaymentTypeId, String>,
}

impl Telling<'_> {
    /// The summary of `lines` (positions) of the transaction, in `status`, at `at`; all
    /// lines and the total when `lines` is `None`.
    pub(crate) fn summary(
        &self,
        status: TxStatus,
        provider_ref: Option<String>,
        at: chrono::DateTime<chrono::Utc>,
        lines: Option<&[usize]>,
        returned: Option<Money>,
    ) -> TransactionSummary {
        let tx = self.tx;
        let reference = |p: usize| {
            let notice = match &tx.instruction {
                Some(crate::Instruction::PagoPa(pay)) => {
                    pay.notices.get(p).map(|n| n.notice_number.clone())
                }
                _ => None,
            };
            notice.unwrap_or_else(|| {
                let l = &tx.lines[p];
                format!("{}/{}", l.source.module, l.source.key)
            })
        };
        let references: Vec<String> = match lines {
            None => (0..tx.lines.len()).map(reference).collect(),
            Some(positions) => positions
                .iter()
                .filter(|&&p| p < tx.lines.len())
                .map(|&p| reference(p))
                .collect(),
        };
        let (lines, total) = match lines {
            None => (tx.lines.clone(), tx.total),
            Some(positions) => {
                let lines: Vec<_> = positions
                    .iter()
                    .filter_map(|&p| tx.lines.get(p).cloned())
                    .collect();
                let total = Money::sum(tx.total.currency(), lines.iter().map(|l| &l.amount))
                    .unwrap_or(tx.total);
                (lines, total)
            }
        };
        TransactionSummary {
            status,
            type_names: self.type_names.clone(),
            transaction_id: tx.id,
            provider_ref,
            creditor_id: self.creditor.id,
            creditor_name: self.creditor.name.clone(),
            creditor_fiscal_code: self.creditor.fiscal_code.clone(),
            payer_id: tx.payer.id.clone(),
            payer_name: tx.payer.name.clone(),
            payer_fiscal_code: tx.payer.fiscal_code.clone(),
            method_kind: tx.method_kind,
            lines,
            total,
            paid_at: at,
            returned,
            references,
        }
    }

    /// The payer's `payer_kind` message (when they gave an email address) and the
    /// creditor's `creditor_kind` one, both telling `summary`.
    pub(crate) fn mails(
        &self,
        payer_kind: Option<NotificationKind>,
        creditor_kind: Option<NotificationKind>,
        summary: &TransactionSummary,
    ) -> Vec<NewOutboxMessage> {
        let tx = self.tx;
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
        if let (Some(kind), Some(email)) = (payer_kind, &tx.payer.email) {
            notify(kind, email, tx.payer.locale);
        }
        if let Some(kind) = creditor_kind {
            notify(kind, &self.creditor.notification_email, crate::Locale::It);
        }
        out
    }

    /// The message to line `position`'s module with the payload `payload` builds from the
    /// message's id and the line; none for a free payment (no module to tell).
    fn module_message(
        &self,
        position: usize,
        payload: impl FnOnce(OutboxId, &crate::TransactionLine) -> OutboxPayload,
    ) -> Option<NewOutboxMessage> {
        let line = self.tx.lines.get(position)?;
        if line.source.module == FREE_PAYMENT_MODULE {
            return None;
        }
        let id = OutboxId::new();
        Some(NewOutboxMessage {
            id,
            transaction_id: self.tx.id,
            payload: payload(id, line),
        })
    }

    /// The message to line `position`'s module that `amount` of it was given back by
    /// `refund` (none for a free payment). Whether that gives the line back in full is
    /// the store's to say as it enqueues it.
    pub(crate) fn refund_settlement(
        &self,
        position: usize,
        refund: crate::RefundId,
        amount: Money,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<NewOutboxMessage> {
        let transaction_id = self.tx.id;
        self.module_message(position, |id, line| {
            OutboxPayload::Refund(crate::RefundSettlement {
                id,
                source: line.source.clone(),
                item_id: line.item_id,
                transaction_id,
                refund_id: refund,
                amount,
                in_full: false,
                refunded_at: at,
            })
        })
    }

    /// The settlement of line `position` for its module (none for a free payment).
    pub(crate) fn settlement(
        &self,
        position: usize,
        paid_at: chrono::DateTime<chrono::Utc>,
    ) -> Option<NewOutboxMessage> {
        let transaction_id = self.tx.id;
        self.module_message(position, |id, line| {
            OutboxPayload::Settlement(Settlement {
                id,
                source: line.source.clone(),
                item_id: line.item_id,
                transaction_id,
                amount: line.amount,
                paid_at,
            })
        })
    }
}

/// The messages a transaction reaching `status` leaves: the payer's receipt (when they gave
/// an email address) and the creditor's notice; when `Paid`, also one settlement for each
/// line `settle` says (free payments have no module to tell).
pub(crate) fn messages_for_status(
    tx: &Transaction,
    creditor: &Creditor,
    provider_ref: Option<String>,
    paid_at: chrono::DateTime<chrono::Utc>,
    status: TxStatus,
    type_names: std::collections::BTreeMap<crate::PaymentTypeId, String>,
    settle: &dyn Fn(usize) -> bool,
) -> Vec<NewOutboxMessage> {
    let telling = Telling {
        tx,
        creditor,
        type_names,
    };
    let summary = telling.summary(status, provider_ref, paid_at, None, None);
    let mut out = telling.mails(
        Some(NotificationKind::Receipt),
        Some(NotificationKind::CreditorNotice),
        &summary,
    );
    if status == TxStatus::Paid {
        out.extend(
            (0..tx.lines.len())
                .filter(|&p| settle(p))
                .filter_map(|p| telling.settlement(p, paid_at)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testkit::*;

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
