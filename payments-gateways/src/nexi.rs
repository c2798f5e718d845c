//! Nexi XPay (feature `nexi`): card and MyBank through XPay's hosted payment page
//! (*pagamento semplice*).
//!
//! - **Start**: [`Gateway::start`] answers with a `POST` form to XPay's page
//!   ([`Instruction::post_form`]): `alias`, `importo` (cents), `divisa`, `codTrans`, `url`
//!   (where the payer comes back), `url_back` (where they come back when they give up),
//!   `urlpost` (where XPay notifies the outcome server to server), `descrizione`,
//!   `languageId`, the payer's `mail` when known, `selectedcard=MYBANK` for MyBank, and
//!   `mac`: the SHA-1, in hex, of `codTrans=…divisa=…importo=…` followed by the MAC key
//!   ([`request_mac`]). `codTrans` is our transaction id in base 36 ([`cod_trans`]): 25
//!   characters among `0-9A-Z`, within XPay's 2 to 30.
//! - **Outcome**: the browser's return to `url` and XPay's notification to `urlpost` carry
//!   `codTrans`, `esito`, `importo`, `divisa`, `data`, `orario`, `codAut` and `mac`, the
//!   SHA-1 of `codTrans=…esito=…importo=…divisa=…data=…orario=…codAut=…` and the key
//!   ([`result_mac`]). [`Gateway::parse_callback`] takes either (the query of a `GET`, or a
//!   form body), checks the MAC in constant time, and maps `esito`: `OK` paid, `KO` and
//!   `ERRORE` failed, `ANNULLO` cancelled, `PEN` pending. Both arrive for one payment; the
//!   service applies the first and answers the second as a replay.
//! - **Status and refunds** go through XPay's back-office API, JSON with a MAC over
//!   `apiKey`, the order, and a millisecond `timeStamp`, and a MAC on the answer that is
//!   checked too: [`Gateway::fetch_status`] asks `situazioneOrdine`, [`Gateway::refund`]
//!   asks `storna` (full or partial). `storna` has no idempotency key: it is sent once, and
//!   a timeout, a 5xx or an answer whose MAC does not verify leaves the refund requested
//!   (in doubt) for an operator to check in XPay's back office before asking again.
//! - **MyBank** is an account debit with immediate capture and no refunds: a refund of a
//!   MyBank payment is refused as not supported.
//! - **Closing**: XPay has no call that closes a payment page a payer still has open; its
//!   page times out on its own. Before a transaction expires or is cancelled the service
//!   asks `situazioneOrdine` (an order XPay does not know was never submitted), and a
//!   payment XPay still takes afterwards arrives as a late payment: recorded, its items
//!   settled if still free, or a double payment for operators to refund.
//!
//! ```
//! use payments_gateways::nexi::{request_mac, result_mac};
//!
//! // sha1("codTrans=TESTPS_20261127divisa=EURimporto=5000" + key)
//! assert_eq!(
//!     request_mac("TESTPS_20261127", "EUR", 5000, "esempiodichiavesegreta"),
//!     "7dfad063d61bfc084fd1a6896afdca601a2ade04"
//! );
//! # let _ = result_mac;
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use payments_core::{
    CallbackEvent, CallbackRequest, Clock, Currency, Error, FormField, Gateway, GatewayErrorKind,
    GatewayId, Instruction, Locale, MethodKind, Money, PaymentOutcome, Refund, RefundAnswer,
    Result, StartRequest, Started, SystemClock, Transaction, TransactionId,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::http::HttpClient;

/// The gateway's id.
pub const GATEWAY_ID: &str = "nexi";
/// XPay's test environment.
pub const TEST_BASE: &str = "https://int-ecommerce.nexi.it";
/// XPay's production environment.
pub const PRODUCTION_BASE: &str = "https://ecommerce.nexi.it";
/// The hosted payment page, under the base.
pub const PAYMENT_PATH: &str = "/ecomm/ecomm/DispatcherServlet";
/// The back-office refund (*storno/rimborso*), under the base.
pub const REFUND_PATH: &str = "/ecomm/api/bo/storna";
/// The back-office order status (*situazione ordine*), under the base.
pub const STATUS_PATH: &str = "/ecomm/api/bo/situazioneOrdine";
/// The longest `descrizione` sent.
pub const MAX_DESCRIPTION: usize = 1000;
/// The largest callback read.
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;
/// The euro's ISO 4217 numeric code, as the back office takes it.
const EUR_NUMERIC: &str = "978";

/// The hex SHA-1 of `text`.
fn sha1_hex(text: &str) -> String {
    hex::encode(Sha1::digest(text.as_bytes()))
}

/// The MAC of the payment request: SHA-1 of `codTrans=<c>divisa=<d>importo=<i><key>`.
pub fn request_mac(cod_trans: &str, divisa: &str, importo: i64, key: &str) -> String {
    sha1_hex(&format!(
        "codTrans={cod_trans}divisa={divisa}importo={importo}{key}"
    ))
}

/// The MAC of an outcome (return or notification): SHA-1 of
/// `codTrans=…esito=…importo=…divisa=…data=…orario=…codAut=…<key>`.
#[allow(clippy::too_many_arguments)]
pub fn result_mac(
    cod_trans: &str,
    esito: &str,
    importo: &str,
    divisa: &str,
    data: &str,
    orario: &str,
    cod_aut: &str,
    key: &str,
) -> String {
    sha1_hex(&format!(
        "codTrans={cod_trans}esito={esito}importo={importo}divisa={divisa}data={data}orario={orario}codAut={cod_aut}{key}"
    ))
}

/// A transaction's `codTrans`: its id, a 128-bit number, in base 36 with capitals.
pub fn cod_trans(transaction: TransactionId) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = transaction.as_uuid().as_u128();
    let mut out = Vec::with_capacity(25);
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// The transaction a `codTrans` names, if it is one of ours.
pub fn transaction_of(cod_trans: &str) -> Option<TransactionId> {
    if cod_trans.is_empty() || cod_trans.len() > 25 {
        return None;
    }
    u128::from_str_radix(cod_trans, 36)
        .ok()
        .map(|n| TransactionId::from(uuid::Uuid::from_u128(n)))
}

/// Nexi XPay, for card and MyBank.
pub struct NexiGateway {
    /// Its id: the account's name in the webhook path and in the methods that use it.
    id: String,
    alias: String,
    mac_key: SecretString,
    base_url: String,
    notify_url: String,
    return_url: Option<String>,
    http: HttpClient,
    kinds: Vec<MethodKind>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for NexiGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexiGateway")
            .field("id", &self.id)
            .field("alias", &self.alias)
            .field("base_url", &self.base_url)
            .field("notify_url", &self.notify_url)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl NexiGateway {
    /// A gateway with the terminal's `alias` (`ALIAS_WEB_…`), its MAC key, and the address
    /// where XPay notifies outcomes (`urlpost`: the host's `POST /webhooks/nexi`), for
    /// cards, against XPay's test environment ([`TEST_BASE`]).
    pub fn new(
        alias: impl Into<String>,
        mac_key: impl Into<String>,
        notify_url: impl Into<String>,
    ) -> Result<Self> {
        let alias = alias.into();
        let mac_key = mac_key.into();
        let notify_url = notify_url.into();
        if alias.trim().is_empty() || alias.len() > 30 {
            return Err(Error::invalid("alias", "must be the terminal's alias"));
        }
        if mac_key.trim().is_empty() {
            return Err(Error::invalid("mac_key", "must be the terminal's MAC key"));
        }
        if !notify_url.starts_with("https://") && !notify_url.starts_with("http://") {
            return Err(Error::invalid(
                "notify_url",
                "must be an http(s) address XPay can reach",
            ));
        }
        Ok(NexiGateway {
            id: GATEWAY_ID.to_owned(),
            alias,
            mac_key: mac_key.into(),
            base_url: TEST_BASE.to_owned(),
            notify_url,
            return_url: None,
            http: HttpClient::new()?,
            kinds: vec![MethodKind::Card],
            clock: Arc::new(SystemClock),
        })
    }

    /// Another id than `nexi`: one gateway per merchant account, so a deployment serving
    /// several bodies gives each its own (alias and MAC key), enables each body's methods on its own
    /// account's id, and routes each account's webhooks by it (`/webhooks/{id}` →
    /// [`Payments::handle_callback`](payments_core::Payments::handle_callback)).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Speaks to another base URL: [`PRODUCTION_BASE`], or a test server.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Uses this HTTP client (timeouts, retries).
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// The methods the body enabled on XPay: card and MyBank (account debit), or either.
    pub fn with_methods(mut self, kinds: &[MethodKind]) -> Result<Self> {
        self.kinds = crate::kinds::enabled(
            kinds,
            &[MethodKind::Card, MethodKind::AccountDebit],
            "Nexi XPay",
        )?;
        Ok(self)
    }

    /// Where XPay sends the payer back when the service was built without a return URL.
    pub fn with_return_url(mut self, url: impl Into<String>) -> Self {
        self.return_url = Some(url.into());
        self
    }

    /// Reads the time from `clock` (the back office's `timeStamp`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn error(&self, kind: GatewayErrorKind) -> Error {
        Error::gateway(&self.id, kind)
    }

    fn mac_of(&self, text: &str) -> String {
        sha1_hex(&format!("{text}{}", self.mac_key.expose_secret()))
    }

    /// Calls the back office: `fields` in the order the MAC takes them, then `timeStamp`;
    /// checks the answer's MAC and `esito`.
    async fn back_office(
        &self,
        path: &str,
        fields: &[(&str, String)],
        once: bool,
    ) -> Result<BackOfficeAnswer> {
        let timestamp = self.clock.now().timestamp_millis().to_string();
        let mut mac_text = format!("apiKey={}", self.alias);
        let mut body = serde_json::Map::new();
        body.insert("apiKey".into(), self.alias.clone().into());
        for (name, value) in fields {
            mac_text.push_str(&format!("{name}={value}"));
            body.insert((*name).into(), value.clone().into());
        }
        mac_text.push_str(&format!("timeStamp={timestamp}"));
        body.insert("timeStamp".into(), timestamp.into());
        body.insert("mac".into(), self.mac_of(&mac_text).into());
        let url = format!("{}{path}", self.base_url);
        let body = serde_json::Value::Object(body);
        let build = |c: &reqwest::Client| c.post(&url).json(&body);
        let response = if once {
            self.http.send_once(&self.id, build).await?
        } else {
            self.http.send(&self.id, build).await?
        };
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|_| self.error(GatewayErrorKind::Unavailable))?;
        if !status.is_success() {
            return Err(self.error(GatewayErrorKind::Rejected(format!(
                "HTTP {}",
                status.as_u16()
            ))));
        }
        let answer: BackOfficeAnswer = serde_json::from_slice(&bytes).map_err(|_| {
            self.error(GatewayErrorKind::Malformed(
                "the back office's answer is not the JSON expected".into(),
            ))
        })?;
        let expected = self.mac_of(&format!(
            "esito={}idOperazione={}timeStamp={}",
            answer.esito,
            answer.id_operazione.as_text(),
            answer.time_stamp.as_text()
        ));
        let given = answer.mac.to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(self.error(GatewayErrorKind::InvalidSignature));
        }
        if answer.esito != "OK" {
            let message = answer
                .errore
                .as_ref()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.codice.as_text(),
                        e.messaggio.as_deref().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| answer.esito.clone());
            return Err(self.error(GatewayErrorKind::Rejected(crate::text::shorten(
                message.trim(),
            ))));
        }
        Ok(answer)
    }

    fn money(&self, importo: &str, divisa: &str) -> Result<Money> {
        if divisa != "EUR" && divisa != EUR_NUMERIC {
            return Err(self.error(GatewayErrorKind::AmountMismatch {
                expected: "EUR".into(),
                actual: format!("{importo} {divisa}"),
            }));
        }
        importo
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0 && importo.chars().all(|c| c.is_ascii_digit()))
            .and_then(|c| Money::from_minor(c, Currency::Eur).ok())
            .ok_or_else(|| {
                self.error(GatewayErrorKind::Malformed(format!(
                    "importo {} is not an amount in cents",
                    crate::text::shorten(importo)
                )))
            })
    }
}

/// A number or a string, as XPay's JSON writes either.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
enum Loose {
    Text(String),
    Number(serde_json::Number),
    #[default]
    Null,
}

impl Loose {
    fn as_text(&self) -> String {
        match self {
            Loose::Text(s) => s.clone(),
            Loose::Number(n) => n.to_string(),
            Loose::Null => String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct BackOfficeAnswer {
    esito: String,
    #[serde(rename = "idOperazione", default)]
    id_operazione: Loose,
    #[serde(rename = "timeStamp", default)]
    time_stamp: Loose,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    errore: Option<BackOfficeError>,
    #[serde(default)]
    report: Vec<OrderReport>,
}

#[derive(Debug, Deserialize)]
struct BackOfficeError {
    #[serde(default)]
    codice: Loose,
    #[serde(default)]
    messaggio: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OrderReport {
    #[serde(rename = "codiceTransazione", default)]
    codice_transazione: String,
    #[serde(default)]
    importo: Loose,
    #[serde(default)]
    divisa: Loose,
    #[serde(default)]
    stato: String,
}

#[async_trait]
impl Gateway for NexiGateway {
    fn id(&self) -> GatewayId {
        GatewayId::from(self.id.as_str())
    }

    fn kinds(&self) -> Vec<MethodKind> {
        self.kinds.clone()
    }

    async fn start(&self, request: &StartRequest) -> Result<Started> {
        let tx = &request.transaction;
        let kind = request.method.kind;
        if !self.kinds.contains(&kind) {
            return Err(Error::invalid(
                "method",
                format!("{} is not enabled on Nexi XPay", kind.as_str()),
            ));
        }
        let return_url = request
            .return_url
            .as_deref()
            .or(self.return_url.as_deref())
            .ok_or_else(|| {
                Error::invalid("return_url", "XPay needs a page to send the payer back to")
            })?;
        let code = cod_trans(tx.id);
        let importo = tx.total.minor_units();
        let divisa = tx.total.currency().code();
        let description: String = tx
            .lines
            .iter()
            .map(|l| l.reason.as_str())
            .collect::<Vec<_>>()
            .join("; ")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DESCRIPTION)
            .collect();
        let mut fields = vec![
            FormField::new("alias", &self.alias),
            FormField::new("importo", importo.to_string()),
            FormField::new("divisa", divisa),
            FormField::new("codTrans", &code),
            FormField::new("url", return_url),
            FormField::new("url_back", return_url),
            FormField::new("urlpost", &self.notify_url),
            FormField::new("descrizione", description),
            FormField::new(
                "languageId",
                if tx.payer.locale == Locale::En {
                    "ENG"
                } else {
                    "ITA"
                },
            ),
        ];
        if let Some(mail) = &tx.payer.email {
            fields.push(FormField::new("mail", mail));
        }
        if kind == MethodKind::AccountDebit {
            fields.push(FormField::new("selectedcard", "MYBANK"));
        }
        fields.push(FormField::new(
            "mac",
            request_mac(&code, divisa, importo, self.mac_key.expose_secret()),
        ));
        Ok(Started::new(Instruction::post_form(
            format!("{}{PAYMENT_PATH}", self.base_url),
            fields,
        ))
        .with_provider_ref(code))
    }

    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        if request.body.len() > MAX_CALLBACK_BYTES
            || request
                .query
                .as_ref()
                .is_some_and(|q| q.len() > MAX_CALLBACK_BYTES)
        {
            return Err(self.error(GatewayErrorKind::Malformed(
                "the callback is too large".into(),
            )));
        }
        // The notification to `urlpost` is a form body; the browser's return, a query.
        let source: &[u8] = if request.body.iter().any(|b| !b.is_ascii_whitespace()) {
            &request.body
        } else {
            request.query.as_deref().unwrap_or_default().as_bytes()
        };
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(source) {
            // A repeated field is ambiguous: refuse rather than pick one.
            if params
                .insert(name.into_owned(), value.into_owned())
                .is_some()
            {
                return Err(self.error(GatewayErrorKind::InvalidSignature));
            }
        }
        let get = |name: &str| params.get(name).map(String::as_str);
        let (
            Some(code),
            Some(esito),
            Some(importo),
            Some(divisa),
            Some(data),
            Some(orario),
            Some(mac),
        ) = (
            get("codTrans"),
            get("esito"),
            get("importo"),
            get("divisa"),
            get("data"),
            get("orario"),
            get("mac"),
        )
        else {
            return Err(self.error(GatewayErrorKind::InvalidSignature));
        };
        let cod_aut = get("codAut").unwrap_or_default();
        let expected = result_mac(
            code,
            esito,
            importo,
            divisa,
            data,
            orario,
            cod_aut,
            self.mac_key.expose_secret(),
        );
        let given = mac.to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(self.error(GatewayErrorKind::InvalidSignature));
        }
        let outcome = match esito {
            "OK" => PaymentOutcome::Paid,
            "KO" | "ERRORE" => PaymentOutcome::Failed,
            "ANNULLO" => PaymentOutcome::Cancelled,
            "PEN" => PaymentOutcome::Pending,
            other => {
                return Err(self.error(GatewayErrorKind::Malformed(format!(
                    "esito {} is not one XPay sends",
                    crate::text::shorten(other)
                ))));
            }
        };
        let amount = self.money(importo, divisa)?;
        let mut note = format!("esito {esito} on {data} at {orario}");
        if !cod_aut.is_empty() {
            note.push_str(&format!(", authorisation {cod_aut}"));
        }
        if let Some(brand) = get("brand").filter(|b| !b.is_empty()) {
            note.push_str(&format!(", {brand}"));
        }
        if let Some(message) = get("messaggio").filter(|m| !m.is_empty()) {
            note.push_str(&format!(": {message}"));
        }
        Ok(CallbackEvent::new(outcome, amount)
            .with_transaction_id(transaction_of(code))
            .with_provider_ref(code)
            .with_note(crate::text::shorten(&note)))
    }

    async fn fetch_status(&self, transaction: &Transaction) -> Result<PaymentOutcome> {
        let code = cod_trans(transaction.id);
        let answer = self
            .back_office(STATUS_PATH, &[("codiceTransazione", code.clone())], false)
            .await?;
        let Some(order) = answer.report.iter().find(|r| r.codice_transazione == code) else {
            // The payer never submitted XPay's form: nothing was paid, nothing is open.
            return Ok(PaymentOutcome::Pending);
        };
        let amount = self.money(&order.importo.as_text(), &order.divisa.as_text())?;
        if amount != transaction.total {
            return Err(self.error(GatewayErrorKind::AmountMismatch {
                expected: transaction.total.to_string(),
                actual: amount.to_string(),
            }));
        }
        let stato = order.stato.to_lowercase();
        Ok(
            if [
                "autorizzato",
                "contabilizzato",
                "rimborsato",
                "contab",
                "rimb",
            ]
            .iter()
            .any(|s| stato.starts_with(s))
            {
                PaymentOutcome::Paid
            } else if ["negato", "annullato", "stornato", "errore"]
                .iter()
                .any(|s| stato.starts_with(s))
            {
                PaymentOutcome::Failed
            } else {
                PaymentOutcome::Pending
            },
        )
    }

    fn supports_refunds(&self) -> bool {
        true
    }

    async fn refund(&self, transaction: &Transaction, refund: &Refund) -> Result<RefundAnswer> {
        if transaction.method_kind == MethodKind::AccountDebit {
            return Err(self.error(GatewayErrorKind::NotSupported("refund of a MyBank payment")));
        }
        let answer = self
            .back_office(
                REFUND_PATH,
                &[
                    ("codiceTransazione", cod_trans(transaction.id)),
                    ("divisa", EUR_NUMERIC.to_owned()),
                    ("importo", refund.amount.minor_units().to_string()),
                ],
                true,
            )
            .await
            .map_err(|e| match e {
                // An answer that does not verify says nothing about the refund: in doubt.
                Error::Gateway {
                    kind: GatewayErrorKind::InvalidSignature | GatewayErrorKind::Malformed(_),
                    ..
                } => self.error(GatewayErrorKind::Unavailable),
                e => e,
            })?;
        let id = answer.id_operazione.as_text();
        if id.is_empty() {
            return Err(self.error(GatewayErrorKind::Malformed(
                "the refund's answer has no idOperazione".into(),
            )));
        }
        // `storna` answers once the refund is done.
        Ok(RefundAnswer::succeeded(id))
    }
}
