//! Debt positions: registration one by one, in bulk or from a CSV file; publishing,
//! changing and invalidating them; putting an option in the cart; a notice paid at a PSP;
//! expiry and reminders.

use chrono::NaiveDate;

use super::Payments;
use crate::{
    Actor, BulkReport, Cart, CartId, Conflict, Creditor, CreditorId, DebtPosition, DebtPositionId,
    Error, ItemState, Locale, Money, NewDebtPosition, NewOption, NewOutboxMessage, OptionRefusal,
    OutboxId, OutboxPayload, PayableItem, Payer, PaymentType, PaymentTypeId, PositionChange,
    PositionEvent, PositionPayer, PositionQuery, PositionStatus, Problem, RefusedRow, Reminder,
    Result, Role, Transaction, TransactionId, Transfer, ValidationErrors,
};

/// How many positions a bulk registration writes per database transaction.
const BULK_CHUNK: usize = 1000;

/// The header of the CSV file [`Payments::import_positions_csv`] reads. One row per
/// payment option; consecutive rows with the same `key` are one position, whose own
/// columns (payer, type, reason, validity) are read from its first row.
///
/// | column | what |
/// | --- | --- |
/// | `key` | the module's key of the position (*IUPD*) |
/// | `payer_fiscal_code`, `payer_name` | who owes it |
/// | `payer_address`, `payer_email`, `payer_language` | optional; language `it` or `en` |
/// | `payment_type` | the code of the creditor's payment type |
/// | `reason` | the reason (*oggetto del pagamento*) |
/// | `valid_until` | optional, `YYYY-MM-DD` |
/// | `option` | `U` for the single payment, `1`, `2`, … for instalments |
/// | `amount` | euros, `123.45` or `123,45` |
/// | `due_date` | `YYYY-MM-DD` |
/// | `description` | optional, what the notice prints for the option |
/// | `transfer2_fiscal_code` … `transfer5_taxonomy` | optional shares for other beneficiaries (`_fiscal_code`, `_iban`, `_amount`, `_remittance`, `_taxonomy`); the rest goes to the creditor |
pub const POSITIONS_CSV_HEADER: &str = "key,payer_fiscal_code,payer_name,payer_address,payer_email,payer_language,payment_type,reason,valid_until,option,amount,due_date,description,transfer2_fiscal_code,transfer2_iban,transfer2_amount,transfer2_remittance,transfer2_taxonomy";

/// A row of a bulk registration: where it came from and what it says.
struct Row {
    /// Its number (for a CSV file, the line of its first option, counted from 1 after the
    /// header).
    row: u64,
    /// The rows of its options, the single option first (for a CSV file).
    option_rows: Vec<u64>,
    position: std::result::Result<NewDebtPosition, RefusedRow>,
}

/// One row of the CSV file, by column name.
#[derive(Debug)]
struct CsvRecord {
    key: String,
    payer_fiscal_code: String,
    payer_name: String,
    payer_address: Option<String>,
    payer_email: Option<String>,
    payer_language: Option<String>,
    payment_type: String,
    reason: String,
    valid_until: Option<String>,
    option: String,
    amount: String,
    due_date: String,
    description: Option<String>,
    rest: std::collections::HashMap<String, String>,
}

impl CsvRecord {
    fn from_map(mut m: std::collections::HashMap<String, String>) -> Self {
        let mut take = |k: &str| m.remove(k).unwrap_or_default();
        let key = take("key");
        let payer_fiscal_code = take("payer_fiscal_code");
        let payer_name = take("payer_name");
        let payer_address = Some(take("payer_address")).filter(|s| !s.is_empty());
        let payer_email = Some(take("payer_email")).filter(|s| !s.is_empty());
        let payer_language = Some(take("payer_language")).filter(|s| !s.is_empty());
        let payment_type = take("payment_type");
        let reason = take("reason");
        let valid_until = Some(take("valid_until")).filter(|s| !s.is_empty());
        let option = take("option");
        let amount = take("amount");
        let due_date = take("due_date");
        let description = Some(take("description")).filter(|s| !s.is_empty());
        CsvRecord {
            key,
            payer_fiscal_code,
            payer_name,
            payer_address,
            payer_email,
            payer_language,
            payment_type,
            reason,
            valid_until,
            option,
            amount,
            due_date,
            description,
            rest: m,
        }
    }
}

fn refused(row: u64, key: Option<&str>, field: &str, problem: impl Into<Problem>) -> RefusedRow {
    let problem = problem.into();
    RefusedRow {
        row,
        key: key.map(str::to_owned),
        field: field.to_owned(),
        reason: problem.reason(),
        problem,
    }
}

/// The outbox message that copies `p`, as it will then stand, to pagoPA's archive.
fn archive_message(p: &DebtPosition) -> NewOutboxMessage {
    let id = OutboxId::new();
    NewOutboxMessage {
        id,
        transaction_id: TransactionId::from(*p.id.as_uuid()),
        payload: OutboxPayload::Archive(crate::ArchiveSync {
            id,
            position_id: p.id,
            version: p.version,
        }),
    }
}

/// A day written `YYYY-MM-DD` or, as Italians write it, `DD/MM/YYYY`.
fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(text.trim(), "%d/%m/%Y"))
        .ok()
}

impl Payments {
    fn issuer(&self) -> Result<&std::sync::Arc<dyn crate::NoticeIssuer>> {
        self.inner.notices.as_ref().ok_or_else(|| {
            Error::invalid(
                "notice_issuer",
                "debt positions need notice numbers: build the service with a notice issuer (the pagoPA gateway)",
            )
        })
    }

    /// Registers a debt position a module issues ahead: checked field by field, given its
    /// notice numbers, and stored with its event. Registering the same `key` again returns
    /// the first, unchanged. A manager of the creditor, or the system.
    pub async fn register_position(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        position: NewDebtPosition,
    ) -> Result<DebtPosition> {
        actor.check_operator(&creditor, Role::Manager)?;
        if let Some(existing) = self
            .store_ref()
            .position_by_key(creditor, position.module.trim(), position.key.trim())
            .await?
        {
            return Ok(existing);
        }
        let report = self
            .register_rows(
                actor,
                creditor,
                std::iter::once(Row {
                    row: 1,
                    option_rows: Vec::new(),
                    position: Ok(position.clone()),
                }),
            )
            .await?;
        if !report.refused.is_empty() {
            let mut errors = ValidationErrors::default();
            for r in &report.refused {
                errors.push(r.field.clone(), r.problem.clone());
            }
            return Err(Error::Validation(errors));
        }
        self.store_ref()
            .position_by_key(creditor, position.module.trim(), position.key.trim())
            .await?
            .ok_or_else(|| Error::not_found("debt position", position.key))
    }

    /// Registers many debt positions in one streamed call, a thousand per database
    /// transaction: idempotent on each key (one registered already is left as it is), and
    /// a report of the refused rows (numbered from 1 in the order given) naming their field.
    pub async fn register_positions<I>(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        positions: I,
    ) -> Result<BulkReport>
    where
        I: IntoIterator<Item = NewDebtPosition>,
        I::IntoIter: Send,
    {
        actor.check_operator(&creditor, Role::Manager)?;
        let rows = positions.into_iter().enumerate().map(|(i, p)| Row {
            row: i as u64 + 1,
            option_rows: Vec::new(),
            position: Ok(p),
        });
        self.register_rows(actor, creditor, rows).await
    }

    /// Registers the debt positions of a CSV file in the format of
    /// [`POSITIONS_CSV_HEADER`], streamed: a module's or an operator's bulk import. Rows are
    /// numbered from 1 after the header; the report names each refused row and its column.
    pub async fn import_positions_csv<R>(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        module: &str,
        reader: R,
    ) -> Result<BulkReport>
    where
        R: std::io::Read + Send,
    {
        actor.check_operator(&creditor, Role::Manager)?;
        let types = self.store_ref().payment_types(creditor).await?;
        let creditor_row = self.creditor(creditor).await?;
        let issuer = self.issuer()?.clone();
        let rows = CsvPositions {
            records: csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .flexible(true)
                .from_reader(reader)
                .into_deserialize::<std::collections::HashMap<String, String>>(),
            line: 0,
            pending: None,
            seen: std::collections::HashSet::new(),
            module: module.to_owned(),
            types,
            creditor: creditor_row,
            issuer,
        };
        self.register_rows(actor, creditor, rows).await
    }

    async fn register_rows<I>(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        rows: I,
    ) -> Result<BulkReport>
    where
        I: Iterator<Item = Row> + Send,
    {
        let creditor = self.creditor(creditor).await?;
        let issuer = self.issuer()?.clone();
        let types: Vec<PaymentType> = self.store_ref().payment_types(creditor.id).await?;
        let mut report = BulkReport::default();
        // Whether each payment type can give an option all to the creditor (its pagoPA
        // IBAN and taxonomy code), asked once per type.
        let mut shares: std::collections::HashMap<PaymentTypeId, std::result::Result<(), String>> =
            std::collections::HashMap::new();
        let mut chunk: Vec<(Row, NewDebtPosition)> = Vec::with_capacity(BULK_CHUNK);
        let mut rows = rows.peekable();
        while rows.peek().is_some() {
            chunk.clear();
            let mut keys = std::collections::HashSet::new();
            for row in rows.by_ref() {
                match &row.position {
                    Err(r) => report.refused.push(r.clone()),
                    Ok(p) => match self.check_row(&creditor, &types, p, &row).and_then(|p| {
                        self.check_default_transfer(
                            &issuer,
                            &creditor,
                            &types,
                            &p,
                            &row,
                            &mut shares,
                        )
                        .map(|()| p)
                    }) {
                        Err(mut refusals) => report.refused.append(&mut refusals),
                        Ok(p) => {
                            if keys.insert((p.module.clone(), p.key.clone())) {
                                chunk.push((row, p));
                            } else {
                                report.unchanged += 1;
                            }
                        }
                    },
                }
                if chunk.len() == BULK_CHUNK {
                    break;
                }
            }
            if chunk.is_empty() {
                continue;
            }
            let count: usize = chunk.iter().map(|(_, p)| p.option_count()).sum();
            let mut numbers = issuer
                .issue(&creditor, u32::try_from(count).unwrap_or(u32::MAX))
                .await?
                .into_iter();
            let now = self.inner.clock.now();
            let mut positions = Vec::with_capacity(chunk.len());
            let mut events = Vec::with_capacity(chunk.len());
            for (_, p) in &chunk {
                let notices: Vec<String> = numbers.by_ref().take(p.option_count()).collect();
                let payment_type = types
                    .iter()
                    .find(|t| t.id == p.payment_type_id)
                    .ok_or_else(|| Error::not_found("payment type", p.payment_type_id))?;
                let failure = std::cell::RefCell::new(None);
                let position = p
                    .clone()
                    .build(creditor.id, notices, now, |amount, remittance| match issuer
                        .default_transfer(&creditor, payment_type, amount, remittance)
                    {
                        Ok(t) => vec![t],
                        Err(e) => {
                            *failure.borrow_mut() = Some(e);
                            Vec::new()
                        }
                    });
                if let Some(e) = failure.into_inner() {
                    return Err(e);
                }
                events.push(PositionEvent {
                    position_id: position.id,
                    at: now,
                    actor: actor.clone(),
                    from: None,
                    to: position.status,
                    note: format!(
                        "registered with {} option(s): {}",
                        position.options.len(),
                        position
                            .options
                            .iter()
                            .map(|o| format!("{} {}", o.kind.label(), o.notice_number))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
                positions.push(position);
            }
            // Each registered position's copy for pagoPA's archive, written with it.
            let messages: Vec<NewOutboxMessage> = if self.inner.archive.is_some() {
                positions.iter().map(archive_message).collect()
            } else {
                Vec::new()
            };
            let inserted = self
                .store_ref()
                .insert_positions(&positions, &events, &messages)
                .await?;
            for created in inserted {
                if created {
                    report.registered += 1;
                } else {
                    report.unchanged += 1;
                }
            }
        }
        Ok(report)
    }

    /// Checks a row: its type belongs to the creditor, the position checks out, and an
    /// option with other beneficiaries leaves a positive share to the creditor (added
    /// first).
    fn check_row(
        &self,
        creditor: &Creditor,
        types: &[PaymentType],
        p: &NewDebtPosition,
        row: &Row,
    ) -> std::result::Result<NewDebtPosition, Vec<RefusedRow>> {
        let key = Some(p.key.trim());
        if !types.iter().any(|t| t.id == p.payment_type_id) {
            return Err(vec![refused(
                row.row,
                key,
                "payment_type",
                "no such payment type at this creditor",
            )]);
        }
        match p.check(&creditor.max_item_amount) {
            Ok(p) => Ok(p),
            Err(Error::Validation(errors)) => Err(errors
                .0
                .iter()
                .map(|e| {
                    let (line, field) = row.locate(&e.field);
                    refused(line, key, &field, e.problem.clone())
                })
                .collect()),
            Err(e) => Err(vec![refused(row.row, key, "position", e.to_string())]),
        }
    }

    /// Refuses a row with an option that names no transfers when its payment type cannot
    /// give the whole amount to the creditor (no pagoPA IBAN or taxonomy code for it).
    fn check_default_transfer(
        &self,
        issuer: &std::sync::Arc<dyn crate::NoticeIssuer>,
        creditor: &Creditor,
        types: &[PaymentType],
        p: &NewDebtPosition,
        row: &Row,
        shares: &mut std::collections::HashMap<PaymentTypeId, std::result::Result<(), String>>,
    ) -> std::result::Result<(), Vec<RefusedRow>> {
        let Some(option) = p
            .single
            .iter()
            .chain(&p.instalments)
            .find(|o| o.transfers.is_empty())
        else {
            return Ok(());
        };
        let answer = shares.entry(p.payment_type_id).or_insert_with(|| {
            let t = types.iter().find(|t| t.id == p.payment_type_id);
            match t {
                Some(t) => issuer
                    .default_transfer(creditor, t, &option.amount, &p.reason)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                None => Err("no such payment type at this creditor".into()),
            }
        });
        answer
            .clone()
            .map_err(|why| vec![refused(row.row, Some(p.key.as_str()), "transfers", why)])
    }

    /// The debt position and option that an item of `creditor` with `source` pays, when
    /// it was put in a cart from one ([`DebtPosition::source`]): how a gateway finds the
    /// option's transfers for a transaction line. `None` for any other item, or one of
    /// an option no longer in the position.
    pub async fn position_option_of(
        &self,
        creditor: crate::CreditorId,
        source: &crate::Source,
    ) -> Result<Option<(DebtPosition, usize)>> {
        crate::position::position_option_of(self.store_ref(), creditor, source).await
    }

    /// A debt position: its payer (not a draft), or an operator of its creditor.
    pub async fn position(&self, actor: &Actor, id: DebtPositionId) -> Result<DebtPosition> {
        let p = self
            .store_ref()
            .position(id)
            .await?
            .ok_or_else(|| Error::not_found("debt position", id))?;
        match actor {
            Actor::Payer { .. } if p.status == PositionStatus::Draft => {
                return Err(Error::not_found("debt position", id));
            }
            Actor::Payer { .. } => actor.check_payer_read(&p.creditor_id, &p.payer_id())?,
            _ => actor.check_operator(&p.creditor_id, Role::Viewer)?,
        }
        Ok(p)
    }

    /// A debt position's events, oldest first; an operator of its creditor.
    pub async fn position_events(
        &self,
        actor: &Actor,
        id: DebtPositionId,
    ) -> Result<Vec<PositionEvent>> {
        let p = self.position(actor, id).await?;
        actor.check_operator(&p.creditor_id, Role::Viewer)?;
        self.store_ref().position_events(id).await
    }

    /// An operator's selection of the creditor's debt positions.
    pub async fn positions(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        mut query: PositionQuery,
    ) -> Result<Vec<DebtPosition>> {
        actor.check_operator(&creditor, Role::Viewer)?;
        query.creditor_id = Some(creditor);
        query.limit = query.limit.clamp(1, crate::MAX_PAGE_SIZE);
        if let Some(p) = &query.payer {
            query.payer = Some(p.trim().to_ascii_uppercase());
        }
        self.store_ref().positions(&query).await
    }

    /// What the payer owes `creditor` as debt positions (*Cosa devi pagare*), newest
    /// first, drafts left out; `payer` is their fiscal code.
    pub async fn payer_positions(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        payer: &str,
    ) -> Result<Vec<DebtPosition>> {
        let payer = payer.trim().to_ascii_uppercase();
        actor.check_payer_read(&creditor, &crate::PayerId::from(payer.as_str()))?;
        let mut query = PositionQuery::of(creditor);
        query.payer = Some(payer);
        query.limit = crate::MAX_PAGE_SIZE;
        let mut found = self.store_ref().positions(&query).await?;
        found.retain(|p| p.status != PositionStatus::Draft);
        Ok(found)
    }

    /// Publishes a draft: its options become payable. A manager of its creditor.
    pub async fn publish_position(
        &self,
        actor: &Actor,
        id: DebtPositionId,
    ) -> Result<DebtPosition> {
        let p = self.position(actor, id).await?;
        actor.check_operator(&p.creditor_id, Role::Manager)?;
        if p.status != PositionStatus::Draft {
            return Err(Error::Conflict(Conflict::PositionChanged {
                position: id.to_string(),
                why: format!("it is {}, not a draft", p.status),
            }));
        }
        self.change_position(actor, p, PositionStatus::Valid, "published".into(), |_| {
            Ok(())
        })
        .await
    }

    /// Changes an unpaid position's reason, amounts, due dates or transfers (a `Draft`,
    /// `Valid` or `Expired` one with nothing paid and no payment in progress); an
    /// `Expired` one becomes `Valid` again when its validity allows. The options' items in
    /// carts are taken out, so the old amounts are never paid. A manager of its creditor.
    pub async fn update_position(
        &self,
        actor: &Actor,
        id: DebtPositionId,
        change: PositionChange,
    ) -> Result<DebtPosition> {
        let p = self.position(actor, id).await?;
        actor.check_operator(&p.creditor_id, Role::Manager)?;
        let creditor = self.creditor(p.creditor_id).await?;
        let to = match p.status {
            PositionStatus::Draft => PositionStatus::Draft,
            PositionStatus::Valid | PositionStatus::Expired => PositionStatus::Valid,
            s => {
                return Err(Error::Conflict(Conflict::PositionChanged {
                    position: id.to_string(),
                    why: format!("it is {s}: only unpaid positions change"),
                }));
            }
        };
        let mut errors = ValidationErrors::default();
        let mut notes = Vec::new();
        let mut next = p.clone();
        if let Some(reason) = &change.reason {
            next.reason = crate::item::check_reason(&mut errors, reason);
            notes.push("reason".to_owned());
        }
        for c in &change.options {
            let at = format!("options[{}]", c.index);
            let Some(o) = next.options.get_mut(c.index) else {
                errors.push(at, "no such option");
                continue;
            };
            if let Some(amount) = c.amount {
                if !amount.is_positive() {
                    errors.push(format!("{at}.amount"), crate::Problem::MustBePositive);
                } else if amount.minor_units() > creditor.max_item_amount.minor_units() {
                    errors.push(
                        format!("{at}.amount"),
                        format!(
                            "is over the creditor's limit of {}",
                            creditor.max_item_amount
                        ),
                    );
                }
                notes.push(format!("{} amount {} → {amount}", o.kind.label(), o.amount));
                o.amount = amount;
                if c.transfers.is_none() {
                    if o.transfers.len() == 1 {
                        o.transfers[0].amount = amount;
                    } else {
                        errors.push(
                            format!("{at}.transfers"),
                            "an option with several transfers needs them again with the new amount",
                        );
                    }
                }
            }
            if let Some(transfers) = &c.transfers {
                if transfers.is_empty() || transfers.len() > crate::MAX_TRANSFERS {
                    errors.push(format!("{at}.transfers"), "one to five transfers");
                }
                o.transfers = transfers
                    .iter()
                    .enumerate()
                    .map(|(i, t)| t.check(&mut errors, &format!("{at}.transfers[{i}]")))
                    .collect();
                notes.push(format!("{} transfers", o.kind.label()));
            }
            let sum = Money::sum(o.amount.currency(), o.transfers.iter().map(|t| &t.amount));
            if sum.as_ref().ok() != Some(&o.amount)
                && errors.field(&format!("{at}.transfers")).is_none()
            {
                errors.push(
                    format!("{at}.transfers"),
                    format!("must add up to {}", o.amount),
                );
            }
            if let Some(due) = c.due_date {
                if p.valid_until.is_some_and(|v| due > v) {
                    errors.push(format!("{at}.due_date"), "is after the position's validity");
                }
                notes.push(format!("{} due {} → {due}", o.kind.label(), o.due_date));
                o.due_date = due;
            }
        }
        let instalments: Vec<NaiveDate> = next
            .options
            .iter()
            .filter(|o| o.kind.is_instalment())
            .map(|o| o.due_date)
            .collect();
        if instalments.windows(2).any(|w| w[1] < w[0]) {
            errors.push("options", "instalments' due dates must not go back in time");
        }
        errors.into_result()?;
        if p.status == PositionStatus::Expired && p.valid_until.is_some_and(|v| v < self.today()) {
            return Err(Error::invalid(
                "valid_until",
                "the position's validity has ended: register a new one",
            ));
        }
        next.revision += 1;
        let note = format!("changed: {}", notes.join("; "));
        self.change_position(actor, p, to, note, move |n| {
            n.reason = next.reason;
            n.options = next.options;
            n.revision = next.revision;
            Ok(())
        })
        .await
    }

    /// Invalidates a position nothing of which is paid (*annulla*): its options are no
    /// longer payable, at the portal or at pagoPA. Refused while a payment of one of its
    /// options is in progress. A manager of its creditor.
    pub async fn invalidate_position(
        &self,
        actor: &Actor,
        id: DebtPositionId,
        reason: &str,
    ) -> Result<DebtPosition> {
        let p = self.position(actor, id).await?;
        actor.check_operator(&p.creditor_id, Role::Manager)?;
        if !matches!(
            p.status,
            PositionStatus::Draft | PositionStatus::Valid | PositionStatus::Expired
        ) {
            return Err(Error::Conflict(Conflict::PositionChanged {
                position: id.to_string(),
                why: format!(
                    "it is {}: a position with payments is not invalidated",
                    p.status
                ),
            }));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > crate::MAX_REASON_LEN {
            return Err(Error::invalid(
                "reason",
                "say why, in at most 140 characters",
            ));
        }
        self.change_position(
            actor,
            p,
            PositionStatus::Invalid,
            format!("invalidated: {reason}"),
            |_| Ok(()),
        )
        .await
    }

    /// Moves a position to `to` with `edit`. The store refuses it while an option's item is
    /// in a payment in progress, and takes the open ones out of their carts.
    async fn change_position(
        &self,
        actor: &Actor,
        p: DebtPosition,
        to: PositionStatus,
        note: String,
        edit: impl FnOnce(&mut DebtPosition) -> Result<()>,
    ) -> Result<DebtPosition> {
        let now = self.inner.clock.now();
        let mut next = p.clone();
        edit(&mut next)?;
        next.status = to;
        next.version = p.version + 1;
        next.updated_at = now;
        let event = PositionEvent {
            position_id: p.id,
            at: now,
            actor: actor.clone(),
            from: Some(p.status),
            to,
            note,
        };
        // The copy for pagoPA's archive is written with the change, in its transaction.
        let messages: Vec<NewOutboxMessage> = self
            .inner
            .archive
            .as_ref()
            .map(|_| archive_message(&next))
            .into_iter()
            .collect();
        self.store_ref()
            .update_position(&next, &event, &messages)
            .await
    }

    /// Tells the [`PositionArchive`](crate::PositionArchive), through the outbox, that `p`
    /// changed other than by [`Payments::update_position`] and its kind (an option paid or
    /// given back): once per version. Called while delivering the durable message of that
    /// change (a settlement, a refund), which is retried until this succeeds.
    pub(super) async fn archive_later(&self, p: &DebtPosition) -> Result<bool> {
        if self.inner.archive.is_none() {
            return Ok(false);
        }
        let message = archive_message(p);
        self.store_ref()
            .enqueue_once(
                &format!("archive:{}:{}", p.id, p.version),
                p.creditor_id,
                &message,
                self.inner.clock.now(),
            )
            .await
    }

    /// Copies a position to the [`PositionArchive`](crate::PositionArchive) now (pagoPA's
    /// GPD or ACA), as it stands: for an operator who sees it missing or stale there. A
    /// manager of the creditor, or the system. Answers the error the archive gave.
    pub async fn sync_position(&self, actor: &Actor, id: DebtPositionId) -> Result<()> {
        let p = self.position(actor, id).await?;
        actor.check_operator(&p.creditor_id, Role::Manager)?;
        let Some(archive) = &self.inner.archive else {
            return Err(Error::invalid(
                "position_archive",
                "the service was built without a position archive",
            ));
        };
        let creditor = self.creditor(p.creditor_id).await?;
        archive.sync(&creditor, &p).await
    }

    async fn position_cart(&self, p: &DebtPosition) -> Result<Cart> {
        let payer = position_payer(&p.payer);
        let cart = Cart {
            id: CartId::new(),
            creditor_id: p.creditor_id,
            payer,
            created_at: self.inner.clock.now(),
        };
        self.store_ref().open_cart(&cart).await
    }

    /// Puts option `index` of a position in its payer's cart, as an item paid like any
    /// other (its source is [`DebtPosition::source`]): the payer, or an operator of the
    /// creditor. Refused with a `Conflict` when the option cannot be paid now
    /// ([`DebtPosition::check_payable`]) or the cart already holds the other way of paying
    /// the position (the single option beside an instalment).
    pub async fn add_position_option(
        &self,
        actor: &Actor,
        id: DebtPositionId,
        index: usize,
    ) -> Result<PayableItem> {
        let p = self.position(actor, id).await?;
        actor.check_payer_access(&p.creditor_id, &p.payer_id())?;
        if let Err(why) = p.check_payable(index) {
            return Err(Error::Conflict(Conflict::PositionChanged {
                position: id.to_string(),
                why: refusal_text(why).into(),
            }));
        }
        let option = &p.options[index];
        let source = p
            .source(index)
            .ok_or_else(|| Error::invalid("option", "no such option"))?;
        let cart = self.position_cart(&p).await?;
        let others = self.store_ref().cart_items(cart.id).await?;
        let clash = others.iter().any(|i| {
            p.owns_source(&i.source)
                && i.source != source
                && p.option_of_source(&i.source).is_some_and(|j| {
                    p.options[j].kind.is_instalment() != option.kind.is_instalment()
                })
        });
        if clash {
            return Err(Error::Conflict(Conflict::PositionChanged {
                position: id.to_string(),
                why: "the cart already holds another way of paying this position".into(),
            }));
        }
        self.option_item(&p, index, &cart).await
    }

    /// The transaction that a payment of a position's notice at a PSP is recorded on: a
    /// notice printed ahead has none until its money arrives. Creates it (the option's
    /// item in the payer's cart, paid by the creditor's method of `gateway`, the notice in
    /// its instruction so receipts print it) when the notice is a position's and `amount`
    /// is the option's. When a payment of the option started elsewhere holds its item, that
    /// payment is cancelled (its provider asked first): the notice's money is a fact, and
    /// the other cannot take the money too. Otherwise the answer is the exception to
    /// record and why.
    pub(super) async fn position_transaction(
        &self,
        gateway: &crate::GatewayId,
        creditor: CreditorId,
        notice: &str,
        provider_ref: Option<&str>,
        amount: &Money,
    ) -> Result<std::result::Result<Transaction, (crate::ExceptionKind, String)>> {
        use crate::ExceptionKind::{AmountMismatch, DoublePayment, UnknownPayment};
        let Some(p) = self
            .store_ref()
            .position_by_notice(creditor, notice)
            .await?
        else {
            return Ok(Err((
                UnknownPayment,
                format!("no transaction or debt position has notice {notice}"),
            )));
        };
        let index = p.option_by_notice(notice).unwrap_or_default();
        let option = &p.options[index];
        if option.amount != *amount {
            return Ok(Err((
                AmountMismatch,
                format!(
                    "notice {notice} of debt position {} is of {}: not applied",
                    p.key, option.amount
                ),
            )));
        }
        // The method this body takes pagoPA with: one that is enabled, else any (a body that
        // prints notices without offering pagoPA in its checkout).
        let mut methods: Vec<crate::PaymentMethod> = self
            .store_ref()
            .methods(creditor)
            .await?
            .into_iter()
            .filter(|m| m.gateway_id == *gateway)
            .collect();
        methods.sort_by_key(|m| !m.enabled);
        let Some(method) = methods.into_iter().next() else {
            return Ok(Err((
                UnknownPayment,
                format!(
                    "notice {notice} of debt position {} was paid, but the creditor has no method of {gateway}",
                    p.key
                ),
            )));
        };
        let key = format!("notice:{notice}");
        let mut item = self.add_position_option_as_system(&p, index).await?;
        if let ItemState::Locked(holder) = item.state {
            let holding = self.store_ref().transaction(holder).await?;
            if let Some(own) = holding.filter(|t| t.idempotency_key == key) {
                // This notice's own transaction, made by the same receipt arriving twice at
                // once: the line payment's key keeps the money recorded once.
                return Ok(Ok(own));
            }
            // The payer started paying the option elsewhere (the portal) and paid the
            // printed notice instead.
            if self.cancel(&Actor::System, holder).await.is_ok()
                && let Some(fresh) = self.store_ref().item(item.id).await?
            {
                item = fresh;
            }
        }
        match item.state {
            ItemState::Open => {}
            ItemState::Paid(by) => {
                return Ok(Err((
                    DoublePayment,
                    format!(
                        "notice {notice} of debt position {} was paid at a PSP, but transaction {by} had paid it: give this back",
                        p.key
                    ),
                )));
            }
            state => {
                return Ok(Err((
                    UnknownPayment,
                    format!(
                        "notice {notice} of debt position {} was paid, but its item is {} (another payment of it is in progress)",
                        p.key,
                        state.name()
                    ),
                )));
            }
        }
        let cart = self
            .store_ref()
            .cart(item.cart_id)
            .await?
            .ok_or_else(|| Error::not_found("cart", item.cart_id))?;
        let creditor_row = self.creditor(creditor).await?;
        let now = self.inner.clock.now();
        let (mut tx, event) = Transaction::create(
            &cart,
            &method,
            std::slice::from_ref(&item),
            &key,
            &Actor::Gateway {
                id: gateway.clone(),
            },
            now,
            now + chrono::Duration::days(1),
        )?;
        tx.provider_ref = provider_ref.map(str::to_owned);
        let qr_payload = format!(
            "PAGOPA|002|{notice}|{}|{}",
            creditor_row.fiscal_code,
            option.amount.minor_units()
        );
        tx.instruction = Some(crate::Instruction::PagoPa(crate::PagoPaPayment::new(vec![
            crate::PagoPaNotice::new(
                notice,
                option.iuv(),
                creditor_row.fiscal_code.as_str(),
                option.amount,
                qr_payload,
            )
            .with_due_date(option.due_date)
            .with_description(option.description.clone())
            .with_company_name(creditor_row.name.clone())
            .with_taxonomy(option.transfers.first().map(|t| t.taxonomy.clone())),
        ])));
        let created = self.store_ref().create_transaction(&tx, &event).await?;
        Ok(Ok(created.transaction))
    }

    /// The option's item, in the payer's cart; whatever its state (a paid item is not
    /// added again).
    async fn add_position_option_as_system(
        &self,
        p: &DebtPosition,
        index: usize,
    ) -> Result<PayableItem> {
        let cart = self.position_cart(p).await?;
        self.option_item(p, index, &cart).await
    }

    /// Adds option `index`'s item to `cart` (the same source gives the same item).
    async fn option_item(
        &self,
        p: &DebtPosition,
        index: usize,
        cart: &Cart,
    ) -> Result<PayableItem> {
        let option = &p.options[index];
        let source = p
            .source(index)
            .ok_or_else(|| Error::invalid("option", "no such option"))?;
        let reason = format!("{} - {}", p.reason, option.kind.describe(Locale::It));
        let reason: String = reason.chars().take(crate::MAX_REASON_LEN).collect();
        self.insert_item(
            &super::cart::CartOwner::of(cart),
            source,
            p.payment_type_id,
            reason,
            option.amount,
            Some(option.due_date),
            Default::default(),
        )
        .await
    }

    /// Today in Europe/Rome, where due dates are printed and fall, by the service's clock.
    pub fn today(&self) -> NaiveDate {
        self.inner
            .clock
            .now()
            .with_timezone(&chrono_tz::Europe::Rome)
            .date_naive()
    }

    /// Expires the payable positions whose validity ended before today (Europe/Rome),
    /// each with its event; answers how many. The worker runs it.
    pub async fn expire_positions(&self) -> Result<u32> {
        let today = self.today();
        let mut query = PositionQuery {
            creditor_id: None,
            payable_only: false,
            ..PositionQuery::of(CreditorId::new())
        };
        query.creditor_id = None;
        query.valid_before = Some(today);
        query.limit = 500;
        let mut expired = 0;
        for status in [PositionStatus::Valid, PositionStatus::Draft] {
            query.status = Some(status);
            query.before = None;
            expired += self.expire_page(&mut query).await?;
        }
        Ok(expired)
    }

    async fn expire_page(&self, query: &mut PositionQuery) -> Result<u32> {
        let mut expired = 0;
        loop {
            let page = self.store_ref().positions(query).await?;
            for p in &page {
                if matches!(p.status, PositionStatus::Valid | PositionStatus::Draft) {
                    match self
                        .change_position(
                            &Actor::System,
                            p.clone(),
                            PositionStatus::Expired,
                            "validity ended".into(),
                            |_| Ok(()),
                        )
                        .await
                    {
                        Ok(_) => expired += 1,
                        // A payment in progress or a change meanwhile: the next pass sees it.
                        Err(Error::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() as u32 == query.limit => query.before = Some(last.id),
                _ => break,
            }
        }
        Ok(expired)
    }

    /// Writes the reminders due today (Europe/Rome) for the unpaid options of payable
    /// positions, by their payment type's [`ReminderPlan`](crate::ReminderPlan): each
    /// once per option and step (enqueued with [`Store::enqueue_once`](crate::Store::enqueue_once)),
    /// in the payer's language, one per due date of a position (the single option and the
    /// first instalment often share it), none once the option is paid, closed or the
    /// position invalidated. Answers how many were written. The worker runs it.
    pub async fn send_reminders(&self) -> Result<u32> {
        let today = self.today();
        let mut query = PositionQuery::of(CreditorId::new());
        query.creditor_id = None;
        query.payable_only = true;
        query.due_from = Some(today - chrono::Duration::days(370));
        query.due_to = Some(today + chrono::Duration::days(370));
        query.limit = 500;
        let mut written = 0;
        loop {
            let page = self.store_ref().positions(&query).await?;
            for p in &page {
                written += self.remind(p, today).await?;
            }
            match page.last() {
                Some(last) if page.len() as u32 == query.limit => query.before = Some(last.id),
                _ => break,
            }
        }
        Ok(written)
    }

    async fn remind(&self, p: &DebtPosition, today: NaiveDate) -> Result<u32> {
        let Some(to) = p.payer.email.clone() else {
            return Ok(0);
        };
        let Some(payment_type) = self.payment_type(p.payment_type_id).await? else {
            return Ok(0);
        };
        let plan = &payment_type.reminders;
        if plan.before.is_empty() && plan.after.is_none() {
            return Ok(0);
        }
        let mut written = 0;
        let mut days = std::collections::HashSet::new();
        for index in p.payable() {
            let option = &p.options[index];
            // One reminder per due date: the single option and the first instalment often
            // fall due together, and either pays it.
            if !days.insert(option.due_date) {
                continue;
            }
            let Some(step) = plan.step_for(option.due_date, today) else {
                continue;
            };
            let creditor = self.creditor(p.creditor_id).await?;
            let id = OutboxId::new();
            let message = NewOutboxMessage {
                id,
                transaction_id: TransactionId::from(*p.id.as_uuid()),
                payload: OutboxPayload::Reminder(Reminder {
                    id,
                    to: to.clone(),
                    locale: p.payer.locale,
                    creditor,
                    position: p.clone(),
                    option: index,
                    offset_days: step,
                }),
            };
            let key = format!("reminder:{}:{}:{step}", p.id, option.due_date);
            if self
                .store_ref()
                .enqueue_once(&key, p.creditor_id, &message, self.inner.clock.now())
                .await?
            {
                written += 1;
            }
        }
        Ok(written)
    }
}

/// Why an option cannot be paid, for people.
fn refusal_text(why: OptionRefusal) -> &'static str {
    match why {
        OptionRefusal::NotPublished => "the position is not published yet",
        OptionRefusal::Invalid => "the position was invalidated",
        OptionRefusal::Expired => "the position expired",
        OptionRefusal::Paid => "this option is already paid",
        OptionRefusal::Closed => "another way of paying this position was chosen",
    }
}

/// The payer of a position's items.
fn position_payer(p: &PositionPayer) -> Payer {
    let mut payer = Payer::new(p.fiscal_code.as_str(), p.name.as_str())
        .with_fiscal_code(p.fiscal_code.as_str())
        .with_locale(p.locale);
    if let Some(email) = &p.email {
        payer = payer.with_email(email.as_str());
    }
    payer
}

impl Row {
    /// The row and column a validation error's field points at.
    fn locate(&self, field: &str) -> (u64, String) {
        let (option, rest) = if let Some(rest) = field.strip_prefix("single.") {
            (Some(0), rest)
        } else if let Some(rest) = field.strip_prefix("instalments[") {
            let (n, rest) = rest
                .split_once("].")
                .unwrap_or((rest.trim_end_matches(']'), ""));
            let offset = usize::from(self.has_single());
            (n.parse::<usize>().ok().map(|n| n + offset), rest)
        } else {
            (None, field)
        };
        let line = option
            .and_then(|i| self.option_rows.get(i).copied())
            .unwrap_or(self.row);
        if self.option_rows.is_empty() {
            return (self.row, field.to_owned());
        }
        let column = if let Some(t) = rest.strip_prefix("transfers[") {
            let (n, f) = t.split_once("].").unwrap_or((t.trim_end_matches(']'), ""));
            let n = n.parse::<usize>().unwrap_or(0) + 1;
            if f.is_empty() {
                "amount".to_owned()
            } else {
                format!("transfer{n}_{f}")
            }
        } else if rest.is_empty() {
            "option".to_owned()
        } else {
            rest.replace('.', "_")
        };
        (line, column)
    }

    fn has_single(&self) -> bool {
        self.position.as_ref().is_ok_and(|p| p.single.is_some())
    }
}

/// The positions of a CSV file, row group by row group.
struct CsvPositions<R: std::io::Read> {
    records: csv::DeserializeRecordsIntoIter<R, std::collections::HashMap<String, String>>,
    line: u64,
    pending: Option<(u64, std::result::Result<CsvRecord, String>)>,
    /// The keys of the groups read so far: a key's rows must be consecutive.
    seen: std::collections::HashSet<String>,
    module: String,
    types: Vec<PaymentType>,
    creditor: Creditor,
    issuer: std::sync::Arc<dyn crate::NoticeIssuer>,
}

impl<R: std::io::Read> CsvPositions<R> {
    fn next_record(&mut self) -> Option<(u64, std::result::Result<CsvRecord, String>)> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let record = self.records.next()?;
        self.line += 1;
        Some((
            self.line,
            record.map(CsvRecord::from_map).map_err(|e| e.to_string()),
        ))
    }

    /// Reads one option row into `p`; the first row also gives the position's own columns.
    #[allow(
        clippy::result_large_err,
        reason = "a refused row is the import's report line, built once per bad row"
    )]
    fn read_option(
        &self,
        line: u64,
        r: &CsvRecord,
        p: &mut NewDebtPosition,
        type_id: Option<PaymentTypeId>,
    ) -> std::result::Result<bool, RefusedRow> {
        let key = Some(r.key.as_str());
        let amount = Money::parse_eur(&r.amount).map_err(|e| refused(line, key, "amount", e))?;
        let due = parse_day(&r.due_date)
            .ok_or_else(|| refused(line, key, "due_date", Problem::NotADate))?;
        let mut option = NewOption::new(amount, due);
        option.description = r.description.clone().filter(|d| !d.trim().is_empty());
        let mut others = Vec::new();
        for n in 2..=crate::MAX_TRANSFERS {
            let col = |f: &str| {
                r.rest
                    .get(&format!("transfer{n}_{f}"))
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            };
            let given = [
                "fiscal_code",
                "iban",
                "amount",
                "remittance",
                "taxonomy",
                "postal_account",
            ]
            .iter()
            .any(|f| col(f).is_some());
            if !given {
                continue;
            }
            // A share half written is refused, never sent to the creditor instead.
            let Some(fiscal_code) = col("fiscal_code") else {
                return Err(refused(
                    line,
                    key,
                    &format!("transfer{n}_fiscal_code"),
                    "required: the beneficiary of this share",
                ));
            };
            let share = col("amount").unwrap_or_default();
            let share = Money::parse_eur(&share)
                .map_err(|e| refused(line, key, &format!("transfer{n}_amount"), e))?;
            others.push(Transfer {
                fiscal_code,
                iban: col("iban"),
                postal_account: col("postal_account"),
                amount: share,
                remittance: col("remittance").unwrap_or_default(),
                taxonomy: col("taxonomy").unwrap_or_default(),
            });
        }
        if !others.is_empty() {
            let given = Money::sum(amount.currency(), others.iter().map(|t| &t.amount))
                .map_err(|e| refused(line, key, "amount", e))?;
            let rest = Money::from_minor(
                amount.minor_units() - given.minor_units(),
                amount.currency(),
            )
            .ok()
            .filter(Money::is_positive)
            .ok_or_else(|| {
                refused(
                    line,
                    key,
                    "transfer2_amount",
                    "the other shares leave nothing to the creditor",
                )
            })?;
            let payment_type = type_id
                .and_then(|t| self.types.iter().find(|x| x.id == t))
                .ok_or_else(|| {
                    refused(
                        line,
                        key,
                        "payment_type",
                        "no such payment type at this creditor",
                    )
                })?;
            let remittance = option
                .description
                .clone()
                .unwrap_or_else(|| r.reason.clone());
            let mine = self
                .issuer
                .default_transfer(&self.creditor, payment_type, &rest, &remittance)
                .map_err(|e| refused(line, key, "transfer1", e.to_string()))?;
            option.transfers = std::iter::once(mine).chain(others).collect();
        }
        match r.option.trim() {
            "U" | "u" => {
                if p.single.is_some() {
                    return Err(refused(line, key, "option", "two single options"));
                }
                p.single = Some(option);
                Ok(true)
            }
            n => match n.parse::<usize>() {
                Ok(n) if n == p.instalments.len() + 1 => {
                    p.instalments.push(option);
                    Ok(false)
                }
                _ => Err(refused(
                    line,
                    key,
                    "option",
                    "U for the single payment, or the next instalment's number (1, 2, …) in order",
                )),
            },
        }
    }
}

impl<R: std::io::Read> Iterator for CsvPositions<R> {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        let (line, first) = self.next_record()?;
        let first = match first {
            Ok(r) => r,
            Err(e) => {
                return Some(Row {
                    row: line,
                    option_rows: Vec::new(),
                    position: Err(refused(line, None, "row", e)),
                });
            }
        };
        let key = first.key.clone();
        let repeated = !self.seen.insert(key.clone());
        let type_id = self
            .types
            .iter()
            .find(|t| t.code == first.payment_type.trim())
            .map(|t| t.id);
        let mut failure = None;
        if repeated {
            failure = Some(refused(
                line,
                Some(&key),
                "key",
                "a notice's rows must follow one another: this key came earlier in the file",
            ));
        } else if type_id.is_none() {
            failure = Some(refused(
                line,
                Some(&key),
                "payment_type",
                "no payment type of the creditor has this code",
            ));
        }
        let locale = match first.payer_language.as_deref().map(str::trim) {
            None | Some("" | "it") => Locale::It,
            Some("en") => Locale::En,
            Some(_) => {
                failure.get_or_insert(refused(line, Some(&key), "payer_language", "it or en"));
                Locale::It
            }
        };
        let mut payer =
            PositionPayer::new(first.payer_fiscal_code.clone(), first.payer_name.clone())
                .with_locale(locale);
        payer.address = first.payer_address.clone();
        payer.email = first.payer_email.clone();
        let mut p = NewDebtPosition::new(
            self.module.clone(),
            key.clone(),
            payer,
            type_id.unwrap_or_default(),
            first.reason.clone(),
        );
        match first.valid_until.as_deref().map(str::trim) {
            None | Some("") => {}
            Some(d) => match parse_day(d) {
                Some(d) => p.valid_until = Some(d),
                None => {
                    failure.get_or_insert(refused(
                        line,
                        Some(&key),
                        "valid_until",
                        "a date reads YYYY-MM-DD",
                    ));
                }
            },
        }
        let mut single_row = None;
        let mut instalment_rows = Vec::new();
        let mut record = Some((line, first));
        while let Some((l, r)) = record.take() {
            if failure.is_none() {
                match self.read_option(l, &r, &mut p, type_id) {
                    Ok(true) => single_row = Some(l),
                    Ok(false) => instalment_rows.push(l),
                    Err(e) => failure = Some(e),
                }
            }
            match self.next_record() {
                Some((l, Ok(next))) if next.key == key => record = Some((l, next)),
                Some(other) => self.pending = Some(other),
                None => {}
            }
        }
        let option_rows = single_row.into_iter().chain(instalment_rows).collect();
        Some(Row {
            row: line,
            option_rows,
            position: match failure {
                Some(f) => Err(f),
                None => Ok(p),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_reads_a_day_as_the_catalogue_tells_people_to_write_it() {
        let day = NaiveDate::from_ymd_opt(2026, 9, 30);
        assert_eq!(parse_day("2026-09-30"), day);
        assert_eq!(parse_day(" 30/09/2026 "), day);
        for wrong in ["31/02/2026", "2026-13-01", "30.09.2026", ""] {
            assert_eq!(parse_day(wrong), None, "{wrong}");
        }
        // What the reader is told when it does not read.
        assert!(Problem::NotADate.message(Locale::It).contains("GG/MM/AAAA"));
    }
}
