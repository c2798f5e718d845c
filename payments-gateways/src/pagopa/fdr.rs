//! pagoPA's reporting flows (*Flussi di Rendicontazione*, FdR) for creditor bodies: the
//! REST service `fdr-org` (OpenAPI `fdr_organization.json`), read with the body's (or its
//! broker's) subscription key.
//!
//! - `GET /organizations/{organizationId}/fdrs?publishedGt=…&page=…&size=…`: the flows
//!   published for the body, latest revision of each, paged;
//! - `GET …/fdrs/{fdr}/revisions/{revision}/psps/{pspId}`: one flow's header (PSP, dates,
//!   regulation, declared count and total);
//! - `GET …/payments?page=…&size=…`: its payments, paged.
//!
//! [`PagoPaGateway::sync_flows`](super::PagoPaGateway::sync_flows) lists what was published
//! since the last flow stored, fetches each new flow or revision whole and records it;
//! [`Payments::reconcile_flows`](payments_core::Payments::reconcile_flows) then matches them.
//!
//! The service writes instants with or without an offset (then in Italian time) and amounts
//! as JSON numbers of at most two decimals; both are read exactly. It refuses a
//! `publishedGt` older than a month, so a first sync asks for the last 29 days.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::GATEWAY_ID;
use super::gpd::key_header;
use crate::http::HttpClient;
use payments_core::{Error, GatewayErrorKind, Result};

/// pagoPA's production FdR service for bodies.
pub const DEFAULT_FDR_URL: &str = "https://api.platform.pagopa.it/fdr-org/service/v1";
/// The header the subscription key goes in.
const SUBSCRIPTION_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// Flows and payments asked per page (the service's largest page).
pub const FDR_PAGE_SIZE: u32 = 1000;
/// A bound against a service that pages forever.
const MAX_PAGES: u32 = 10_000;

/// One flow in the list of published flows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PublishedFlow {
    /// The flow's id.
    pub fdr: String,
    /// The PSP's id.
    pub psp_id: String,
    /// Its latest revision.
    pub revision: u32,
    /// When that revision was published.
    #[serde(deserialize_with = "instant")]
    pub published: DateTime<Utc>,
    /// The flow's date.
    #[serde(default, deserialize_with = "optional_instant")]
    pub flow_date: Option<DateTime<Utc>>,
}

/// A flow's header (`SingleFlowResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FlowHeader {
    /// The flow's id.
    pub fdr: String,
    /// The revision.
    pub revision: u32,
    /// `PUBLISHED` for a flow a body may read.
    #[serde(default)]
    pub status: Option<String>,
    /// The flow's date.
    #[serde(deserialize_with = "instant")]
    pub fdr_date: DateTime<Utc>,
    /// When it was published.
    #[serde(default, deserialize_with = "optional_instant")]
    pub published: Option<DateTime<Utc>>,
    /// The id of the bank transfer that carries its money.
    #[serde(default)]
    pub regulation: Option<String>,
    /// The day of that transfer.
    #[serde(default)]
    pub regulation_date: Option<NaiveDate>,
    /// The BIC of the bank credited.
    #[serde(default)]
    pub bic_code_pouring_bank: Option<String>,
    /// The PSP that sent it.
    pub sender: FlowSender,
    /// The body it reports to.
    pub receiver: FlowReceiver,
    /// How many payments the PSP declares.
    pub tot_payments: u64,
    /// Their total, as the PSP declares it.
    #[serde(deserialize_with = "decimal")]
    pub sum_payments: Decimal,
}

/// The PSP that sent a flow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FlowSender {
    /// The PSP's id.
    pub psp_id: String,
    /// Its name.
    #[serde(default)]
    pub psp_name: Option<String>,
}

/// The body a flow reports to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FlowReceiver {
    /// The body's fiscal code.
    pub organization_id: String,
}

/// One payment of a flow (`Payment`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FdrPayment {
    /// Its index in the flow.
    pub index: u64,
    /// The IUV.
    pub iuv: String,
    /// The receipt's id.
    pub iur: String,
    /// The transfer (1 to 5).
    pub id_transfer: u8,
    /// The transfer's amount.
    #[serde(deserialize_with = "decimal")]
    pub pay: Decimal,
    /// `EXECUTED`, `REVOKED`, `STAND_IN`, `STAND_IN_NO_RPT` or `NO_RPT`.
    pub pay_status: String,
    /// When it was paid.
    #[serde(deserialize_with = "instant")]
    pub pay_date: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    tot_page: Option<u32>,
}

#[derive(Deserialize)]
struct Paged<T> {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorResponse {
    #[serde(default)]
    app_error_code: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorMessage>,
}

#[derive(Deserialize)]
struct ErrorMessage {
    #[serde(default)]
    message: Option<String>,
}

/// An instant as the service writes it: RFC 3339 with `Z` or an offset, or without one
/// (Italian time).
fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    chrono_tz::Europe::Rome
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn instant<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_instant(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("not an instant: {text:.40}")))
}

fn optional_instant<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => parse_instant(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("not an instant: {text:.40}"))),
    }
}

/// An amount written as a JSON number (or a string): read through its decimal text, so
/// `100.95` is exactly 100.95; more than two decimals is refused.
fn decimal<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Decimal, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let text = match &value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return Err(serde::de::Error::custom("an amount is a number")),
    };
    let amount: Decimal = text
        .trim()
        .parse()
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .map_err(|_| serde::de::Error::custom(format!("not an amount: {text:.40}")))?;
    let amount = amount.normalize();
    if amount.scale() > 2 || amount.is_sign_negative() {
        return Err(serde::de::Error::custom(format!(
            "not an amount in cents: {text:.40}"
        )));
    }
    Ok(amount)
}

/// The FdR client.
#[derive(Clone)]
pub struct FdrClient {
    http: HttpClient,
    url: String,
    key: SecretString,
}

impl std::fmt::Debug for FdrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdrClient")
            .field("url", &self.url)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn rejected(message: String) -> Error {
    Error::gateway(GATEWAY_ID, GatewayErrorKind::Rejected(message))
}

impl FdrClient {
    /// A client of pagoPA's production FdR service with the body's (or its broker's)
    /// subscription key.
    pub fn new(subscription_key: impl Into<String>) -> Result<Self> {
        let key = subscription_key.into();
        if key.trim().is_empty() {
            return Err(Error::invalid("subscription_key", "is required"));
        }
        Ok(FdrClient {
            http: HttpClient::new()?,
            url: DEFAULT_FDR_URL.to_owned(),
            key: SecretString::from(key.trim().to_owned()),
        })
    }

    /// The service's base URL (the UAT environment, or a local stand-in in tests).
    pub fn with_url(mut self, url: &str) -> Result<Self> {
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::invalid("fdr_url", "must be an http(s) URL"));
        }
        self.url = url.to_owned();
        Ok(self)
    }

    /// The HTTP client (timeouts, retries).
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// One GET, retried on connection errors, timeouts, `429` and 5xx by the HTTP client;
    /// `None` on `404`.
    async fn get(&self, what: &str, url: String) -> Result<Option<String>> {
        let key = key_header(&self.key)?;
        let response = self
            .http
            .send(GATEWAY_ID, |c| {
                c.get(&url)
                    .header(SUBSCRIPTION_HEADER, key.clone())
                    .header(reqwest::header::ACCEPT, "application/json")
            })
            .await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => Ok(Some(body)),
            404 => Ok(None),
            401 | 403 => Err(rejected(format!(
                "FdR refused the subscription key ({status}) on {what}"
            ))),
            429 | 500..=599 => Err(Error::gateway(GATEWAY_ID, GatewayErrorKind::Unavailable)),
            _ => {
                let words = serde_json::from_str::<ErrorResponse>(&body)
                    .ok()
                    .map(|e| {
                        let messages: Vec<String> =
                            e.errors.into_iter().filter_map(|m| m.message).collect();
                        format!(
                            "{} {}",
                            e.app_error_code.unwrap_or_default(),
                            messages.join("; ")
                        )
                    })
                    .unwrap_or_default();
                Err(rejected(format!(
                    "FdR refused {what} ({status}): {}",
                    words.trim().chars().take(300).collect::<String>()
                )))
            }
        }
    }

    /// Every page of a paged list at `url` (which has no query yet, or ends with `&`).
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut page = 1u32;
        loop {
            let Some(body) = self
                .get(what, format!("{url}page={page}&size={FDR_PAGE_SIZE}"))
                .await?
            else {
                return Ok(all);
            };
            let answer: Paged<T> = serde_json::from_str(&body).map_err(|e| {
                rejected(format!(
                    "FdR answered {what} with a page that does not read: {}",
                    e.to_string().chars().take(200).collect::<String>()
                ))
            })?;
            let fetched = answer.data.len();
            all.extend(answer.data);
            let more = match answer.metadata.and_then(|m| m.tot_page) {
                Some(total) => page < total,
                None => fetched as u32 == FDR_PAGE_SIZE,
            };
            if !more || fetched == 0 || page >= MAX_PAGES {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// The flows published for `organization` after `published_after` (the latest revision
    /// of each), every page, oldest published first.
    pub async fn published(
        &self,
        organization: &str,
        published_after: DateTime<Utc>,
    ) -> Result<Vec<PublishedFlow>> {
        check_path("organization", organization)?;
        let after = published_after.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut flows: Vec<PublishedFlow> = self
            .all_pages(
                "getAllPublishedFlows",
                &format!(
                    "{}/organizations/{organization}/fdrs?publishedGt={}&",
                    self.url,
                    form_urlencoded::byte_serialize(after.as_bytes()).collect::<String>()
                ),
            )
            .await?;
        flows.sort_by(|a, b| {
            (a.published, &a.fdr, &a.psp_id).cmp(&(b.published, &b.fdr, &b.psp_id))
        });
        Ok(flows)
    }

    /// The header of `flow`'s `revision` sent by `psp`; `None` when the service does not
    /// know it.
    pub async fn flow(
        &self,
        organization: &str,
        flow: &str,
        revision: u32,
        psp: &str,
    ) -> Result<Option<FlowHeader>> {
        let url = self.flow_url(organization, flow, revision, psp)?;
        let Some(body) = self.get("getSinglePublishedFlow", url).await? else {
            return Ok(None);
        };
        serde_json::from_str(&body).map(Some).map_err(|e| {
            rejected(format!(
                "FdR answered a flow that does not read: {}",
                e.to_string().chars().take(200).collect::<String>()
            ))
        })
    }

    /// Every payment of `flow`'s `revision` sent by `psp`, every page.
    pub async fn payments(
        &self,
        organization: &str,
        flow: &str,
        revision: u32,
        psp: &str,
    ) -> Result<Vec<FdrPayment>> {
        let url = self.flow_url(organization, flow, revision, psp)?;
        self.all_pages("getPaymentsFromPublishedFlow", &format!("{url}/payments?"))
            .await
    }

    fn flow_url(&self, organization: &str, flow: &str, revision: u32, psp: &str) -> Result<String> {
        check_path("organization", organization)?;
        check_path("flow", flow)?;
        check_path("psp", psp)?;
        Ok(format!(
            "{}/organizations/{organization}/fdrs/{flow}/revisions/{revision}/psps/{psp}",
            self.url
        ))
    }
}

/// Ids that go into a path: pagoPA's are letters, digits, `-`, `_` and `.`, 1 to 35.
fn check_path(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > 35
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(rejected(format!(
            "{field} {:?} is not an id FdR uses",
            value.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_amounts_read_as_the_service_writes_them() {
        let z = parse_instant("2026-11-20T10:00:00.123Z").unwrap();
        assert_eq!(z.to_rfc3339(), "2026-11-20T10:00:00.123+00:00");
        // Without an offset: Italian time (CET in November).
        let local = parse_instant("2026-11-20T11:00:00.123456789").unwrap();
        assert_eq!(
            local,
            Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap()
                + chrono::Duration::nanoseconds(123_456_789)
        );
        assert_eq!(
            parse_instant("2026-11-20T11:00:00+01:00"),
            Some(Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap())
        );
        assert!(parse_instant("yesterday").is_none());
        let read = |json: &str| -> std::result::Result<Decimal, serde_json::Error> {
            #[derive(Deserialize)]
            struct A {
                #[serde(deserialize_with = "decimal")]
                a: Decimal,
            }
            serde_json::from_str::<A>(json).map(|a| a.a)
        };
        assert_eq!(read(r#"{"a": 100.95}"#).unwrap().to_string(), "100.95");
        assert_eq!(read(r#"{"a": 0.1}"#).unwrap().to_string(), "0.1");
        assert_eq!(read(r#"{"a": 12}"#).unwrap().to_string(), "12");
        assert!(read(r#"{"a": 1.005}"#).is_err(), "no fractions of a cent");
        assert!(read(r#"{"a": -1}"#).is_err());
    }
}
