//! Where pagoPA's node finds a body's notices when it does not ask the body's station:
//! GPD, which holds the positions and answers for the body, or ACA, the archive a body
//! with its own station feeds. Per creditor ([`PagoPaCreditor::held_by_gpd`],
//! [`PagoPaCreditor::registered_with_aca`]).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use payments_core::{
    CallbackEvent, Creditor, DebtPosition, Error, GatewayErrorKind, PagoPaNotice, PositionStatus,
    ProviderReceiptQuery, RecoveredReceipts, Result, Transaction, Transfer,
};

use super::aca::AcaPosition;
use super::gpd::{GpdOption, GpdPosition, GpdTransfer, Withdrawn};
use super::{MAX_TEXT_CHARS, PagoPaCreditor, PagoPaGateway, cut};

/// Who keeps a creditor's notices besides its own station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PositionHolder {
    /// Nobody: the body's station answers for every notice (a body exempt from ACA).
    #[default]
    Station,
    /// pagoPA's debt-position service holds them and answers for the body; receipts are
    /// read back from it.
    Gpd,
    /// The body's station answers, and every notice is registered in ACA.
    Aca,
}

/// The end of `day` in Europe/Rome, in UTC, as GPD and ACA read dates and times. A day
/// already past is moved to a day from `now` when `still_payable` (an overdue notice the
/// body still takes: GPD refuses a due date before the position's validity, the moment it
/// is published); one the body refuses once overdue keeps its day.
fn due_time(day: NaiveDate, now: DateTime<Utc>, still_payable: bool) -> String {
    use chrono::TimeZone;
    let end = day.and_hms_opt(23, 59, 59).unwrap_or_default();
    let at = chrono_tz::Europe::Rome
        .from_local_datetime(&end)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| end.and_utc());
    let at = if at <= now && still_payable {
        now + chrono::Duration::days(1)
    } else {
        at
    };
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `F` with a person's 16-character fiscal code, `G` with a company's or body's 11 digits
/// (and for an anonymous payer, as pagoPA names one `ANONIMO`).
fn debtor(fiscal_code: Option<&str>) -> (String, String) {
    match fiscal_code.map(str::trim).filter(|c| !c.is_empty()) {
        Some(code) if code.len() == 11 && code.bytes().all(|b| b.is_ascii_digit()) => {
            ("G".to_owned(), code.to_owned())
        }
        Some(code) => ("F".to_owned(), code.to_uppercase()),
        None => ("F".to_owned(), "ANONIMO".to_owned()),
    }
}

fn gpd_transfers(transfers: &[Transfer]) -> Vec<GpdTransfer> {
    transfers
        .iter()
        .enumerate()
        .map(|(i, t)| GpdTransfer {
            id_transfer: (i + 1).to_string(),
            amount: t.amount.minor_units(),
            organization_fiscal_code: t.fiscal_code.clone(),
            remittance_information: cut(&t.remittance, MAX_TEXT_CHARS),
            category: t.taxonomy.clone(),
            iban: t.iban.clone().unwrap_or_default(),
        })
        .collect()
}

impl PagoPaGateway {
    fn company(config: &PagoPaCreditor, creditor: &Creditor) -> String {
        config
            .company_name
            .clone()
            .unwrap_or_else(|| cut(&creditor.name, MAX_TEXT_CHARS))
    }

    /// The IUPD of a debt position in GPD: the body's fiscal code and the position's id.
    pub fn gpd_iupd(creditor: &Creditor, position: &DebtPosition) -> String {
        format!("{}-{}", creditor.fiscal_code.trim(), position.id)
    }

    /// The IUPD of line `line` of a transaction, each line its own position in GPD (a
    /// position's single options are alternatives: one paid closes the others).
    pub fn gpd_line_iupd(creditor_fiscal_code: &str, tx: &Transaction, line: usize) -> String {
        format!("{}-{}-{line}", creditor_fiscal_code.trim(), tx.id)
    }

    /// `position` as GPD takes it: its options (the single one, the instalments) with
    /// their transfers, due at the end of their due day; once some are paid, only those
    /// still payable.
    pub fn gpd_position(
        &self,
        creditor: &Creditor,
        config: &PagoPaCreditor,
        position: &DebtPosition,
    ) -> GpdPosition {
        let now = Utc::now();
        let (kind, fiscal_code) = debtor(Some(&position.payer.fiscal_code));
        let refused_overdue = config.overdue_refused.contains(&position.payment_type_id);
        let partly_paid = position.status == PositionStatus::PartiallyPaid;
        GpdPosition {
            iupd: Self::gpd_iupd(creditor, position),
            kind,
            fiscal_code,
            full_name: cut(&position.payer.name, 70),
            email: position.payer.email.clone(),
            switch_to_expired: config.overdue_refused.contains(&position.payment_type_id),
            company_name: Self::company(config, creditor),
            pay_stand_in: true,
            status: None,
            payment_option: position
                .options
                .iter()
                .enumerate()
                .filter(|(i, _)| !partly_paid || position.check_payable(*i).is_ok())
                .map(|(_, o)| GpdOption {
                    iuv: o.iuv().to_owned(),
                    amount: o.amount.minor_units(),
                    description: cut(
                        if o.description.trim().is_empty() {
                            &position.reason
                        } else {
                            &o.description
                        },
                        MAX_TEXT_CHARS,
                    ),
                    is_partial_payment: o.kind.is_instalment(),
                    due_date: due_time(o.due_date, now, !refused_overdue),
                    transfer: gpd_transfers(&o.transfers),
                })
                .collect(),
        }
    }

    /// The transfers of a transaction line's notice: those of the debt position option
    /// it pays, or the whole amount to the creditor's IBAN with its type's taxonomy.
    async fn line_transfers(
        &self,
        config: &PagoPaCreditor,
        tx: &Transaction,
        line: usize,
        notice: &PagoPaNotice,
    ) -> Result<Vec<Transfer>> {
        let l = &tx.lines[line];
        if let Some((p, i)) =
            payments_core::position_option_of(self.store.as_ref(), tx.creditor_id, &l.source)
                .await?
            && p.options[i].amount == l.amount
        {
            return Ok(p.options[i].transfers.clone());
        }
        let iban = config.iban.clone().ok_or_else(|| {
            Error::invalid("iban", "the creditor has no IBAN configured for pagoPA")
        })?;
        let taxonomy = notice
            .taxonomy
            .clone()
            .or_else(|| config.taxonomy.get(&l.payment_type_id).cloned())
            .ok_or_else(|| {
                Error::invalid(
                    "taxonomy",
                    "the payment type has no taxonomy code for pagoPA",
                )
            })?;
        Ok(vec![Transfer::to_iban(
            notice.creditor_fiscal_code.clone(),
            iban,
            l.amount,
            cut(&l.reason, MAX_TEXT_CHARS),
            taxonomy,
        )])
    }

    /// Registers each line of `tx` in GPD as its own published position, before the payer
    /// is sent to pay: pagoPA's node asks GPD about them. On a failure, the lines already
    /// registered are withdrawn again.
    pub(super) async fn gpd_register_lines(
        &self,
        config: &PagoPaCreditor,
        company_name: &str,
        tx: &Transaction,
        notices: &[PagoPaNotice],
    ) -> Result<()> {
        let gpd = self.gpd_client()?;
        let now = Utc::now();
        let mut created = Vec::new();
        for (i, notice) in notices.iter().enumerate() {
            let transfers = match self.line_transfers(config, tx, i, notice).await {
                Ok(t) => t,
                Err(e) => {
                    self.gpd_withdraw_all(&notice.creditor_fiscal_code, &created)
                        .await;
                    return Err(e);
                }
            };
            let (kind, fiscal_code) = debtor(tx.payer.fiscal_code.as_deref());
            let position = GpdPosition {
                iupd: Self::gpd_line_iupd(&notice.creditor_fiscal_code, tx, i),
                kind,
                fiscal_code,
                full_name: cut(&tx.payer.name, 70),
                email: tx.payer.email.clone(),
                switch_to_expired: false,
                company_name: company_name.to_owned(),
                pay_stand_in: true,
                status: None,
                payment_option: vec![GpdOption {
                    iuv: notice.iuv.clone(),
                    amount: notice.amount.minor_units(),
                    description: notice.description.clone(),
                    is_partial_payment: false,
                    due_date: due_time(notice.due_date.unwrap_or(now.date_naive()), now, true),
                    transfer: gpd_transfers(&transfers),
                }],
            };
            if let Err(e) = gpd
                .create(&notice.creditor_fiscal_code, &position, true)
                .await
            {
                self.gpd_withdraw_all(&notice.creditor_fiscal_code, &created)
                    .await;
                return Err(e);
            }
            created.push(position.iupd);
        }
        Ok(())
    }

    /// Best effort: the positions of a transaction whose start failed.
    pub(super) async fn gpd_withdraw_all(&self, organization: &str, iupds: &[String]) {
        if let Ok(gpd) = self.gpd_client() {
            for iupd in iupds {
                let _ = gpd.invalidate(organization, iupd).await;
            }
        }
    }

    /// Withdraws the unpaid lines of `tx` from GPD, every one of them. A line GPD says was
    /// paid, whose receipt was not applied here yet, stops the closing once the others are
    /// withdrawn ([`GatewayErrorKind::Unavailable`]: the expiry waits, and the line's
    /// receipt is read back first on the next try).
    pub(super) async fn gpd_close(&self, fiscal_code: &str, tx: &Transaction) -> Result<()> {
        let gpd = self.gpd_client()?;
        let mut paid_there = false;
        for (line, l) in tx.lines.iter().enumerate() {
            if l.paid_at.is_some() {
                continue;
            }
            let iupd = Self::gpd_line_iupd(fiscal_code, tx, line);
            if let Withdrawn::Paid(_) = gpd.invalidate(fiscal_code, &iupd).await? {
                paid_there = true;
            }
        }
        if paid_there {
            return Err(Self::error(GatewayErrorKind::Unavailable));
        }
        Ok(())
    }

    /// The receipts GPD keeps of the lines of `tx` not paid here yet, as callbacks. One
    /// that does not read is an error once the others are applied.
    pub(super) async fn gpd_receipts_of(
        &self,
        fiscal_code: &str,
        tx: &Transaction,
    ) -> Result<Vec<CallbackEvent>> {
        let gpd = self.gpd_client()?;
        let notices: Vec<PagoPaNotice> = match &tx.instruction {
            Some(payments_core::Instruction::PagoPa(p)) => p.notices.clone(),
            _ => Vec::new(),
        };
        let mut events = Vec::new();
        let mut unreadable = None;
        for (line, notice) in notices.iter().enumerate() {
            if tx.lines.get(line).is_some_and(|l| l.paid_at.is_some()) {
                continue;
            }
            if let Some(document) = gpd.receipt(fiscal_code, &notice.iuv).await? {
                match self.receipt_event(document.as_bytes(), false) {
                    Ok(event) => events.push(event),
                    Err(e) => unreadable = Some(e),
                }
            }
        }
        match unreadable {
            Some(e) if events.is_empty() => Err(e),
            _ => Ok(events),
        }
    }

    /// The receipts GPD issued since `since` for the creditors it holds whose payment is
    /// not recorded here yet, as callbacks; a creditor whose receipts could not be read is
    /// among the failures, the others are still read.
    pub(super) async fn gpd_recover(&self, since: DateTime<Utc>) -> Result<RecoveredReceipts> {
        let held: Vec<(payments_core::CreditorId, String)> = {
            let creditors = self.creditors.read().unwrap_or_else(|e| e.into_inner());
            let codes = self
                .by_fiscal_code
                .read()
                .unwrap_or_else(|e| e.into_inner());
            codes
                .iter()
                .filter(|(_, id)| {
                    creditors
                        .get(id)
                        .is_some_and(|c| c.holder == PositionHolder::Gpd)
                })
                .map(|(code, id)| (*id, code.clone()))
                .collect()
        };
        if held.is_empty() {
            return Err(Self::error(GatewayErrorKind::NotSupported(
                "recover_receipts",
            )));
        }
        let gpd = self.gpd_client()?;
        let rome = |t: DateTime<Utc>| t.with_timezone(&chrono_tz::Europe::Rome).date_naive();
        let from = rome(since);
        let to = rome(Utc::now()).max(from);
        let mut recovered = RecoveredReceipts::default();
        for (creditor, fiscal_code) in held {
            let entries = match gpd.receipts(&fiscal_code, from, to).await {
                Ok(entries) => entries,
                Err(e) => {
                    recovered.failures.push((creditor, e.to_string()));
                    continue;
                }
            };
            for entry in entries {
                match self.recorded(creditor, &entry.iuv).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        recovered.failures.push((creditor, e.to_string()));
                        continue;
                    }
                }
                match gpd.receipt(&fiscal_code, &entry.iuv).await {
                    Ok(Some(document)) => match self.receipt_event(document.as_bytes(), false) {
                        Ok(event) => recovered.events.push(event),
                        Err(e) => recovered
                            .failures
                            .push((creditor, format!("the receipt of IUV {}: {e}", entry.iuv))),
                    },
                    Ok(None) => {}
                    Err(e) => recovered
                        .failures
                        .push((creditor, format!("the receipt of IUV {}: {e}", entry.iuv))),
                }
            }
        }
        Ok(recovered)
    }

    /// Whether the payment of `iuv`'s receipt is recorded here: the receipt kept, and the
    /// line payment it made (keyed like the receipt) or the exception it became on record.
    /// A receipt kept whose payment could not be applied is read and applied again.
    async fn recorded(&self, creditor: payments_core::CreditorId, iuv: &str) -> Result<bool> {
        let mut query = ProviderReceiptQuery::new(creditor);
        query.reference = Some(format!("3{iuv}"));
        query.limit = 10;
        for kept in self.store.provider_receipts(&query).await? {
            if self
                .store
                .line_payment(creditor, &kept.key)
                .await?
                .is_some()
            {
                return Ok(true);
            }
            let mut exceptions = payments_core::ExceptionQuery::new(creditor);
            exceptions.key = Some(kept.key.clone());
            exceptions.limit = 1;
            if !self.store.exceptions(&exceptions).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Makes GPD or ACA hold `position` as it now stands (see [`PositionHolder`]).
    async fn sync_position(
        &self,
        creditor: &Creditor,
        config: &PagoPaCreditor,
        position: &DebtPosition,
    ) -> Result<()> {
        let fiscal_code = creditor.fiscal_code.trim();
        match config.holder {
            PositionHolder::Station => Ok(()),
            PositionHolder::Gpd => {
                let gpd = self.gpd_client()?;
                // A position just registered is created there (one already there is updated);
                // a changed one is updated (one GPD does not have is created).
                let fresh = position.version <= 1;
                match position.status {
                    PositionStatus::Draft | PositionStatus::Valid => {
                        let publish = position.status == PositionStatus::Valid;
                        let model = self.gpd_position(creditor, config, position);
                        if fresh {
                            gpd.create(fiscal_code, &model, publish).await
                        } else {
                            gpd.update(fiscal_code, &model, publish).await
                        }
                    }
                    // Paid in part here (an instalment through the portal): GPD keeps only
                    // what is still payable. One paid in part there lets nothing change,
                    // which the update takes as done.
                    PositionStatus::PartiallyPaid => {
                        let model = self.gpd_position(creditor, config, position);
                        gpd.update(fiscal_code, &model, true).await
                    }
                    // Paid here (by card, say), expired or withdrawn: no longer payable
                    // there. One paid at pagoPA stays as GPD has it.
                    _ => gpd
                        .invalidate(fiscal_code, &Self::gpd_iupd(creditor, position))
                        .await
                        .map(|_| ()),
                }
            }
            PositionHolder::Aca => {
                // A draft is not a notice yet: nothing is registered until it is published.
                if position.status == PositionStatus::Draft {
                    return Ok(());
                }
                let aca = self.aca_client()?;
                let now = Utc::now();
                let (kind, debtor_code) = debtor(Some(&position.payer.fiscal_code));
                let refused_overdue = config.overdue_refused.contains(&position.payment_type_id);
                for (i, o) in position.options.iter().enumerate() {
                    let payable = position.check_payable(i).is_ok();
                    // ACA takes one IBAN: a notice with other beneficiaries is registered
                    // without one, and not for the stand-in, which would credit every share
                    // to it.
                    let alone = o.transfers.iter().all(|t| t.fiscal_code == fiscal_code);
                    let iban = o
                        .transfers
                        .iter()
                        .find(|t| t.fiscal_code == fiscal_code)
                        .and_then(|t| t.iban.clone())
                        .or_else(|| config.iban.clone())
                        .filter(|_| alone);
                    let notice = AcaPosition {
                        pa_fiscal_code: fiscal_code.to_owned(),
                        entity_type: kind.clone(),
                        entity_fiscal_code: debtor_code.clone(),
                        entity_full_name: cut(&position.payer.name, 255),
                        iuv: o.iuv().to_owned(),
                        nav: o.notice_number.clone(),
                        // Withdrawn with amount 0 (SANP, ACA: "annullamento").
                        amount: if payable { o.amount.minor_units() } else { 0 },
                        description: cut(
                            if o.description.trim().is_empty() {
                                &position.reason
                            } else {
                                &o.description
                            },
                            MAX_TEXT_CHARS,
                        ),
                        expiration_date: due_time(o.due_date, now, !refused_overdue),
                        pay_stand_in: iban.is_some(),
                        iban,
                        switch_to_expired: refused_overdue,
                    };
                    aca.register(&notice).await?;
                }
                Ok(())
            }
        }
    }
}

/// The gateway keeps the positions of the creditors configured for GPD or ACA where
/// pagoPA's node finds them: GPD holds them (draft, published, changed, withdrawn when
/// paid here, expired or invalidated); ACA registers each option while payable and
/// withdraws it (amount 0) once paid, closed, expired or invalidated.
#[async_trait]
impl payments_core::PositionArchive for PagoPaGateway {
    async fn sync(&self, creditor: &Creditor, position: &DebtPosition) -> Result<()> {
        let Some(config) = self.creditor_config(creditor.id) else {
            return Ok(());
        };
        self.sync_position(creditor, &config, position).await
    }
}
