//! Receipts as providers issue them, kept whole: pagoPA's `paSendRT` is the legal proof
//! that a debtor paid, and what the accounting loop matches against the PSPs' reports and
//! the bank's credits. Each is recorded once per creditor and key (the key of the line
//! payment it settled, so the receipt and the line find each other), with the provider's
//! document as it arrived and the fields operators look for as data.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CreditorId, GatewayId, Money};

/// What a receipt is to the creditor that keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReceiptRole {
    /// The creditor issued the notice paid: the receipt settles one of its lines.
    Issuer,
    /// Another body issued the notice; this creditor is a beneficiary of one or more of
    /// its transfers (the province's TEFA share of a municipality's TARI notice).
    Beneficiary,
}

impl ReceiptRole {
    /// Its name in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptRole::Issuer => "issuer",
            ReceiptRole::Beneficiary => "beneficiary",
        }
    }
}

/// One transfer of a receipt: a share of the amount and who receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptShare {
    /// The beneficiary's fiscal code.
    pub fiscal_code: String,
    /// How much.
    pub amount: Money,
    /// The account credited (IBAN), when the provider names it.
    pub iban: Option<String>,
    /// The remittance information.
    pub remittance: Option<String>,
    /// The taxonomy code of the collection (`transferCategory`).
    pub category: Option<String>,
}

/// A provider's receipt of a payment, kept whole with its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReceipt {
    /// The creditor that keeps it.
    pub creditor_id: CreditorId,
    /// The gateway it came through.
    pub gateway_id: GatewayId,
    /// Unique per creditor: the key of the line payment it settled (`pagopa:{receiptId}`).
    pub key: String,
    /// The provider's id of the receipt.
    pub receipt_id: String,
    /// The reference paid (a pagoPA notice number).
    pub reference: String,
    /// Issuer or beneficiary.
    pub role: ReceiptRole,
    /// The whole amount paid.
    pub amount: Money,
    /// What this creditor receives of it: the sum of its transfers.
    pub share: Money,
    /// The transfers, in the receipt's order.
    pub transfers: Vec<ReceiptShare>,
    /// The payment service provider's id (`idPSP`).
    pub psp_id: Option<String>,
    /// Its name (`PSPCompanyName`).
    pub psp_name: Option<String>,
    /// The channel the payment came through (`idChannel`).
    pub channel_id: Option<String>,
    /// How the payer paid (`paymentMethod`: `creditCard`, `PO`, `BBT`, …).
    pub payment_method: Option<String>,
    /// The PSP's fee, paid by the payer on top.
    pub fee: Option<Money>,
    /// Who paid (fiscal code and name), when not the debtor.
    pub payer: Option<String>,
    /// Who owed it (fiscal code and name).
    pub debtor: Option<String>,
    /// When it was paid, in the provider's local time (Italian time for pagoPA).
    pub paid_at: Option<NaiveDateTime>,
    /// The day the PSP transfers the money to the beneficiaries.
    pub transfer_date: Option<NaiveDate>,
    /// The document as it arrived (for pagoPA, the whole SOAP request).
    pub document: String,
    /// Its media type (`application/xml`).
    pub media_type: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A listing of a creditor's provider receipts, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReceiptQuery {
    /// The creditor.
    pub creditor_id: CreditorId,
    /// Only the receipt with this key.
    pub key: Option<String>,
    /// Only receipts of this reference (notice number).
    pub reference: Option<String>,
    /// At most this many, 1 to [`crate::MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl ProviderReceiptQuery {
    /// The latest 50 receipts of `creditor`.
    pub fn new(creditor_id: CreditorId) -> Self {
        ProviderReceiptQuery {
            creditor_id,
            key: None,
            reference: None,
            limit: 50,
        }
    }

    /// Whether `receipt` passes the filters. Stores that filter in memory use this.
    pub fn matches(&self, receipt: &ProviderReceipt) -> bool {
        receipt.creditor_id == self.creditor_id
            && self.key.as_ref().is_none_or(|k| *k == receipt.key)
            && self
                .reference
                .as_ref()
                .is_none_or(|r| *r == receipt.reference)
    }
}
