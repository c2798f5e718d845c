//! Exact money: a [`Decimal`] amount with a [`Currency`], never a float.
//!
//! ```
//! use payments_core::{Locale, Money};
//!
//! let a = Money::parse_eur("1.234,56").unwrap();
//! let b = Money::parse_eur("0.44").unwrap();
//! let total = a.checked_add(&b).unwrap();
//! assert_eq!(total.minor_units(), 123_500);
//! assert_eq!(total.format(Locale::It), "€ 1.235,00");
//! assert_eq!(total.format(Locale::En), "€1,235.00");
//! assert!(Money::parse_eur("12.345").is_err()); // a cent is the smallest unit
//! ```

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Locale;

/// Longest text accepted as an amount.
const MAX_AMOUNT_TEXT: usize = 24;

/// A currency. EUR is the one public bodies in Italy collect in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Currency {
    /// The euro.
    #[serde(rename = "EUR")]
    Eur,
}

impl Currency {
    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Eur => "EUR",
        }
    }

    /// How many decimals the smallest unit has (2 for the euro cent).
    pub fn minor_digits(self) -> u32 {
        match self {
            Currency::Eur => 2,
        }
    }

    /// The symbol shown to people.
    pub fn symbol(self) -> &'static str {
        match self {
            Currency::Eur => "€",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "EUR" => Ok(Currency::Eur),
            _ => Err(MoneyError::UnknownCurrency),
        }
    }
}

/// Why a text or number is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// Empty, too long, or not a number written with digits and one decimal separator.
    #[error("not an amount")]
    NotANumber,
    /// Finer than the currency's smallest unit (a cent for EUR).
    #[error("at most {0} decimals")]
    TooManyDecimals(u32),
    /// Negative amounts are not money to pay.
    #[error("must not be negative")]
    Negative,
    /// The amount does not fit in the minor units that storage keeps.
    #[error("too large")]
    TooLarge,
    /// Amounts in two currencies were combined.
    #[error("currencies differ")]
    CurrencyMismatch,
    /// The currency code is not one the library knows.
    #[error("unknown currency")]
    UnknownCurrency,
    /// One separator followed by three digits (`1.000`, `1,000`): a thousand in one
    /// language, one euro in the other. Refused where the writer's language is not known,
    /// or where it reads as three decimals in it.
    #[error(
        "ambiguous: write the cents too (1.000,00 or 1000,00 for a thousand euro, 1,00 for one)"
    )]
    Ambiguous,
}

/// An exact, non-negative amount of money in one currency.
///
/// Built by parsing text (`"12.30"`, `"12,30"`, `"1.234,56"`), from a [`Decimal`], or from
/// integer minor units; there is deliberately no conversion from floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMoney")]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

/// Money as it arrives from outside, checked by [`Money::new`] before it becomes `Money`.
#[derive(Deserialize)]
struct RawMoney {
    amount: Decimal,
    currency: Currency,
}

impl TryFrom<RawMoney> for Money {
    type Error = MoneyError;

    fn try_from(raw: RawMoney) -> Result<Self, Self::Error> {
        Money::new(raw.amount, raw.currency)
    }
}

impl Money {
    /// An amount, checked: not negative, no finer than the currency's smallest unit, and
    /// small enough to store as `i64` minor units.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative);
        }
        let digits = currency.minor_digits();
        let normalized = amount.normalize();
        if normalized.scale() > digits {
            return Err(MoneyError::TooManyDecimals(digits));
        }
        let mut amount = normalized;
        amount.rescale(digits);
        let money = Money { amount, currency };
        money.try_minor_units()?;
        Ok(money)
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        let mut amount = Decimal::ZERO;
        amount.rescale(currency.minor_digits());
        Money { amount, currency }
    }

    /// An amount in euro, checked as [`Money::new`] does.
    pub fn eur(amount: Decimal) -> Result<Self, MoneyError> {
        Money::new(amount, Currency::Eur)
    }

    /// Parses a euro amount written as people write it: `"12.30"`, `"12,30"`, `"1.234,56"`,
    /// `"1,234.56"`, `"7"`, `"€ 1.000,00"`. No sign, no letters but the currency's, at
    /// most two decimals. One separator followed by three digits (`"1.000"`) means a
    /// thousand to an Italian and one euro to others: refused as
    /// [`MoneyError::Ambiguous`]; [`Money::parse_in`] reads it in the writer's language.
    pub fn parse_eur(text: &str) -> Result<Self, MoneyError> {
        Money::parse(text, Currency::Eur)
    }

    /// Parses an amount in `currency`; see [`Money::parse_eur`] for the accepted forms.
    ///
    /// With both `.` and `,` present the last one is the decimal separator and the other
    /// must group thousands by three; one of them present several times groups thousands;
    /// present once, followed by one or two digits, it is the decimal separator. Spaces
    /// may group thousands, and the currency's symbol or code may come first or last.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        parse_amount(text, currency, None)
    }

    /// Parses an amount as a person writing in `locale` means it: as [`Money::parse`], and
    /// one separator followed by three digits groups thousands where that language groups
    /// with it (`"1.000"` is a thousand euro in Italian, `"1,000"` in English); the other
    /// separator followed by three digits (`"1,000"` in Italian) is refused as
    /// [`MoneyError::Ambiguous`], never read as a smaller amount.
    pub fn parse_in(text: &str, currency: Currency, locale: Locale) -> Result<Self, MoneyError> {
        parse_amount(text, currency, Some(locale))
    }

    /// From integer minor units (cents), as storage keeps them.
    pub fn from_minor(units: i64, currency: Currency) -> Result<Self, MoneyError> {
        Money::new(Decimal::new(units, currency.minor_digits()), currency)
    }

    /// The amount in integer minor units (cents).
    pub fn minor_units(&self) -> i64 {
        // `new` checked that the amount fits.
        self.try_minor_units().unwrap_or(i64::MAX)
    }

    fn try_minor_units(&self) -> Result<i64, MoneyError> {
        let scaled = self
            .amount
            .checked_mul(Decimal::from(10_i64.pow(self.currency.minor_digits())))
            .ok_or(MoneyError::TooLarge)?;
        i64::try_from(scaled.trunc()).map_err(|_| MoneyError::TooLarge)
    }

    /// The amount.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is above zero.
    pub fn is_positive(&self) -> bool {
        self.amount > Decimal::ZERO
    }

    /// The exact sum, or an error when currencies differ or the sum does not fit.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::TooLarge)?;
        Money::new(sum, self.currency)
    }

    /// The exact sum of `amounts`, all in `currency` (zero when there are none).
    pub fn sum<'a>(
        currency: Currency,
        amounts: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// Compares two amounts of the same currency; `None` when currencies differ.
    pub fn compare(&self, other: &Money) -> Option<std::cmp::Ordering> {
        (self.currency == other.currency).then(|| self.amount.cmp(&other.amount))
    }

    /// The amount as people read it: `€ 1.234,56` in Italian, `€1,234.56` in English.
    pub fn format(&self, locale: Locale) -> String {
        let (group, decimal, space) = match locale {
            Locale::It => ('.', ',', " "),
            Locale::En => (',', '.', ""),
        };
        let plain = self.amount.to_string();
        let (int_part, frac_part) = plain.split_once('.').unwrap_or((&plain, ""));
        let mut grouped = String::with_capacity(int_part.len() + int_part.len() / 3);
        for (i, c) in int_part.chars().enumerate() {
            if i > 0 && (int_part.len() - i) % 3 == 0 {
                grouped.push(group);
            }
            grouped.push(c);
        }
        let mut out = format!("{}{}{}", self.currency.symbol(), space, grouped);
        if !frac_part.is_empty() {
            out.push(decimal);
            out.push_str(frac_part);
        }
        out
    }
}

impl fmt::Display for Money {
    /// Canonical form for logs and files: `1234.56 EUR`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Removes thousands separators, checking that they group by three.
fn ungroup(text: &str, separator: char) -> Result<String, MoneyError> {
    let mut groups = text.split(separator);
    let first = groups.next().unwrap_or_default();
    if first.is_empty() || first.len() > 3 || first.contains(['.', ',']) {
        return Err(MoneyError::NotANumber);
    }
    let mut out = first.to_owned();
    for g in groups {
        if g.len() != 3 || g.contains(['.', ',']) {
            return Err(MoneyError::NotANumber);
        }
        out.push_str(g);
    }
    Ok(out)
}

/// What [`Money::parse`] and [`Money::parse_in`] share.
fn parse_amount(
    text: &str,
    currency: Currency,
    locale: Option<Locale>,
) -> Result<Money, MoneyError> {
    let mut text = text.trim();
    if text.is_empty() || text.len() > MAX_AMOUNT_TEXT {
        return Err(MoneyError::NotANumber);
    }
    // The currency's symbol or code, before or after the number.
    for mark in [currency.symbol(), currency.code()] {
        if let Some(rest) = text.strip_prefix(mark) {
            text = rest.trim_start();
        } else if let Some(rest) = text.strip_suffix(mark) {
            text = rest.trim_end();
        }
    }
    if text.starts_with('-') {
        return Err(MoneyError::Negative);
    }
    // Spaces (also no-break and narrow no-break) may group thousands: "1 000,50".
    let spaced = text.contains([' ', '\u{a0}', '\u{202f}']);
    let compact: String = if spaced {
        let integer_end = text.find([',', '.']).unwrap_or(text.len());
        let groups: Vec<&str> = text[..integer_end]
            .split([' ', '\u{a0}', '\u{202f}'])
            .collect();
        let grouped = groups.len() > 1
            && (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|g| g.len() == 3)
            && !text[integer_end..].contains([' ', '\u{a0}', '\u{202f}']);
        if !grouped {
            return Err(MoneyError::NotANumber);
        }
        text.chars()
            .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}'))
            .collect()
    } else {
        text.to_owned()
    };
    let text = compact.as_str();
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
    {
        return Err(MoneyError::NotANumber);
    }
    let last_dot = text.rfind('.');
    let last_comma = text.rfind(',');
    let (integer, fraction) = match (last_dot, last_comma) {
        (None, None) => (text.to_owned(), ""),
        (Some(d), Some(c)) => {
            let (sep_pos, group) = if d > c { (d, ',') } else { (c, '.') };
            let integer = ungroup(&text[..sep_pos], group)?;
            (integer, &text[sep_pos + 1..])
        }
        (Some(p), None) | (None, Some(p)) => {
            let sep = if last_dot.is_some() { '.' } else { ',' };
            if text[..p].contains(sep) {
                // Several: they group thousands ("1.000.000").
                (ungroup(text, sep)?, "")
            } else {
                let fraction = &text[p + 1..];
                let looks_grouped = fraction.len() == 3 && (1..=3).contains(&p);
                // "0.500" is no thousand, and not surely half a euro either.
                if looks_grouped && text.starts_with('0') {
                    return Err(MoneyError::Ambiguous);
                }
                // The writer's grouping separator followed by three or more digits that do
                // not group ("1234.500" in Italian): never read as less.
                let groups_here = match locale {
                    Some(Locale::It) => Some('.'),
                    Some(Locale::En) => Some(','),
                    None => None,
                };
                if !looks_grouped && fraction.len() >= 3 && groups_here == Some(sep) {
                    return Err(MoneyError::Ambiguous);
                }
                if looks_grouped {
                    // "1.000": a thousand where the language groups with this separator.
                    let groups_with = match locale {
                        Some(Locale::It) => '.',
                        Some(Locale::En) => ',',
                        None => return Err(MoneyError::Ambiguous),
                    };
                    if sep != groups_with {
                        return Err(MoneyError::Ambiguous);
                    }
                    (format!("{}{fraction}", &text[..p]), "")
                } else {
                    (text[..p].to_owned(), fraction)
                }
            }
        }
    };
    if integer.is_empty()
        || fraction.contains(['.', ','])
        || (fraction.is_empty() && text.ends_with(['.', ',']))
    {
        return Err(MoneyError::NotANumber);
    }
    let canonical = if fraction.is_empty() {
        integer
    } else {
        format!("{integer}.{fraction}")
    };
    let amount = Decimal::from_str_exact(&canonical).map_err(|_| MoneyError::TooLarge)?;
    Money::new(amount, currency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_people_write() {
        for (text, cents) in [
            ("12.30", 1230),
            ("12,30", 1230),
            ("12,3", 1230),
            ("7", 700),
            ("0,01", 1),
            ("1.234,56", 123_456),
            ("1,234.56", 123_456),
            ("1.234.567,00", 123_456_700),
            (" 5.00 ", 500),
            ("12.30", 1230),
            ("1234.500", 123_450), // trailing zeros are not finer than a cent
            ("1.000.000", 100_000_000),
            ("1,000,000", 100_000_000),
            ("1 000,50", 100_050),
            ("€ 12,30", 1230),
            ("12,30 €", 1230),
            ("EUR 1.000,00", 100_000),
        ] {
            assert_eq!(
                Money::parse_eur(text).unwrap().minor_units(),
                cents,
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for (text, err) in [
            ("", MoneyError::NotANumber),
            ("abc", MoneyError::NotANumber),
            ("1e3", MoneyError::NotANumber),
            ("12.", MoneyError::NotANumber),
            (",5", MoneyError::NotANumber),
            ("1.2.3", MoneyError::NotANumber),
            ("1,2,3", MoneyError::NotANumber),
            ("12,34.56", MoneyError::NotANumber),
            ("1.23,4.5", MoneyError::NotANumber),
            ("-5", MoneyError::Negative),
            ("1234.567", MoneyError::TooManyDecimals(2)),
            ("1 00,50", MoneyError::NotANumber),
            ("1.000 000", MoneyError::NotANumber),
            // A thousand to an Italian, one euro to others: refused when the writer's
            // language is not known.
            ("1.000", MoneyError::Ambiguous),
            ("1,000", MoneyError::Ambiguous),
            ("12.345", MoneyError::Ambiguous),
            ("99999999999999999999", MoneyError::TooLarge),
        ] {
            assert_eq!(Money::parse_eur(text).unwrap_err(), err, "{text}");
        }
    }

    #[test]
    fn reads_amounts_as_people_mean_them_in_their_language() {
        let it = |t: &str| Money::parse_in(t, Currency::Eur, Locale::It);
        let en = |t: &str| Money::parse_in(t, Currency::Eur, Locale::En);
        let cents = |r: Result<Money, MoneyError>| r.map(|m| m.minor_units());
        // An Italian who types 1.000 means a thousand euro, never one.
        assert_eq!(cents(it("1.000")), Ok(100_000));
        assert_eq!(cents(it("€ 1.000")), Ok(100_000));
        assert_eq!(cents(it("1.000,50")), Ok(100_050));
        assert_eq!(cents(it("1000,50")), Ok(100_050));
        assert_eq!(cents(it("1000.50")), Ok(100_050));
        assert_eq!(cents(it("1,5")), Ok(150));
        // "1,000" in Italian is one euro with three decimals: refused, not guessed.
        assert_eq!(cents(it("1,000")), Err(MoneyError::Ambiguous));
        assert_eq!(cents(en("1,000")), Ok(100_000));
        assert_eq!(cents(en("1,000.50")), Ok(100_050));
        assert_eq!(cents(en("1000.50")), Ok(100_050));
        assert_eq!(cents(en("1.000")), Err(MoneyError::Ambiguous));
        // Never a thousand from a leading zero, nor less than meant from a grouping
        // separator with more digits after it.
        assert_eq!(cents(it("0.500")), Err(MoneyError::Ambiguous));
        assert_eq!(cents(en("0,500")), Err(MoneyError::Ambiguous));
        assert_eq!(cents(it("1234.500")), Err(MoneyError::Ambiguous));
        assert_eq!(cents(it("1.0000")), Err(MoneyError::Ambiguous));
        assert_eq!(cents(en("1234,500")), Err(MoneyError::Ambiguous));
        assert_eq!(cents(it("0,50")), Ok(50));
        assert_eq!(cents(en("0.50")), Ok(50));
        assert!(MoneyError::Ambiguous.to_string().contains("1.000,00"));
    }

    proptest! {
        /// Every amount, written as each language writes it (grouped or not, with the
        /// symbol or without), reads back as itself.
        #[test]
        fn an_amount_written_in_a_language_reads_back_in_it(cents in 0i64..100_000_000_000) {
            let m = Money::from_minor(cents, Currency::Eur).unwrap();
            let euros = cents / 100;
            let rest = cents % 100;
            for (locale, written) in [
                (Locale::It, m.format(Locale::It)),
                (Locale::En, m.format(Locale::En)),
                (Locale::It, format!("{euros},{rest:02}")),
                (Locale::En, format!("{euros}.{rest:02}")),
                (Locale::It, format!("{euros}.{rest:02}")),
                (Locale::En, format!("{euros},{rest:02}")),
            ] {
                prop_assert_eq!(
                    Money::parse_in(&written, Currency::Eur, locale).map(|p| p.minor_units()),
                    Ok(cents),
                    "{} in {:?}", written, locale
                );
            }
            // With two decimals nothing is ambiguous, whatever the language.
            prop_assert_eq!(Money::parse_eur(&format!("{euros},{rest:02}")).map(|p| p.minor_units()), Ok(cents));
        }

        /// A whole number of thousands written with one separator is a thousand times
        /// more in the language that groups with it, and never read as less elsewhere.
        #[test]
        fn one_separator_and_three_digits_is_never_read_as_less(thousands in 1i64..1000, units in 0i64..1000) {
            let text = format!("{thousands}.{units:03}");
            let whole = (thousands * 1000 + units) * 100;
            prop_assert_eq!(
                Money::parse_in(&text, Currency::Eur, Locale::It).map(|m| m.minor_units()),
                Ok(whole)
            );
            prop_assert_eq!(Money::parse_in(&text, Currency::Eur, Locale::En), Err(MoneyError::Ambiguous));
            prop_assert_eq!(Money::parse_eur(&text), Err(MoneyError::Ambiguous));
            let comma = format!("{thousands},{units:03}");
            prop_assert_eq!(
                Money::parse_in(&comma, Currency::Eur, Locale::En).map(|m| m.minor_units()),
                Ok(whole)
            );
            prop_assert_eq!(Money::parse_in(&comma, Currency::Eur, Locale::It), Err(MoneyError::Ambiguous));
        }
    }

    #[test]
    fn formats_in_italian_and_english() {
        let m = Money::parse_eur("1234.5").unwrap();
        assert_eq!(m.format(Locale::It), "€ 1.234,50");
        assert_eq!(m.format(Locale::En), "€1,234.50");
        let small = Money::parse_eur("0.07").unwrap();
        assert_eq!(small.format(Locale::It), "€ 0,07");
        let big = Money::parse_eur("1234567").unwrap();
        assert_eq!(big.format(Locale::En), "€1,234,567.00");
        assert_eq!(big.to_string(), "1234567.00 EUR");
    }

    #[test]
    fn deserialising_checks_like_parsing() {
        let m: Money = serde_json::from_str(r#"{"amount":"12.30","currency":"EUR"}"#).unwrap();
        assert_eq!(m.minor_units(), 1230);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":"12.30","currency":"EUR"}"#
        );
        for bad in [
            r#"{"amount":"12.345","currency":"EUR"}"#,
            r#"{"amount":"-1","currency":"EUR"}"#,
        ] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minor_units_round_trip() {
        let m = Money::from_minor(123_456, Currency::Eur).unwrap();
        assert_eq!(m, Money::parse_eur("1234.56").unwrap());
        assert_eq!(m.minor_units(), 123_456);
        assert_eq!(
            Money::from_minor(-1, Currency::Eur),
            Err(MoneyError::Negative)
        );
    }

    proptest! {
        #[test]
        fn sum_is_exact(cents in proptest::collection::vec(0i64..1_000_000_000, 0..50)) {
            let amounts: Vec<Money> = cents
                .iter()
                .map(|c| Money::from_minor(*c, Currency::Eur).unwrap())
                .collect();
            let total = Money::sum(Currency::Eur, &amounts).unwrap();
            prop_assert_eq!(total.minor_units(), cents.iter().sum::<i64>());
        }

        #[test]
        fn display_parses_back(cents in 0i64..1_000_000_000_000) {
            let m = Money::from_minor(cents, Currency::Eur).unwrap();
            let it = m.format(Locale::It).trim_start_matches("€ ").to_owned();
            let en = m.format(Locale::En).trim_start_matches('€').to_owned();
            prop_assert_eq!(Money::parse_eur(&it).unwrap(), m);
            prop_assert_eq!(Money::parse_eur(&en).unwrap(), m);
        }
    }
}
