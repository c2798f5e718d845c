//! What a creditor configures: itself, its payment types with their extra fields, and the
//! payment methods it enabled. Also the [`Payer`] a host identifies.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{
    CreditorId, Error, GatewayId, Locale, MethodId, Money, PayerId, PaymentTypeId, Problem, Result,
    ValidationErrors,
};

/// Longest name of a creditor, payment type, method or payer.
pub const MAX_NAME_LEN: usize = 200;
/// Longest reason (*causale*): the SEPA remittance information limit.
pub const MAX_REASON_LEN: usize = 140;
/// Longest value of a text extra field, whatever its spec says.
pub const MAX_TEXT_FIELD_LEN: usize = 1000;
/// Longest field key, module name or similar identifier.
pub const MAX_KEY_LEN: usize = 64;
/// Longest source key a module may use.
pub const MAX_SOURCE_KEY_LEN: usize = 200;

/// A public body that collects payments (*ente creditore*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creditor {
    /// Its id.
    pub id: CreditorId,
    /// Its name, as citizens read it on receipts.
    pub name: String,
    /// Its fiscal code (11 digits for a public body, or 16 characters).
    pub fiscal_code: String,
    /// Where the notice of every completed payment goes.
    pub notification_email: String,
    /// The largest amount of one item.
    pub max_item_amount: Money,
    /// The largest total of one transaction.
    pub max_transaction_amount: Money,
    /// What its printed notices say of it besides name and fiscal code.
    #[serde(default)]
    pub notice: CreditorNotice,
}

/// What a creditor's printed pagoPA notices carry besides its name and fiscal code (the
/// notice specification's `ENTE.SETTORE`, `ENTE.INFO` and CBILL code).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditorNotice {
    /// The office or sector issuing the notices (*Settore Tributi*).
    pub sector: Option<String>,
    /// How to reach it: website, phone, email, on one line.
    pub info: Option<String>,
    /// The body's CBILL code (five characters), printed so home banking can pay by CBILL.
    pub cbill: Option<String>,
    /// Whether the body's own website takes payments (the notice then says so).
    pub pays_online: bool,
}

impl Creditor {
    /// A creditor with checked fields and default limits (€ 10.000 per item, € 50.000 per
    /// transaction).
    pub fn new(
        name: impl Into<String>,
        fiscal_code: impl Into<String>,
        notification_email: impl Into<String>,
    ) -> Result<Self> {
        let creditor = Creditor {
            id: CreditorId::new(),
            name: name.into(),
            fiscal_code: fiscal_code.into().trim().to_ascii_uppercase(),
            notification_email: notification_email.into(),
            max_item_amount: Money::from_minor(1_000_000, crate::Currency::Eur)
                .map_err(|e| Error::invalid("max_item_amount", e.to_string()))?,
            max_transaction_amount: Money::from_minor(5_000_000, crate::Currency::Eur)
                .map_err(|e| Error::invalid("max_transaction_amount", e.to_string()))?,
            notice: CreditorNotice::default(),
        };
        creditor.validate()?;
        Ok(creditor)
    }

    /// Sets what its printed notices say of it (sector, contacts, CBILL code).
    pub fn with_notice(mut self, notice: CreditorNotice) -> Self {
        self.notice = notice;
        self
    }

    /// Sets the limits, which must be positive.
    pub fn with_limits(mut self, max_item: Money, max_transaction: Money) -> Result<Self> {
        self.max_item_amount = max_item;
        self.max_transaction_amount = max_transaction;
        self.validate()?;
        Ok(self)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let mut errors = ValidationErrors::default();
        check_name(&mut errors, "name", &self.name);
        if let Err(reason) = FieldKind::FiscalCode.check(&self.fiscal_code) {
            errors.push("fiscal_code", reason);
        }
        if let Err(reason) = FieldKind::Email.check(&self.notification_email) {
            errors.push("notification_email", reason);
        }
        if !self.max_item_amount.is_positive() {
            errors.push("max_item_amount", "must be positive");
        }
        if !self.max_transaction_amount.is_positive() {
            errors.push("max_transaction_amount", "must be positive");
        }
        errors.into_result()
    }
}

/// The kind of value an extra field holds, with its constraints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FieldKind {
    /// Free text up to `max_len` characters (never more than [`MAX_TEXT_FIELD_LEN`]).
    Text {
        /// Most characters accepted.
        max_len: usize,
    },
    /// A whole number, optionally bounded.
    Integer {
        /// Smallest accepted, if any.
        min: Option<i64>,
        /// Largest accepted, if any.
        max: Option<i64>,
    },
    /// A decimal number with at most `max_decimals` decimals; `.` or `,` as separator.
    Decimal {
        /// Most decimals accepted.
        max_decimals: u32,
    },
    /// A calendar date, `YYYY-MM-DD` or `DD/MM/YYYY`; stored as `YYYY-MM-DD`.
    Date,
    /// An email address.
    Email,
    /// An Italian fiscal code: 16 characters for a person (with its check character) or 11
    /// digits for a legal person (with its check digit).
    FiscalCode,
    /// An IBAN, with its check digits; stored without spaces, in upper case.
    Iban,
    /// One of a list of options.
    OneOf {
        /// The accepted values.
        options: Vec<String>,
    },
}

impl FieldKind {
    /// Checks a raw value and returns its normalised form, or why it is refused.
    pub fn check(&self, raw: &str) -> std::result::Result<String, Problem> {
        let value = raw.trim();
        match self {
            FieldKind::Text { max_len } => {
                let max = (*max_len).min(MAX_TEXT_FIELD_LEN);
                let len = value.chars().count();
                if len > max {
                    return Err(Problem::TooLong { max });
                }
                if value.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(Problem::ControlCharacters);
                }
                Ok(value.to_owned())
            }
            FieldKind::Integer { min, max } => {
                let n: i64 = value.parse().map_err(|_| Problem::NotAWholeNumber)?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(match (min, max) {
                        (Some(a), Some(b)) => Problem::Between {
                            min: a.to_string(),
                            max: b.to_string(),
                        },
                        (Some(a), None) => Problem::AtLeast { min: a.to_string() },
                        (None, Some(b)) => Problem::AtMost { max: b.to_string() },
                        (None, None) => unreachable!("bounds were checked"),
                    });
                }
                Ok(n.to_string())
            }
            FieldKind::Decimal { max_decimals } => {
                if value.len() > 40
                    || !value.chars().enumerate().all(|(i, c)| {
                        c.is_ascii_digit() || c == '.' || c == ',' || (i == 0 && c == '-')
                    })
                {
                    return Err(Problem::NotANumber);
                }
                let d = rust_decimal::Decimal::from_str_exact(&value.replace(',', "."))
                    .map_err(|_| Problem::NotANumber)?;
                if d.normalize().scale() > *max_decimals {
                    return Err(Problem::TooManyDecimals { max: *max_decimals });
                }
                Ok(d.normalize().to_string())
            }
            FieldKind::Date => {
                let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .or_else(|_| NaiveDate::parse_from_str(value, "%d/%m/%Y"))
                    .map_err(|_| Problem::NotADate)?;
                Ok(date.format("%Y-%m-%d").to_string())
            }
            FieldKind::Email => {
                if value.len() > 254 {
                    return Err(Problem::NotAnEmail);
                }
                let parsed = email_address::EmailAddress::parse_with_options(
                    value,
                    email_address::Options::default().without_display_text(),
                )
                .map_err(|_| Problem::NotAnEmail)?;
                // Public portals need a routable domain: a dot after the `@`.
                if !parsed.domain().contains('.') {
                    return Err(Problem::NotAnEmail);
                }
                Ok(parsed.as_str().to_owned())
            }
            FieldKind::FiscalCode => {
                let upper = value.to_ascii_uppercase();
                if upper.len() == 11 && upper.chars().all(|c| c.is_ascii_digit()) {
                    if luhn::valid(&upper) {
                        Ok(upper)
                    } else {
                        Err(Problem::NotAFiscalCode)
                    }
                } else if upper.len() == 16 {
                    crate::fiscal_code::check_person(&upper)
                        .map(|()| upper)
                        .map_err(|reason| {
                            if reason.starts_with("a fiscal code has") {
                                Problem::FiscalCodeLength
                            } else {
                                Problem::NotAFiscalCode
                            }
                        })
                } else {
                    Err(Problem::FiscalCodeLength)
                }
            }
            FieldKind::Iban => {
                use iban::IbanLike;
                value
                    .parse::<iban::Iban>()
                    .map(|i| i.electronic_str().to_owned())
                    .map_err(|_| Problem::NotAnIban)
            }
            FieldKind::OneOf { options } => options
                .iter()
                .find(|o| o.as_str() == value)
                .cloned()
                .ok_or_else(|| Problem::OneOf {
                    options: options.clone(),
                }),
        }
    }
}

/// One extra field a payment type asks for (*informazione aggiuntiva*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// The key the value is kept under, `[a-z0-9_]`.
    pub key: String,
    /// What the citizen reads beside the input.
    pub label: String,
    /// The kind of value and its constraints.
    pub kind: FieldKind,
    /// Whether the citizen must fill it in (*obbligatorietà*).
    pub required: bool,
}

impl FieldSpec {
    /// A required field.
    pub fn required(key: impl Into<String>, label: impl Into<String>, kind: FieldKind) -> Self {
        FieldSpec {
            key: key.into(),
            label: label.into(),
            kind,
            required: true,
        }
    }

    /// An optional field.
    pub fn optional(key: impl Into<String>, label: impl Into<String>, kind: FieldKind) -> Self {
        FieldSpec {
            required: false,
            ..FieldSpec::required(key, label, kind)
        }
    }
}

/// How the amount of an item of a type is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AmountRule {
    /// Always this amount; a free item may leave the amount out.
    Fixed {
        /// The amount.
        amount: Money,
    },
    /// Any positive amount under the creditor's limit.
    Free,
    /// Between `min` and `max`, both included.
    Range {
        /// Smallest accepted.
        min: Money,
        /// Largest accepted.
        max: Money,
    },
}

/// How a payment is made. A creditor enables methods; a payment type accepts some kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MethodKind {
    /// A payment card through a provider's hosted page.
    Card,
    /// SEPA direct debit (the old *RID online*).
    SepaDirectDebit,
    /// Debit of the payer's account through their bank (MyBank and the like).
    AccountDebit,
    /// Bank transfer (*bonifico*): the payer reports it, the creditor confirms it.
    BankTransfer,
    /// A pagoPA notice.
    PagoPa,
}

impl MethodKind {
    /// Every kind.
    pub const ALL: [MethodKind; 5] = [
        MethodKind::Card,
        MethodKind::SepaDirectDebit,
        MethodKind::AccountDebit,
        MethodKind::BankTransfer,
        MethodKind::PagoPa,
    ];

    /// The snake_case name used in storage and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Card => "card",
            MethodKind::SepaDirectDebit => "sepa_direct_debit",
            MethodKind::AccountDebit => "account_debit",
            MethodKind::BankTransfer => "bank_transfer",
            MethodKind::PagoPa => "pago_pa",
        }
    }

    /// Reads a name written by [`MethodKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        MethodKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The name a citizen reads.
    pub fn label(self, locale: Locale) -> &'static str {
        match (self, locale) {
            (MethodKind::Card, Locale::It) => "Carta di pagamento",
            (MethodKind::Card, Locale::En) => "Payment card",
            (MethodKind::SepaDirectDebit, Locale::It) => "Addebito diretto SEPA",
            (MethodKind::SepaDirectDebit, Locale::En) => "SEPA direct debit",
            (MethodKind::AccountDebit, Locale::It) => "Addebito in conto",
            (MethodKind::AccountDebit, Locale::En) => "Account debit",
            (MethodKind::BankTransfer, Locale::It) => "Bonifico bancario",
            (MethodKind::BankTransfer, Locale::En) => "Bank transfer",
            (MethodKind::PagoPa, _) => "pagoPA",
        }
    }
}

/// A kind of payment a creditor collects (*tipologia di pagamento*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentType {
    /// Its id.
    pub id: PaymentTypeId,
    /// The creditor that defined it.
    pub creditor_id: CreditorId,
    /// A short code for exports and modules: `"TARI"`, `"DIRITTI_SEGRETERIA"`.
    pub code: String,
    /// Its name, as citizens read it.
    pub name: String,
    /// The extra fields an item of this type carries.
    pub fields: Vec<FieldSpec>,
    /// How the amount is decided.
    pub amount_rule: AmountRule,
    /// Whether citizens may create free payments (*pagamenti liberi*) of this type.
    pub free_payments: bool,
    /// The method kinds that may pay it.
    pub methods: Vec<MethodKind>,
    /// When the payers of its debt positions are reminded of a due date.
    #[serde(default)]
    pub reminders: crate::ReminderPlan,
}

impl PaymentType {
    /// A payment type with no extra fields, a free amount, no free payments and every
    /// method kind; adjust with the `with_*` methods.
    pub fn new(creditor_id: CreditorId, code: impl Into<String>, name: impl Into<String>) -> Self {
        PaymentType {
            id: PaymentTypeId::new(),
            creditor_id,
            code: code.into(),
            name: name.into(),
            fields: Vec::new(),
            amount_rule: AmountRule::Free,
            free_payments: false,
            methods: MethodKind::ALL.to_vec(),
            reminders: crate::ReminderPlan::default(),
        }
    }

    /// Sets when the payers of its debt positions are reminded of a due date.
    pub fn with_reminders(mut self, plan: crate::ReminderPlan) -> Self {
        self.reminders = plan;
        self
    }

    /// Adds an extra field.
    pub fn with_field(mut self, field: FieldSpec) -> Self {
        self.fields.push(field);
        self
    }

    /// Sets the amount rule.
    pub fn with_amount_rule(mut self, rule: AmountRule) -> Self {
        self.amount_rule = rule;
        self
    }

    /// Allows or forbids free payments of this type.
    pub fn with_free_payments(mut self, allowed: bool) -> Self {
        self.free_payments = allowed;
        self
    }

    /// Sets the accepted method kinds.
    pub fn with_methods(mut self, methods: impl IntoIterator<Item = MethodKind>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Checks the definition itself: names, unique well-formed keys, a coherent amount rule.
    pub fn validate(&self) -> Result<()> {
        let mut errors = ValidationErrors::default();
        check_key(&mut errors, "code", &self.code.to_ascii_lowercase());
        check_name(&mut errors, "name", &self.name);
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in self.fields.iter().enumerate() {
            check_key(&mut errors, &format!("fields[{i}].key"), &f.key);
            check_name(&mut errors, &format!("fields[{i}].label"), &f.label);
            if !seen.insert(f.key.as_str()) {
                errors.push(format!("fields[{i}].key"), "duplicate key");
            }
            if let FieldKind::OneOf { options } = &f.kind
                && options.is_empty()
            {
                errors.push(format!("fields[{i}].kind"), "needs at least one option");
            }
        }
        match &self.amount_rule {
            AmountRule::Fixed { amount } if !amount.is_positive() => {
                errors.push("amount_rule", "a fixed amount must be positive")
            }
            AmountRule::Range { min, max }
                if !min.is_positive() || min.compare(max) != Some(std::cmp::Ordering::Less) =>
            {
                errors.push("amount_rule", "a range needs 0 < min < max")
            }
            _ => {}
        }
        if self.methods.is_empty() {
            errors.push("methods", "accepts no method");
        }
        errors.into_result()
    }

    /// Checks an item's amount against this type's rule and the creditor's limit.
    pub fn check_amount(
        &self,
        amount: &Money,
        creditor: &Creditor,
    ) -> std::result::Result<(), Problem> {
        if !amount.is_positive() {
            return Err(Problem::MustBePositive);
        }
        if amount.compare(&creditor.max_item_amount) == Some(std::cmp::Ordering::Greater) {
            return Err(Problem::AmountAtMost {
                max: creditor.max_item_amount,
            });
        }
        match &self.amount_rule {
            AmountRule::Fixed { amount: fixed } if fixed != amount => {
                Err(Problem::MustBe { amount: *fixed })
            }
            AmountRule::Range { min, max }
                if amount.compare(min) == Some(std::cmp::Ordering::Less)
                    || amount.compare(max) == Some(std::cmp::Ordering::Greater) =>
            {
                Err(Problem::AmountBetween {
                    min: *min,
                    max: *max,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks raw extra values against the field specs: every required field present, each
    /// well formed, no unknown key. Errors name the field as `extra.<key>`. Returns the
    /// normalised values.
    pub fn check_extra(
        &self,
        raw: &BTreeMap<String, String>,
        errors: &mut ValidationErrors,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for key in raw.keys() {
            if !self.fields.iter().any(|f| &f.key == key) {
                let shown: String = key.chars().take(MAX_KEY_LEN).collect();
                errors.push(format!("extra.{shown}"), Problem::UnknownField);
            }
        }
        for spec in &self.fields {
            let name = format!("extra.{}", spec.key);
            match raw
                .get(&spec.key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
            {
                None if spec.required => errors.push(name, Problem::Required),
                None => {}
                Some(value) => match spec.kind.check(value) {
                    Ok(v) => {
                        out.insert(spec.key.clone(), v);
                    }
                    Err(reason) => errors.push(name, reason),
                },
            }
        }
        out
    }
}

/// A payment method a creditor enabled (*modalità di pagamento*), bound to a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    /// Its id.
    pub id: MethodId,
    /// The creditor that enabled it.
    pub creditor_id: CreditorId,
    /// What kind of method it is.
    pub kind: MethodKind,
    /// The gateway that runs it.
    pub gateway_id: GatewayId,
    /// The name shown to citizens.
    pub label: String,
    /// Whether it is offered now.
    pub enabled: bool,
}

impl PaymentMethod {
    /// An enabled method of `kind`, run by `gateway`.
    pub fn new(creditor_id: CreditorId, kind: MethodKind, gateway: impl Into<GatewayId>) -> Self {
        PaymentMethod {
            id: MethodId::new(),
            creditor_id,
            kind,
            gateway_id: gateway.into(),
            label: kind.label(Locale::It).to_owned(),
            enabled: true,
        }
    }
}

/// A citizen as the host application knows them. A fiscal code is optional data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    /// The host's id for them.
    pub id: PayerId,
    /// Their name, for receipts.
    pub name: String,
    /// Where their receipt goes, if they gave an address.
    pub email: Option<String>,
    /// Their fiscal code, if known.
    pub fiscal_code: Option<String>,
    /// The language of their texts.
    pub locale: Locale,
}

impl Payer {
    /// A payer with a name and no contact; Italian texts.
    pub fn new(id: impl Into<PayerId>, name: impl Into<String>) -> Self {
        Payer {
            id: id.into(),
            name: name.into(),
            email: None,
            fiscal_code: None,
            locale: Locale::It,
        }
    }

    /// Sets the email address receipts go to.
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the fiscal code.
    pub fn with_fiscal_code(mut self, code: impl Into<String>) -> Self {
        self.fiscal_code = Some(code.into());
        self
    }

    /// Sets the language.
    pub fn with_locale(mut self, locale: Locale) -> Self {
        self.locale = locale;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let mut errors = ValidationErrors::default();
        if self.id.0.trim().is_empty() || self.id.0.len() > MAX_NAME_LEN {
            errors.push(
                "payer.id",
                format!("must have 1 to {MAX_NAME_LEN} characters"),
            );
        }
        check_name(&mut errors, "payer.name", &self.name);
        if let Some(email) = &self.email
            && let Err(reason) = FieldKind::Email.check(email)
        {
            errors.push("payer.email", reason);
        }
        if let Some(code) = &self.fiscal_code
            && let Err(reason) = FieldKind::FiscalCode.check(code)
        {
            errors.push("payer.fiscal_code", reason);
        }
        errors.into_result()
    }
}

/// Pushes an error unless `value` is a non-empty name of at most [`MAX_NAME_LEN`] characters.
pub(crate) fn check_name(errors: &mut ValidationErrors, field: &str, value: &str) {
    let len = value.trim().chars().count();
    if len == 0 {
        errors.push(field, Problem::Required);
    } else if value.chars().count() > MAX_NAME_LEN {
        errors.push(field, Problem::TooLong { max: MAX_NAME_LEN });
    } else if value.chars().any(char::is_control) {
        errors.push(field, Problem::ControlCharacters);
    }
}

/// Pushes an error unless `value` is a key: 1 to [`MAX_KEY_LEN`] of `[a-z0-9_-]`.
pub(crate) fn check_key(errors: &mut ValidationErrors, field: &str, value: &str) {
    if value.is_empty()
        || value.len() > MAX_KEY_LEN
        || !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        errors.push(
            field,
            format!("must be 1 to {MAX_KEY_LEN} of a-z, 0-9, _ and -"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_kinds_check_and_normalise() {
        let text = FieldKind::Text { max_len: 5 };
        assert_eq!(text.check(" abc ").unwrap(), "abc");
        assert!(text.check("abcdef").is_err());
        let int = FieldKind::Integer {
            min: Some(2000),
            max: Some(2100),
        };
        assert_eq!(int.check("2024").unwrap(), "2024");
        assert!(int.check("1999").is_err());
        assert!(int.check("20x4").is_err());
        let dec = FieldKind::Decimal { max_decimals: 2 };
        assert_eq!(dec.check("12,50").unwrap(), "12.5");
        assert!(dec.check("1.234").is_err());
        assert_eq!(FieldKind::Date.check("31/12/2025").unwrap(), "2025-12-31");
        assert!(FieldKind::Date.check("2025-02-30").is_err());
        assert_eq!(
            FieldKind::Email.check("a@comune.it").unwrap(),
            "a@comune.it"
        );
        assert!(FieldKind::Email.check("a@b").is_err());
        assert!(FieldKind::Email.check("not an email").is_err());
        assert_eq!(
            FieldKind::FiscalCode.check("rssmra85t10a562s").unwrap(),
            "RSSMRA85T10A562S"
        );
        assert!(FieldKind::FiscalCode.check("RSSMRA85T10A562T").is_err());
        assert_eq!(
            FieldKind::FiscalCode.check("00488410010").unwrap(),
            "00488410010"
        );
        assert!(FieldKind::FiscalCode.check("00488410011").is_err());
        assert_eq!(
            FieldKind::Iban
                .check("IT60 X054 2811 1010 0000 0123 456")
                .unwrap(),
            "IT60X0542811101000000123456"
        );
        assert!(
            FieldKind::Iban
                .check("IT61X0542811101000000123456")
                .is_err()
        );
        let one = FieldKind::OneOf {
            options: vec!["a".into(), "b".into()],
        };
        assert_eq!(one.check("b").unwrap(), "b");
        assert!(one.check("c").is_err());
    }

    #[test]
    fn payment_type_definition_is_checked() {
        let c = CreditorId::new();
        let bad = PaymentType::new(c, "Bad Code", "")
            .with_field(FieldSpec::required("year", "Anno", FieldKind::Date))
            .with_field(FieldSpec::required("year", "Anno", FieldKind::Date))
            .with_methods([]);
        let err = bad.validate().unwrap_err();
        let fields = err.validation_errors().unwrap().fields();
        assert_eq!(fields, ["code", "name", "fields[1].key", "methods"]);
    }
}
