//! Bank transfers seen from the core: the payer's [`TransferReport`], and the
//! [`BankEntry`] an imported bank statement leaves behind (matched to a transaction, or an
//! exception an operator resolves).
//!
//! Building instructions and reading statements is the bank-transfer gateway's job
//! (`payments-gateways`, feature `bank_transfer`); what is here is what the service and
//! the store need to keep.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    CreditorId, Error, Money, Problem, Result, Transaction, TransactionId, ValidationErrors,
};

/// The longest bank reference (CRO/TRN) accepted: a SEPA end-to-end or transaction id is at
/// most 35 characters.
pub const MAX_BANK_REFERENCE_LEN: usize = 35;

/// The longest receipt file name accepted.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// What a payer says about the bank transfer they made (*segnalazione di bonifico*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReport {
    /// The day the payer's bank executed the transfer.
    pub executed_on: NaiveDate,
    /// The amount transferred.
    pub amount: Money,
    /// The bank's reference of the transfer (CRO or TRN).
    pub bank_reference: String,
    /// The IBAN the transfer came from, if the payer gives it.
    pub ordering_iban: Option<String>,
    /// The name of the receipt file the payer keeps (the host stores the file itself).
    pub receipt_file: Option<String>,
}

impl TransferReport {
    /// Reads a report from the text of a form; an empty optional field is absent. Every
    /// field that does not read is named in the returned error, each with its reason.
    pub fn parse(
        executed_on: &str,
        amount: &str,
        bank_reference: &str,
        ordering_iban: &str,
        receipt_file: &str,
    ) -> Result<TransferReport> {
        let mut errors = ValidationErrors::default();
        let executed_on = NaiveDate::parse_from_str(executed_on.trim(), "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(executed_on.trim(), "%d/%m/%Y"))
            .map_err(|_| errors.push("executed_on", Problem::NotADate))
            .ok();
        let amount = Money::parse_eur(amount)
            .map_err(|e| errors.push("amount", e))
            .ok();
        let optional = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        };
        errors.into_result()?;
        let report = TransferReport {
            executed_on: executed_on.expect("checked above"),
            amount: amount.expect("checked above"),
            bank_reference: bank_reference.trim().to_owned(),
            ordering_iban: optional(ordering_iban),
            receipt_file: optional(receipt_file),
        };
        report.normalised()
    }

    /// Checks the report's own fields and normalises them (the bank reference upper case,
    /// the IBAN in electronic form).
    fn normalised(&self) -> Result<TransferReport> {
        let mut errors = ValidationErrors::default();
        let mut out = self.clone();
        let reference = self.bank_reference.trim().to_ascii_uppercase();
        if reference.is_empty() {
            errors.push("bank_reference", Problem::Required);
        } else if reference.chars().count() > MAX_BANK_REFERENCE_LEN {
            errors.push(
                "bank_reference",
                Problem::TooLong {
                    max: MAX_BANK_REFERENCE_LEN,
                },
            );
        } else if !reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '/' | '.'))
        {
            errors.push("bank_reference", Problem::ReferenceCharacters);
        }
        out.bank_reference = reference;
        if let Some(iban) = &self.ordering_iban {
            use iban::IbanLike;
            match iban.trim().parse::<iban::Iban>() {
                Ok(i) => out.ordering_iban = Some(i.electronic_str().to_owned()),
                Err(_) => errors.push("ordering_iban", Problem::NotAnIban),
            }
        }
        if let Some(file) = &self.receipt_file {
            let file = file.trim();
            if file.is_empty()
                || file.chars().count() > MAX_FILE_NAME_LEN
                || file
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '/' | '\\'))
                || file == "."
                || file == ".."
            {
                errors.push(
                    "receipt_file",
                    Problem::FileName {
                        max: MAX_FILE_NAME_LEN,
                    },
                );
            }
            out.receipt_file = Some(file.to_owned());
        }
        errors.into_result()?;
        Ok(out)
    }

    /// Checks the report against the transaction it reports on, as of `today`: the amount
    /// must be the transaction's total, and the transfer executed between the day the
    /// transaction was made and `today`. Returns the report normalised.
    pub fn validate_for(&self, transaction: &Transaction, today: NaiveDate) -> Result<Self> {
        let mut errors = ValidationErrors::default();
        let out = match self.normalised() {
            Ok(r) => r,
            Err(Error::Validation(e)) => {
                errors = e;
                self.clone()
            }
            Err(e) => return Err(e),
        };
        if self.amount != transaction.total {
            errors.push(
                "amount",
                Problem::MustBe {
                    amount: transaction.total,
                },
            );
        }
        let created = transaction.created_at.date_naive();
        if self.executed_on > today {
            errors.push("executed_on", Problem::InTheFuture);
        } else if self.executed_on < created {
            errors.push(
                "executed_on",
                Problem::NotBefore {
                    date: created.to_string(),
                },
            );
        }
        errors.into_result()?;
        Ok(out)
    }

    /// The report as one line, for the transaction's event.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "transfer executed on {}, {}, bank reference {}",
            self.executed_on, self.amount, self.bank_reference
        );
        if let Some(iban) = &self.ordering_iban {
            s.push_str(&format!(", from {iban}"));
        }
        if let Some(file) = &self.receipt_file {
            s.push_str(&format!(", receipt {file}"));
        }
        s
    }
}

/// What became of one credit read from a bank statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BankEntryOutcome {
    /// It paid this transaction.
    Matched {
        /// The transaction it paid.
        transaction_id: TransactionId,
    },
    /// It reverses (`RvslInd`) the earlier credit `credit` (an entry's key) that paid this
    /// transaction: the bank gave the money back. Recorded with a
    /// [`ReturnedByBank`](crate::ExceptionKind::ReturnedByBank) exception on the transaction.
    Returned {
        /// The transaction the reversed credit had paid.
        transaction_id: TransactionId,
        /// The key of the reversed credit's entry.
        credit: String,
    },
    /// A pagoPA PSP's transfer of a day's collections (remittance
    /// `/PUR/LGPE-RIVERSAMENTO/URI/<flow id>`), explained by its reporting flow (FdR) rather
    /// than by one transaction; the reconciliation of flows matches it.
    Flow {
        /// The flow's id, as the remittance names it.
        flow_id: String,
    },
    /// It could not be applied; an operator must look at it.
    Exception {
        /// Why, in words an operator acts on.
        reason: String,
        /// The transaction it seems to concern, if one was found.
        transaction_id: Option<TransactionId>,
    },
}

/// One credit of a bank statement, as the import left it. Recorded once per creditor and
/// key: importing the same statement again finds it and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankEntry {
    /// The creditor whose account was credited.
    pub creditor_id: CreditorId,
    /// Unique per creditor: the bank's own reference of the entry (with the position of the
    /// transaction in a batch), or a digest of its contents when the bank gives none.
    pub key: String,
    /// The statement (or notification) message it came in.
    pub statement_id: String,
    /// When it was imported.
    pub imported_at: DateTime<Utc>,
    /// The booking date.
    pub booked_on: Option<NaiveDate>,
    /// The value date, when the bank gives it.
    #[serde(default)]
    pub value_on: Option<NaiveDate>,
    /// The amount credited, exact.
    pub amount: Decimal,
    /// Its ISO 4217 currency, as the bank wrote it.
    pub currency: String,
    /// Who paid, as the bank wrote it.
    pub debtor: Option<String>,
    /// The remittance information, structured and unstructured, as one text.
    pub remittance: String,
    /// The creditor reference (`RF…`) found in it, if any; for a pagoPA PSP's transfer
    /// ([`BankEntryOutcome::Flow`]), the flow's id.
    pub reference: Option<String>,
    /// The bank's additional information (`AddtlNtryInf`, `AddtlTxInf`), as one text.
    #[serde(default)]
    pub info: Option<String>,
    /// What became of it.
    pub outcome: BankEntryOutcome,
}

impl BankEntry {
    /// The transaction it paid or concerns, if any.
    pub fn transaction_id(&self) -> Option<TransactionId> {
        match &self.outcome {
            BankEntryOutcome::Matched { transaction_id }
            | BankEntryOutcome::Returned { transaction_id, .. } => Some(*transaction_id),
            BankEntryOutcome::Exception { transaction_id, .. } => *transaction_id,
            BankEntryOutcome::Flow { .. } => None,
        }
    }

    /// Whether it is an exception: an operator must look at it.
    pub fn is_exception(&self) -> bool {
        matches!(
            self.outcome,
            BankEntryOutcome::Exception { .. } | BankEntryOutcome::Returned { .. }
        )
    }

    /// The flow it is the transfer of, when it is a pagoPA PSP's transfer.
    pub fn flow_id(&self) -> Option<&str> {
        match &self.outcome {
            BankEntryOutcome::Flow { flow_id } => Some(flow_id),
            _ => None,
        }
    }
}

/// One bank entry to record in a chunk ([`Store::record_bank_entries`](crate::Store::record_bank_entries)),
/// with the payment it makes, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BankStep {
    /// The entry.
    pub entry: BankEntry,
    /// The state change that pays the entry's transaction, applied with the entry or not
    /// at all.
    pub payment: Option<crate::Transition>,
}

impl BankStep {
    /// An entry and the payment it makes.
    pub fn new(entry: BankEntry, payment: Option<crate::Transition>) -> Self {
        BankStep { entry, payment }
    }
}

/// What became of one [`BankStep`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BankStepDone {
    /// The entry was recorded, and its payment applied: the transaction as it left it, when
    /// the store reads it back (a store writing a chunk in bulk may not: `None`).
    Recorded(Option<Box<crate::Transaction>>),
    /// The creditor already had an entry with the key: nothing of the step was written.
    AlreadyRecorded,
    /// The payment's compare-and-set failed (the transaction or its items changed since
    /// they were read): nothing of the step was written, and the caller decides anew.
    Conflict(crate::Conflict),
}

/// A listing of a creditor's bank entries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankEntryQuery {
    /// The creditor.
    pub creditor_id: CreditorId,
    /// Only exceptions.
    pub exceptions_only: bool,
    /// Only entries that carried this creditor reference.
    pub reference: Option<String>,
    /// Only the entry with this key.
    pub key: Option<String>,
    /// Only entries that paid or concern this transaction.
    #[serde(default)]
    pub transaction_id: Option<TransactionId>,
    /// At most this many, 1 to [`crate::MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl BankEntryQuery {
    /// The latest 50 entries of `creditor`.
    pub fn new(creditor_id: CreditorId) -> Self {
        BankEntryQuery {
            creditor_id,
            exceptions_only: false,
            reference: None,
            key: None,
            transaction_id: None,
            limit: 50,
        }
    }

    /// Whether `entry` passes the filters. Stores that filter in memory use this.
    pub fn matches(&self, entry: &BankEntry) -> bool {
        entry.creditor_id == self.creditor_id
            && (!self.exceptions_only || entry.is_exception())
            && self
                .reference
                .as_ref()
                .is_none_or(|r| entry.reference.as_ref() == Some(r))
            && self.key.as_ref().is_none_or(|k| &entry.key == k)
            && self
                .transaction_id
                .is_none_or(|t| entry.transaction_id() == Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_every_field_it_cannot_read() {
        let err = TransferReport::parse("31/02/2026", "dieci", "", "IT00X", "a/b.pdf").unwrap_err();
        let errors = err.validation_errors().unwrap();
        assert_eq!(errors.fields(), vec!["executed_on", "amount"]);
        // Each with its code, which the catalogue reads in Italian or English.
        assert_eq!(errors.0[0].problem, Problem::NotADate);
        assert_eq!(errors.0[1].problem, Problem::NotAnAmount);
        // A date as Italians write it reads as one.
        assert!(TransferReport::parse("20/11/2026", "10,00", "CRO1", "", "").is_ok());
        let err = TransferReport::parse("2026-11-20", "10,00", "", "IT00X", "a/b.pdf").unwrap_err();
        let fields = err.validation_errors().unwrap().fields();
        assert_eq!(
            fields,
            vec!["bank_reference", "ordering_iban", "receipt_file"]
        );
        let ok = TransferReport::parse(
            "2026-11-20",
            "10,00",
            " 1234567890123 ",
            "IT60 X054 2811 1010 0000 0123 456",
            "ricevuta.pdf",
        )
        .unwrap();
        assert_eq!(ok.bank_reference, "1234567890123");
        assert_eq!(
            ok.ordering_iban.as_deref(),
            Some("IT60X0542811101000000123456")
        );
        assert!(ok.summary().contains("bank reference 1234567890123"));
    }
}
