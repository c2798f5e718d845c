//! Debt positions (*posizioni debitorie*): what a body issues ahead, before the payer does
//! anything — TARI, school canteens, fines, building charges — each with a notice number
//! (*codice avviso*) per way of paying it, printed on a notice the payer can pay anywhere.
//!
//! A [`DebtPosition`] carries one or more [`PaymentOption`]s: a single payment
//! ([`OptionKind::Single`]) and/or a plan of instalments ([`OptionKind::Instalment`]). As
//! pagoPA's rules say, paying the single option closes the plan, and paying an instalment
//! closes the single option. Each option carries up to [`MAX_TRANSFERS`] [`Transfer`]s:
//! the shares of its amount that go to each beneficiary (a TARI notice gives the province
//! its TEFA share).
//!
//! A position lives `Draft` → `Valid` (published: payable) → `PartiallyPaid` / `Paid`, or
//! `Expired` (its validity ended) or `Invalid` (the body withdrew it); while nothing is
//! paid it can be changed. Each change is a [`PositionEvent`].
//!
//! An option is paid like any item: the payer puts it in the cart
//! ([`Payments::add_position_option`](crate::Payments::add_position_option)), or pays its
//! notice at a bank, post office or app through pagoPA. Its item's source is the position's
//! module and `"{key}#{label}"` ([`DebtPosition::source`]), so the module is told through
//! its [`SettlementListener`](crate::SettlementListener). The store marks the option paid
//! in the same database transaction that settles the item.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{MAX_REASON_LEN, MAX_SOURCE_KEY_LEN, check_key};
use crate::{
    Actor, CreditorId, DebtPositionId, FieldKind, Locale, Money, PayerId, PaymentTypeId, Source,
    TransactionId, ValidationErrors,
};

/// The most transfers (beneficiaries) an option carries, as pagoPA allows.
pub const MAX_TRANSFERS: usize = 5;
/// The most instalments a plan has.
pub const MAX_INSTALMENTS: usize = 60;
/// The longest key a module gives a position (its source keys add a few characters).
pub const MAX_POSITION_KEY_LEN: usize = MAX_SOURCE_KEY_LEN - 8;
/// The longest remittance information (*causale del versamento*) of a transfer.
pub const MAX_REMITTANCE_LEN: usize = 140;

/// Where a debt position stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PositionStatus {
    /// Registered, not yet payable.
    Draft,
    /// Published: payable.
    Valid,
    /// Some instalments paid, the others still payable.
    PartiallyPaid,
    /// Paid: the single option, or every instalment.
    Paid,
    /// Its validity ended before it was paid.
    Expired,
    /// Withdrawn by the body (*annullata*).
    Invalid,
}

impl PositionStatus {
    /// Every status.
    pub const ALL: [PositionStatus; 6] = [
        PositionStatus::Draft,
        PositionStatus::Valid,
        PositionStatus::PartiallyPaid,
        PositionStatus::Paid,
        PositionStatus::Expired,
        PositionStatus::Invalid,
    ];

    /// Its name in storage and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            PositionStatus::Draft => "draft",
            PositionStatus::Valid => "valid",
            PositionStatus::PartiallyPaid => "partially_paid",
            PositionStatus::Paid => "paid",
            PositionStatus::Expired => "expired",
            PositionStatus::Invalid => "invalid",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        PositionStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Its label for people.
    pub fn label(self, locale: Locale) -> &'static str {
        let it = locale == Locale::It;
        match self {
            PositionStatus::Draft if it => "Bozza",
            PositionStatus::Draft => "Draft",
            PositionStatus::Valid if it => "Da pagare",
            PositionStatus::Valid => "To pay",
            PositionStatus::PartiallyPaid if it => "Pagata in parte",
            PositionStatus::PartiallyPaid => "Partly paid",
            PositionStatus::Paid if it => "Pagata",
            PositionStatus::Paid => "Paid",
            PositionStatus::Expired if it => "Scaduta",
            PositionStatus::Expired => "Expired",
            PositionStatus::Invalid if it => "Annullata",
            PositionStatus::Invalid => "Invalidated",
        }
    }

    /// Whether its options can be paid now.
    pub fn is_payable(self) -> bool {
        matches!(self, PositionStatus::Valid | PositionStatus::PartiallyPaid)
    }
}

impl std::fmt::Display for PositionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way of paying a position an option is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OptionKind {
    /// The whole amount at once (*rata unica*).
    Single,
    /// Instalment `number` of `of` (*rata*).
    Instalment {
        /// From 1.
        number: u32,
        /// How many the plan has.
        of: u32,
    },
}

impl OptionKind {
    /// Its short label: `U` for the single option, `R1`, `R2`, … for instalments.
    pub fn label(self) -> String {
        match self {
            OptionKind::Single => "U".to_owned(),
            OptionKind::Instalment { number, .. } => format!("R{number}"),
        }
    }

    /// Its name for people: *Rata unica*, *Rata 1 di 3*.
    pub fn describe(self, locale: Locale) -> String {
        match (self, locale) {
            (OptionKind::Single, Locale::It) => "Rata unica".to_owned(),
            (OptionKind::Single, _) => "Single payment".to_owned(),
            (OptionKind::Instalment { number, of }, Locale::It) => format!("Rata {number} di {of}"),
            (OptionKind::Instalment { number, of }, _) => format!("Instalment {number} of {of}"),
        }
    }

    /// Whether it is an instalment.
    pub fn is_instalment(self) -> bool {
        matches!(self, OptionKind::Instalment { .. })
    }
}

/// A share of an option's amount and where it goes (*trasferimento*, `transfer` in
/// pagoPA's messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The beneficiary's fiscal code (11 digits).
    pub fiscal_code: String,
    /// The IBAN the share is credited to (required: pagoPA credits every share to one).
    pub iban: Option<String>,
    /// The postal account (*conto corrente postale*) of that IBAN, when it is one, for the
    /// Poste slip.
    pub postal_account: Option<String>,
    /// How much.
    pub amount: Money,
    /// The remittance information (*causale*), at most 140 characters.
    pub remittance: String,
    /// The taxonomy code of the collection, as pagoPA's taxonomy defines it
    /// (`9/0101101IM/` for TARI, for instance).
    pub taxonomy: String,
}

impl Transfer {
    /// A share of `amount` to the beneficiary `fiscal_code` on `iban`.
    pub fn to_iban(
        fiscal_code: impl Into<String>,
        iban: impl Into<String>,
        amount: Money,
        remittance: impl Into<String>,
        taxonomy: impl Into<String>,
    ) -> Self {
        Transfer {
            fiscal_code: fiscal_code.into(),
            iban: Some(iban.into()),
            postal_account: None,
            amount,
            remittance: remittance.into(),
            taxonomy: taxonomy.into(),
        }
    }

    pub(crate) fn check(&self, errors: &mut ValidationErrors, at: &str) -> Transfer {
        let mut t = self.clone();
        let field = |f: &str| format!("{at}.{f}");
        match FieldKind::FiscalCode.check(self.fiscal_code.trim()) {
            Ok(cf) if cf.len() == 11 => t.fiscal_code = cf,
            Ok(_) => errors.push(
                field("fiscal_code"),
                "a beneficiary has an 11-digit fiscal code",
            ),
            Err(reason) => errors.push(field("fiscal_code"), reason),
        }
        // pagoPA's transfers always name an IBAN (paForNode.xsd, ctTransferPA); a postal
        // account is given besides it, for the Poste slip.
        match self.iban.as_deref().map(str::trim) {
            Some(iban) if !iban.is_empty() => match FieldKind::Iban.check(iban) {
                Ok(iban) => t.iban = Some(iban),
                Err(reason) => errors.push(field("iban"), reason),
            },
            _ => errors.push(
                field("iban"),
                "required: pagoPA credits every share to an IBAN",
            ),
        }
        if let Some(account) = &self.postal_account {
            let digits = account.trim();
            if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_ascii_digit())
            {
                errors.push(
                    field("postal_account"),
                    "a postal account has up to 12 digits",
                );
            } else {
                t.postal_account = Some(digits.to_owned());
            }
        }
        if !self.amount.is_positive() {
            errors.push(field("amount"), crate::Problem::MustBePositive);
        }
        let remittance = self.remittance.trim();
        if remittance.is_empty() || remittance.chars().count() > MAX_REMITTANCE_LEN {
            errors.push(
                field("remittance"),
                format!("must have 1 to {MAX_REMITTANCE_LEN} characters"),
            );
        }
        t.remittance = remittance.to_owned();
        if !is_taxonomy_code(self.taxonomy.trim()) {
            errors.push(
                field("taxonomy"),
                "a taxonomy code reads like 9/0101101IM/ (type/code/)",
            );
        }
        t.taxonomy = self.taxonomy.trim().to_owned();
        t
    }
}

/// Whether `code` reads as a pagoPA taxonomy code (SANP, "Tassonomia dei servizi di
/// incasso"): a prefix `9/`, `6/`, `7/` or `8/` (the others than `9/` enable SEPA
/// Request-to-Pay), the creditor type and macro area (four digits), the service (three
/// digits), the legal reason (two capital letters: `IM`, `TS`, `SP`, `SA`, `AP`) and a
/// final `/`, such as `9/0101101IM/`.
pub fn is_taxonomy_code(code: &str) -> bool {
    let Some(body) = ["9/", "6/", "7/", "8/"]
        .iter()
        .find_map(|p| code.strip_prefix(p))
        .and_then(|rest| rest.strip_suffix('/'))
    else {
        return false;
    };
    let b = body.as_bytes();
    b.len() == 9
        && b[..7].iter().all(u8::is_ascii_digit)
        && b[7..].iter().all(u8::is_ascii_uppercase)
}

/// One way of paying a position: the single payment or an instalment, with its notice
/// number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PaymentOption {
    /// Single or instalment.
    pub kind: OptionKind,
    /// The notice number (*codice avviso*, 18 digits) a payer pays it with anywhere.
    pub notice_number: String,
    /// How much.
    pub amount: Money,
    /// When it is due (*entro il*).
    pub due_date: NaiveDate,
    /// What it pays, as the notice prints it.
    pub description: String,
    /// Where the money goes: one to five shares adding up to `amount`.
    pub transfers: Vec<Transfer>,
    /// The transaction that paid it.
    pub paid_by: Option<TransactionId>,
    /// When it was paid.
    pub paid_at: Option<DateTime<Utc>>,
}

impl PaymentOption {
    /// The IUV: the notice number without its first digit.
    pub fn iuv(&self) -> &str {
        self.notice_number.get(1..).unwrap_or_default()
    }
}

/// Who owes a position, as the notice prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionPayer {
    /// A person's fiscal code (16 characters) or a company's (11 digits); the payer's id.
    pub fiscal_code: String,
    /// Name and surname, or the company's name.
    pub name: String,
    /// Postal address, one line (street, number, postcode, town, province).
    pub address: Option<String>,
    /// Where reminders go.
    pub email: Option<String>,
    /// The language of their notice and reminders.
    pub locale: Locale,
}

impl PositionPayer {
    /// A payer with a fiscal code and a name; Italian texts.
    pub fn new(fiscal_code: impl Into<String>, name: impl Into<String>) -> Self {
        PositionPayer {
            fiscal_code: fiscal_code.into(),
            name: name.into(),
            address: None,
            email: None,
            locale: Locale::It,
        }
    }

    /// Sets the postal address.
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// Sets the email address reminders go to.
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the language.
    pub fn with_locale(mut self, locale: Locale) -> Self {
        self.locale = locale;
        self
    }

    /// Whether the payer is a company (*persona giuridica*, `G` in pagoPA's messages).
    pub fn is_company(&self) -> bool {
        self.fiscal_code.len() == 11
    }

    fn check(&self, errors: &mut ValidationErrors) -> PositionPayer {
        let mut p = self.clone();
        match FieldKind::FiscalCode.check(self.fiscal_code.trim()) {
            Ok(cf) => p.fiscal_code = cf,
            Err(reason) => errors.push("payer.fiscal_code", reason),
        }
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 70 {
            errors.push("payer.name", "must have 1 to 70 characters");
        }
        p.name = name.to_owned();
        p.address = self
            .address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        if p.address.as_ref().is_some_and(|a| a.chars().count() > 140) {
            errors.push("payer.address", "must have at most 140 characters");
        }
        p.email = match self.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(email) => match FieldKind::Email.check(email) {
                Ok(e) => Some(e),
                Err(reason) => {
                    errors.push("payer.email", reason);
                    None
                }
            },
        };
        p
    }
}

/// What a payer owes a creditor, issued ahead (*posizione debitoria*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DebtPosition {
    /// Its id.
    pub id: DebtPositionId,
    /// The creditor it is owed to.
    pub creditor_id: CreditorId,
    /// The module that registered it.
    pub module: String,
    /// The module's own key for it (*IUPD*): registering it again is idempotent.
    pub key: String,
    /// Who owes it.
    pub payer: PositionPayer,
    /// Its payment type.
    pub payment_type_id: PaymentTypeId,
    /// The reason (*oggetto del pagamento*).
    pub reason: String,
    /// Where it stands.
    pub status: PositionStatus,
    /// The last day it can be paid, if it has one (then it expires).
    pub valid_until: Option<NaiveDate>,
    /// The single option (if any) first, then the instalments in order.
    pub options: Vec<PaymentOption>,
    /// Bumped by every change: what a change compares and sets.
    pub version: u32,
    /// Bumped by every change of amounts or due dates: part of the options' item sources,
    /// so an item in a cart never pays an old amount.
    #[serde(default)]
    pub revision: u32,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Why an option cannot be paid now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionRefusal {
    /// The position is a draft.
    NotPublished,
    /// The position was invalidated.
    Invalid,
    /// The position expired.
    Expired,
    /// The option is paid.
    Paid,
    /// Another way of paying was chosen: the single option after an instalment, or an
    /// instalment after the single option.
    Closed,
}

impl DebtPosition {
    /// The payer's id: their fiscal code.
    pub fn payer_id(&self) -> PayerId {
        PayerId::from(self.payer.fiscal_code.as_str())
    }

    /// The source of option `index`'s item: the module and `"{key}#{label}"`, followed by
    /// `.{revision}` once the position was changed.
    pub fn source(&self, index: usize) -> Option<Source> {
        self.options.get(index).map(|o| {
            let key = match self.revision {
                0 => format!("{}#{}", self.key, o.kind.label()),
                r => format!("{}#{}.{r}", self.key, o.kind.label()),
            };
            Source::new(self.module.clone(), key)
        })
    }

    /// The sources option `index`'s item has had, in every revision up to this one.
    pub fn sources_of(&self, index: usize) -> Vec<Source> {
        let Some(o) = self.options.get(index) else {
            return Vec::new();
        };
        (0..=self.revision)
            .map(|r| {
                let key = match r {
                    0 => format!("{}#{}", self.key, o.kind.label()),
                    r => format!("{}#{}.{r}", self.key, o.kind.label()),
                };
                Source::new(self.module.clone(), key)
            })
            .collect()
    }

    /// Whether `source` is the source of an item of one of its options, in this revision
    /// or an earlier one.
    pub fn owns_source(&self, source: &Source) -> bool {
        source.module == self.module
            && source
                .key
                .strip_prefix(self.key.as_str())
                .is_some_and(|rest| rest.starts_with('#'))
    }

    /// The option whose item has `source`.
    pub fn option_of_source(&self, source: &Source) -> Option<usize> {
        (0..self.options.len()).find(|&i| self.source(i).as_ref() == Some(source))
    }

    /// The option with `notice_number`.
    pub fn option_by_notice(&self, notice_number: &str) -> Option<usize> {
        self.options
            .iter()
            .position(|o| o.notice_number == notice_number)
    }

    /// The single option, if the position has one.
    pub fn single(&self) -> Option<&PaymentOption> {
        self.options.iter().find(|o| o.kind == OptionKind::Single)
    }

    /// The instalments, in order.
    pub fn instalments(&self) -> impl Iterator<Item = &PaymentOption> {
        self.options.iter().filter(|o| o.kind.is_instalment())
    }

    /// The total of what was paid.
    pub fn paid(&self) -> Money {
        let currency = self
            .options
            .first()
            .map_or(crate::Currency::Eur, |o| o.amount.currency());
        Money::sum(
            currency,
            self.options
                .iter()
                .filter(|o| o.paid_by.is_some())
                .map(|o| &o.amount),
        )
        .unwrap_or_else(|_| Money::zero(currency))
    }

    /// Whether option `index` can be paid now, or why not.
    pub fn check_payable(&self, index: usize) -> Result<(), OptionRefusal> {
        let Some(option) = self.options.get(index) else {
            return Err(OptionRefusal::Closed);
        };
        if option.paid_by.is_some() {
            return Err(OptionRefusal::Paid);
        }
        match self.status {
            PositionStatus::Draft => return Err(OptionRefusal::NotPublished),
            PositionStatus::Invalid => return Err(OptionRefusal::Invalid),
            PositionStatus::Expired => return Err(OptionRefusal::Expired),
            PositionStatus::Paid => return Err(OptionRefusal::Closed),
            _ => {}
        }
        let other_paid = self
            .options
            .iter()
            .any(|o| o.paid_by.is_some() && o.kind.is_instalment() != option.kind.is_instalment());
        if other_paid {
            return Err(OptionRefusal::Closed);
        }
        Ok(())
    }

    /// The options that can be paid now.
    pub fn payable(&self) -> Vec<usize> {
        (0..self.options.len())
            .filter(|&i| self.check_payable(i).is_ok())
            .collect()
    }

    /// The status its payments give: `Paid` once the single option or every instalment is
    /// paid, `PartiallyPaid` with some instalments, `Valid` when every payment was given
    /// back, else the status it has.
    pub fn status_from_payments(&self) -> PositionStatus {
        let single_paid = self.single().is_some_and(|o| o.paid_by.is_some());
        let mut instalments = self.instalments().peekable();
        let has_instalments = instalments.peek().is_some();
        let (all, any) = instalments.fold((true, false), |(all, any), o| {
            (all && o.paid_by.is_some(), any || o.paid_by.is_some())
        });
        if single_paid || (has_instalments && all) {
            PositionStatus::Paid
        } else if any {
            PositionStatus::PartiallyPaid
        } else if matches!(
            self.status,
            PositionStatus::Paid | PositionStatus::PartiallyPaid
        ) {
            // Every payment was given back.
            PositionStatus::Valid
        } else {
            self.status
        }
    }

    /// Records that `transaction` paid option `index` at `at`, for stores. Answers the
    /// event to append and whether the money is **excess**: the option had been paid, or
    /// closed by the other way of paying the position, or the position was withdrawn
    /// (`Invalid`) or never published (`Draft`). Excess money leaves the position as it was
    /// (the store records it as a `DoublePayment` exception, to give back); otherwise the
    /// option is marked paid and the status follows (an `Expired` position paid anyway is
    /// paid: the debt was real). A replay of the same payment answers `None`.
    pub fn record_payment(
        &mut self,
        index: usize,
        transaction: TransactionId,
        at: DateTime<Utc>,
    ) -> Option<(PositionEvent, bool)> {
        let refused = self.check_payable(index).err();
        let option = self.options.get_mut(index)?;
        if option.paid_by == Some(transaction) {
            return None;
        }
        let label = option.kind.label();
        let excess = match refused {
            Some(OptionRefusal::Paid) => Some("it was already paid"),
            Some(OptionRefusal::Closed) => Some("the position was settled another way"),
            Some(OptionRefusal::Invalid) => Some("the position was invalidated"),
            Some(OptionRefusal::NotPublished) => Some("the position is a draft"),
            Some(OptionRefusal::Expired) | None => None,
        };
        let from = self.status;
        if excess.is_none() {
            option.paid_by = Some(transaction);
            option.paid_at = Some(at);
            self.status = self.status_from_payments();
        }
        self.version += 1;
        self.updated_at = at;
        let note = match excess {
            Some(why) => format!(
                "option {label} paid by transaction {transaction} although {why}: money to give back"
            ),
            None => format!("option {label} paid by transaction {transaction}"),
        };
        Some((
            PositionEvent {
                position_id: self.id,
                at,
                actor: Actor::System,
                from: Some(from),
                to: self.status,
                note,
            },
            excess.is_some(),
        ))
    }

    /// Records that the payment of option `index` by `transaction` was given back in full,
    /// for stores: the option is payable again (and the plan or the single option with it)
    /// and the status follows. `None` when that transaction had not paid it.
    pub fn record_refund(
        &mut self,
        index: usize,
        transaction: TransactionId,
        at: DateTime<Utc>,
    ) -> Option<PositionEvent> {
        let option = self.options.get_mut(index)?;
        if option.paid_by != Some(transaction) {
            return None;
        }
        option.paid_by = None;
        option.paid_at = None;
        let label = option.kind.label();
        let from = self.status;
        self.status = self.status_from_payments();
        self.version += 1;
        self.updated_at = at;
        Some(PositionEvent {
            position_id: self.id,
            at,
            actor: Actor::System,
            from: Some(from),
            to: self.status,
            note: format!(
                "option {label}: the payment of transaction {transaction} was given back; payable again"
            ),
        })
    }

    /// The options closed by the payment of option `index`: the instalments when it is the
    /// single option, the single option when it is an instalment.
    pub fn closed_by(&self, index: usize) -> Vec<usize> {
        let Some(paid) = self.options.get(index) else {
            return Vec::new();
        };
        (0..self.options.len())
            .filter(|&i| self.options[i].kind.is_instalment() != paid.kind.is_instalment())
            .collect()
    }

    /// The exception a store records when `transaction` pays option `index` (its line
    /// `line`) after the position was settled another way: money held twice, given back
    /// beside the payment.
    pub fn double_payment(
        &self,
        index: usize,
        transaction: TransactionId,
        line: usize,
        at: DateTime<Utc>,
    ) -> crate::Exception {
        let option = &self.options[index];
        let label = option.kind.label();
        crate::Exception::new(
            self.creditor_id,
            crate::ExceptionKind::DoublePayment,
            format!("position:{}:{label}:{transaction}", self.id),
            format!(
                "option {label} of debt position {} ({}) was paid after the position had been settled another way",
                self.key, option.notice_number
            ),
            at,
        )
        .with_transaction(transaction)
        .with_lines([line])
        .with_amount(option.amount)
        .excess()
    }

    /// The earliest due date among the options still payable.
    pub fn next_due(&self) -> Option<NaiveDate> {
        self.payable()
            .iter()
            .map(|&i| self.options[i].due_date)
            .min()
    }
}

/// An option as a module registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOption {
    /// How much.
    pub amount: Money,
    /// When it is due.
    pub due_date: NaiveDate,
    /// What the notice prints for it; the position's reason when `None`.
    pub description: Option<String>,
    /// Where the money goes, up to five shares adding up to `amount`. Empty: all of it to
    /// the creditor, on the IBAN its pagoPA settings name.
    pub transfers: Vec<Transfer>,
}

impl NewOption {
    /// An option of `amount` due on `due_date`, all of it to the creditor.
    pub fn new(amount: Money, due_date: NaiveDate) -> Self {
        NewOption {
            amount,
            due_date,
            description: None,
            transfers: Vec::new(),
        }
    }

    /// Adds a transfer.
    pub fn with_transfer(mut self, transfer: Transfer) -> Self {
        self.transfers.push(transfer);
        self
    }

    /// Sets the description the notice prints.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A debt position as a module registers it
/// ([`Payments::register_position`](crate::Payments::register_position)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDebtPosition {
    /// The module registering it.
    pub module: String,
    /// The module's key for it: registering the same key again returns the first.
    pub key: String,
    /// Who owes it.
    pub payer: PositionPayer,
    /// Its payment type.
    pub payment_type_id: PaymentTypeId,
    /// The reason (*oggetto del pagamento*), at most 140 characters.
    pub reason: String,
    /// The last day it can be paid, if any.
    pub valid_until: Option<NaiveDate>,
    /// The single option, if any.
    pub single: Option<NewOption>,
    /// The instalments, in order; none, or two or more.
    pub instalments: Vec<NewOption>,
    /// Registered as a draft, to publish later; published (payable) when `false`.
    pub draft: bool,
}

impl NewDebtPosition {
    /// A position with no options yet; add them with [`NewDebtPosition::with_single`] and
    /// [`NewDebtPosition::with_instalment`].
    pub fn new(
        module: impl Into<String>,
        key: impl Into<String>,
        payer: PositionPayer,
        payment_type_id: PaymentTypeId,
        reason: impl Into<String>,
    ) -> Self {
        NewDebtPosition {
            module: module.into(),
            key: key.into(),
            payer,
            payment_type_id,
            reason: reason.into(),
            valid_until: None,
            single: None,
            instalments: Vec::new(),
            draft: false,
        }
    }

    /// Sets the single option.
    pub fn with_single(mut self, option: NewOption) -> Self {
        self.single = Some(option);
        self
    }

    /// Adds an instalment.
    pub fn with_instalment(mut self, option: NewOption) -> Self {
        self.instalments.push(option);
        self
    }

    /// Sets the last day it can be paid.
    pub fn valid_until(mut self, date: NaiveDate) -> Self {
        self.valid_until = Some(date);
        self
    }

    /// Registers it as a draft.
    pub fn draft(mut self) -> Self {
        self.draft = true;
        self
    }

    /// Checks it and returns it normalised, or every problem with its field
    /// (`payer.fiscal_code`, `instalments[1].transfers[0].iban`, …). `max_item` is the
    /// creditor's limit per item.
    pub(crate) fn check(&self, max_item: &Money) -> crate::Result<NewDebtPosition> {
        let mut errors = ValidationErrors::default();
        let mut p = self.clone();
        check_key(&mut errors, "module", &self.module);
        let key = self.key.trim();
        if key.is_empty()
            || key.len() > MAX_POSITION_KEY_LEN
            || key.chars().any(|c| c.is_control() || c == '#')
        {
            errors.push(
                "key",
                format!("must have 1 to {MAX_POSITION_KEY_LEN} printable characters, without #"),
            );
        }
        p.key = key.to_owned();
        p.payer = self.payer.check(&mut errors);
        p.reason = crate::item::check_reason(&mut errors, &self.reason);
        if self.single.is_none() && self.instalments.is_empty() {
            errors.push(
                "single",
                "a position needs a single option, instalments, or both",
            );
        }
        if self.instalments.len() == 1 {
            errors.push("instalments", "a plan has two or more instalments");
        }
        if self.instalments.len() > MAX_INSTALMENTS {
            errors.push("instalments", format!("at most {MAX_INSTALMENTS}"));
        }
        let check_option = |o: &NewOption, at: &str, errors: &mut ValidationErrors| {
            let mut o = o.clone();
            if !o.amount.is_positive() {
                errors.push(format!("{at}.amount"), crate::Problem::MustBePositive);
            } else if o.amount.minor_units() > max_item.minor_units() {
                errors.push(
                    format!("{at}.amount"),
                    format!("is over the creditor's limit of {max_item}"),
                );
            }
            if let Some(d) = &o.description {
                let d = d.trim();
                if d.chars().count() > MAX_REASON_LEN {
                    errors.push(
                        format!("{at}.description"),
                        format!("at most {MAX_REASON_LEN} characters"),
                    );
                }
                o.description = (!d.is_empty()).then(|| d.to_owned());
            }
            if let Some(last) = self.valid_until
                && o.due_date > last
            {
                errors.push(format!("{at}.due_date"), "is after the position's validity");
            }
            if o.transfers.len() > MAX_TRANSFERS {
                errors.push(
                    format!("{at}.transfers"),
                    format!("at most {MAX_TRANSFERS}"),
                );
            }
            o.transfers = o
                .transfers
                .iter()
                .enumerate()
                .map(|(i, t)| t.check(errors, &format!("{at}.transfers[{i}]")))
                .collect();
            if !o.transfers.is_empty() {
                let sum = Money::sum(o.amount.currency(), o.transfers.iter().map(|t| &t.amount));
                if sum.as_ref().ok() != Some(&o.amount) {
                    errors.push(
                        format!("{at}.transfers"),
                        format!("must add up to {}", o.amount),
                    );
                }
            }
            o
        };
        p.single = self
            .single
            .as_ref()
            .map(|o| check_option(o, "single", &mut errors));
        p.instalments = self
            .instalments
            .iter()
            .enumerate()
            .map(|(i, o)| check_option(o, &format!("instalments[{i}]"), &mut errors))
            .collect();
        if p.instalments
            .windows(2)
            .any(|w| w[1].due_date < w[0].due_date)
        {
            errors.push("instalments", "due dates must not go back in time");
        }
        errors.into_result().map(|()| p)
    }

    /// The position this registers, with `notices` (one per option, the single option
    /// first) and the creditor's default share when an option names none.
    pub(crate) fn build(
        self,
        creditor_id: CreditorId,
        notices: Vec<String>,
        now: DateTime<Utc>,
        default_transfer: impl Fn(&Money, &str) -> Vec<Transfer>,
    ) -> DebtPosition {
        let n = self.instalments.len() as u32;
        let kinds = self.single.iter().map(|o| (OptionKind::Single, o)).chain(
            self.instalments.iter().enumerate().map(|(i, o)| {
                (
                    OptionKind::Instalment {
                        number: i as u32 + 1,
                        of: n,
                    },
                    o,
                )
            }),
        );
        let options = kinds
            .zip(notices)
            .map(|((kind, o), notice_number)| {
                let description = o.description.clone().unwrap_or_else(|| self.reason.clone());
                let transfers = if o.transfers.is_empty() {
                    default_transfer(&o.amount, &description)
                } else {
                    o.transfers.clone()
                };
                PaymentOption {
                    kind,
                    notice_number,
                    amount: o.amount,
                    due_date: o.due_date,
                    description,
                    transfers,
                    paid_by: None,
                    paid_at: None,
                }
            })
            .collect();
        DebtPosition {
            id: DebtPositionId::new(),
            creditor_id,
            module: self.module,
            key: self.key,
            payer: self.payer,
            payment_type_id: self.payment_type_id,
            reason: self.reason,
            status: if self.draft {
                PositionStatus::Draft
            } else {
                PositionStatus::Valid
            },
            valid_until: self.valid_until,
            options,
            version: 1,
            revision: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// The position this describes, as the library registers it for `creditor_id`:
    /// `notices` give the options their notice numbers (the single option first), and an
    /// option keeps the transfers it names. For a position held elsewhere (pagoPA's
    /// archive) that a host prints or mails, and for tests; the library's own registration
    /// is [`Payments::register_position`](crate::Payments::register_position).
    pub fn to_position(
        self,
        creditor_id: CreditorId,
        notices: Vec<String>,
        now: DateTime<Utc>,
    ) -> DebtPosition {
        self.build(creditor_id, notices, now, |_, _| Vec::new())
    }

    /// How many options it has.
    pub fn option_count(&self) -> usize {
        usize::from(self.single.is_some()) + self.instalments.len()
    }
}

/// A change in a debt position's life, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionEvent {
    /// The position.
    pub position_id: DebtPositionId,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// The status before (`None` at registration).
    pub from: Option<PositionStatus>,
    /// The status after.
    pub to: PositionStatus,
    /// What changed.
    pub note: String,
}

/// A change to an unpaid position ([`Payments::update_position`](crate::Payments::update_position)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionChange {
    /// A new reason.
    pub reason: Option<String>,
    /// New amounts, due dates or transfers of options, by index (the single option first).
    pub options: Vec<OptionChange>,
}

/// A change to one option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionChange {
    /// Which option (the single option first, then the instalments).
    pub index: usize,
    /// A new amount; an option with one transfer moves it with the amount, one with more
    /// needs `transfers`.
    pub amount: Option<Money>,
    /// A new due date.
    pub due_date: Option<NaiveDate>,
    /// New transfers.
    pub transfers: Option<Vec<Transfer>>,
}

impl OptionChange {
    /// A change of option `index`.
    pub fn new(index: usize) -> Self {
        OptionChange {
            index,
            amount: None,
            due_date: None,
            transfers: None,
        }
    }

    /// Sets the new amount.
    pub fn amount(mut self, amount: Money) -> Self {
        self.amount = Some(amount);
        self
    }

    /// Sets the new due date.
    pub fn due_date(mut self, date: NaiveDate) -> Self {
        self.due_date = Some(date);
        self
    }
}

/// An operator's or a sweep's selection of positions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionQuery {
    /// The creditor; `None` only for the system's sweeps.
    pub creditor_id: Option<CreditorId>,
    /// Only in this status.
    pub status: Option<PositionStatus>,
    /// Only those that can be paid now (`Valid`, `PartiallyPaid`).
    pub payable_only: bool,
    /// Only of this payment type.
    pub payment_type_id: Option<PaymentTypeId>,
    /// Only of this payer (fiscal code).
    pub payer: Option<String>,
    /// Only those with an unpaid option due on or after this day.
    pub due_from: Option<NaiveDate>,
    /// Only those with an unpaid option due on or before this day.
    pub due_to: Option<NaiveDate>,
    /// Only those whose validity ended before this day.
    pub valid_before: Option<NaiveDate>,
    /// Keyset paging: only those older than this one.
    pub before: Option<DebtPositionId>,
    /// At most this many (1 to [`MAX_PAGE_SIZE`](crate::MAX_PAGE_SIZE)).
    pub limit: u32,
}

impl PositionQuery {
    /// A creditor's positions, 50 at a time.
    pub fn of(creditor: CreditorId) -> Self {
        PositionQuery {
            creditor_id: Some(creditor),
            status: None,
            payable_only: false,
            payment_type_id: None,
            payer: None,
            due_from: None,
            due_to: None,
            valid_before: None,
            before: None,
            limit: 50,
        }
    }

    /// Whether `p` is selected (for stores that filter in memory).
    pub fn matches(&self, p: &DebtPosition) -> bool {
        self.creditor_id.is_none_or(|c| c == p.creditor_id)
            && self.status.is_none_or(|s| s == p.status)
            && (!self.payable_only || p.status.is_payable())
            && self.payment_type_id.is_none_or(|t| t == p.payment_type_id)
            && self
                .payer
                .as_ref()
                .is_none_or(|f| *f == p.payer.fiscal_code)
            && (self.due_from.is_none() && self.due_to.is_none()
                || p.options.iter().any(|o| {
                    o.paid_by.is_none()
                        && self.due_from.is_none_or(|d| o.due_date >= d)
                        && self.due_to.is_none_or(|d| o.due_date <= d)
                }))
            && self
                .valid_before
                .is_none_or(|d| p.valid_until.is_some_and(|v| v < d))
            && self.before.is_none_or(|b| p.id < b)
    }
}

/// A row of a bulk registration that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefusedRow {
    /// The row (from 1; for a CSV file, the line after the header, counted from 1).
    pub row: u64,
    /// The position's key, when it could be read.
    pub key: Option<String>,
    /// The field at fault (`amount`, `payer.fiscal_code`, `instalments[1].due_date`, …).
    pub field: String,
    /// What is wrong with it, in English for logs.
    pub reason: String,
    /// What is wrong with it, as a code with parameters ([`Problem::message`](crate::Problem::message) reads it in
    /// Italian or English).
    #[serde(default = "crate::error::unspecified")]
    pub problem: crate::Problem,
}

/// What a bulk registration did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BulkReport {
    /// Positions registered now.
    pub registered: u64,
    /// Positions whose key was already registered: left as they were.
    pub unchanged: u64,
    /// Rows refused, each with its field.
    pub refused: Vec<RefusedRow>,
}

/// When a payment type's reminders go out: days before each due date, and days after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderPlan {
    /// Days before a due date a reminder goes out (e.g. 7 and 1).
    pub before: Vec<u32>,
    /// Days after a due date one last reminder goes out, if any.
    pub after: Option<u32>,
}

impl ReminderPlan {
    /// Reminders `before` days ahead of each due date and, if given, `after` days past it.
    pub fn new(before: impl IntoIterator<Item = u32>, after: Option<u32>) -> Self {
        let mut before: Vec<u32> = before.into_iter().collect();
        before.sort_unstable_by(|a, b| b.cmp(a));
        before.dedup();
        ReminderPlan { before, after }
    }

    /// The reminder due on `today` for an option due on `due`, as a signed offset in days
    /// from the due date (−7: a week before; 3: three days after), or `None`. A step is due
    /// from its day until the next step's day, so a sweep that missed a day still sends it
    /// once (the outbox key makes it once).
    pub fn step_for(&self, due: NaiveDate, today: NaiveDate) -> Option<i64> {
        let mut steps: Vec<i64> = self.before.iter().map(|d| -i64::from(*d)).collect();
        steps.sort_unstable();
        if let Some(a) = self.after {
            steps.push(i64::from(a));
        }
        let offset = (today - due).num_days();
        let mut current = None;
        for (i, s) in steps.iter().enumerate() {
            let next = steps.get(i + 1).copied();
            // A step before the due date lasts until the next one or the due date; the
            // step after it, a week.
            let end = match next {
                _ if *s < 0 => next.unwrap_or(1).min(1),
                Some(n) => n,
                None => s + 7,
            };
            if offset >= *s && offset < end {
                current = Some(*s);
            }
        }
        current
    }
}

/// The debt position and option that an item of `creditor` with `source` pays, read from
/// `store`, when it was put in a cart from one ([`DebtPosition::source`]); `None` for any
/// other item, or one of an option no longer in the position. What
/// [`Payments::position_option_of`](crate::Payments::position_option_of) answers, for a
/// gateway that holds only the store.
pub async fn position_option_of(
    store: &dyn crate::Store,
    creditor: CreditorId,
    source: &Source,
) -> crate::Result<Option<(DebtPosition, usize)>> {
    let Some((key, rest)) = source.key.rsplit_once('#') else {
        return Ok(None);
    };
    let label = rest.split('.').next().unwrap_or(rest);
    let Some(p) = store.position_by_key(creditor, &source.module, key).await? else {
        return Ok(None);
    };
    let index = p.options.iter().position(|o| o.kind.label() == label);
    Ok(index
        .filter(|&i| p.sources_of(i).contains(source))
        .map(|i| (p, i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(cents: i64) -> Money {
        Money::from_minor(cents, crate::Currency::Eur).unwrap()
    }

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn sample() -> DebtPosition {
        NewDebtPosition::new(
            "tari",
            "TARI-2026-1",
            PositionPayer::new("RSSMRA80A01H501U", "Mario Rossi"),
            PaymentTypeId::new(),
            "TARI 2026",
        )
        .with_single(NewOption::new(eur(30000), day("2026-03-31")))
        .with_instalment(NewOption::new(eur(15000), day("2026-03-31")))
        .with_instalment(NewOption::new(eur(15000), day("2026-09-30")))
        .build(
            CreditorId::new(),
            vec!["301".into(), "302".into(), "303".into()],
            Utc::now(),
            |_, _| Vec::new(),
        )
    }

    #[test]
    fn paying_the_single_option_closes_the_plan_and_an_instalment_the_single_option() {
        // pagoPA, SANP "Gestione delle posizioni debitorie": an option of the plan paid
        // makes the position partially paid and the single option no longer payable.
        let mut p = sample();
        assert_eq!(p.payable(), vec![0, 1, 2]);
        let (event, twice) = p
            .record_payment(1, TransactionId::new(), Utc::now())
            .unwrap();
        assert!(!twice);
        assert_eq!(event.to, PositionStatus::PartiallyPaid);
        assert_eq!(p.payable(), vec![2]);
        assert_eq!(p.check_payable(0), Err(OptionRefusal::Closed));
        // The single option paid anyway is money held twice.
        let (_, twice) = p
            .record_payment(0, TransactionId::new(), Utc::now())
            .unwrap();
        assert!(twice);

        let mut p = sample();
        p.record_payment(0, TransactionId::new(), Utc::now())
            .unwrap();
        assert_eq!(p.status, PositionStatus::Paid);
        assert!(p.payable().is_empty());
    }

    #[test]
    fn a_payment_given_back_makes_the_option_payable_again() {
        let mut p = sample();
        let t = TransactionId::new();
        p.record_payment(1, t, Utc::now()).unwrap();
        assert!(
            p.record_refund(1, TransactionId::new(), Utc::now())
                .is_none(),
            "not its payer"
        );
        let event = p.record_refund(1, t, Utc::now()).unwrap();
        assert_eq!(
            (event.from, event.to),
            (Some(PositionStatus::PartiallyPaid), PositionStatus::Valid)
        );
        assert_eq!(p.payable(), vec![0, 1, 2]);
        assert_eq!(p.closed_by(0), vec![1, 2]);
        assert_eq!(p.closed_by(2), vec![0]);
    }

    #[test]
    fn money_for_a_withdrawn_position_is_given_back_and_an_expired_one_is_paid() {
        let mut p = sample();
        p.status = PositionStatus::Invalid;
        let (event, excess) = p
            .record_payment(0, TransactionId::new(), Utc::now())
            .unwrap();
        assert!(excess);
        assert_eq!(event.to, PositionStatus::Invalid);
        let mut p = sample();
        p.status = PositionStatus::Expired;
        let (event, excess) = p
            .record_payment(0, TransactionId::new(), Utc::now())
            .unwrap();
        assert!(!excess);
        assert_eq!(event.to, PositionStatus::Paid);
    }

    #[test]
    fn every_instalment_paid_pays_the_position_and_a_replay_changes_nothing() {
        let mut p = sample();
        let t = TransactionId::new();
        p.record_payment(1, t, Utc::now()).unwrap();
        assert!(p.record_payment(1, t, Utc::now()).is_none());
        p.record_payment(2, TransactionId::new(), Utc::now())
            .unwrap();
        assert_eq!(p.status, PositionStatus::Paid);
        assert_eq!(p.paid(), eur(30000));
    }

    #[test]
    fn a_position_is_checked_field_by_field() {
        let bad = NewDebtPosition::new(
            "tari",
            "K#1",
            PositionPayer::new("XYZ", ""),
            PaymentTypeId::new(),
            "",
        )
        .with_instalment(NewOption::new(eur(0), day("2026-03-31")).with_transfer(
            Transfer::to_iban("00000000000", "IT00X", eur(1), "", "TARI"),
        ));
        let errors = bad.check(&eur(1_000_000)).unwrap_err();
        let fields = errors.validation_errors().unwrap().fields();
        for f in [
            "key",
            "payer.fiscal_code",
            "payer.name",
            "reason",
            "instalments",
            "instalments[0].amount",
            "instalments[0].transfers[0].iban",
            "instalments[0].transfers[0].remittance",
            "instalments[0].transfers[0].taxonomy",
            "instalments[0].transfers",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn taxonomy_codes_read_as_pagopa_defines_them() {
        // SANP, "Tassonomia dei servizi di incasso": prefix 9/, 6/, 7/ or 8/, then
        // \d{2}\d{2}\d{3}, the legal reason and a final slash.
        assert!(is_taxonomy_code("9/0101101IM/"));
        for prefix in ["6", "7", "8"] {
            assert!(is_taxonomy_code(&format!("{prefix}/0201102IM/")));
        }
        assert!(
            !is_taxonomy_code("0/0201102IM/"),
            "not a prefix pagoPA defines"
        );
        assert!(!is_taxonomy_code("9/0101101IM"));
        assert!(!is_taxonomy_code("9/010110IM/"));
        assert!(!is_taxonomy_code("9/0101101im/"));
        assert!(!is_taxonomy_code("TARI"));
    }

    #[test]
    fn reminders_go_out_on_their_days_and_once_a_step() {
        let plan = ReminderPlan::new([1, 7], Some(3));
        let due = day("2026-03-31");
        assert_eq!(plan.step_for(due, day("2026-03-23")), None);
        assert_eq!(plan.step_for(due, day("2026-03-24")), Some(-7));
        assert_eq!(plan.step_for(due, day("2026-03-29")), Some(-7));
        assert_eq!(plan.step_for(due, day("2026-03-30")), Some(-1));
        assert_eq!(plan.step_for(due, day("2026-03-31")), Some(-1));
        assert_eq!(plan.step_for(due, day("2026-04-01")), None);
        assert_eq!(plan.step_for(due, day("2026-04-03")), Some(3));
        assert_eq!(plan.step_for(due, day("2026-04-10")), None);
    }
}
