//! Reporting flows: recorded as a gateway fetches them, matched to receipts and to the
//! bank statement, listed for operators. See [`crate::ReportingFlow`].

use std::collections::HashSet;

use super::{Payments, check_limit};
use crate::{
    Actor, BankEntryOutcome, BankEntryQuery, CreditCheck, CreditorId, Error, Exception,
    ExceptionKind, FlowEvent, FlowQuery, FlowState, FlowStored, GatewayId, MAX_FLOW_ID_LEN,
    MAX_PAGE_SIZE, Money, PaymentCheck, ProviderReceiptQuery, ReconcileOptions, ReconcileReport,
    ReportingFlow, Result, Role, ValidationErrors,
};

/// The gateway whose receipts the flows report: pagoPA's receipts are keyed
/// `pagopa:{receiptId}`, and a flow's `iur` is the receipt's id.
const PAGOPA: &str = "pagopa";

impl Payments {
    /// Records a revision of a reporting flow fetched from the provider: once per creditor,
    /// flow id, PSP and revision; a later revision replaces the earlier one, which is kept
    /// and marked replaced (see [`FlowStored`]). Only a gateway or the system records flows.
    /// A flow that does not hold together (ids, indexes, transfers, amounts) is refused
    /// with the fields named, and nothing is stored.
    pub async fn record_flow(&self, actor: &Actor, flow: &ReportingFlow) -> Result<FlowStored> {
        match actor {
            Actor::Gateway { .. } | Actor::System => {}
            _ => return Err(Error::forbidden("only a gateway records reporting flows")),
        }
        check_flow(flow)?;
        let mut flow = flow.clone();
        flow.replaced = false;
        flow.checked_at = None;
        flow.version = 1;
        let now = self.inner.clock.now();
        flow.received_at = now;
        let previous = self
            .store_ref()
            .flows(&{
                let mut q = FlowQuery::new(flow.creditor_id);
                q.flow_id = Some(flow.flow_id.clone());
                q.psp_id = Some(flow.psp_id.clone());
                q.limit = 1;
                q
            })
            .await?
            .into_iter()
            .next();
        flow.replaces = previous
            .as_ref()
            .map(|p| p.revision)
            .filter(|r| *r < flow.revision);
        flow.events = vec![FlowEvent {
            at: now,
            note: match flow.replaces {
                Some(r) => format!(
                    "revision {} received from {}: it replaces revision {r}",
                    flow.revision, flow.psp_id
                ),
                None => format!("revision {} received from {}", flow.revision, flow.psp_id),
            },
        }];
        self.store_ref().put_flow(&flow).await
    }

    /// A creditor's reporting flows, newest published first, for its operators.
    pub async fn flows(&self, actor: &Actor, query: &FlowQuery) -> Result<Vec<ReportingFlow>> {
        actor.check_operator(&query.creditor_id, Role::Viewer)?;
        check_limit(query.limit)?;
        self.store_ref().flows(query).await
    }

    /// Closes the accounting loop of `creditor`, three ways:
    /// - each payment of each flow not yet closed is matched to its receipt (IUV, receipt id,
    ///   the transfer's amount): matched, receipt missing, or amount differs; revoked
    ///   payments and those paid without a payment request need none;
    /// - each flow to its money on the bank statement: the credits whose remittance names
    ///   the flow ([`BankEntryOutcome::Flow`]; a PSP may send a supplementary transfer, so
    ///   they are added up) must carry the flow's total; none after
    ///   [`ReconcileOptions::credit_after_days`] is a discrepancy;
    /// - each receipt must be reported by some flow within
    ///   [`ReconcileOptions::unreported_after_days`].
    ///
    /// Each outcome is recorded on its flow (with an event when it changes), each
    /// discrepancy once as a [`ReportingMismatch`](ExceptionKind::ReportingMismatch)
    /// exception for the creditor's operators. Running it again changes nothing that did
    /// not change. Only a manager of the creditor, or the system, runs it.
    pub async fn reconcile_flows(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        options: &ReconcileOptions,
    ) -> Result<ReconcileReport> {
        actor.check_operator(&creditor, Role::Manager)?;
        let now = self.inner.clock.now();
        let mut report = ReconcileReport::default();
        let mut query = FlowQuery::new(creditor);
        query.limit = MAX_PAGE_SIZE;
        loop {
            let page = self.store_ref().flows(&query).await?;
            for flow in &page {
                if flow.state() == FlowState::Paid {
                    continue;
                }
                report.flows += 1;
                self.reconcile_flow(flow, options, now, &mut report).await?;
            }
            match page.last() {
                Some(last) if page.len() == MAX_PAGE_SIZE as usize => {
                    query.before =
                        Some((last.published_at, last.flow_id.clone(), last.psp_id.clone()));
                }
                _ => break,
            }
        }

        // Receipts no flow reported in time.
        let gateway = GatewayId::from(PAGOPA);
        let due = now - chrono::Duration::days(options.unreported_after_days.into());
        let mut after = None;
        loop {
            let page = self
                .store_ref()
                .unreported_receipts(creditor, &gateway, due, after.clone(), MAX_PAGE_SIZE)
                .await?;
            for r in &page {
                let mut e = Exception::new(
                    creditor,
                    ExceptionKind::ReportingMismatch,
                    format!("fdr-unreported:{}", r.key),
                    format!(
                        "receipt {} of notice {} ({}) was recorded on {} and no PSP's reporting \
                         flow has reported it after {} days",
                        r.receipt_id,
                        r.reference,
                        r.share,
                        crate::rome_day(r.recorded_at),
                        options.unreported_after_days
                    ),
                    now,
                );
                e.amount = Some(r.share);
                e.provider_ref = Some(r.receipt_id.clone());
                if self.store_ref().insert_exception(&e).await? {
                    report.exceptions += 1;
                }
            }
            match page.last() {
                Some(last) if page.len() == MAX_PAGE_SIZE as usize => {
                    after = Some((last.recorded_at, last.key.clone()));
                }
                _ => break,
            }
        }
        Ok(report)
    }

    async fn reconcile_flow(
        &self,
        flow: &ReportingFlow,
        options: &ReconcileOptions,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut ReconcileReport,
    ) -> Result<()> {
        let store = self.store_ref();
        let mut next = flow.clone();
        let mut exceptions = Vec::new();
        let mut reported = Vec::new();
        let name = format!("{}/{}/r{}", flow.psp_id, flow.flow_id, flow.revision);
        let exception = |key: String, reason: String, amount: Option<Money>| {
            let mut e = Exception::new(
                flow.creditor_id,
                ExceptionKind::ReportingMismatch,
                key,
                reason,
                now,
            );
            e.amount = amount;
            e.provider_ref = Some(flow.flow_id.clone());
            e
        };

        for p in &mut next.payments {
            if !p.status.expects_receipt() {
                p.check = PaymentCheck::NoReceipt;
                continue;
            }
            let mut q = ProviderReceiptQuery::new(flow.creditor_id);
            q.key = Some(format!("{PAGOPA}:{}", p.iur));
            q.limit = 1;
            let receipt = store
                .provider_receipts(&q)
                .await?
                .into_iter()
                .next()
                .filter(|r| r.reference.ends_with(&p.iuv));
            p.check = match receipt {
                None => PaymentCheck::ReceiptMissing,
                Some(r) => {
                    let expected = r
                        .transfers
                        .get(usize::from(p.transfer).saturating_sub(1))
                        .map(|t| t.amount)
                        .unwrap_or(r.share);
                    if expected == p.amount {
                        reported.push(r.key.clone());
                        PaymentCheck::Matched { receipt_key: r.key }
                    } else {
                        PaymentCheck::AmountDiffers {
                            receipt_key: r.key,
                            expected,
                        }
                    }
                }
            };
            match &p.check {
                PaymentCheck::ReceiptMissing => exceptions.push(exception(
                    format!("fdr-missing:{name}:{}", p.index),
                    format!(
                        "flow {} of PSP {} reports a payment of {} (IUV {}, receipt {}, transfer \
                         {}) whose receipt the body does not hold",
                        flow.flow_id, flow.psp_id, p.amount, p.iuv, p.iur, p.transfer
                    ),
                    Some(p.amount),
                )),
                PaymentCheck::AmountDiffers { expected, .. } => {
                    let mut e = exception(
                        format!("fdr-amount:{name}:{}", p.index),
                        format!(
                            "flow {} of PSP {} reports {} for IUV {} (receipt {}, transfer {}), \
                             the receipt says {expected}",
                            flow.flow_id, flow.psp_id, p.amount, p.iuv, p.iur, p.transfer
                        ),
                        Some(p.amount),
                    );
                    e.expected = Some(*expected);
                    exceptions.push(e);
                }
                _ => {}
            }
        }
        report.payments_matched += next
            .payments
            .iter()
            .filter(|p| matches!(p.check, PaymentCheck::Matched { .. }))
            .count();
        if next.payments_total() != Some(next.total) || next.payments.len() as u64 != next.count {
            exceptions.push(exception(
                format!("fdr-total:{name}"),
                format!(
                    "flow {} of PSP {} declares {} payments for {}, but lists {} for {}",
                    flow.flow_id,
                    flow.psp_id,
                    flow.count,
                    flow.total,
                    next.payments.len(),
                    next.payments_total()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "an amount that does not add up".into())
                ),
                Some(flow.total),
            ));
        }

        // The flow's money on the statement.
        let mut q = BankEntryQuery::new(flow.creditor_id);
        q.reference = Some(flow.flow_id.clone());
        q.limit = MAX_PAGE_SIZE;
        let credits: Vec<crate::BankEntry> = self
            .store_ref()
            .bank_entries(&q)
            .await?
            .into_iter()
            .filter(|e| matches!(&e.outcome, BankEntryOutcome::Flow { flow_id } if *flow_id == flow.flow_id))
            .collect();
        next.credit = if credits.is_empty() {
            let from = flow
                .regulation_date
                .unwrap_or_else(|| crate::rome_day(flow.flow_date));
            if crate::rome_day(now)
                > from + chrono::Duration::days(options.credit_after_days.into())
            {
                exceptions.push(exception(
                    format!("fdr-credit-missing:{name}"),
                    format!(
                        "the transfer of flow {} of PSP {} ({}, due {from}) is not on the bank \
                         statement after {} days",
                        flow.flow_id, flow.psp_id, flow.total, options.credit_after_days
                    ),
                    Some(flow.total),
                ));
            }
            CreditCheck::Awaited
        } else {
            let mut keys: Vec<&str> = credits.iter().map(|e| e.key.as_str()).collect();
            keys.sort_unstable();
            let entry_key = keys.join(" + ");
            let sum: rust_decimal::Decimal = credits.iter().map(|e| e.amount).sum();
            let credited = Money::new(sum, flow.total.currency()).unwrap_or(flow.total);
            if sum == flow.total.amount()
                && credits
                    .iter()
                    .all(|e| e.currency == flow.total.currency().code())
            {
                CreditCheck::Matched { entry_key }
            } else {
                let mut e = exception(
                    format!("fdr-credit:{name}"),
                    format!(
                        "the transfer of flow {} of PSP {} is {} on the bank statement ({entry_key}), \
                         the flow's total is {}",
                        flow.flow_id, flow.psp_id, credited, flow.total
                    ),
                    Some(credited),
                );
                e.expected = Some(flow.total);
                exceptions.push(e);
                CreditCheck::AmountDiffers {
                    entry_key,
                    credited,
                }
            }
        };

        let checks = |f: &ReportingFlow| {
            f.payments
                .iter()
                .map(|p| p.check.clone())
                .collect::<Vec<_>>()
        };
        let changed = flow.checked_at.is_none()
            || checks(flow) != checks(&next)
            || flow.credit != next.credit;
        // Only what is new: exceptions are recorded once, and an unchanged flow is not
        // written.
        let mut known = HashSet::new();
        for e in &exceptions {
            let mut q = crate::ExceptionQuery::new(flow.creditor_id);
            q.key = Some(e.key.clone());
            q.limit = 1;
            if !store.exceptions(&q).await?.is_empty() {
                known.insert(e.key.clone());
            }
        }
        exceptions.retain(|e| !known.contains(&e.key));
        if !changed && exceptions.is_empty() {
            return Ok(());
        }
        next.version = flow.version + 1;
        next.checked_at = Some(now);
        let state = next.state();
        if changed {
            let matched = next
                .payments
                .iter()
                .filter(|p| matches!(p.check, PaymentCheck::Matched { .. }))
                .count();
            next.events.push(FlowEvent {
                at: now,
                note: format!(
                    "matched: {matched} of {} payments to their receipts; money on the \
                     statement: {}; {}",
                    next.payments.len(),
                    match &next.credit {
                        CreditCheck::Matched { entry_key } => format!("yes ({entry_key})"),
                        CreditCheck::AmountDiffers { credited, .. } => {
                            format!("another amount ({credited})")
                        }
                        _ => "not yet".into(),
                    },
                    state.label(crate::Locale::En).to_lowercase()
                ),
            });
        }
        let count = exceptions.len();
        if store.update_flow(&next, &exceptions, &reported).await? {
            report.exceptions += count;
            if state == FlowState::Paid {
                report.paid += 1;
            }
        }
        Ok(())
    }
}

/// Checks that a flow holds together; names every field that does not.
fn check_flow(flow: &ReportingFlow) -> Result<()> {
    let mut errors = ValidationErrors::default();
    let id = |errors: &mut ValidationErrors, field: &'static str, value: &str| {
        if value.trim().is_empty()
            || value.chars().count() > MAX_FLOW_ID_LEN
            || value.chars().any(char::is_control)
        {
            errors.push(
                field,
                crate::Problem::Invalid {
                    reason: format!("must have 1 to {MAX_FLOW_ID_LEN} printable characters"),
                },
            );
        }
    };
    id(&mut errors, "flow_id", &flow.flow_id);
    id(&mut errors, "psp_id", &flow.psp_id);
    if flow.revision == 0 {
        errors.push("revision", "must be 1 or more");
    }
    let mut indexes = HashSet::new();
    for p in &flow.payments {
        if p.index == 0 || !indexes.insert(p.index) {
            errors.push(
                "payments.index",
                format!("{} is not a new index from 1", p.index),
            );
        }
        if !(1..=5).contains(&p.transfer) {
            errors.push("payments.transfer", "must be 1 to 5");
        }
        if !p.amount.is_positive() || p.amount.currency() != flow.total.currency() {
            errors.push(
                "payments.amount",
                format!(
                    "{} is not a positive amount in {}",
                    p.amount,
                    flow.total.currency().code()
                ),
            );
        }
        id(&mut errors, "payments.iuv", &p.iuv);
        id(&mut errors, "payments.iur", &p.iur);
    }
    errors.into_result()
}
