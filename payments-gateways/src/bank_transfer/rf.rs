//! ISO 11649 structured creditor references (`RF` + two check digits + up to 21 letters
//! and digits, checked modulo 97 as ISO 7064 MOD 97-10).
//!
//! Written here rather than taken from a crate: the two on crates.io (`iso_11649` 0.1 and
//! `epcgen` 0.3) sum the digits in a `u128`, which overflows and panics on long
//! references — and statement import feeds this code whatever a bank wrote. The remainder
//! here is computed digit by digit and never overflows.

/// The longest reference: `RF`, two check digits and 21 characters.
pub const MAX_LEN: usize = 25;
/// The most characters after the check digits.
pub const MAX_BODY_LEN: usize = 21;

/// Why a creditor reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The part after the check digits is empty or longer than 21 characters.
    #[error("a creditor reference carries 1 to {MAX_BODY_LEN} letters or digits")]
    Length,
    /// A character other than a letter A–Z or a digit.
    #[error("a creditor reference holds only letters A-Z and digits")]
    Character,
    /// It does not start with `RF` and two digits.
    #[error("a creditor reference starts with RF and two check digits")]
    Prefix,
    /// The check digits do not match.
    #[error("the check digits do not match")]
    Check,
}

/// The remainder modulo 97 of `text` read as ISO 7064 digits (A = 10 … Z = 35).
fn mod97(text: impl Iterator<Item = u8>) -> Option<u32> {
    let mut rem: u32 = 0;
    for b in text {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    Some(rem)
}

fn compact(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The creditor reference for `body` (1 to 21 letters and digits; spaces are ignored and
/// letters upper-cased), in electronic form: `creditor_reference("539007547034")` is
/// `"RF18539007547034"`.
pub fn creditor_reference(body: &str) -> Result<String, ReferenceError> {
    let body = compact(body);
    if body.is_empty() || body.len() > MAX_BODY_LEN {
        return Err(ReferenceError::Length);
    }
    let rem = mod97(body.bytes().chain(*b"RF00")).ok_or(ReferenceError::Character)?;
    Ok(format!("RF{:02}{body}", 98 - rem))
}

/// Checks `reference` (spaces ignored, any case) and returns it in electronic form.
pub fn parse(reference: &str) -> Result<String, ReferenceError> {
    let r = compact(reference);
    let bytes = r.as_bytes();
    if bytes.len() < 4 || &bytes[..2] != b"RF" || !bytes[2..4].iter().all(u8::is_ascii_digit) {
        return Err(ReferenceError::Prefix);
    }
    if bytes.len() == 4 || bytes.len() > MAX_LEN {
        return Err(ReferenceError::Length);
    }
    let rem =
        mod97(bytes[4..].iter().chain(&bytes[..4]).copied()).ok_or(ReferenceError::Character)?;
    if rem == 1 {
        Ok(r)
    } else {
        Err(ReferenceError::Check)
    }
}

/// Whether `reference` is a valid creditor reference (spaces ignored, any case).
pub fn is_valid(reference: &str) -> bool {
    parse(reference).is_ok()
}

/// The print form, in groups of four: `RF18 5390 0754 7034`.
pub fn pretty(reference: &str) -> String {
    let r = compact(reference);
    let mut out = String::with_capacity(r.len() + r.len() / 4);
    for (i, c) in r.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The valid creditor references that may be written in free text, in electronic form,
/// in the order they appear. A reference may be split by spaces (`RF18 5390 0754 7034`)
/// and be in any case. Text runs on after a reference ("RF18 5390 0754 7034 TARI"), and
/// one time in 97 a longer run also checks, so every length that checks is a candidate,
/// longest first: the caller keeps the one it knows.
pub fn find_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found: Vec<String> = Vec::new();
    for i in 0..chars.len().saturating_sub(1) {
        let starts = chars[i].eq_ignore_ascii_case(&'R')
            && chars[i + 1].eq_ignore_ascii_case(&'F')
            && (i == 0 || !chars[i - 1].is_ascii_alphanumeric());
        if !starts {
            continue;
        }
        // Up to 25 letters and digits from here, skipping spaces.
        let mut candidate = String::new();
        for &c in &chars[i..] {
            if candidate.len() == MAX_LEN {
                break;
            }
            if c.is_ascii_alphanumeric() {
                candidate.push(c.to_ascii_uppercase());
            } else if !c.is_whitespace() {
                break;
            }
        }
        for n in (5..=candidate.len()).rev() {
            let r = &candidate[..n];
            if parse(r).is_ok() && !found.iter().any(|f| f == r) {
                found.push(r.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example_of_iso_11649() {
        // ISO 11649:2009, annex: reference 539007547034 → RF18 5390 0754 7034.
        assert_eq!(
            creditor_reference("5390 0754 7034").unwrap(),
            "RF18539007547034"
        );
        assert_eq!(pretty("RF18539007547034"), "RF18 5390 0754 7034");
        assert!(is_valid("RF18 5390 0754 7034"));
        assert!(is_valid("rf18539007547034"));
        assert_eq!(parse("RF19539007547034"), Err(ReferenceError::Check));
    }

    #[test]
    fn published_examples_check() {
        // Examples published with other implementations of the standard.
        for (body, rf) in [
            ("G72UUR", "RF45G72UUR"),
            ("18K5", "RF6518K5"),
            ("0HYA6", "RF720HYA6"),
            ("X2HU4TC28XTYLHASYWT91", "RF14X2HU4TC28XTYLHASYWT91"),
            ("AB2G5", "RF68AB2G5"),
            ("1234512345", "RF451234512345"),
            ("TU06FX", "RF96TU06FX"),
        ] {
            assert_eq!(creditor_reference(body).unwrap(), rf, "{body}");
            assert!(is_valid(rf));
        }
        assert!(!is_valid("RF55G72UUR"));
        assert!(!is_valid("RF19GAX8WS5JYOOUJ87"));
        assert!(!is_valid("RF35C4"));
    }

    #[test]
    fn the_longest_reference_does_not_overflow() {
        let body = "ZZZZZZZZZZZZZZZZZZZZZ";
        let rf = creditor_reference(body).unwrap();
        assert_eq!(rf.len(), MAX_LEN);
        assert!(is_valid(&rf));
        assert_eq!(
            creditor_reference(&format!("{body}Z")),
            Err(ReferenceError::Length)
        );
        assert_eq!(parse(&format!("{rf}Z")), Err(ReferenceError::Length));
        assert_eq!(creditor_reference("ABC-1"), Err(ReferenceError::Character));
        assert_eq!(parse("RFXX1234"), Err(ReferenceError::Prefix));
        assert_eq!(parse("RF18é"), Err(ReferenceError::Character));
        assert_eq!(parse("RF18"), Err(ReferenceError::Length));
    }

    #[test]
    fn references_are_found_in_free_text() {
        assert_eq!(
            find_in("TARI 2026 rif. RF18 5390 0754 7034 rata 1"),
            vec!["RF18539007547034"]
        );
        assert_eq!(find_in("/RFB/rf18539007547034/"), vec!["RF18539007547034"]);
        assert_eq!(
            find_in("RF45G72UUR, RF6518K5"),
            vec!["RF45G72UUR", "RF6518K5"]
        );
        // A longer run that also checks is a candidate too, longest first.
        let longer = creditor_reference("539007547034X").unwrap();
        let text = format!("{}.", pretty(&longer));
        assert_eq!(find_in(&text)[0], longer);
        assert!(find_in("PERFORMANCE RF12 nothing").is_empty());
        assert!(find_in("").is_empty());
        assert!(find_in("RF").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn every_generated_reference_checks_and_one_changed_digit_does_not(
            body in "[A-Z0-9]{0,20}[0-9]",
            with in "[0-9]",
        ) {
            let rf = creditor_reference(&body).unwrap();
            proptest::prop_assert!(is_valid(&rf));
            let text = format!("pagamento {} grazie", pretty(&rf));
            proptest::prop_assert!(find_in(&text).contains(&rf), "{} not found in {}", rf, text);
            // ISO 7064 MOD 97-10 catches every single substituted digit.
            let at = rf.len() - 1;
            let mut changed = rf.clone().into_bytes();
            if changed[at] != with.as_bytes()[0] {
                changed[at] = with.as_bytes()[0];
                proptest::prop_assert!(!is_valid(std::str::from_utf8(&changed).unwrap()));
            }
        }

        #[test]
        fn any_text_is_searched_without_panic(text in "\\PC{0,200}") {
            for r in find_in(&text) {
                proptest::prop_assert!(is_valid(&r));
            }
        }
    }
}
