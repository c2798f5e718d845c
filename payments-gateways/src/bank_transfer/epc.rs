//! The EPC QR code payload (EPC069-12, *Quick Response Code: guidelines to enable data
//! capture for the initiation of a SEPA credit transfer*), version 002.
//!
//! Twelve lines: service tag `BCD`, version `002`, character set `1` (UTF-8),
//! identification `SCT`, the beneficiary's BIC (optional in version 002), name and IBAN,
//! the amount as `EUR12.30`, a purpose code, then **either** a structured creditor
//! reference **or** unstructured remittance text — never both —, and a note to the payer.
//! Trailing empty lines are left out, and the whole must fit in 331 bytes.
//!
//! Written here because the crate that exists for it (`epcgen` 0.3) writes the amount
//! without its `EUR` prefix, which banking apps refuse.

use payments_core::{Currency, Money};

use super::rf;

/// The most bytes a payload may have.
pub const MAX_PAYLOAD_BYTES: usize = 331;
/// The most characters of the beneficiary's name.
pub const MAX_NAME_CHARS: usize = 70;
/// The most characters of unstructured remittance text.
pub const MAX_TEXT_CHARS: usize = 140;
/// The most characters of the note to the payer.
pub const MAX_INFO_CHARS: usize = 70;

/// The remittance information: one of the two, never both.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remittance {
    /// A structured creditor reference (ISO 11649 `RF…`).
    Reference(String),
    /// Unstructured text, up to 140 characters.
    Text(String),
}

/// Why a payload could not be built; each names the element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpcError {
    /// An element is missing, too long, or holds what it may not.
    #[error("{element}: {reason}")]
    Element {
        /// The element: `bic`, `name`, `iban`, `amount`, `purpose`, `remittance`, `information`.
        element: &'static str,
        /// Why.
        reason: String,
    },
    /// The whole payload is longer than 331 bytes.
    #[error("the payload has {0} bytes; at most {MAX_PAYLOAD_BYTES}")]
    TooLong(usize),
}

fn element(element: &'static str, reason: impl Into<String>) -> EpcError {
    EpcError::Element {
        element,
        reason: reason.into(),
    }
}

/// A SEPA credit transfer to put in an EPC QR code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpcPayment {
    /// The beneficiary's BIC, 8 or 11 characters (optional within the EEA).
    pub bic: Option<String>,
    /// The beneficiary's name.
    pub name: String,
    /// The beneficiary's IBAN.
    pub iban: String,
    /// The amount, in euro, 0.01 to 999,999,999.99.
    pub amount: Money,
    /// A four-letter ISO 20022 purpose code (`GOVT`, …).
    pub purpose: Option<String>,
    /// The remittance information.
    pub remittance: Remittance,
    /// A note shown to the payer by the banking app.
    pub information: Option<String>,
}

/// A BIC (ISO 9362) in upper case: 6 letters (bank and country), 2 letters or digits
/// (location), optionally 3 more (branch). `None` when it is not one.
pub fn normal_bic(bic: &str) -> Option<String> {
    let b = bic.trim().to_ascii_uppercase();
    let ok = (b.len() == 8 || b.len() == 11)
        && b.is_ascii()
        && b[..6].chars().all(|c| c.is_ascii_uppercase())
        && b[6..].chars().all(|c| c.is_ascii_alphanumeric());
    ok.then_some(b)
}

fn no_newlines(name: &'static str, value: &str) -> Result<(), EpcError> {
    if value.chars().any(|c| c.is_control()) {
        return Err(element(
            name,
            "may not hold line breaks or control characters",
        ));
    }
    Ok(())
}

impl EpcPayment {
    /// The payload, checked element by element.
    pub fn payload(&self) -> Result<String, EpcError> {
        let bic = match &self.bic {
            Some(b) => normal_bic(b)
                .ok_or_else(|| element("bic", "a BIC has 8 or 11 letters and digits"))?,
            None => String::new(),
        };
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(element(
                "name",
                format!("must have 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        no_newlines("name", name)?;
        let iban = {
            use iban::IbanLike;
            self.iban
                .parse::<iban::Iban>()
                .map_err(|_| element("iban", "not a valid IBAN"))?
                .electronic_str()
                .to_owned()
        };
        if self.amount.currency() != Currency::Eur {
            return Err(element("amount", "an EPC QR code pays euro"));
        }
        let cents = self.amount.minor_units();
        if !(1..=99_999_999_999).contains(&cents) {
            return Err(element("amount", "must be EUR0.01 to EUR999999999.99"));
        }
        let amount = format!("EUR{}.{:02}", cents / 100, cents % 100);
        let purpose = match &self.purpose {
            Some(p) if p.len() == 4 && p.chars().all(|c| c.is_ascii_uppercase()) => p.clone(),
            Some(_) => return Err(element("purpose", "a purpose code has four letters A-Z")),
            None => String::new(),
        };
        let (reference, text) = match &self.remittance {
            Remittance::Reference(r) => (
                rf::parse(r).map_err(|e| element("remittance", e.to_string()))?,
                String::new(),
            ),
            Remittance::Text(t) => {
                let t = t.trim();
                if t.chars().count() > MAX_TEXT_CHARS {
                    return Err(element(
                        "remittance",
                        format!("at most {MAX_TEXT_CHARS} characters"),
                    ));
                }
                no_newlines("remittance", t)?;
                (String::new(), t.to_owned())
            }
        };
        let information = self.information.as_deref().unwrap_or("").trim();
        if information.chars().count() > MAX_INFO_CHARS {
            return Err(element(
                "information",
                format!("at most {MAX_INFO_CHARS} characters"),
            ));
        }
        no_newlines("information", information)?;
        let lines = [
            "BCD",
            "002",
            "1",
            "SCT",
            &bic,
            name,
            &iban,
            &amount,
            &purpose,
            &reference,
            &text,
            information,
        ];
        let used = lines.iter().rposition(|l| !l.is_empty()).unwrap_or(0) + 1;
        let payload = lines[..used].join("\n");
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(EpcError::TooLong(payload.len()));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment() -> EpcPayment {
        // The example of EPC069-12 version 002 as it is usually quoted (a German
        // beneficiary, a structured reference, no purpose text).
        EpcPayment {
            bic: Some("BHBLDEHHXXX".into()),
            name: "Franz Mustermänn".into(),
            iban: "DE71110220330123456789".into(),
            amount: Money::parse_eur("12.30").unwrap(),
            purpose: Some("GDDS".into()),
            remittance: Remittance::Reference("RF18539007547034".into()),
            information: None,
        }
    }

    #[test]
    fn the_guidelines_example() {
        assert_eq!(
            payment().payload().unwrap(),
            "BCD\n002\n1\nSCT\nBHBLDEHHXXX\nFranz Mustermänn\nDE71110220330123456789\nEUR12.30\nGDDS\nRF18539007547034"
        );
    }

    #[test]
    fn unstructured_text_takes_the_eleventh_line_and_never_the_reference_too() {
        let mut p = payment();
        p.bic = None;
        p.purpose = None;
        p.remittance = Remittance::Text("TARI 2026 rata 1".into());
        p.information = Some("Grazie".into());
        let payload = p.payload().unwrap();
        let lines: Vec<&str> = payload.split('\n').collect();
        assert_eq!(lines.len(), 12);
        assert_eq!(lines[4], "", "no BIC");
        assert_eq!(lines[9], "", "no structured reference beside the text");
        assert_eq!(lines[10], "TARI 2026 rata 1");
        assert_eq!(lines[11], "Grazie");
    }

    #[test]
    fn every_element_is_checked() {
        type Change = Box<dyn Fn(&mut EpcPayment)>;
        let cases: Vec<(&str, Change)> = vec![
            ("bic", Box::new(|p| p.bic = Some("BHB".into()))),
            ("name", Box::new(|p| p.name = "x".repeat(71))),
            ("name", Box::new(|p| p.name = "a\nb".into())),
            (
                "iban",
                Box::new(|p| p.iban = "DE71110220330123456780".into()),
            ),
            (
                "amount",
                Box::new(|p| p.amount = Money::parse_eur("0").unwrap()),
            ),
            (
                "amount",
                Box::new(|p| p.amount = Money::parse_eur("1000000000").unwrap()),
            ),
            ("purpose", Box::new(|p| p.purpose = Some("gds".into()))),
            (
                "remittance",
                Box::new(|p| p.remittance = Remittance::Reference("RF19539007547034".into())),
            ),
            (
                "remittance",
                Box::new(|p| p.remittance = Remittance::Text("x".repeat(141))),
            ),
            (
                "information",
                Box::new(|p| p.information = Some("x".repeat(71))),
            ),
        ];
        for (want, change) in cases {
            let mut p = payment();
            change(&mut p);
            match p.payload() {
                Err(EpcError::Element { element, .. }) => assert_eq!(element, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_payload_limit_holds() {
        let mut p = payment();
        p.name = "é".repeat(70);
        p.remittance = Remittance::Text("é".repeat(140));
        p.information = Some("é".repeat(70));
        assert!(matches!(p.payload(), Err(EpcError::TooLong(n)) if n > MAX_PAYLOAD_BYTES));
        p.remittance = Remittance::Text("x".repeat(140));
        p.name = "x".repeat(70);
        p.information = Some("x".repeat(50));
        assert!(p.payload().unwrap().len() <= MAX_PAYLOAD_BYTES);
    }
}
