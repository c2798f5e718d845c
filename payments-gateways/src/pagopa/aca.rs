//! A client for pagoPA's central archive of notices (*Archivio Centralizzato Avvisi*,
//! ACA): a body that runs its own station must register there every notice it issues, so
//! pagoPA can take its payment when the station is down (stand-in) and show a citizen all
//! they owe.
//!
//! One call, `POST /paCreatePosition` (`paCreatePosition.json`, `NewDebtPositionRequest`),
//! creates a notice or, called again with the same IUV, updates it (SANP, "Integrazione
//! tramite API sincrone": the API is idempotent). A notice is withdrawn by the same call
//! with `amount` 0 (`AmountEuroCents` has minimum 0, unlike GPD's amounts). It
//! authenticates with a subscription key in `Ocp-Apim-Subscription-Key`.

use payments_core::{Error, GatewayErrorKind, Result};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::GATEWAY_ID;
use super::gpd::SUBSCRIPTION_HEADER;
use crate::http::HttpClient;

/// ACA in production (`paCreatePosition.json`, `servers`).
pub const DEFAULT_ACA_URL: &str = "https://api.platform.pagopa.it/aca/v1";

/// A notice as ACA takes it (`NewDebtPositionRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcaPosition {
    /// The body's fiscal code (11 digits).
    pub pa_fiscal_code: String,
    /// `F` (a person) or `G` (a company or body).
    pub entity_type: String,
    /// The debtor's fiscal code.
    pub entity_fiscal_code: String,
    /// The debtor's name (1 to 255 characters).
    pub entity_full_name: String,
    /// The IUV.
    pub iuv: String,
    /// The notice number (aux digit and IUV).
    pub nav: String,
    /// The amount in cents; 0 withdraws the notice.
    pub amount: i64,
    /// What it pays (1 to 255 characters).
    pub description: String,
    /// When it is due: the end of its due day in Europe/Rome, in UTC.
    pub expiration_date: String,
    /// The IBAN credited (27 characters), when the notice has one beneficiary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iban: Option<String>,
    /// Whether pagoPA refuses it once due (the body refuses overdue payments of its type).
    pub switch_to_expired: bool,
    /// Whether pagoPA's stand-in may take its payment: not for a notice with other
    /// beneficiaries, whose shares one IBAN cannot carry.
    pub pay_stand_in: bool,
}

/// The ACA client.
#[derive(Clone)]
pub struct AcaClient {
    http: HttpClient,
    url: String,
    key: SecretString,
}

impl std::fmt::Debug for AcaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcaClient")
            .field("url", &self.url)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl AcaClient {
    /// A client of pagoPA's production ACA with the body's (or its broker's) subscription
    /// key.
    pub fn new(subscription_key: impl Into<String>) -> Result<Self> {
        let key = subscription_key.into();
        if key.trim().is_empty() {
            return Err(Error::invalid("subscription_key", "is required"));
        }
        Ok(AcaClient {
            http: HttpClient::new()?,
            url: DEFAULT_ACA_URL.to_owned(),
            key: SecretString::from(key.trim().to_owned()),
        })
    }

    /// ACA's base URL (the UAT environment, or a local stand-in in tests).
    pub fn with_url(mut self, url: &str) -> Result<Self> {
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::invalid("aca_url", "must be an http(s) URL"));
        }
        self.url = url.to_owned();
        Ok(self)
    }

    /// The HTTP client (timeouts, retries).
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// Creates or updates `notice` (or withdraws it, with amount 0). Withdrawing a notice
    /// ACA does not have (`404`) or no longer lets change (`409`, `422`: paid or already
    /// closed) is done.
    pub async fn register(&self, notice: &AcaPosition) -> Result<()> {
        let url = format!("{}/paCreatePosition", self.url);
        let key = super::gpd::key_header(&self.key)?;
        let response = self
            .http
            .send(GATEWAY_ID, |c| {
                c.post(&url)
                    .header(SUBSCRIPTION_HEADER, key.clone())
                    .json(notice)
            })
            .await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let withdrawing = notice.amount == 0;
        match status.as_u16() {
            200 | 201 => Ok(()),
            404 | 409 | 422 if withdrawing => Ok(()),
            401 | 403 => Err(Error::gateway(
                GATEWAY_ID,
                GatewayErrorKind::Rejected(format!("ACA refused the subscription key ({status})")),
            )),
            _ => {
                let words = super::gpd::problem_words(&body);
                Err(Error::gateway(
                    GATEWAY_ID,
                    GatewayErrorKind::Rejected(format!(
                        "ACA refused paCreatePosition of IUV {} ({status}): {words}",
                        notice.iuv
                    )),
                ))
            }
        }
    }
}
