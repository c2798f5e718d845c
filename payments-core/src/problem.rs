//! Why a value was refused, as a code with its parameters, and the catalogue of its texts
//! in Italian and English.
//!
//! Every [`FieldError`](crate::FieldError) carries a [`Problem`]: a portal shows
//! [`Problem::message`] in the reader's language (Italian by default), a host that keeps its
//! own texts matches on the variant or on [`Problem::code`], and logs read the English text.
//!
//! ```
//! use payments_core::{Currency, Locale, Money, Problem};
//!
//! // "1,000" is a thousand euro to an English reader, one euro to an Italian: refused.
//! let refused = Money::parse_in("1,000", Currency::Eur, Locale::It).unwrap_err();
//! let problem = Problem::from(refused);
//! assert_eq!(problem.code(), "amount_ambiguous");
//! assert!(problem.message(Locale::It).contains("1.000,00"));
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Locale, Money, MoneyError};

/// Why a value was refused: a code and its parameters. The texts come from the catalogue
/// ([`Problem::message`]); the serialized form is `{"code": "...", ...parameters}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// Nothing was given where something must be.
    Required,
    /// Longer than `max` characters.
    TooLong {
        /// Most characters accepted.
        max: usize,
    },
    /// Holds control characters (tabs, escapes…).
    ControlCharacters,
    /// Not a number.
    NotANumber,
    /// Not a whole number.
    NotAWholeNumber,
    /// Outside `min`..=`max`.
    Between {
        /// The smallest accepted, as written to the reader.
        min: String,
        /// The largest accepted.
        max: String,
    },
    /// Below `min`.
    AtLeast {
        /// The smallest accepted.
        min: String,
    },
    /// Above `max`.
    AtMost {
        /// The largest accepted.
        max: String,
    },
    /// More than `max` decimals.
    TooManyDecimals {
        /// Most decimals accepted.
        max: u32,
    },
    /// Not a calendar date.
    NotADate,
    /// Not an email address (with a domain that has a dot).
    NotAnEmail,
    /// Neither 16 characters nor 11 digits.
    FiscalCodeLength,
    /// 16 or 11 characters that are not a fiscal code (letters, digits, date, place or
    /// check character wrong).
    NotAFiscalCode,
    /// Not an IBAN (or its check digits are wrong).
    NotAnIban,
    /// Not one of the `options`.
    OneOf {
        /// The accepted values.
        options: Vec<String>,
    },
    /// Zero or less where a positive amount is needed.
    MustBePositive,
    /// Not the one amount accepted.
    MustBe {
        /// The amount accepted.
        amount: Money,
    },
    /// An amount outside `min`..=`max`.
    AmountBetween {
        /// The smallest accepted.
        min: Money,
        /// The largest accepted.
        max: Money,
    },
    /// An amount above `max`.
    AmountAtMost {
        /// The largest accepted.
        max: Money,
    },
    /// Not an amount of money.
    NotAnAmount,
    /// One separator followed by three digits: a thousand or one, depending on language.
    AmountAmbiguous,
    /// A negative amount.
    AmountNegative,
    /// Larger than any amount that can be kept.
    AmountTooLarge,
    /// A date after today where only past days are accepted.
    InTheFuture,
    /// A date before `date`.
    NotBefore {
        /// The first day accepted, `YYYY-MM-DD`.
        date: String,
    },
    /// A bank reference (CRO, TRN) with characters other than letters, digits, spaces and
    /// `- / .`.
    ReferenceCharacters,
    /// Not a file name of 1 to `max` characters without a path.
    FileName {
        /// Most characters accepted.
        max: usize,
    },
    /// A payment type that takes no free payments.
    NoFreePayments,
    /// A field the form does not have.
    UnknownField,
    /// No such thing (a payment type, an option…).
    Unknown,
    /// Anything else; `reason` is English for developers and logs, never shown to a reader
    /// (they read a generic "invalid value").
    Invalid {
        /// Why, in English.
        reason: String,
    },
}

impl Problem {
    /// The stable code: `required`, `too_long`, `amount_ambiguous`, …
    pub fn code(&self) -> &'static str {
        match self {
            Problem::Required => "required",
            Problem::TooLong { .. } => "too_long",
            Problem::ControlCharacters => "control_characters",
            Problem::NotANumber => "not_a_number",
            Problem::NotAWholeNumber => "not_a_whole_number",
            Problem::Between { .. } => "between",
            Problem::AtLeast { .. } => "at_least",
            Problem::AtMost { .. } => "at_most",
            Problem::TooManyDecimals { .. } => "too_many_decimals",
            Problem::NotADate => "not_a_date",
            Problem::NotAnEmail => "not_an_email",
            Problem::FiscalCodeLength => "fiscal_code_length",
            Problem::NotAFiscalCode => "not_a_fiscal_code",
            Problem::NotAnIban => "not_an_iban",
            Problem::OneOf { .. } => "one_of",
            Problem::MustBePositive => "must_be_positive",
            Problem::MustBe { .. } => "must_be",
            Problem::AmountBetween { .. } => "amount_between",
            Problem::AmountAtMost { .. } => "amount_at_most",
            Problem::NotAnAmount => "not_an_amount",
            Problem::AmountAmbiguous => "amount_ambiguous",
            Problem::AmountNegative => "amount_negative",
            Problem::AmountTooLarge => "amount_too_large",
            Problem::InTheFuture => "in_the_future",
            Problem::NotBefore { .. } => "not_before",
            Problem::ReferenceCharacters => "reference_characters",
            Problem::FileName { .. } => "file_name",
            Problem::NoFreePayments => "no_free_payments",
            Problem::UnknownField => "unknown_field",
            Problem::Unknown => "unknown",
            Problem::Invalid { .. } => "invalid",
        }
    }

    /// The text for a reader in `locale`, from the catalogue.
    pub fn message(&self, locale: Locale) -> String {
        let it = matches!(locale, Locale::It);
        let pick = |i: &str, e: &str| if it { i.to_owned() } else { e.to_owned() };
        match self {
            Problem::Required => pick("Campo obbligatorio.", "This field is required."),
            Problem::TooLong { max } => pick(
                &format!("Al massimo {max} caratteri."),
                &format!("At most {max} characters."),
            ),
            Problem::ControlCharacters => pick(
                "Contiene caratteri non ammessi (tabulazioni o caratteri di controllo).",
                "Contains characters that are not allowed (tabs or control characters).",
            ),
            Problem::NotANumber => pick(
                "Non è un numero: scrivi solo cifre, con la virgola per i decimali.",
                "Not a number: write digits only, with a point for decimals.",
            ),
            Problem::NotAWholeNumber => pick(
                "Non è un numero intero: scrivi solo cifre.",
                "Not a whole number: write digits only.",
            ),
            Problem::Between { min, max } => pick(
                &format!("Deve essere tra {min} e {max}."),
                &format!("Must be between {min} and {max}."),
            ),
            Problem::AtLeast { min } => pick(
                &format!("Deve essere almeno {min}."),
                &format!("Must be at least {min}."),
            ),
            Problem::AtMost { max } => pick(
                &format!("Non può superare {max}."),
                &format!("Must not exceed {max}."),
            ),
            Problem::TooManyDecimals { max } => pick(
                &format!("Al massimo {max} decimali."),
                &format!("At most {max} decimals."),
            ),
            Problem::NotADate => pick(
                "Non è una data: scrivila come GG/MM/AAAA, ad esempio 31/12/2026.",
                "Not a date: write it as YYYY-MM-DD or DD/MM/YYYY, such as 31/12/2026.",
            ),
            Problem::NotAnEmail => pick(
                "Non è un indirizzo email: scrivilo come nome@dominio.it.",
                "Not an email address: write it as name@domain.com.",
            ),
            Problem::FiscalCodeLength => pick(
                "Il codice fiscale ha 16 caratteri (persone) o 11 cifre (enti e imprese).",
                "A fiscal code has 16 characters (people) or 11 digits (bodies and companies).",
            ),
            Problem::NotAFiscalCode => pick(
                "Non è un codice fiscale valido: controlla di averlo scritto bene.",
                "Not a valid fiscal code: check that it is written correctly.",
            ),
            Problem::NotAnIban => pick(
                "Non è un IBAN valido: controlla di averlo scritto bene.",
                "Not a valid IBAN: check that it is written correctly.",
            ),
            Problem::OneOf { options } => pick(
                &format!("Scegli uno tra: {}.", options.join(", ")),
                &format!("Choose one of: {}.", options.join(", ")),
            ),
            Problem::MustBePositive => pick(
                "L'importo deve essere maggiore di zero.",
                "The amount must be more than zero.",
            ),
            Problem::MustBe { amount } => {
                let amount = amount.format(locale);
                pick(
                    &format!("L'importo deve essere {amount}."),
                    &format!("The amount must be {amount}."),
                )
            }
            Problem::AmountBetween { min, max } => {
                let (min, max) = (min.format(locale), max.format(locale));
                pick(
                    &format!("L'importo deve essere tra {min} e {max}."),
                    &format!("The amount must be between {min} and {max}."),
                )
            }
            Problem::AmountAtMost { max } => {
                let max = max.format(locale);
                pick(
                    &format!("L'importo non può superare {max}."),
                    &format!("The amount must not exceed {max}."),
                )
            }
            Problem::NotAnAmount => pick(
                "Non è un importo: scrivilo in cifre, con la virgola per i centesimi, ad esempio 12,50 o 1.000,00.",
                "Not an amount: write it in digits, with a point for the cents, such as 12.50 or 1,000.00.",
            ),
            Problem::AmountAmbiguous => pick(
                "Importo ambiguo: scrivi anche i centesimi, ad esempio 1.000,00 o 1000,00 per mille euro, 1,00 per un euro.",
                "Ambiguous amount: write the cents too, such as 1,000.00 or 1000.00 for a thousand euro, 1.00 for one.",
            ),
            Problem::AmountNegative => pick(
                "L'importo non può essere negativo.",
                "The amount cannot be negative.",
            ),
            Problem::AmountTooLarge => {
                pick("L'importo è troppo grande.", "The amount is too large.")
            }
            Problem::InTheFuture => pick(
                "La data non può essere nel futuro.",
                "The date cannot be in the future.",
            ),
            Problem::NotBefore { date } => pick(
                &format!("La data non può essere prima del {}.", italian_date(date)),
                &format!("The date cannot be before {date}."),
            ),
            Problem::ReferenceCharacters => pick(
                "Usa solo lettere, cifre, spazi e i segni - / .",
                "Use only letters, digits, spaces and the signs - / .",
            ),
            Problem::FileName { max } => pick(
                &format!("Indica il nome di un file (al massimo {max} caratteri, senza cartella)."),
                &format!("Give a file name (at most {max} characters, without a folder)."),
            ),
            Problem::NoFreePayments => pick(
                "Questo tipo di pagamento non si può pagare spontaneamente.",
                "This payment type takes no free payments.",
            ),
            Problem::UnknownField => pick(
                "Campo non previsto da questo modulo.",
                "This form has no such field.",
            ),
            Problem::Unknown => pick(
                "Valore sconosciuto: scegli tra quelli proposti.",
                "Unknown value: choose one of those offered.",
            ),
            Problem::Invalid { .. } => pick("Valore non valido.", "Not a valid value."),
        }
    }

    /// The English text developers and logs read: the catalogue's, or the reason given.
    pub fn reason(&self) -> String {
        match self {
            Problem::Invalid { reason } => reason.clone(),
            other => other.message(Locale::En),
        }
    }
}

/// `YYYY-MM-DD` as Italians write it, `DD/MM/YYYY`; anything else unchanged.
fn italian_date(date: &str) -> String {
    match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
        Ok(d) => d.format("%d/%m/%Y").to_string(),
        Err(_) => date.to_owned(),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

impl From<String> for Problem {
    fn from(reason: String) -> Self {
        if reason == "required" {
            Problem::Required
        } else {
            Problem::Invalid { reason }
        }
    }
}

impl From<&str> for Problem {
    fn from(reason: &str) -> Self {
        Problem::from(reason.to_owned())
    }
}

impl From<MoneyError> for Problem {
    fn from(e: MoneyError) -> Self {
        match e {
            MoneyError::NotANumber => Problem::NotAnAmount,
            MoneyError::TooManyDecimals(max) => Problem::TooManyDecimals { max },
            MoneyError::Negative => Problem::AmountNegative,
            MoneyError::TooLarge => Problem::AmountTooLarge,
            MoneyError::Ambiguous => Problem::AmountAmbiguous,
            other => Problem::Invalid {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every() -> Vec<Problem> {
        vec![
            Problem::Required,
            Problem::TooLong { max: 140 },
            Problem::ControlCharacters,
            Problem::NotANumber,
            Problem::NotAWholeNumber,
            Problem::Between {
                min: "1".into(),
                max: "9".into(),
            },
            Problem::AtLeast { min: "1".into() },
            Problem::AtMost { max: "9".into() },
            Problem::TooManyDecimals { max: 2 },
            Problem::NotADate,
            Problem::NotAnEmail,
            Problem::FiscalCodeLength,
            Problem::NotAFiscalCode,
            Problem::NotAnIban,
            Problem::OneOf {
                options: vec!["a".into(), "b".into()],
            },
            Problem::MustBePositive,
            Problem::MustBe {
                amount: Money::parse_eur("5").unwrap(),
            },
            Problem::AmountBetween {
                min: Money::parse_eur("5").unwrap(),
                max: Money::parse_eur("1000").unwrap(),
            },
            Problem::AmountAtMost {
                max: Money::parse_eur("1000").unwrap(),
            },
            Problem::NotAnAmount,
            Problem::AmountAmbiguous,
            Problem::AmountNegative,
            Problem::AmountTooLarge,
            Problem::InTheFuture,
            Problem::NotBefore {
                date: "2026-12-01".into(),
            },
            Problem::ReferenceCharacters,
            Problem::FileName { max: 255 },
            Problem::NoFreePayments,
            Problem::UnknownField,
            Problem::Unknown,
            Problem::Invalid {
                reason: "developer text".into(),
            },
        ]
    }

    #[test]
    fn every_problem_has_its_own_code_and_a_text_in_each_language() {
        let problems = every();
        let mut codes: Vec<_> = problems.iter().map(Problem::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), problems.len(), "codes are distinct");
        for p in &problems {
            let (it, en) = (p.message(Locale::It), p.message(Locale::En));
            assert_ne!(it, en, "{p:?} is translated");
            assert!(it.ends_with('.') && en.ends_with('.'), "{p:?}");
            // The code and its parameters survive a round trip through JSON.
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(json["code"], p.code());
            assert_eq!(&serde_json::from_value::<Problem>(json).unwrap(), p);
        }
        // Amounts are written as each language writes them.
        let most = Problem::AmountAtMost {
            max: Money::parse_eur("1234.5").unwrap(),
        };
        assert!(most.message(Locale::It).contains("1.234,50"), "{most:?}");
        assert!(most.message(Locale::En).contains("1,234.50"), "{most:?}");
        // Developer English stays out of the reader's text.
        let invalid = Problem::from("must match ^[A-Z]+$");
        assert!(!invalid.message(Locale::It).contains("must"));
        assert_eq!(invalid.to_string(), "must match ^[A-Z]+$");
    }
}
