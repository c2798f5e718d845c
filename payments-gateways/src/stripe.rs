//! Stripe (feature `stripe`): card and SEPA direct debit through Stripe Checkout.
//!
//! - **Start**: [`Gateway::start`] creates a Checkout Session (`POST /v1/checkout/sessions`,
//!   mode `payment`) with one line item per line of the transaction (its reason and amount
//!   in cents), the method the payer chose (`card` or `sepa_debit`, among those the body
//!   enabled with [`StripeGateway::with_methods`]), the success and cancel pages, our
//!   transaction id as `client_reference_id` and in the metadata, and an
//!   `Idempotency-Key` derived from the transaction: a start retried after a dropped
//!   connection, a timeout or a 5xx gets the same session from Stripe, never a second one.
//!   The payer is sent to the session's `url` ([`Instruction::redirect`]).
//! - **Webhooks**: [`Gateway::parse_callback`] verifies `Stripe-Signature` as Stripe
//!   specifies: `t` and every `v1`, an HMAC-SHA256 with the endpoint's signing secret of
//!   `"{t}.{raw body}"`, compared in constant time, with `t` no further than the tolerance
//!   (300 s) from now. It maps `checkout.session.completed` (paid, or still processing
//!   when `payment_status` is not `paid`, as with SEPA debit),
//!   `checkout.session.async_payment_succeeded` (paid),
//!   `checkout.session.async_payment_failed` (failed) and `checkout.session.expired`
//!   (cancelled). The session's `amount_total` and `currency` are the event's amount,
//!   which the service checks against the transaction. Refund events (`refund.created`,
//!   `refund.updated`, `refund.failed`, and the older `charge.refund.updated`) carry the
//!   refund, found by our refund id in its metadata: `pending` and `requires_action` are
//!   under way, `succeeded` done, `failed` and `canceled` failed.
//! - **Closing**: before the service expires or cancels a transaction, [`Gateway::close`]
//!   expires its Checkout Session (`POST /v1/checkout/sessions/{id}/expire`), so a page the
//!   payer left open can no longer take the money; a session that is no longer open says
//!   how it ended instead (paid, or processing for a SEPA debit).
//! - **Status**: [`Gateway::fetch_status`] retrieves the session (with its payment intent),
//!   for [`Payments::reconcile`](payments_core::Payments::reconcile) and the
//!   reconciliation sweep.
//! - **Refunds**: [`Gateway::refund`] creates a refund of the session's payment intent
//!   (`POST /v1/refunds`), full or partial, with the refund's id as idempotency key; the
//!   service never asks for more than was paid less earlier refunds. A refund Stripe
//!   answers `pending` or `requires_action` stays under way until its webhook or
//!   [`Gateway::refund_status`] (`GET /v1/refunds/{id}`) says how it ended.
//!
//! A SEPA debit takes days to confirm: its transaction stays pending for
//! [`SEPA_SETTLEMENT_DAYS`] after the session expires, waiting for
//! `async_payment_succeeded` or `async_payment_failed`, and is never expired while
//! Stripe says it is processing ([`crate::SEPA_DIRECT_DEBIT_WINDOW`] is its longest
//! window, after which it becomes an exception for operators).
//!
//! ```
//! use payments_core::MethodKind;
//! use payments_gateways::stripe::StripeGateway;
//!
//! let stripe = StripeGateway::new("sk_test_only_we_know", "whsec_only_stripe_and_we_know")
//!     .unwrap()
//!     .with_methods(&[MethodKind::Card, MethodKind::SepaDirectDebit])
//!     .unwrap();
//! // Keys never show.
//! assert!(!format!("{stripe:?}").contains("only"));
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use payments_core::{
    CallbackEvent, CallbackRequest, Clock, Currency, Error, Gateway, GatewayErrorKind, GatewayId,
    Instruction, Locale, MethodKind, Money, PaymentOutcome, Refund, RefundAnswer, RefundEvent,
    RefundStatus, Result, StartRequest, Started, SystemClock, Transaction, TransactionId,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use crate::http::HttpClient;

/// The gateway's id.
pub const GATEWAY_ID: &str = "stripe";
/// Stripe's API.
pub const API_BASE: &str = "https://api.stripe.com";
/// How far a webhook's timestamp may be from now, as Stripe's libraries default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// How long a SEPA debit's transaction stays pending after its session expires.
pub const SEPA_SETTLEMENT_DAYS: i64 = 15;
/// The largest webhook body read.
pub const MAX_WEBHOOK_BYTES: usize = 512 * 1024;
/// The header that carries a webhook's signature.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Stripe, for card and SEPA direct debit.
pub struct StripeGateway {
    /// Its id: the account's name in the webhook path and in the methods that use it.
    id: String,
    api_key: SecretString,
    webhook_secret: SecretString,
    base_url: String,
    http: HttpClient,
    kinds: Vec<MethodKind>,
    tolerance: Duration,
    return_url: Option<String>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway")
            .field("id", &self.id)
            .field("base_url", &self.base_url)
            .field("kinds", &self.kinds)
            .field("tolerance", &self.tolerance)
            .field("return_url", &self.return_url)
            .finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// A gateway with the secret API key (`sk_…` or a restricted `rk_…`) and the webhook
    /// endpoint's signing secret (`whsec_…`), for card payments, against [`API_BASE`].
    pub fn new(api_key: impl Into<String>, webhook_secret: impl Into<String>) -> Result<Self> {
        let api_key = api_key.into();
        let webhook_secret = webhook_secret.into();
        if api_key.trim().is_empty() || api_key.chars().any(|c| c.is_whitespace()) {
            return Err(Error::invalid("api_key", "must be a Stripe secret key"));
        }
        if webhook_secret.trim().is_empty() {
            return Err(Error::invalid(
                "webhook_secret",
                "must be the webhook endpoint's signing secret",
            ));
        }
        Ok(StripeGateway {
            id: GATEWAY_ID.to_owned(),
            api_key: api_key.into(),
            webhook_secret: webhook_secret.into(),
            base_url: API_BASE.to_owned(),
            http: HttpClient::new()?,
            kinds: vec![MethodKind::Card],
            tolerance: DEFAULT_TOLERANCE,
            return_url: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// Another id than `stripe`: one gateway per merchant account, so a deployment serving
    /// several bodies gives each its own (keys), enables each body's methods on its own
    /// account's id, and routes each account's webhooks by it (`/webhooks/{id}` →
    /// [`Payments::handle_callback`](payments_core::Payments::handle_callback)).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Speaks to another base URL (a test server).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Uses this HTTP client (timeouts, retries).
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// The methods the body enabled on Stripe: card and SEPA direct debit, or either.
    pub fn with_methods(mut self, kinds: &[MethodKind]) -> Result<Self> {
        self.kinds = crate::kinds::enabled(
            kinds,
            &[MethodKind::Card, MethodKind::SepaDirectDebit],
            "Stripe",
        )?;
        Ok(self)
    }

    /// How far a webhook's timestamp may be from now (300 s by default).
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Where Stripe sends the payer back when the service was built without a return URL.
    pub fn with_return_url(mut self, url: impl Into<String>) -> Self {
        self.return_url = Some(url.into());
        self
    }

    /// Reads the time from `clock` (the webhook tolerance, session expiry).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The `Idempotency-Key` of a transaction's session: the same for every attempt.
    pub fn start_key(transaction: TransactionId) -> String {
        format!("payments-start-{transaction}")
    }

    /// The `Idempotency-Key` of a refund.
    pub fn refund_key(refund: &Refund) -> String {
        format!("payments-refund-{}", refund.id)
    }

    /// The `Stripe-Signature` header Stripe would send for `body` at unix time `t` with
    /// `secret`: for a host's own tests and tools.
    pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", hex::encode(sign(secret, t, body)))
    }

    fn error(&self, kind: GatewayErrorKind) -> Error {
        Error::gateway(&self.id, kind)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn post_form(&self, path: &str, form: String, idempotency_key: &str) -> Result<Json> {
        let url = self.url(path);
        let response = self
            .http
            .send(&self.id, |c| {
                c.post(&url)
                    .bearer_auth(self.api_key.expose_secret())
                    .header("Idempotency-Key", idempotency_key)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.clone())
            })
            .await?;
        self.read(response).await
    }

    async fn get(&self, path: &str) -> Result<Json> {
        let url = self.url(path);
        let response = self
            .http
            .send(&self.id, |c| {
                c.get(&url).bearer_auth(self.api_key.expose_secret())
            })
            .await?;
        self.read(response).await
    }

    async fn read(&self, response: reqwest::Response) -> Result<Json> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|_| self.error(GatewayErrorKind::Unavailable))?;
        // 409: the same idempotency key is in use by a request still running, so the
        // outcome is not known yet.
        if status == reqwest::StatusCode::CONFLICT {
            return Err(self.error(GatewayErrorKind::Unavailable));
        }
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| {
                self.error(GatewayErrorKind::Malformed(
                    "Stripe's answer is not the JSON expected".into(),
                ))
            });
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .ok()
            .and_then(|b| b.error)
            .map(|e| {
                [e.code, e.message]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        Err(self.error(GatewayErrorKind::Rejected(crate::text::shorten(&message))))
    }

    async fn session(&self, transaction: &Transaction, expand: bool) -> Result<Session> {
        let id = transaction.provider_ref.as_deref().ok_or_else(|| {
            self.error(GatewayErrorKind::Rejected(
                "the transaction has no Checkout Session".into(),
            ))
        })?;
        if !id.starts_with("cs_") || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.error(GatewayErrorKind::Rejected(
                "the provider reference is not a Checkout Session id".into(),
            )));
        }
        let path = if expand {
            format!("/v1/checkout/sessions/{id}?expand%5B%5D=payment_intent")
        } else {
            format!("/v1/checkout/sessions/{id}")
        };
        let json = self.get(&path).await?;
        serde_json::from_value(json).map_err(|_| {
            self.error(GatewayErrorKind::Malformed(
                "Stripe's session is not the JSON expected".into(),
            ))
        })
    }

    fn amount_of(&self, session: &Session) -> Result<Money> {
        let (Some(cents), Some(currency)) = (session.amount_total, session.currency.as_deref())
        else {
            return Err(self.error(GatewayErrorKind::Malformed(
                "the session has no amount_total or currency".into(),
            )));
        };
        if !currency.eq_ignore_ascii_case("eur") {
            return Err(self.error(GatewayErrorKind::AmountMismatch {
                expected: "EUR".into(),
                actual: format!("{cents} {}", currency.to_ascii_uppercase()),
            }));
        }
        Money::from_minor(cents, Currency::Eur).map_err(|_| {
            self.error(GatewayErrorKind::Malformed(format!(
                "amount_total {cents} is not an amount"
            )))
        })
    }

    fn verify(&self, request: &CallbackRequest) -> Result<()> {
        let header = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| self.error(GatewayErrorKind::InvalidSignature))?;
        let mut t = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = v.parse::<i64>().ok(),
                Some(("v1", v)) => {
                    if let Ok(bytes) = hex::decode(v) {
                        signatures.push(bytes);
                    }
                }
                _ => {}
            }
        }
        let (Some(t), false) = (t, signatures.is_empty()) else {
            return Err(self.error(GatewayErrorKind::InvalidSignature));
        };
        let now = self.clock.now().timestamp();
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.abs_diff(t) > tolerance.unsigned_abs() {
            return Err(self.error(GatewayErrorKind::InvalidSignature));
        }
        let mac = signer(self.webhook_secret.expose_secret(), t, &request.body);
        // `verify_slice` compares in constant time; any one v1 may match (Stripe sends
        // one per secret while a secret is being rolled).
        if signatures
            .iter()
            .any(|s| mac.clone().verify_slice(s).is_ok())
        {
            Ok(())
        } else {
            Err(self.error(GatewayErrorKind::InvalidSignature))
        }
    }
}

fn signer(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn sign(secret: &str, t: i64, body: &[u8]) -> Vec<u8> {
    signer(secret, t, body).finalize().into_bytes().to_vec()
}

type Json = serde_json::Value;

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Json,
}

/// A refund, as Stripe answers and sends it.
#[derive(Debug, Deserialize)]
struct StripeRefund {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

impl StripeRefund {
    /// Our refund status for Stripe's.
    fn status(&self) -> Option<RefundStatus> {
        match self.status.as_deref()? {
            "succeeded" => Some(RefundStatus::Succeeded),
            "pending" | "requires_action" => Some(RefundStatus::Pending),
            "failed" | "canceled" => Some(RefundStatus::Failed),
            _ => None,
        }
    }

    fn answer(&self) -> Option<RefundAnswer> {
        let mut answer = match self.status()? {
            RefundStatus::Succeeded => RefundAnswer::succeeded(&self.id),
            RefundStatus::Pending => RefundAnswer::pending(&self.id),
            _ => RefundAnswer::failed(
                &self.id,
                format!(
                    "Stripe: {}{}",
                    self.status.as_deref().unwrap_or("failed"),
                    self.failure_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            ),
        };
        if answer.status == RefundStatus::Failed {
            answer.note = answer.note.map(|n| crate::text::shorten(&n));
        }
        Some(answer)
    }
}

#[derive(Debug, Deserialize)]
struct Session {
    id: String,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    payment_intent: Option<PaymentIntentRef>,
}

/// A session's payment intent: its id, or the whole object when expanded.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PaymentIntentRef {
    Id(String),
    Object { id: String, status: String },
}

impl PaymentIntentRef {
    fn id(&self) -> &str {
        match self {
            PaymentIntentRef::Id(id) | PaymentIntentRef::Object { id, .. } => id,
        }
    }
}

impl Session {
    fn transaction_id(&self) -> Option<TransactionId> {
        self.client_reference_id
            .as_deref()
            .or(self.metadata.get("transaction_id").map(String::as_str))
            .and_then(|s| s.parse().ok())
    }

    fn is_paid(&self) -> bool {
        matches!(
            self.payment_status.as_deref(),
            Some("paid" | "no_payment_required")
        )
    }
}

fn method_type(kind: MethodKind) -> Option<&'static str> {
    match kind {
        MethodKind::Card => Some("card"),
        MethodKind::SepaDirectDebit => Some("sepa_debit"),
        _ => None,
    }
}

#[async_trait]
impl Gateway for StripeGateway {
    fn id(&self) -> GatewayId {
        GatewayId::from(self.id.as_str())
    }

    fn kinds(&self) -> Vec<MethodKind> {
        self.kinds.clone()
    }

    async fn start(&self, request: &StartRequest) -> Result<Started> {
        let tx = &request.transaction;
        let kind = request.method.kind;
        let method = method_type(kind)
            .filter(|_| self.kinds.contains(&kind))
            .ok_or_else(|| {
                Error::invalid(
                    "method",
                    format!("{} is not enabled on Stripe", kind.as_str()),
                )
            })?;
        let return_url = request
            .return_url
            .as_deref()
            .or(self.return_url.as_deref())
            .ok_or_else(|| {
                Error::invalid(
                    "return_url",
                    "Stripe needs a page to send the payer back to",
                )
            })?;
        let id = tx.id.to_string();
        let now = self.clock.now();
        // Stripe takes 30 minutes to 24 hours; the session lives as long as the transaction.
        let expires = tx
            .expires_at
            .max(now + chrono::Duration::minutes(31))
            .min(now + chrono::Duration::hours(23));
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("mode", "payment")
                .append_pair("payment_method_types[0]", method)
                .append_pair("client_reference_id", &id)
                .append_pair("metadata[transaction_id]", &id)
                .append_pair("metadata[creditor_id]", &tx.creditor_id.to_string())
                .append_pair("payment_intent_data[metadata][transaction_id]", &id)
                .append_pair(
                    "success_url",
                    &crate::text::return_to(return_url, tx.id, "success"),
                )
                .append_pair(
                    "cancel_url",
                    &crate::text::return_to(return_url, tx.id, "cancel"),
                )
                .append_pair("expires_at", &expires.timestamp().to_string())
                .append_pair(
                    "locale",
                    if tx.payer.locale == Locale::En {
                        "en"
                    } else {
                        "it"
                    },
                );
            if let Some(email) = &tx.payer.email {
                form.append_pair("customer_email", email);
            }
            for (i, line) in tx.lines.iter().enumerate() {
                let p = format!("line_items[{i}]");
                form.append_pair(&format!("{p}[quantity]"), "1")
                    .append_pair(
                        &format!("{p}[price_data][currency]"),
                        &line.amount.currency().code().to_ascii_lowercase(),
                    )
                    .append_pair(
                        &format!("{p}[price_data][unit_amount]"),
                        &line.amount.minor_units().to_string(),
                    )
                    .append_pair(
                        &format!("{p}[price_data][product_data][name]"),
                        &line.reason,
                    );
            }
            form.finish()
        };
        let json = self
            .post_form("/v1/checkout/sessions", body, &Self::start_key(tx.id))
            .await?;
        let session: Session = serde_json::from_value(json).map_err(|_| {
            self.error(GatewayErrorKind::Malformed(
                "Stripe's session is not the JSON expected".into(),
            ))
        })?;
        let url = session
            .url
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| {
                self.error(GatewayErrorKind::Malformed("the session has no url".into()))
            })?;
        let session_expiry = session
            .expires_at
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
            .unwrap_or(expires);
        let expires_at = if kind == MethodKind::SepaDirectDebit {
            session_expiry + chrono::Duration::days(SEPA_SETTLEMENT_DAYS)
        } else {
            session_expiry
        };
        Ok(Started::new(Instruction::redirect(url))
            .with_provider_ref(session.id)
            .with_expires_at(expires_at))
    }

    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        if request.body.len() > MAX_WEBHOOK_BYTES {
            return Err(self.error(GatewayErrorKind::Malformed("the body is too large".into())));
        }
        self.verify(request)?;
        let event: Event = serde_json::from_slice(&request.body).map_err(|_| {
            self.error(GatewayErrorKind::Malformed(
                "the event is not a Checkout Session event".into(),
            ))
        })?;
        if event.kind.starts_with("refund.") || event.kind == "charge.refund.updated" {
            return self.refund_event(&event);
        }
        let session: Session = serde_json::from_value(event.data.object.clone()).map_err(|_| {
            self.error(GatewayErrorKind::Malformed(
                "the event is not about a Checkout Session".into(),
            ))
        })?;
        if session
            .object
            .as_deref()
            .is_some_and(|o| o != "checkout.session")
        {
            return Err(self.error(GatewayErrorKind::Malformed(
                "the event is not about a Checkout Session".into(),
            )));
        }
        let outcome = match event.kind.as_str() {
            "checkout.session.completed" if session.is_paid() => PaymentOutcome::Paid,
            // Completed by the payer, not yet paid: a SEPA debit on its way.
            "checkout.session.completed" => PaymentOutcome::Processing,
            "checkout.session.async_payment_succeeded" => PaymentOutcome::Paid,
            "checkout.session.async_payment_failed" => PaymentOutcome::Failed,
            "checkout.session.expired" => PaymentOutcome::Cancelled,
            _ => {
                return Err(self.error(GatewayErrorKind::NotSupported(
                    "this Stripe event type (subscribe the endpoint to checkout.session.* and refund.*)",
                )));
            }
        };
        let amount = self.amount_of(&session)?;
        Ok(CallbackEvent::new(outcome, amount)
            .with_transaction_id(session.transaction_id())
            .with_provider_ref(session.id.clone())
            .with_note(crate::text::shorten(&format!(
                "{} {} (payment_status {})",
                event.kind,
                event.id,
                session.payment_status.as_deref().unwrap_or("unknown")
            ))))
    }

    async fn fetch_status(&self, transaction: &Transaction) -> Result<PaymentOutcome> {
        let session = self.session(transaction, true).await?;
        let amount = self.amount_of(&session)?;
        if amount != transaction.total {
            return Err(self.error(GatewayErrorKind::AmountMismatch {
                expected: transaction.total.to_string(),
                actual: amount.to_string(),
            }));
        }
        let intent = match &session.payment_intent {
            Some(PaymentIntentRef::Object { status, .. }) => Some(status.as_str()),
            _ => None,
        };
        Ok(
            match (session.status.as_deref(), session.is_paid(), intent) {
                (_, true, _) => PaymentOutcome::Paid,
                (Some("expired"), false, _) => PaymentOutcome::Cancelled,
                (Some("complete"), false, Some("succeeded")) => PaymentOutcome::Paid,
                (Some("complete"), false, Some("requires_payment_method" | "canceled")) => {
                    PaymentOutcome::Failed
                }
                // The payer completed the page; the payment is on its way (SEPA debit).
                (Some("complete"), false, _) => PaymentOutcome::Processing,
                _ => PaymentOutcome::Pending,
            },
        )
    }

    async fn close(&self, transaction: &Transaction) -> Result<PaymentOutcome> {
        let session = self.session(transaction, false).await?;
        if session.status.as_deref() == Some("open") {
            let path = format!("/v1/checkout/sessions/{}/expire", session.id);
            let key = format!("payments-expire-{}", transaction.id);
            match self.post_form(&path, String::new(), &key).await {
                Ok(json) => {
                    if json.get("status").and_then(Json::as_str) == Some("expired") {
                        return Ok(PaymentOutcome::Cancelled);
                    }
                }
                // Refused: the session is no longer open (the payer finished meanwhile).
                Err(Error::Gateway {
                    kind: GatewayErrorKind::Rejected(_),
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        // No longer open: how it ended decides.
        match self.fetch_status(transaction).await? {
            PaymentOutcome::Pending => Ok(PaymentOutcome::Pending),
            outcome => Ok(outcome),
        }
    }

    fn processing_window(&self, kind: MethodKind) -> Option<Duration> {
        (kind == MethodKind::SepaDirectDebit).then_some(crate::SEPA_DIRECT_DEBIT_WINDOW)
    }

    fn supports_refunds(&self) -> bool {
        true
    }

    async fn refund(&self, transaction: &Transaction, refund: &Refund) -> Result<RefundAnswer> {
        let session = self.session(transaction, false).await?;
        let intent = session.payment_intent.as_ref().ok_or_else(|| {
            self.error(GatewayErrorKind::Rejected(
                "the session has no payment to refund".into(),
            ))
        })?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payment_intent", intent.id())
            .append_pair("amount", &refund.amount.minor_units().to_string())
            .append_pair("reason", "requested_by_customer")
            .append_pair("metadata[transaction_id]", &transaction.id.to_string())
            .append_pair("metadata[refund_id]", &refund.id.to_string())
            .finish();
        let json = self
            .post_form("/v1/refunds", body, &Self::refund_key(refund))
            .await?;
        self.refund_answer(json)
    }

    async fn refund_status(
        &self,
        _transaction: &Transaction,
        refund: &Refund,
    ) -> Result<RefundAnswer> {
        let id = refund.provider_ref.as_deref().ok_or_else(|| {
            self.error(GatewayErrorKind::Rejected(
                "the refund has no Stripe id yet".into(),
            ))
        })?;
        if !(id.starts_with("re_") || id.starts_with("pyr_"))
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(self.error(GatewayErrorKind::Rejected(
                "the refund's reference is not a Stripe refund id".into(),
            )));
        }
        let json = self.get(&format!("/v1/refunds/{id}")).await?;
        self.refund_answer(json)
    }
}

impl StripeGateway {
    /// Reads a refund Stripe answered with.
    fn refund_answer(&self, json: Json) -> Result<RefundAnswer> {
        let refund: StripeRefund = serde_json::from_value(json).map_err(|_| {
            self.error(GatewayErrorKind::Malformed(
                "Stripe's refund is not the JSON expected".into(),
            ))
        })?;
        if !refund.id.starts_with("re_") && !refund.id.starts_with("pyr_") {
            return Err(self.error(GatewayErrorKind::Malformed(
                "Stripe's refund has no id".into(),
            )));
        }
        refund.answer().ok_or_else(|| {
            self.error(GatewayErrorKind::Malformed(format!(
                "refund {} has a status Stripe does not document",
                refund.id
            )))
        })
    }

    /// A refund event: the refund's news, for the transaction in its metadata.
    fn refund_event(&self, event: &Event) -> Result<CallbackEvent> {
        let refund: StripeRefund =
            serde_json::from_value(event.data.object.clone()).map_err(|_| {
                self.error(GatewayErrorKind::Malformed(
                    "the event is not about a refund".into(),
                ))
            })?;
        let answer = self.refund_answer(event.data.object.clone())?;
        let (Some(cents), Some(currency)) = (refund.amount, refund.currency.as_deref()) else {
            return Err(self.error(GatewayErrorKind::Malformed(
                "the refund has no amount or currency".into(),
            )));
        };
        if !currency.eq_ignore_ascii_case("eur") {
            return Err(self.error(GatewayErrorKind::Malformed(format!(
                "a refund in {}",
                crate::text::shorten(currency)
            ))));
        }
        let amount = Money::from_minor(cents, Currency::Eur)
            .map_err(|_| self.error(GatewayErrorKind::Malformed("the refund's amount".into())))?;
        Ok(CallbackEvent::new(PaymentOutcome::Pending, amount)
            .with_transaction_id(
                refund
                    .metadata
                    .get("transaction_id")
                    .and_then(|t| t.parse().ok()),
            )
            .with_note(crate::text::shorten(&format!(
                "{} {}",
                event.kind, event.id
            )))
            .with_refund(
                RefundEvent::new(refund.id.clone(), answer.status)
                    .with_refund_id(
                        refund
                            .metadata
                            .get("refund_id")
                            .and_then(|r| r.parse().ok()),
                    )
                    .with_note(answer.note),
            ))
    }
}
