//! A client for pagoPA's debt-position service (*Gestione Posizioni Debitorie*, GPD):
//! the body's positions are held by pagoPA, whose own station answers the node for them,
//! and their receipts are read back from GPD's receipts service.
//!
//! The requests follow `gpd.json` (debt-positions service v1: create, update, publish,
//! invalidate, read) and `gpd_payments.json` (payments-receipts service v1: a receipt's
//! XML by IUV, the list of a body's receipts) of pagoPA's published interface
//! (`pagopa-api`). Both authenticate with a subscription key in `Ocp-Apim-Subscription-Key`.
//!
//! Every call is safe to repeat: a creation that finds the position already there (`409`)
//! becomes an update, an invalidation of a position that is gone or already invalid is
//! done. Connection errors, timeouts, `429` and `5xx` answers are retried by the
//! [`HttpClient`] and then reported as [`GatewayErrorKind::Unavailable`] (the outbox tries
//! again later); any other refusal is [`GatewayErrorKind::Rejected`] with GPD's own words.

use payments_core::{Error, GatewayErrorKind, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::GATEWAY_ID;
use crate::http::HttpClient;

/// GPD's debt-positions service in production (`gpd.json`, `servers`).
pub const DEFAULT_GPD_URL: &str = "https://api.platform.pagopa.it/gpd/debt-positions-service/v1";
/// GPD's receipts service in production (`gpd_payments.json`, `servers`).
pub const DEFAULT_GPD_RECEIPTS_URL: &str =
    "https://api.platform.pagopa.it/gpd/payments-receipts-service/v1";
/// The header GPD reads the subscription key from.
pub const SUBSCRIPTION_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// The most receipts asked for per page (`pageSize`'s maximum in `gpd_payments.json`).
pub const RECEIPTS_PAGE_SIZE: u32 = 100;

/// A debt position as GPD takes it (`PaymentPositionModel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpdPosition {
    /// The position's unique id at the body (*IUPD*): `<fiscal code>-<uuid>`.
    pub iupd: String,
    /// `F` (a person) or `G` (a company or body).
    #[serde(rename = "type")]
    pub kind: String,
    /// The debtor's fiscal code.
    pub fiscal_code: String,
    /// The debtor's name.
    pub full_name: String,
    /// The debtor's email, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether GPD expires the position once its due date passes (the body refuses
    /// overdue payments of its type).
    pub switch_to_expired: bool,
    /// The body's name as notices show it (at most 140 characters).
    pub company_name: String,
    /// Whether pagoPA's stand-in may take payments of it when GPD is down.
    pub pay_stand_in: bool,
    /// Where GPD says it stands (read only: never sent).
    #[serde(default, skip_serializing)]
    pub status: Option<String>,
    /// Its ways of paying: the single option and the instalments.
    pub payment_option: Vec<GpdOption>,
}

/// A way of paying a position (`PaymentOptionModel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpdOption {
    /// The IUV: the notice number without its aux digit.
    pub iuv: String,
    /// The amount in cents (at least 1).
    pub amount: i64,
    /// What it pays (at most 140 characters).
    pub description: String,
    /// `true` for an instalment, `false` for the single payment.
    pub is_partial_payment: bool,
    /// When it is due: the end of its due day in Europe/Rome, in UTC.
    pub due_date: String,
    /// Where the money goes: one to five shares adding up to `amount`.
    pub transfer: Vec<GpdTransfer>,
}

/// A share of an option (`TransferModel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpdTransfer {
    /// `"1"` to `"5"`.
    pub id_transfer: String,
    /// The amount in cents.
    pub amount: i64,
    /// The beneficiary's fiscal code.
    pub organization_fiscal_code: String,
    /// The remittance information (at most 140 characters).
    pub remittance_information: String,
    /// The taxonomy code (`9/0101100IM/`).
    pub category: String,
    /// The IBAN credited.
    pub iban: String,
}

/// One receipt in GPD's list of a body's receipts (`ReceiptModelResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpdReceiptEntry {
    /// The body's fiscal code.
    #[serde(default)]
    pub organization_fiscal_code: Option<String>,
    /// The IUV the receipt is of.
    pub iuv: String,
    /// The debtor's fiscal code.
    #[serde(default)]
    pub debtor: Option<String>,
    /// When it was paid.
    #[serde(default)]
    pub payment_date_time: Option<String>,
    /// `PAID`, or later states.
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptsPage {
    #[serde(default)]
    total_pages: Option<u32>,
    #[serde(default)]
    results: Vec<GpdReceiptEntry>,
}

#[derive(Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

/// What a creation found.
enum Created {
    Done,
    Exists,
}

/// Where an invalidation left a position.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Withdrawn {
    /// No longer payable: invalidated now, or already invalid, expired or never there.
    Done,
    /// Paid (in whole or in part) at pagoPA: GPD keeps it, and its receipts are to be
    /// read back.
    Paid(String),
}

/// The GPD client: the debt-positions service and the receipts service, one subscription
/// key.
#[derive(Clone)]
pub struct GpdClient {
    http: HttpClient,
    positions_url: String,
    receipts_url: String,
    key: SecretString,
}

impl std::fmt::Debug for GpdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpdClient")
            .field("positions_url", &self.positions_url)
            .field("receipts_url", &self.receipts_url)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn base_url(field: &'static str, url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::invalid(field, "must be an http(s) URL"));
    }
    Ok(url.to_owned())
}

impl GpdClient {
    /// A client of pagoPA's production GPD with the body's (or its broker's) subscription
    /// key.
    pub fn new(subscription_key: impl Into<String>) -> Result<Self> {
        let key = subscription_key.into();
        if key.trim().is_empty() {
            return Err(Error::invalid("subscription_key", "is required"));
        }
        Ok(GpdClient {
            http: HttpClient::new()?,
            positions_url: DEFAULT_GPD_URL.to_owned(),
            receipts_url: DEFAULT_GPD_RECEIPTS_URL.to_owned(),
            key: SecretString::from(key.trim().to_owned()),
        })
    }

    /// The base URLs of the debt-positions service and of the receipts service (the UAT
    /// environment, or a local stand-in in tests).
    pub fn with_urls(mut self, positions: &str, receipts: &str) -> Result<Self> {
        self.positions_url = base_url("gpd_url", positions)?;
        self.receipts_url = base_url("gpd_receipts_url", receipts)?;
        Ok(self)
    }

    /// The HTTP client (timeouts, retries).
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    fn positions(&self, organization: &str) -> String {
        format!(
            "{}/organizations/{organization}/debtpositions",
            self.positions_url
        )
    }

    async fn call(
        &self,
        what: &str,
        accept: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, String)> {
        let key = key_header(&self.key)?;
        let response = self
            .http
            .send(GATEWAY_ID, |c| {
                build(c)
                    .header(SUBSCRIPTION_HEADER, key.clone())
                    .header(reqwest::header::ACCEPT, accept)
            })
            .await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(rejected(format!(
                "GPD refused the subscription key ({status}) on {what}"
            )));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::gateway(GATEWAY_ID, GatewayErrorKind::Unavailable));
        }
        Ok((status, body))
    }

    /// Creates `position` (published, so payable at once, when `publish`); one already
    /// there with its IUPD is updated instead.
    pub async fn create(
        &self,
        organization: &str,
        position: &GpdPosition,
        publish: bool,
    ) -> Result<()> {
        match self.post_position(organization, position, publish).await? {
            // There already (a retry of a creation that was not answered): update it.
            Created::Exists => self.update(organization, position, publish).await,
            Created::Done => Ok(()),
        }
    }

    /// `createPosition` once: done, or already there (`409`).
    async fn post_position(
        &self,
        organization: &str,
        position: &GpdPosition,
        publish: bool,
    ) -> Result<Created> {
        let url = self.positions(organization);
        let (status, body) = self
            .call("createPosition", JSON, |c| {
                c.post(format!("{url}?toPublish={publish}")).json(position)
            })
            .await?;
        match status.as_u16() {
            200 | 201 => Ok(Created::Done),
            409 => Ok(Created::Exists),
            _ => Err(refusal("createPosition", status, &body)),
        }
    }

    /// Replaces `position` (and publishes it, when `publish`); one GPD does not have is
    /// created. A position GPD no longer lets change (paid, invalid, expired) is answered
    /// with where it stands: `Ok` when paid (its receipts come), refused otherwise.
    pub async fn update(
        &self,
        organization: &str,
        position: &GpdPosition,
        publish: bool,
    ) -> Result<()> {
        let url = format!("{}/{}", self.positions(organization), position.iupd);
        let (status, body) = self
            .call("updatePosition", JSON, |c| {
                c.put(format!("{url}?toPublish={publish}")).json(position)
            })
            .await?;
        match status.as_u16() {
            200 | 201 => Ok(()),
            // Not there (a creation that never arrived): created. One that appeared
            // meanwhile is left to the next change.
            404 => self
                .post_position(organization, position, publish)
                .await
                .map(|_| ()),
            409 => match self.status(organization, &position.iupd).await? {
                Some(s) if is_paid(&s) => Ok(()),
                Some(s) => Err(rejected(format!(
                    "GPD holds position {} as {s} and does not let it change",
                    position.iupd
                ))),
                None => Err(refusal("updatePosition", status, &body)),
            },
            _ => Err(refusal("updatePosition", status, &body)),
        }
    }

    /// Where GPD says the position with `iupd` stands (`DRAFT`, `VALID`, `PAID`, …), or
    /// `None` when it has none.
    pub async fn status(&self, organization: &str, iupd: &str) -> Result<Option<String>> {
        let url = format!("{}/{iupd}", self.positions(organization));
        let (status, body) = self
            .call("getOrganizationDebtPositionByIUPD", JSON, |c| c.get(&url))
            .await?;
        match status.as_u16() {
            200 => {
                let p: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
                    rejected("GPD answered a position that does not read".to_owned())
                })?;
                Ok(Some(
                    p.get("status")
                        .and_then(|s| s.as_str())
                        .unwrap_or("UNKNOWN")
                        .to_owned(),
                ))
            }
            404 => Ok(None),
            _ => Err(refusal("getOrganizationDebtPositionByIUPD", status, &body)),
        }
    }

    /// Makes the position with `iupd` no longer payable: invalidated (a draft is deleted,
    /// as GPD only invalidates published positions). One already invalid, expired or never
    /// created is done; one paid at pagoPA is answered [`Withdrawn::Paid`].
    pub async fn invalidate(&self, organization: &str, iupd: &str) -> Result<Withdrawn> {
        let url = format!("{}/{iupd}/invalidate", self.positions(organization));
        let (status, body) = self
            .call("invalidatePosition", JSON, |c| c.post(&url))
            .await?;
        match status.as_u16() {
            200 | 404 => Ok(Withdrawn::Done),
            409 => match self.status(organization, iupd).await? {
                None => Ok(Withdrawn::Done),
                Some(s) if s == "INVALID" || s == "EXPIRED" => Ok(Withdrawn::Done),
                Some(s) if is_paid(&s) => Ok(Withdrawn::Paid(s)),
                Some(s) if s == "DRAFT" || s == "PUBLISHED" => {
                    let url = format!("{}/{iupd}", self.positions(organization));
                    let (status, body) = self
                        .call("deletePosition", JSON, |c| c.delete(&url))
                        .await?;
                    match status.as_u16() {
                        200 | 404 => Ok(Withdrawn::Done),
                        _ => Err(refusal("deletePosition", status, &body)),
                    }
                }
                // Still payable there: not withdrawn, whatever the 409 said.
                Some(s) => Err(rejected(format!(
                    "GPD refused to invalidate position {iupd}, which it holds as {s}: {}",
                    problem_words(&body)
                ))),
            },
            _ => Err(refusal("invalidatePosition", status, &body)),
        }
    }

    /// The receipt of `iuv` as GPD keeps it: the `paSendRT` (or `paSendRTV2`) request
    /// pagoPA sent, as XML; `None` when it has none (not paid).
    pub async fn receipt(&self, organization: &str, iuv: &str) -> Result<Option<String>> {
        let url = format!(
            "{}/payments/{organization}/receipts/{iuv}",
            self.receipts_url
        );
        let (status, body) = self
            .call("getReceiptByIUV", "application/xml", |c| c.get(&url))
            .await?;
        match status.as_u16() {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(refusal("getReceiptByIUV", status, &body)),
        }
    }

    /// The body's receipts paid from `from` to `to` (days, inclusive), every page.
    pub async fn receipts(
        &self,
        organization: &str,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<GpdReceiptEntry>> {
        let url = format!("{}/payments/{organization}/receipts", self.receipts_url);
        let (from, to) = (from.to_string(), to.to_string());
        let mut all = Vec::new();
        let mut page = 0u32;
        loop {
            let (status, body) = self
                .call("getOrganizationReceipts", JSON, |c| {
                    // Digits and ISO dates: nothing to escape.
                    c.get(format!(
                        "{url}?pageNum={page}&pageSize={RECEIPTS_PAGE_SIZE}&from={from}&to={to}"
                    ))
                })
                .await?;
            match status.as_u16() {
                200 => {}
                // No receipts in the range.
                404 => return Ok(all),
                _ => return Err(refusal("getOrganizationReceipts", status, &body)),
            }
            let answer: ReceiptsPage = serde_json::from_str(&body).map_err(|_| {
                rejected("GPD answered a list of receipts that does not read".to_owned())
            })?;
            let fetched = answer.results.len();
            all.extend(answer.results);
            page += 1;
            let more = match answer.total_pages {
                Some(total) => page < total,
                None => fetched as u32 == RECEIPTS_PAGE_SIZE,
            };
            // A bound against a service that pages forever.
            if !more || fetched == 0 || page >= 1000 {
                return Ok(all);
            }
        }
    }
}

/// Whether a GPD position status means money was taken.
fn is_paid(status: &str) -> bool {
    matches!(status, "PAID" | "PARTIALLY_PAID" | "REPORTED")
}

fn rejected(message: String) -> Error {
    Error::gateway(GATEWAY_ID, GatewayErrorKind::Rejected(message))
}

/// What pagoPA's service said (`ProblemJson`'s detail or title), at most 300 characters.
pub(super) fn problem_words(body: &str) -> String {
    let problem: Option<Problem> = serde_json::from_str(body).ok();
    problem
        .and_then(|p| p.detail.or(p.title))
        .map(|w| w.chars().take(300).collect::<String>())
        .unwrap_or_default()
}

/// GPD's refusal of `operation`, with its own words (`ProblemJson`), never the request.
fn refusal(operation: &str, status: reqwest::StatusCode, body: &str) -> Error {
    rejected(format!(
        "GPD refused {operation} ({status}): {}",
        problem_words(body)
    ))
}

const JSON: &str = "application/json";

/// The subscription key as a header value marked sensitive, so no log of the request
/// shows it.
pub(super) fn key_header(key: &SecretString) -> Result<reqwest::header::HeaderValue> {
    let mut value = reqwest::header::HeaderValue::from_str(key.expose_secret())
        .map_err(|_| Error::invalid("subscription_key", "must be printable ASCII"))?;
    value.set_sensitive(true);
    Ok(value)
}
