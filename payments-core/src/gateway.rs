//! The [`Gateway`] trait: a payment provider, or bank transfer, behind one interface.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Creditor, Error, GatewayErrorKind, GatewayId, Instruction, MethodKind, Money, PaymentMethod,
    Result, Transaction, TransactionId,
};

/// What a gateway needs to start a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The transaction, `Created`, with its lines and total.
    pub transaction: Transaction,
    /// The creditor paid.
    pub creditor: Creditor,
    /// The method chosen.
    pub method: PaymentMethod,
    /// Where the provider's page sends the payer back, if the host set one.
    pub return_url: Option<String>,
}

/// A gateway's answer to [`Gateway::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// What the payer must do.
    pub instruction: Instruction,
    /// The provider's reference for this payment, if it gave one.
    pub provider_ref: Option<String>,
    /// A later expiry than the service's default, for slow methods (bank transfer,
    /// pagoPA notices).
    pub expires_at: Option<DateTime<Utc>>,
}

/// A provider's callback as it arrived over HTTP: what a gateway verifies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackRequest {
    /// Headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// The raw body: signatures are over these exact bytes.
    pub body: Vec<u8>,
}

impl CallbackRequest {
    /// A request with `body` and no headers.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        CallbackRequest {
            body: body.into(),
            ..Default::default()
        }
    }

    /// Adds a header (its name is stored in lower case).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// A header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The outcome of a payment as a provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentOutcome {
    /// Not finished yet.
    Pending,
    /// Paid.
    Paid,
    /// Refused.
    Failed,
    /// Abandoned by the payer.
    Cancelled,
}

/// A verified callback: what the provider says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackEvent {
    /// Our transaction id, when the provider echoes it.
    pub transaction_id: Option<TransactionId>,
    /// The provider's reference, by which the transaction is found when the provider does
    /// not echo our id.
    pub provider_ref: Option<String>,
    /// The reference to record on the transaction once the outcome is applied, when it is
    /// not `provider_ref`: a bank transfer is found by its creditor reference (`RF…`) and
    /// recorded by the bank's reference of the credit.
    pub record_ref: Option<String>,
    /// What happened.
    pub outcome: PaymentOutcome,
    /// The amount and currency the provider handled; checked against the transaction.
    pub amount: Money,
    /// The provider's own words, for the event's note.
    pub note: Option<String>,
}

/// A payment provider (or bank transfer, or pagoPA) behind one interface.
///
/// # Contract
/// The conformance suite (`payments_core::testing::gateway`, feature `testing`) checks:
/// - [`Gateway::start`] answers with an [`Instruction`] for one of [`Gateway::kinds`].
/// - [`Gateway::parse_callback`] verifies before it trusts anything: a callback whose
///   signature does not verify is `Gateway { kind: InvalidSignature }`. It never changes
///   state: parsing the same callback twice gives the same event, and the service decides
///   what to apply.
/// - Secrets (API keys, signing keys) never appear in `Debug` output or errors, and
///   signatures are compared in constant time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Gateway: std::fmt::Debug + Send + Sync + 'static {
    /// The id methods are bound to: `"sandbox"`, `"stripe"`, …
    fn id(&self) -> GatewayId;
    /// The method kinds it serves.
    fn kinds(&self) -> Vec<MethodKind>;
    /// Starts a payment and tells the payer what to do.
    async fn start(&self, request: &StartRequest) -> Result<Started>;
    /// Verifies and reads a callback. Must not mutate anything.
    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent>;
    /// Asks the provider where a payment stands, for reconciliation.
    async fn fetch_status(&self, transaction: &Transaction) -> Result<PaymentOutcome>;
    /// Gives back `amount` of a paid transaction; returns the provider's refund reference.
    async fn refund(&self, transaction: &Transaction, amount: &Money) -> Result<String> {
        let _ = (transaction, amount);
        Err(Error::gateway(
            self.id().0,
            GatewayErrorKind::NotSupported("refund"),
        ))
    }
}
