//! What a creditor's operators see first: the money collected day by day, what is still
//! open against what was paid, and what waits for them.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, TimeZone};

use super::Payments;
use crate::{
    Actor, Currency, Error, ExceptionKind, ExceptionQuery, ExceptionStatus, MethodKind, Money,
    MovementQuery, OutboxQuery, OutboxStatus, Result, Role, TxStatus, rome_day,
};

/// The longest window an overview covers, in days.
pub const MAX_OVERVIEW_DAYS: u32 = 92;
/// How far before its window a transaction may have started and still be counted on the
/// day it was paid (a bank transfer paid weeks after it was started), in days.
pub const OVERVIEW_LOOKBACK_DAYS: i64 = 90;

/// The money one method collected on one day (Europe/Rome): the transactions that became
/// `Paid` that day, or their lines paid that day when they were paid line by line (then
/// `count` counts lines). Money later refunded still counts on the day it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DailyCollection {
    /// The day.
    pub day: NaiveDate,
    /// The method.
    pub method: MethodKind,
    /// How many transactions.
    pub count: u64,
    /// Their total.
    pub total: Money,
}

/// A creditor's overview; see [`Payments::overview`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Overview {
    /// The window's first day (Europe/Rome).
    pub first_day: NaiveDate,
    /// Its last day: today.
    pub last_day: NaiveDate,
    /// The collections, by day then method, only where something was collected.
    pub collections: Vec<DailyCollection>,
    /// Collected in the window (before any refund): how many payments (or lines paid on
    /// their own) and how much.
    pub paid: (u64, Money),
    /// Open now (`Created`, `Pending`, `Reported`: started and not yet paid): how many and
    /// how much.
    pub open: (u64, Money),
    /// The exceptions waiting for an operator, by kind (every kind, zero included).
    pub waiting: BTreeMap<ExceptionKind, u64>,
    /// Messages given up after their retries (dead in the outbox).
    pub failed_messages: u64,
}

impl Overview {
    /// Each day of the window, oldest first.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.first_day
            .iter_days()
            .take_while(|d| *d <= self.last_day)
    }

    /// The total `method` collected on `day` (zero when nothing).
    pub fn collected(&self, day: NaiveDate, method: MethodKind) -> Money {
        self.collections
            .iter()
            .find(|c| c.day == day && c.method == method)
            .map_or(Money::zero(Currency::Eur), |c| c.total)
    }

    /// The methods that collected anything in the window, in a stable order.
    pub fn methods(&self) -> Vec<MethodKind> {
        let mut methods: Vec<MethodKind> = Vec::new();
        for c in &self.collections {
            if !methods.contains(&c.method) {
                methods.push(c.method);
            }
        }
        methods.sort_by_key(|m| m.as_str());
        methods
    }
}

impl Payments {
    /// The creditor's overview for its operators (viewers and up): the money collected on
    /// each of the last `days` days (today included, Europe/Rome) by method — each
    /// transaction counted on the day it became `Paid`, if it started at most
    /// [`OVERVIEW_LOOKBACK_DAYS`] before the window —, what was paid in the window against
    /// what is open now, the exceptions waiting by kind, and the messages given up.
    /// `days` is 1 to [`MAX_OVERVIEW_DAYS`].
    pub async fn overview(
        &self,
        actor: &Actor,
        creditor: crate::CreditorId,
        days: u32,
    ) -> Result<Overview> {
        actor.check_operator(&creditor, Role::Viewer)?;
        if days == 0 || days > MAX_OVERVIEW_DAYS {
            return Err(Error::invalid(
                "days",
                format!("must be 1 to {MAX_OVERVIEW_DAYS}"),
            ));
        }
        let now = self.clock().now();
        let last_day = rome_day(now);
        let first_day = last_day - Duration::days(i64::from(days) - 1);
        let start = chrono_tz::Europe::Rome
            .from_local_datetime(&first_day.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or(now);

        // Paid in the window, by the day of their `Paid` event.
        let mut buckets: BTreeMap<(NaiveDate, &'static str), (MethodKind, u64, i64)> =
            BTreeMap::new();
        let mut query = MovementQuery::new(creditor);
        query.statuses = vec![TxStatus::Paid, TxStatus::PartiallyPaid, TxStatus::Refunded];
        query.from = Some(start - Duration::days(OVERVIEW_LOOKBACK_DAYS));
        query.limit = crate::MAX_PAGE_SIZE;
        loop {
            let page = self.search(actor, &query).await?;
            let ids: Vec<crate::TransactionId> = page.page.items.iter().map(|t| t.id).collect();
            let events = self.store_ref().events_of(&ids).await?;
            for tx in &page.page.items {
                let mut add = |at: chrono::DateTime<chrono::Utc>, cents: i64| {
                    if at < start || at > now {
                        return;
                    }
                    let b = buckets
                        .entry((rome_day(at), tx.method_kind.as_str()))
                        .or_insert((tx.method_kind, 0, 0));
                    b.1 += 1;
                    b.2 += cents;
                };
                if tx.lines.iter().any(|l| l.paid_at.is_some()) {
                    // Paid line by line (pagoPA's receipts, one per notice): each line on
                    // the day it was paid.
                    for line in &tx.lines {
                        if let Some(at) = line.paid_at {
                            add(at, line.amount.minor_units());
                        }
                    }
                } else if let Some(at) = events
                    .iter()
                    .filter(|e| e.transaction_id == tx.id && e.to == TxStatus::Paid)
                    .map(|e| e.at)
                    .min()
                {
                    add(at, tx.total.minor_units());
                }
            }
            match page.page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        let mut collections = Vec::with_capacity(buckets.len());
        let (mut paid_count, mut paid_cents) = (0, 0);
        for ((day, _), (method, count, cents)) in buckets {
            paid_count += count;
            paid_cents += cents;
            collections.push(DailyCollection {
                day,
                method,
                count,
                total: Money::from_minor(cents, Currency::Eur)?,
            });
        }

        let mut open = MovementQuery::new(creditor);
        open.statuses = vec![TxStatus::Created, TxStatus::Pending, TxStatus::Reported];
        open.limit = 1;
        let open = self.search(actor, &open).await?;

        let mut waiting = BTreeMap::new();
        for kind in ExceptionKind::ALL {
            let mut q = ExceptionQuery::new(creditor);
            q.kind = Some(kind);
            q.status = Some(ExceptionStatus::Open);
            q.limit = crate::MAX_PAGE_SIZE;
            let mut count = 0;
            loop {
                let page = self.exceptions(actor, &q).await?;
                count += page.len() as u64;
                match page.last() {
                    Some(last) if page.len() == q.limit as usize => q.before = Some(last.id),
                    _ => break,
                }
            }
            waiting.insert(kind, count);
        }
        let failed_messages = self
            .outbox(
                actor,
                creditor,
                OutboxQuery {
                    status: Some(OutboxStatus::Dead),
                    ..OutboxQuery::default()
                },
            )
            .await?
            .len() as u64;
        Ok(Overview {
            first_day,
            last_day,
            collections,
            paid: (paid_count, Money::from_minor(paid_cents, Currency::Eur)?),
            open: (open.count, open.total),
            waiting,
            failed_messages,
        })
    }
}
