//! pagoPA, the Italian public bodies' payment platform (feature `pagopa`).
//!
//! Every line of a transaction becomes a pagoPA notice (*avviso*) with its own notice
//! number: the citizen pays them all at once online through the pagoPA checkout, or each
//! one at any bank, post office or app by scanning its QR code. pagoPA then sends the body
//! one receipt (`paSendRT`) per notice; the receipts come through
//! [`Payments::handle_callback`](payments_core::Payments::handle_callback) like any
//! provider's callback, each settles its line, and the transaction is paid with the last.
//!
//! - **Notice numbers** are aux digit 3: the creditor's segregation code, a 13-digit IUV
//!   base and two check digits ([`notice`]). Bases come from a counter in the
//!   [`Store`] (one per fiscal code and segregation code), so application instances sharing
//!   a database never hand out the same number. A transaction takes one block of ten bases:
//!   its line `i` has base `10 × block + i`, so a receipt names its transaction and line.
//! - **The QR code** carries `PAGOPA|002|<notice number>|<fiscal code>|<amount in cents>`
//!   ([`PagoPaGateway::qr`]).
//! - **Online checkout**: `start` sends the notices to the checkout's `POST /carts` (one to
//!   five notices per call) and returns the page it answers with.
//! - **Receipts**: [`PagoPaGateway::parse_callback`](Gateway::parse_callback) reads
//!   `paSendRT` and checks it against the notice it settles; the service records it once
//!   and flags an unknown notice, an amount that differs or a second payment as an
//!   exception that operators see among the creditor's entries
//!   ([`Payments::bank_entries`](payments_core::Payments::bank_entries)). Answer pagoPA with
//!   [`PagoPaGateway::receipt_response`].
//! - **The station**: before a bank, post office or app takes a notice's payment, pagoPA
//!   asks the body's station about it (`paVerifyPaymentNotice`, `paGetPayment`);
//!   [`PagoPaGateway::station_response`] answers from the notice's transaction, and refuses
//!   a notice already paid, expired or cancelled.
//! - **GPD and ACA**: a body may instead let pagoPA's debt-position service hold its notices
//!   ([`PagoPaCreditor::held_by_gpd`], [`GpdClient`]): checkout lines and debt positions are
//!   registered there and receipts read back from it ([`Gateway::fetch_receipts`],
//!   [`Gateway::recover_receipts`]). A body with its own station registers its positions in
//!   the central archive ([`PagoPaCreditor::registered_with_aca`], [`AcaClient`]). Positions
//!   reach either through the service's outbox, the gateway being its
//!   [`PositionArchive`](payments_core::PositionArchive).
//!
//! ```
//! use payments_gateways::pagopa::{NoticeNumber, PagoPaGateway};
//!
//! // Segregation code 02, IUV base 1004400094: 3020001004400094 mod 93 = 84.
//! let notice = NoticeNumber::aux3(2, 1_004_400_094);
//! assert_eq!(notice.as_str(), "302000100440009484");
//! assert_eq!(notice.iuv(), "02000100440009484");
//! assert_eq!(NoticeNumber::parse("3020 0010 0440 0094 84").unwrap(), notice);
//! assert!(NoticeNumber::parse("302000100440009485").is_err());
//! assert_eq!(
//!     PagoPaGateway::qr_payload(&notice, "00488410010", 1250),
//!     "PAGOPA|002|302000100440009484|00488410010|1250"
//! );
//! ```
//!
//! pagoPA does not sign receipts: they arrive over the channel agreed with the body's
//! station. The gateway requires its credential in a header (by default
//! [`DEFAULT_CALLBACK_HEADER`]), compared in constant time; a host that authenticates the
//! channel otherwise (mutual TLS at its proxy) has the proxy add the header.

pub mod aca;
mod archive;
pub mod fdr;
pub mod gpd;
pub mod notice;
pub mod receipt;
mod station;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use payments_core::{
    Actor, CallbackEvent, CallbackOutcome, CallbackPart, CallbackRequest, Creditor, CreditorId,
    Currency, Error, Gateway, GatewayErrorKind, GatewayId, Instruction, LineLimit, MethodKind,
    Money, OverLimit, PagoPaNotice, PagoPaPayment, PaymentOutcome, PaymentTypeId, Payments, Result,
    StartRequest, Started, Store, Transaction,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use aca::AcaClient;
pub use archive::PositionHolder;
pub use fdr::FdrClient;
pub use gpd::GpdClient;
pub use notice::{NoticeError, NoticeNumber};
pub use receipt::{Fault, Receipt, ReceiptError, ReceiptTransfer};
pub use station::StationFault;

use crate::http::HttpClient;
use crate::qr::{PaymentQr, QrError};

/// The gateway's id.
pub const GATEWAY_ID: &str = "pagopa";
/// The most notices the checkout takes in one cart.
pub const MAX_NOTICES: usize = 5;
/// The longest description and company name a notice carries.
pub const MAX_TEXT_CHARS: usize = 140;
/// The production API host of the checkout.
pub const DEFAULT_CHECKOUT_URL: &str = "https://api.platform.pagopa.it";
/// The checkout's cart endpoint, below its base URL.
pub const CARTS_PATH: &str = "/checkout/ec/v1/carts";
/// The header that carries the credential of the channel receipts arrive on.
pub const DEFAULT_CALLBACK_HEADER: &str = "ocp-apim-subscription-key";
/// The largest receipt read, in bytes.
pub const MAX_RECEIPT_BYTES: usize = 256 * 1024;

/// Whether `code` is an 11-digit fiscal code (*codice fiscale* of a body, the same digits
/// as its VAT number) with a valid check digit.
pub fn is_valid_fiscal_code(code: &str) -> bool {
    code.len() == 11 && code.bytes().all(|b| b.is_ascii_digit()) && luhn::valid(code)
}

fn cut(text: &str, max: usize) -> String {
    text.trim().chars().take(max).collect()
}

/// A taxonomy code in its full form (`9/0101100IM/`), from the full form with any of
/// pagoPA's prefixes (`9/`, `6/`, `7/`, `8/`) or a bare code (which takes `9/`); `None`
/// when it does not read as one.
pub fn taxonomy_code(code: &str) -> Option<String> {
    let code = code.trim();
    let full = if code.contains('/') {
        code.to_owned()
    } else {
        format!("9/{code}/")
    };
    payments_core::is_taxonomy_code(&full).then_some(full)
}

/// A creditor's pagoPA configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagoPaCreditor {
    segregation_code: u8,
    application_code: Option<String>,
    taxonomy: HashMap<PaymentTypeId, String>,
    company_name: Option<String>,
    online: bool,
    validity_days: u32,
    iban: Option<String>,
    overdue_refused: std::collections::HashSet<PaymentTypeId>,
    station: Option<(String, String)>,
    holder: PositionHolder,
}

impl PagoPaCreditor {
    /// A configuration with the two-digit segregation code pagoPA assigned to the
    /// creditor's system; notices are payable online and anywhere for 30 days.
    pub fn new(segregation_code: &str) -> Result<Self> {
        let code = segregation_code.trim();
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid("segregation_code", "must be two digits"));
        }
        Ok(PagoPaCreditor {
            segregation_code: code.parse().expect("two digits"),
            application_code: None,
            taxonomy: HashMap::new(),
            company_name: None,
            online: true,
            validity_days: 30,
            iban: None,
            overdue_refused: std::collections::HashSet::new(),
            station: None,
            holder: PositionHolder::Station,
        })
    }

    /// The two-digit application code of the creditor's older aux-0 notices, kept so
    /// they are recognised; new notices use aux 3.
    pub fn with_application_code(mut self, code: &str) -> Result<Self> {
        let code = code.trim();
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid("application_code", "must be two digits"));
        }
        self.application_code = Some(code.to_owned());
        Ok(self)
    }

    /// The taxonomy code of `payment_type` (*tassonomia dei servizi di incasso*, sent as
    /// `transferCategory`): a prefix `9/`, `6/`, `7/` or `8/` (SANP, "Tassonomia dei
    /// servizi di incasso": the prefixes other than `9/` enable SEPA Request-to-Pay), seven
    /// digits, two capital letters and a final `/`, such as `9/0101100IM/`. A bare code
    /// (`0101100IM`) takes the `9/` prefix.
    pub fn with_taxonomy(mut self, payment_type: PaymentTypeId, code: &str) -> Result<Self> {
        let code = taxonomy_code(code).ok_or_else(|| {
            Error::invalid(
                "taxonomy",
                "must read like 9/0101100IM/: a prefix 9/, 6/, 7/ or 8/, seven digits, two \
                 capital letters and a final /",
            )
        })?;
        self.taxonomy.insert(payment_type, code);
        Ok(self)
    }

    /// Notices of `payment_type` are refused once their due date has passed (Europe/Rome),
    /// as `PAA_PAGAMENTO_SCADUTO`: a fee that must be paid in time. By default an overdue
    /// notice is still payable (a tax paid late is still owed).
    pub fn refuse_when_overdue(mut self, payment_type: PaymentTypeId) -> Self {
        self.overdue_refused.insert(payment_type);
        self
    }

    /// The body's own pagoPA station (`idBrokerPA`, `idStation`), when it is not the
    /// gateway's ([`PagoPaGateway::with_station`]): requests naming another are refused with
    /// `PAA_ID_INTERMEDIARIO_ERRATO` or `PAA_STAZIONE_INT_ERRATA`.
    pub fn with_station(mut self, broker_id: &str, station_id: &str) -> Result<Self> {
        let (broker, station) = (broker_id.trim(), station_id.trim());
        for (field, value) in [("broker_id", broker), ("station_id", station)] {
            if value.is_empty() || value.chars().count() > 35 {
                return Err(Error::invalid(field, "must have 1 to 35 characters"));
            }
        }
        self.station = Some((broker.to_owned(), station.to_owned()));
        Ok(self)
    }

    /// The name notices show, when not the creditor's own (at most 140 characters).
    pub fn with_company_name(mut self, name: &str) -> Result<Self> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_TEXT_CHARS {
            return Err(Error::invalid(
                "company_name",
                format!("must have 1 to {MAX_TEXT_CHARS} characters"),
            ));
        }
        self.company_name = Some(name.to_owned());
        Ok(self)
    }

    /// Notices only, payable anywhere: no online checkout.
    pub fn notices_only(mut self) -> Self {
        self.online = false;
        self
    }

    /// How long notices stay payable (and the transaction open), 1 to 365 days.
    pub fn valid_for_days(mut self, days: u32) -> Result<Self> {
        if !(1..=365).contains(&days) {
            return Err(Error::invalid("validity_days", "must be 1 to 365"));
        }
        self.validity_days = days;
        Ok(self)
    }

    /// The IBAN the notices' money goes to, which the station tells pagoPA when a notice
    /// is paid ([`PagoPaGateway::station_response`]).
    pub fn with_iban(mut self, iban: &str) -> Result<Self> {
        use iban::IbanLike;
        let iban = iban
            .trim()
            .parse::<iban::Iban>()
            .map_err(|_| Error::invalid("iban", "not a valid IBAN"))?;
        self.iban = Some(iban.electronic_str().to_owned());
        Ok(self)
    }

    /// pagoPA's debt-position service (GPD) holds the creditor's notices and answers the
    /// node for them: each transaction line is registered there before the payer pays,
    /// each debt position as it changes ([`PositionArchive`](payments_core::PositionArchive)),
    /// and receipts are read back from GPD when they did not arrive
    /// ([`Gateway::fetch_receipts`], [`Gateway::recover_receipts`]). The gateway needs a
    /// [`GpdClient`] ([`PagoPaGateway::with_gpd`]).
    pub fn held_by_gpd(mut self) -> Self {
        self.holder = PositionHolder::Gpd;
        self
    }

    /// The creditor runs its own station and registers every debt position's notices in
    /// pagoPA's central archive (ACA, `paCreatePosition`), withdrawing them when they end.
    /// The gateway needs an [`AcaClient`] ([`PagoPaGateway::with_aca`]).
    pub fn registered_with_aca(mut self) -> Self {
        self.holder = PositionHolder::Aca;
        self
    }

    /// Who keeps the creditor's notices besides its station.
    pub fn holder(&self) -> PositionHolder {
        self.holder
    }

    /// The segregation code.
    pub fn segregation_code(&self) -> u8 {
        self.segregation_code
    }

    /// The application code, if set.
    pub fn application_code(&self) -> Option<&str> {
        self.application_code.as_deref()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CartRequest {
    payment_notices: Vec<CartNotice>,
    return_urls: ReturnUrls,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_notice: Option<String>,
    id_cart: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CartNotice {
    notice_number: String,
    fiscal_code: String,
    amount: i64,
    company_name: String,
    description: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReturnUrls {
    return_ok_url: String,
    return_cancel_url: String,
    return_error_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CartAnswer {
    checkout_redirect_url: Option<String>,
}

#[derive(Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

/// pagoPA: notices with IUV and QR code, online checkout of up to five notices, and
/// receipts that settle the lines one by one.
pub struct PagoPaGateway {
    store: Arc<dyn Store>,
    http: HttpClient,
    checkout_url: String,
    checkout_key: Option<SecretString>,
    callback_header: String,
    callback_key: SecretString,
    station: Option<(String, String)>,
    creditors: RwLock<HashMap<CreditorId, PagoPaCreditor>>,
    by_fiscal_code: RwLock<HashMap<String, CreditorId>>,
    default_creditor: Option<PagoPaCreditor>,
    over_limit: OverLimit,
    gpd: Option<GpdClient>,
    fdr: Option<FdrClient>,
    aca: Option<AcaClient>,
}

impl std::fmt::Debug for PagoPaGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagoPaGateway")
            .field("checkout_url", &self.checkout_url)
            .field(
                "checkout_key",
                &self.checkout_key.as_ref().map(|_| "[redacted]"),
            )
            .field("callback_header", &self.callback_header)
            .field("callback_key", &"[redacted]")
            .field("station", &self.station)
            .field(
                "creditors",
                &self
                    .creditors
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .len(),
            )
            .field("default_creditor", &self.default_creditor)
            .field("over_limit", &self.over_limit)
            .field("gpd", &self.gpd)
            .field("aca", &self.aca)
            .finish()
    }
}

impl PagoPaGateway {
    /// A gateway that allocates notice numbers from `store` and accepts receipts that carry
    /// `callback_key` in [`DEFAULT_CALLBACK_HEADER`]. It talks to the production checkout,
    /// and refuses carts of more than five items.
    pub fn new(store: Arc<dyn Store>, callback_key: impl Into<String>) -> Result<Self> {
        let callback_key = callback_key.into();
        if callback_key.trim().len() < 16 {
            return Err(Error::invalid(
                "callback_key",
                "must have at least 16 characters",
            ));
        }
        Ok(PagoPaGateway {
            store,
            http: HttpClient::new()?,
            checkout_url: DEFAULT_CHECKOUT_URL.to_owned(),
            checkout_key: None,
            callback_header: DEFAULT_CALLBACK_HEADER.to_owned(),
            callback_key: SecretString::from(callback_key),
            station: None,
            creditors: RwLock::new(HashMap::new()),
            by_fiscal_code: RwLock::new(HashMap::new()),
            default_creditor: None,
            over_limit: OverLimit::Refuse,
            gpd: None,
            fdr: None,
            aca: None,
        })
    }

    /// The checkout's base URL (the UAT environment, or a local server in tests).
    pub fn with_checkout_url(mut self, url: &str) -> Result<Self> {
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::invalid("checkout_url", "must be an http(s) URL"));
        }
        self.checkout_url = url.to_owned();
        Ok(self)
    }

    /// A subscription key sent to the checkout as `Ocp-Apim-Subscription-Key`.
    pub fn with_checkout_key(mut self, key: impl Into<String>) -> Self {
        self.checkout_key = Some(SecretString::from(key.into()));
        self
    }

    /// The header receipts carry the channel's credential in.
    pub fn with_callback_header(mut self, name: &str) -> Self {
        self.callback_header = name.trim().to_ascii_lowercase();
        self
    }

    /// The broker and station of every body without one of its own
    /// ([`PagoPaCreditor::with_station`]): requests and receipts naming another
    /// (`idBrokerPA`, `idStation`) are refused with `PAA_ID_INTERMEDIARIO_ERRATO` or
    /// `PAA_STAZIONE_INT_ERRATA`. Unset, they are not checked.
    pub fn with_station(mut self, broker_id: &str, station_id: &str) -> Self {
        self.station = Some((broker_id.trim().to_owned(), station_id.trim().to_owned()));
        self
    }

    /// The client of pagoPA's debt-position service, for the creditors it holds
    /// ([`PagoPaCreditor::held_by_gpd`]).
    pub fn with_gpd(mut self, gpd: GpdClient) -> Self {
        self.gpd = Some(gpd);
        self
    }

    /// The client of pagoPA's reporting flows (FdR), for [`PagoPaGateway::sync_flows`].
    pub fn with_fdr(mut self, fdr: FdrClient) -> Self {
        self.fdr = Some(fdr);
        self
    }

    /// Fetches the reporting flows published for `creditor` since the last one stored
    /// (at most the last 29 days: FdR refuses older), each new flow or revision whole (its
    /// payments paged), and records them ([`Payments::record_flow`]); a new revision
    /// replaces the old one. Flows are taken oldest published first; when FdR is
    /// unavailable the sync stops there and the next one starts again from that flow (each
    /// sync asks from a day before the last flow stored); a flow FdR refuses, or that does
    /// not read, is an exception for operators and the sync goes on. Then call
    /// [`Payments::reconcile_flows`] to match them. Without an FdR client this is
    /// `NotSupported`.
    pub async fn sync_flows(&self, payments: &Payments, creditor: CreditorId) -> Result<FlowSync> {
        let fdr = self
            .fdr
            .as_ref()
            .ok_or_else(|| Self::error(GatewayErrorKind::NotSupported("reporting flows")))?;
        let body = payments
            .store()
            .creditor(creditor)
            .await?
            .ok_or_else(|| Error::not_found("creditor", creditor))?;
        let organization = body.fiscal_code.trim().to_owned();
        let gateway = Actor::Gateway {
            id: GatewayId::from(GATEWAY_ID),
        };
        let now = payments.clock().now();
        let floor = now - chrono::Duration::days(29);
        let mut latest = payments_core::FlowQuery::new(creditor);
        latest.limit = 1;
        latest.include_replaced = true;
        let since = payments
            .store()
            .flows(&latest)
            .await?
            .first()
            // A day's overlap: a flow published at the same instant as the last one stored,
            // or one that could not be fetched, is listed again (what is held is skipped).
            .map(|f| (f.published_at - chrono::Duration::days(1)).max(floor))
            .unwrap_or(floor);
        let listed = fdr.published(&organization, since).await?;
        let mut sync = FlowSync {
            listed: listed.len(),
            ..FlowSync::default()
        };
        for item in listed {
            let mut known = payments_core::FlowQuery::new(creditor);
            known.flow_id = Some(item.fdr.clone());
            known.psp_id = Some(item.psp_id.clone());
            known.include_replaced = true;
            known.limit = payments_core::MAX_PAGE_SIZE;
            if payments
                .store()
                .flows(&known)
                .await?
                .iter()
                .any(|f| f.revision >= item.revision)
            {
                sync.known += 1;
                continue;
            }
            match self
                .fetch_flow(fdr, &organization, creditor, &item, now)
                .await
            {
                Ok(flow) => match payments.record_flow(&gateway, &flow).await {
                    Ok(payments_core::FlowStored::Inserted) => sync.stored += 1,
                    Ok(payments_core::FlowStored::Replaced { .. }) => sync.replaced += 1,
                    Ok(_) => sync.known += 1,
                    Err(Error::Validation(v)) => {
                        self.unreadable_flow(payments, creditor, &item, &v.to_string(), now)
                            .await?;
                        sync.unreadable += 1;
                    }
                    Err(e) => return Err(e),
                },
                // The service is down or slow: stop here, the next sync starts again from
                // this flow.
                Err(
                    e @ Error::Gateway {
                        kind: GatewayErrorKind::Unavailable,
                        ..
                    },
                ) => return Err(e),
                // A flow the service refuses to give, or gives in a form that does not read:
                // asking again will not mend it. An operator sees it; later flows go on.
                Err(Error::Gateway { kind, .. }) => {
                    self.unreadable_flow(payments, creditor, &item, &kind.to_string(), now)
                        .await?;
                    sync.unreadable += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sync)
    }

    /// One flow's header and payments, as the library keeps a flow.
    async fn fetch_flow(
        &self,
        fdr: &FdrClient,
        organization: &str,
        creditor: CreditorId,
        item: &fdr::PublishedFlow,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<payments_core::ReportingFlow> {
        let header = fdr
            .flow(organization, &item.fdr, item.revision, &item.psp_id)
            .await?
            .ok_or_else(|| {
                Self::error(GatewayErrorKind::Rejected(format!(
                    "FdR lists flow {} revision {} of {} but does not give it",
                    item.fdr, item.revision, item.psp_id
                )))
            })?;
        let rows = fdr
            .payments(organization, &item.fdr, item.revision, &item.psp_id)
            .await?;
        build_flow(creditor, item, &header, rows, now)
    }

    /// Records, once, that a listed flow could not be read, for the creditor's operators.
    async fn unreadable_flow(
        &self,
        payments: &Payments,
        creditor: CreditorId,
        item: &fdr::PublishedFlow,
        why: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        let mut e = payments_core::Exception::new(
            creditor,
            payments_core::ExceptionKind::ReportingMismatch,
            format!(
                "fdr-unreadable:{}/{}/r{}",
                item.psp_id, item.fdr, item.revision
            ),
            format!(
                "flow {} revision {} of PSP {} could not be read from FdR: {}",
                item.fdr,
                item.revision,
                item.psp_id,
                why.chars().take(300).collect::<String>()
            ),
            now,
        );
        e.provider_ref = Some(item.fdr.clone());
        payments.store().insert_exception(&e).await?;
        Ok(())
    }

    /// The client of pagoPA's central archive of notices, for the creditors registered
    /// there ([`PagoPaCreditor::registered_with_aca`]).
    pub fn with_aca(mut self, aca: AcaClient) -> Self {
        self.aca = Some(aca);
        self
    }

    fn gpd_client(&self) -> Result<&GpdClient> {
        self.gpd.as_ref().ok_or_else(|| {
            Error::invalid(
                "gpd",
                "the creditor is held by GPD but the gateway has no GPD client",
            )
        })
    }

    fn aca_client(&self) -> Result<&AcaClient> {
        self.aca.as_ref().ok_or_else(|| {
            Error::invalid(
                "aca",
                "the creditor is registered with ACA but the gateway has no ACA client",
            )
        })
    }

    /// The HTTP client (timeouts, retries) to reach the checkout with.
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// Splits a cart of more than five items: the oldest five are paid now, the others
    /// stay in the cart. By default such a cart is refused.
    pub fn split_large_carts(mut self) -> Self {
        self.over_limit = OverLimit::Split;
        self
    }

    /// The configuration of every creditor without one of its own.
    pub fn with_default_creditor(mut self, config: PagoPaCreditor) -> Self {
        self.default_creditor = Some(config);
        self
    }

    /// Sets `creditor`'s configuration. Its fiscal code must be 11 digits with a valid
    /// check digit; receipts naming it are attributed to it, so a receipt for a notice
    /// unknown to the library becomes an exception its operators see.
    pub fn set_creditor(&self, creditor: &Creditor, config: PagoPaCreditor) -> Result<()> {
        if !is_valid_fiscal_code(creditor.fiscal_code.trim()) {
            return Err(Error::invalid(
                "fiscal_code",
                "pagoPA needs the creditor's 11-digit fiscal code",
            ));
        }
        self.creditors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(creditor.id, config);
        self.by_fiscal_code
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(creditor.fiscal_code.trim().to_owned(), creditor.id);
        Ok(())
    }

    /// `creditor`'s configuration, or the default one.
    pub fn creditor_config(&self, creditor: CreditorId) -> Option<PagoPaCreditor> {
        self.creditors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&creditor)
            .cloned()
            .or_else(|| self.default_creditor.clone())
    }

    /// The QR payload of a notice: `PAGOPA|002|<notice number>|<fiscal code>|<cents>`.
    pub fn qr_payload(notice: &NoticeNumber, fiscal_code: &str, cents: i64) -> String {
        format!("PAGOPA|002|{notice}|{fiscal_code}|{cents}")
    }

    /// The notice's QR code as pagoPA's notice specification fixes it ("Avvisi di
    /// pagamento", the QR code: version 4, 33×33 modules, error correction M), to render
    /// as `.svg(px)` or `.png(px)`.
    pub fn qr(notice: &PagoPaNotice) -> std::result::Result<PaymentQr, QrError> {
        PaymentQr::with_version(&notice.qr_payload, 4)
    }

    /// A receipt as it arrives over the authenticated channel: `body` with the channel's
    /// credential. For tests, and for a proxy that authenticates pagoPA itself.
    pub fn authenticated_request(&self, body: impl Into<Vec<u8>>) -> CallbackRequest {
        CallbackRequest::new(body).with_header(
            &self.callback_header,
            self.callback_key.expose_secret().to_owned(),
        )
    }

    /// The SOAP answer to a `paSendRT` that
    /// [`Payments::handle_callback`](payments_core::Payments::handle_callback) handled.
    /// `id_pa` is the creditor's fiscal code.
    ///
    /// Money a PSP took is a fact: once the library has recorded a receipt, pagoPA is
    /// told so, or its node would resend it until it gives up.
    ///
    /// - `OK` when the receipt was applied or recorded: also a replay, a second payment of a
    ///   notice, a late payment, a payment of another amount, of a notice of this body
    ///   that no transaction has (`NotFound`: recorded as an exception first), or of
    ///   another body's notice of which this body receives a transfer (kept as a
    ///   beneficiary's receipt).
    /// - `KO` with `PAA_ID_DOMINIO_ERRATO`, `PAA_ID_INTERMEDIARIO_ERRATO` or
    ///   `PAA_STAZIONE_INT_ERRATA` for a receipt that names a body, broker or station not
    ///   served here.
    /// - `KO` with `PAA_SINTASSI_XSD` for a receipt that does not read, `PAA_SEMANTICA` for
    ///   one that is not authentic or names a body not served here, `PAA_SYSTEM_ERROR`
    ///   when the store fails; pagoPA's node sends a refused receipt again, within its own
    ///   limits.
    pub fn receipt_response(result: &Result<CallbackOutcome>, id_pa: &str) -> String {
        let fault = Self::receipt_fault(result);
        receipt::response(fault.as_ref().map(|(f, m)| (*f, m.as_str())), id_pa)
    }

    /// The fault a receipt's result is answered with, if any (see
    /// [`PagoPaGateway::receipt_response`]).
    fn receipt_fault(result: &Result<CallbackOutcome>) -> Option<(Fault, String)> {
        match result {
            Ok(_) | Err(Error::NotFound { .. }) => None,
            Err(Error::Gateway {
                kind: GatewayErrorKind::Malformed(m),
                ..
            }) => {
                // The identifiers' faults keep their own codes (pagoPA's "Nodo -> EC"
                // table: paSendRT answers PAA_ID_DOMINIO_ERRATO, PAA_ID_INTERMEDIARIO_ERRATO,
                // PAA_STAZIONE_INT_ERRATA).
                let fault = [Fault::WrongBody, Fault::WrongBroker, Fault::WrongStation]
                    .into_iter()
                    .find(|f| m.starts_with(f.code()))
                    .unwrap_or(Fault::Syntax);
                Some((fault, m.clone()))
            }
            Err(
                e @ Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                },
            )
            | Err(e @ Error::Storage { .. }) => Some((Fault::System, e.to_string())),
            Err(e) => Some((Fault::Semantics, e.to_string())),
        }
    }

    fn error(kind: GatewayErrorKind) -> Error {
        Error::gateway(GATEWAY_ID, kind)
    }

    fn authenticate(&self, request: &CallbackRequest) -> Result<()> {
        let given = request
            .header(&self.callback_header)
            .ok_or_else(|| Self::error(GatewayErrorKind::InvalidSignature))?;
        let a = Sha256::digest(given.trim().as_bytes());
        let b = Sha256::digest(self.callback_key.expose_secret().as_bytes());
        if bool::from(a.ct_eq(&b)) {
            Ok(())
        } else {
            Err(Self::error(GatewayErrorKind::InvalidSignature))
        }
    }

    /// Asks the checkout for a cart of `notices` and returns the page to send the payer to.
    async fn create_cart(
        &self,
        request: &StartRequest,
        notices: &[PagoPaNotice],
    ) -> Result<String> {
        let tx = &request.transaction;
        let return_url = request.return_url.as_deref().ok_or_else(|| {
            Error::invalid(
                "return_url",
                "pagoPA's checkout needs an address to send the payer back to",
            )
        })?;
        let back = |outcome: &str| crate::text::return_to(return_url, tx.id, outcome);
        let body = CartRequest {
            payment_notices: notices
                .iter()
                .map(|n| CartNotice {
                    notice_number: n.notice_number.clone(),
                    fiscal_code: n.creditor_fiscal_code.clone(),
                    amount: n.amount.minor_units(),
                    company_name: n.company_name.clone(),
                    description: n.description.clone(),
                })
                .collect(),
            return_urls: ReturnUrls {
                return_ok_url: back("ok"),
                return_cancel_url: back("cancel"),
                return_error_url: back("error"),
            },
            email_notice: tx.payer.email.clone(),
            id_cart: tx.id.as_uuid().simple().to_string(),
        };
        let url = format!("{}{CARTS_PATH}", self.checkout_url);
        let response = self
            .http
            .send(GATEWAY_ID, |client| {
                let mut r = client.post(&url).json(&body);
                if let Some(key) = &self.checkout_key {
                    r = r.header("Ocp-Apim-Subscription-Key", key.expose_secret());
                }
                r
            })
            .await?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let text = response
            .text()
            .await
            .map_err(|_| Self::error(GatewayErrorKind::Unavailable))?;
        let page = if status.is_redirection() {
            location
        } else if status.is_success() {
            serde_json::from_str::<CartAnswer>(&text)
                .ok()
                .and_then(|a| a.checkout_redirect_url)
        } else if status.is_client_error() {
            let problem = serde_json::from_str::<Problem>(&text).ok();
            let why = problem
                .and_then(|p| p.detail.or(p.title))
                .unwrap_or_else(|| status.to_string());
            return Err(Self::error(GatewayErrorKind::Rejected(cut(&why, 200))));
        } else {
            return Err(Self::error(GatewayErrorKind::Unavailable));
        };
        match page {
            Some(p) if p.starts_with("https://") || p.starts_with("http://") => Ok(p),
            _ => Err(Self::error(GatewayErrorKind::Malformed(format!(
                "the checkout answered {status} without a page to go to"
            )))),
        }
    }
}

#[async_trait]
impl Gateway for PagoPaGateway {
    fn id(&self) -> GatewayId {
        GatewayId::from(GATEWAY_ID)
    }

    fn kinds(&self) -> Vec<MethodKind> {
        vec![MethodKind::PagoPa]
    }

    fn line_limit(&self) -> Option<LineLimit> {
        Some(LineLimit {
            max: MAX_NOTICES,
            over: self.over_limit,
        })
    }

    /// Allocates a notice per line, and a checkout page for them when the creditor pays
    /// online.
    async fn start(&self, request: &StartRequest) -> Result<Started> {
        let tx = &request.transaction;
        let config = self
            .creditor_config(tx.creditor_id)
            .ok_or_else(|| Error::invalid("creditor", "has no pagoPA configuration"))?;
        let fiscal_code = request.creditor.fiscal_code.trim();
        if !is_valid_fiscal_code(fiscal_code) {
            return Err(Error::invalid(
                "fiscal_code",
                "pagoPA needs the creditor's 11-digit fiscal code",
            ));
        }
        if tx.lines.is_empty() || tx.lines.len() > MAX_NOTICES {
            return Err(Error::invalid(
                "lines",
                format!("pagoPA pays 1 to {MAX_NOTICES} notices at a time"),
            ));
        }
        let counter = format!("pagopa/{fiscal_code}/{:02}", config.segregation_code);
        let block = self.store.allocate_sequence(&counter, 1).await?;
        if block > notice::MAX_BASE / 10 {
            return Err(Error::invalid(
                "segregation_code",
                "has no notice numbers left: ask pagoPA for another segregation code",
            ));
        }
        // Payable to the end of the last day in Rome, not to the creation's time of day.
        let expires_at = payments_core::days_after(tx.created_at, config.validity_days);
        // A notice is due when its item is (SANP, paGetPayment `dueDate`); an item without
        // a due date is due when the transaction ends.
        let mut due_dates = Vec::with_capacity(tx.lines.len());
        for line in &tx.lines {
            let due = self
                .store
                .item(line.item_id)
                .await?
                .and_then(|i| i.due_date);
            due_dates.push(due.unwrap_or_else(|| payments_core::rome_day(expires_at)));
        }
        let company_name = config
            .company_name
            .clone()
            .unwrap_or_else(|| cut(&request.creditor.name, MAX_TEXT_CHARS));
        let notices: Vec<PagoPaNotice> = tx
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let number = NoticeNumber::aux3(config.segregation_code, block * 10 + i as u64);
                PagoPaNotice::new(
                    number.as_str(),
                    number.iuv(),
                    fiscal_code,
                    line.amount,
                    Self::qr_payload(&number, fiscal_code, line.amount.minor_units()),
                )
                .with_due_date(due_dates[i])
                .with_description(cut(&line.reason, MAX_TEXT_CHARS))
                .with_company_name(company_name.clone())
                .with_taxonomy(config.taxonomy.get(&line.payment_type_id).cloned())
            })
            .collect();
        // pagoPA's node asks GPD about the notices of a creditor it holds: they are there
        // before the payer can pay them.
        if config.holder == PositionHolder::Gpd {
            self.gpd_register_lines(&config, &company_name, tx, &notices)
                .await?;
        }
        let checkout_url = if config.online {
            match self.create_cart(request, &notices).await {
                Ok(url) => Some(url),
                Err(e) => {
                    // Nobody was shown these notices: not left payable at GPD.
                    if config.holder == PositionHolder::Gpd {
                        let iupds: Vec<String> = (0..notices.len())
                            .map(|i| Self::gpd_line_iupd(fiscal_code, tx, i))
                            .collect();
                        self.gpd_withdraw_all(fiscal_code, &iupds).await;
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        let provider_ref = format!("{fiscal_code}/{}", notices[0].notice_number);
        Ok(Started::new(Instruction::PagoPa(
            PagoPaPayment::new(notices).with_checkout_url(checkout_url),
        ))
        .with_provider_ref(provider_ref)
        .with_expires_at(expires_at))
    }

    /// Reads a `paSendRT` or `paSendRTV2` receipt that carries the channel's credential,
    /// and checks it: a valid notice number with its IUV, transfers that add up, outcome
    /// `OK`, and the body's broker and station. The receipt is attached whole
    /// ([`CallbackEvent::with_receipt`]) with its PSP, channel, fee, method, payer and
    /// transfer date.
    ///
    /// - A receipt of a notice of this body pays the notice's line of its transaction (or
    ///   its debt position's option).
    /// - A receipt of another body's notice in which this body (`idPA`) receives a
    ///   transfer is kept for this body as a beneficiary's
    ///   ([`ReceiptRole::Beneficiary`](payments_core::ReceiptRole::Beneficiary)), with
    ///   the amount of its own transfers: pagoPA sends it to every beneficiary's station,
    ///   and it is answered `OK` ([`PagoPaGateway::receipt_response`]).
    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        self.authenticate(request)?;
        self.receipt_event(&request.body, true)
    }

    /// Only GPD answers about a transaction (its receipts): with no creditor held by GPD,
    /// the sweep has nothing to ask (receipts come to the station).
    fn answers_status(&self) -> bool {
        self.creditors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|c| c.holder == PositionHolder::Gpd)
    }

    /// GPD's receipts of the lines of `transaction`, for a creditor it holds
    /// ([`PagoPaCreditor::held_by_gpd`]); `NotSupported` for the others, whose receipts
    /// only come to their station.
    async fn fetch_receipts(&self, transaction: &Transaction) -> Result<Vec<CallbackEvent>> {
        match self.creditor_config(transaction.creditor_id) {
            Some(c) if c.holder == PositionHolder::Gpd => {
                let fiscal_code = transaction
                    .instruction
                    .as_ref()
                    .and_then(|i| match i {
                        Instruction::PagoPa(p) => p.notices.first(),
                        _ => None,
                    })
                    .map(|n| n.creditor_fiscal_code.clone())
                    .unwrap_or_default();
                self.gpd_receipts_of(&fiscal_code, transaction).await
            }
            _ => Err(Self::error(GatewayErrorKind::NotSupported(
                "fetch_receipts",
            ))),
        }
    }

    /// The receipts GPD issued since `since` for the creditors it holds that are not kept
    /// here yet (a debt position paid at a bank whose receipt never arrived).
    async fn recover_receipts(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<payments_core::RecoveredReceipts> {
        self.gpd_recover(since).await
    }

    /// pagoPA tells the body by receipt; there is no status to ask for.
    async fn fetch_status(&self, _transaction: &Transaction) -> Result<PaymentOutcome> {
        Err(Self::error(GatewayErrorKind::NotSupported("fetch_status")))
    }

    /// The notices of a transaction that ended are no longer payable: the station
    /// ([`PagoPaGateway::station_response`]) refuses them once the transaction is expired,
    /// cancelled or partially paid, so nothing is left open at pagoPA; for a creditor held
    /// by GPD, the lines' positions are invalidated there (one GPD says was paid stops the
    /// closing: its receipt is read back first). A receipt that comes anyway (a PSP that
    /// took the money before asking) is recorded as a late payment.
    async fn close(&self, transaction: &Transaction) -> Result<PaymentOutcome> {
        if let Some(c) = self.creditor_config(transaction.creditor_id)
            && c.holder == PositionHolder::Gpd
            && let Some(Instruction::PagoPa(p)) = &transaction.instruction
            && let Some(first) = p.notices.first()
        {
            self.gpd_close(&first.creditor_fiscal_code, transaction)
                .await?;
        }
        Ok(PaymentOutcome::Cancelled)
    }
}

impl PagoPaGateway {
    /// The callback of a receipt document: a `paSendRT`/`paSendRTV2` message from the
    /// node (whose body, broker and station are checked when `check_ids`), or a receipt
    /// GPD kept (addressed to GPD's own station).
    fn receipt_event(&self, body: &[u8], check_ids: bool) -> Result<CallbackEvent> {
        let receipt = receipt::parse(body, MAX_RECEIPT_BYTES)
            .map_err(|e| Self::error(GatewayErrorKind::Malformed(e.to_string())))?;
        if receipt.outcome != "OK" {
            return Err(Self::error(GatewayErrorKind::Malformed(format!(
                "a receipt with outcome {} pays nothing",
                cut(&receipt.outcome, 10)
            ))));
        }
        let addressed = self.creditor_of(&receipt.id_pa);
        if check_ids
            && let Some(fault) = self.check_ids(
                addressed,
                &receipt.id_pa,
                &receipt.broker_id,
                &receipt.station_id,
            )
        {
            return Err(Self::error(GatewayErrorKind::Malformed(format!(
                "{}: {}",
                fault.code(),
                fault.reason()
            ))));
        }
        let issuer = self.creditor_of(&receipt.fiscal_code);
        // pagoPA sends a receipt to the station of every beneficiary: addressed to a body
        // other than the notice's, it is that body's record of its share.
        let beneficiary = match addressed {
            Some(c)
                if issuer != Some(c)
                    && receipt
                        .transfers
                        .iter()
                        .any(|t| t.fiscal_code.as_deref() == Some(receipt.id_pa.as_str())) =>
            {
                Some(c)
            }
            _ => None,
        };
        let document = String::from_utf8_lossy(body).into_owned();
        let summary = receipt.summary();
        if let Some(creditor) = beneficiary {
            let kept = receipt.kept(
                creditor,
                &receipt.id_pa,
                payments_core::ReceiptRole::Beneficiary,
                document,
            );
            return Ok(CallbackEvent::new(PaymentOutcome::Paid, kept.share)
                .with_note(summary)
                .with_receipt(kept));
        }
        let (line, first) = match (receipt.notice.segregation_code(), receipt.notice.base()) {
            (Some(seg), Some(base)) => (
                (base % 10) as usize,
                NoticeNumber::aux3(seg, base - base % 10),
            ),
            _ => (0, receipt.notice.clone()),
        };
        let mut event = CallbackEvent::new(PaymentOutcome::Paid, receipt.amount)
            .with_provider_ref(format!("{}/{first}", receipt.fiscal_code))
            .with_note(summary.clone())
            .with_part(CallbackPart {
                creditor_id: issuer,
                line,
                key: receipt.key(),
                reference: receipt.notice.to_string(),
                paid_on: receipt.paid_on(),
                debtor: receipt.debtor.clone(),
                details: summary,
            });
        if let Some(creditor) = issuer {
            event = event.with_receipt(receipt.kept(
                creditor,
                &receipt.fiscal_code,
                payments_core::ReceiptRole::Issuer,
                document,
            ));
        }
        Ok(event)
    }
}

/// Debt positions' notice numbers: aux digit 3, the creditor's segregation code and a base
/// from the same counter as the notices of transactions (a block of ten bases each, of which
/// the first is used), so a number is never handed out twice; a receipt of one finds its
/// position ([`Payments::handle_callback`](payments_core::Payments::handle_callback)).
#[async_trait]
impl payments_core::NoticeIssuer for PagoPaGateway {
    async fn issue(&self, creditor: &Creditor, count: u32) -> Result<Vec<String>> {
        let config = self
            .creditor_config(creditor.id)
            .ok_or_else(|| Error::invalid("creditor", "has no pagoPA configuration"))?;
        let fiscal_code = creditor.fiscal_code.trim();
        if !is_valid_fiscal_code(fiscal_code) {
            return Err(Error::invalid(
                "fiscal_code",
                "pagoPA needs the creditor's 11-digit fiscal code",
            ));
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let counter = format!("pagopa/{fiscal_code}/{:02}", config.segregation_code);
        let first = self.store.allocate_sequence(&counter, count).await?;
        if first + u64::from(count) - 1 > notice::MAX_BASE / 10 {
            return Err(Error::invalid(
                "segregation_code",
                "has no notice numbers left: ask pagoPA for another segregation code",
            ));
        }
        Ok((first..first + u64::from(count))
            .map(|block| {
                NoticeNumber::aux3(config.segregation_code, block * 10)
                    .as_str()
                    .to_owned()
            })
            .collect())
    }

    fn default_transfer(
        &self,
        creditor: &Creditor,
        payment_type: &payments_core::PaymentType,
        amount: &payments_core::Money,
        remittance: &str,
    ) -> Result<payments_core::Transfer> {
        let config = self
            .creditor_config(creditor.id)
            .ok_or_else(|| Error::invalid("creditor", "has no pagoPA configuration"))?;
        let iban = config.iban.clone().ok_or_else(|| {
            Error::invalid(
                "iban",
                "the creditor has no IBAN for pagoPA (PagoPaCreditor::with_iban)",
            )
        })?;
        let taxonomy = config.taxonomy.get(&payment_type.id).ok_or_else(|| {
            Error::invalid(
                "taxonomy",
                format!(
                    "payment type {} has no taxonomy code (PagoPaCreditor::with_taxonomy)",
                    payment_type.code
                ),
            )
        })?;
        Ok(payments_core::Transfer::to_iban(
            creditor.fiscal_code.trim(),
            iban,
            *amount,
            cut(remittance, MAX_TEXT_CHARS),
            taxonomy.clone(),
        ))
    }
}

/// What [`PagoPaGateway::sync_flows`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowSync {
    /// Flows the service listed as published since the last sync.
    pub listed: usize,
    /// New flows stored.
    pub stored: usize,
    /// New revisions that replaced a stored one.
    pub replaced: usize,
    /// Flows already stored at that revision (or a later one).
    pub known: usize,
    /// Flows FdR refused to give or gave in a form that does not read: each is a
    /// `ReportingMismatch` exception (`fdr-unreadable:…`), and the sync went on.
    pub unreadable: usize,
}

/// A flow as the library keeps it, from the service's header and payments.
fn build_flow(
    creditor: CreditorId,
    item: &fdr::PublishedFlow,
    header: &fdr::FlowHeader,
    rows: Vec<fdr::FdrPayment>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<payments_core::ReportingFlow> {
    let malformed = |what: String| {
        Error::gateway(
            GATEWAY_ID,
            GatewayErrorKind::Malformed(format!("flow {} of {}: {what}", item.fdr, item.psp_id)),
        )
    };
    let total = Money::new(header.sum_payments, Currency::Eur)
        .map_err(|e| malformed(format!("sumPayments {e}")))?;
    let mut payments = Vec::with_capacity(rows.len());
    for p in rows {
        let status = payments_core::FlowPaymentStatus::parse(&p.pay_status).ok_or_else(|| {
            malformed(format!(
                "payment {} has payStatus {:.20}",
                p.index, p.pay_status
            ))
        })?;
        payments.push(payments_core::FlowPayment {
            index: p.index,
            amount: Money::new(p.pay, Currency::Eur)
                .map_err(|e| malformed(format!("payment {} {e}", p.index)))?,
            iuv: p.iuv,
            iur: p.iur,
            transfer: p.id_transfer,
            status,
            paid_at: p.pay_date,
            check: payments_core::PaymentCheck::Unchecked,
        });
    }
    payments.sort_by_key(|p| p.index);
    Ok(payments_core::ReportingFlow {
        creditor_id: creditor,
        flow_id: item.fdr.clone(),
        psp_id: item.psp_id.clone(),
        revision: item.revision,
        psp_name: header.sender.psp_name.clone(),
        flow_date: header.fdr_date,
        // The listing's instant: the next sync's `publishedGt` is compared with it.
        published_at: item.published,
        regulation: header.regulation.clone(),
        regulation_date: header.regulation_date,
        bic: header.bic_code_pouring_bank.clone(),
        total,
        count: header.tot_payments,
        payments,
        credit: payments_core::CreditCheck::Awaited,
        replaces: None,
        replaced: false,
        received_at: now,
        checked_at: None,
        version: 1,
        events: Vec::new(),
    })
}
