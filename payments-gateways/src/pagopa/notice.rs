//! Notice numbers (*numero avviso*) and IUVs as the pagoPA specification of payment
//! identifiers (SACI) writes them.
//!
//! A notice number has 18 digits: the aux digit, then
//! - aux 0: a 2-digit application code, a 13-digit IUV base, 2 check digits;
//! - aux 1: a 17-digit IUV, no check digits;
//! - aux 2: a 15-digit IUV base, 2 check digits;
//! - aux 3: a 2-digit segregation code, a 13-digit IUV base, 2 check digits.
//!
//! The check digits are the remainder modulo 93 of the number written by the digits before
//! them (aux digit included), in two digits. The IUV is what follows the aux digit, except
//! for aux 0 where it follows the application code.

use std::fmt;

/// Why a notice number is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoticeError {
    /// Not 18 characters (spaces aside).
    #[error("a notice number has 18 digits, this has {0}")]
    Length(usize),
    /// A character is not a digit.
    #[error("a notice number has only digits")]
    NotDigits,
    /// The aux digit is not 0, 1, 2 or 3.
    #[error("aux digit {0} is not 0, 1, 2 or 3")]
    AuxDigit(u8),
    /// The check digits do not match.
    #[error("the check digits are {found}, they should be {expected:02}")]
    CheckDigits {
        /// What the rule gives.
        expected: u8,
        /// What the number has.
        found: String,
    },
}

/// The largest IUV base of an aux-3 notice: 13 digits.
pub const MAX_BASE: u64 = 9_999_999_999_999;

/// A valid 18-digit notice number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoticeNumber(String);

/// The check digits of `digits` (the notice number before them): their value modulo 93.
///
/// # Panics
/// If `digits` is not 1 to 19 ASCII digits.
pub fn check_digits(digits: &str) -> u8 {
    let value: u64 = digits.parse().expect("1 to 19 ASCII digits");
    (value % 93) as u8
}

impl NoticeNumber {
    /// Reads a notice number, as printed (spaces between groups are allowed), and checks
    /// its aux digit and check digits.
    pub fn parse(text: &str) -> Result<Self, NoticeError> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NoticeError::NotDigits);
        }
        if digits.len() != 18 {
            return Err(NoticeError::Length(digits.chars().count()));
        }
        let aux = digits.as_bytes()[0] - b'0';
        match aux {
            0 | 2 | 3 => {
                let expected = check_digits(&digits[..16]);
                if digits[16..] != format!("{expected:02}") {
                    return Err(NoticeError::CheckDigits {
                        expected,
                        found: digits[16..].to_owned(),
                    });
                }
            }
            1 => {}
            other => return Err(NoticeError::AuxDigit(other)),
        }
        Ok(NoticeNumber(digits))
    }

    /// The aux-3 notice number of `base` under `segregation_code`.
    ///
    /// # Panics
    /// If `segregation_code` is above 99 or `base` above [`MAX_BASE`].
    pub fn aux3(segregation_code: u8, base: u64) -> Self {
        assert!(segregation_code <= 99, "a segregation code has two digits");
        assert!(base <= MAX_BASE, "an IUV base has 13 digits");
        let head = format!("3{segregation_code:02}{base:013}");
        let check = check_digits(&head);
        NoticeNumber(format!("{head}{check:02}"))
    }

    /// The 18 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The aux digit.
    pub fn aux_digit(&self) -> u8 {
        self.0.as_bytes()[0] - b'0'
    }

    /// The IUV (*identificativo univoco di versamento*): 15 digits for aux 0, 17 otherwise.
    pub fn iuv(&self) -> &str {
        match self.aux_digit() {
            0 => &self.0[3..],
            _ => &self.0[1..],
        }
    }

    /// The segregation code of an aux-3 notice.
    pub fn segregation_code(&self) -> Option<u8> {
        (self.aux_digit() == 3).then(|| self.0[1..3].parse().expect("digits"))
    }

    /// The application code of an aux-0 notice.
    pub fn application_code(&self) -> Option<&str> {
        (self.aux_digit() == 0).then(|| &self.0[1..3])
    }

    /// The 13-digit IUV base of an aux-3 notice.
    pub fn base(&self) -> Option<u64> {
        (self.aux_digit() == 3).then(|| self.0[3..16].parse().expect("digits"))
    }

    /// Written in groups of four, as a notice prints it: `3020 0010 0440 0094 84`.
    pub fn pretty(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ASCII"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for NoticeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NoticeNumber {
    type Err = NoticeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NoticeNumber::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Check digits worked out by long division, independently of `check_digits`.
    fn by_hand(digits: &str) -> u8 {
        digits
            .bytes()
            .fold(0u32, |r, d| (r * 10 + u32::from(d - b'0')) % 93) as u8
    }

    #[test]
    fn aux3_numbers_carry_segregation_base_and_check() {
        let n = NoticeNumber::aux3(2, 1_004_400_094);
        // 3 02 0001004400094 → 3020001004400094 mod 93 = 84.
        assert_eq!(n.as_str(), "302000100440009484");
        assert_eq!(n.iuv(), "02000100440009484");
        assert_eq!(n.segregation_code(), Some(2));
        assert_eq!(n.base(), Some(1_004_400_094));
        assert_eq!(n.pretty(), "3020 0010 0440 0094 84");
        assert_eq!(NoticeNumber::parse("3020 0010 0440 0094 84"), Ok(n));
        let max = NoticeNumber::aux3(99, MAX_BASE);
        assert_eq!(max.as_str().len(), 18);
        assert_eq!(
            &max.as_str()[16..],
            format!("{:02}", by_hand("3999999999999999"))
        );
    }

    #[test]
    fn every_aux_digit_is_checked_by_its_rule() {
        // aux 0: application code 01, base 0000000000123.
        let head = "0010000000000123";
        let ok = format!("{head}{:02}", by_hand(head));
        let n = NoticeNumber::parse(&ok).unwrap();
        assert_eq!(n.application_code(), Some("01"));
        assert_eq!(n.iuv().len(), 15);
        // aux 2: a 15-digit base.
        let head = "2123456789012345";
        let n = NoticeNumber::parse(&format!("{head}{:02}", by_hand(head))).unwrap();
        assert_eq!(n.iuv().len(), 17);
        assert_eq!(n.segregation_code(), None);
        // aux 1: no check digits at all.
        assert!(NoticeNumber::parse("112345678901234599").is_ok());
        // The documentation's placeholder has wrong check digits.
        assert_eq!(
            NoticeNumber::parse("311111111112222222"),
            Err(NoticeError::CheckDigits {
                expected: by_hand("3111111111122222"),
                found: "22".into()
            })
        );
        assert_eq!(
            NoticeNumber::parse("412345678901234567"),
            Err(NoticeError::AuxDigit(4))
        );
        assert_eq!(
            NoticeNumber::parse("30200010044000948"),
            Err(NoticeError::Length(17))
        );
        assert_eq!(
            NoticeNumber::parse("3020001004400094a4"),
            Err(NoticeError::NotDigits)
        );
        assert_eq!(NoticeNumber::parse(""), Err(NoticeError::Length(0)));
    }

    proptest! {
        #[test]
        fn generated_numbers_check_and_any_changed_digit_fails(
            seg in 0u8..100,
            base in 0u64..=MAX_BASE,
            pos in 1usize..18,
            delta in 1u8..10,
        ) {
            let n = NoticeNumber::aux3(seg, base);
            prop_assert_eq!(&n.as_str()[16..], format!("{:02}", by_hand(&n.as_str()[..16])));
            prop_assert_eq!(NoticeNumber::parse(n.as_str()), Ok(n.clone()));
            prop_assert_eq!(n.base(), Some(base));
            prop_assert_eq!(n.segregation_code(), Some(seg));
            let mut bytes = n.as_str().as_bytes().to_vec();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            // One changed digit moves the value by d·10^k, never a multiple of 93: caught.
            prop_assert!(NoticeNumber::parse(&changed).is_err(), "{changed} passed");
        }
    }
}
