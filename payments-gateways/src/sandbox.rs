//! A sandbox provider that behaves like a real hosted payment page, with no network.
//!
//! [`Gateway::start`] opens a session and answers with a redirect to
//! `{base_url}/pay/{session}`. Whoever plays the payer — a test, or the example portal's
//! page at that URL — then calls [`SandboxGateway::complete`] with the outcome (paid,
//! failed, cancelled, processing); it returns the callback the provider sends: a JSON body signed with
//! HMAC-SHA256 in the `X-Sandbox-Signature` header (lower-case hex of the MAC of the raw
//! body). [`Gateway::parse_callback`] verifies that signature in constant time before it
//! reads anything.
//!
//! The signing key never shows in `Debug` output or errors.
//!
//! ```
//! use payments_gateways::sandbox::SandboxGateway;
//!
//! let sandbox = SandboxGateway::new("secret-key").with_base_url("http://localhost:3000/sandbox");
//! assert!(!format!("{sandbox:?}").contains("secret-key"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use payments_core::{
    CallbackEvent, CallbackRequest, Currency, Error, Gateway, GatewayErrorKind, GatewayId,
    Instruction, MethodKind, Money, PaymentOutcome, Result, StartRequest, Started, Transaction,
    TransactionId,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The header that carries the callback's signature.
pub const SIGNATURE_HEADER: &str = "x-sandbox-signature";

/// The default gateway id.
pub const DEFAULT_ID: &str = "sandbox";

type HmacSha256 = Hmac<Sha256>;

/// A payment on the sandbox's page, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxSession {
    /// The session id: the provider's reference.
    pub id: String,
    /// Our transaction.
    pub transaction_id: TransactionId,
    /// The creditor's name, shown on the page.
    pub merchant: String,
    /// The amount.
    pub amount: Money,
    /// Where the page sends the payer back.
    pub return_url: Option<String>,
    /// Where the payment stands on the provider's side.
    pub outcome: PaymentOutcome,
}

/// The JSON body of a sandbox callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackBody {
    /// The provider's event id.
    pub event_id: String,
    /// The session (provider's reference).
    pub session: String,
    /// Our transaction id, echoed.
    pub transaction_id: String,
    /// `paid`, `failed`, `cancelled` or `pending`.
    pub status: PaymentOutcome,
    /// The amount, as a decimal string.
    pub amount: String,
    /// The currency code.
    pub currency: String,
}

/// The sandbox provider. See the module documentation.
pub struct SandboxGateway {
    id: GatewayId,
    key: SecretString,
    base_url: String,
    kinds: Vec<MethodKind>,
    sessions: Mutex<HashMap<String, SandboxSession>>,
    refunds: Mutex<Vec<(TransactionId, Money)>>,
}

impl fmt::Debug for SandboxGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxGateway")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .field("base_url", &self.base_url)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl SandboxGateway {
    /// A sandbox with id `"sandbox"`, signing callbacks with `signing_key`, serving card,
    /// SEPA direct debit and account debit, with its page at
    /// `http://localhost:8080/sandbox`.
    pub fn new(signing_key: impl Into<String>) -> Self {
        SandboxGateway {
            id: DEFAULT_ID.into(),
            key: SecretString::from(signing_key.into()),
            base_url: "http://localhost:8080/sandbox".into(),
            kinds: vec![
                MethodKind::Card,
                MethodKind::SepaDirectDebit,
                MethodKind::AccountDebit,
            ],
            sessions: Mutex::new(HashMap::new()),
            refunds: Mutex::new(Vec::new()),
        }
    }

    /// Sets the gateway id.
    pub fn with_id(mut self, id: impl Into<GatewayId>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets where the hosted page lives; redirects go to `{base_url}/pay/{session}`.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets the method kinds served.
    pub fn with_kinds(mut self, kinds: impl IntoIterator<Item = MethodKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC accepts any key length")
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, SandboxSession>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The signature of `body`, as the sandbox puts it in [`SIGNATURE_HEADER`].
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// A session, as the hosted page shows it.
    pub fn session(&self, session: &str) -> Option<SandboxSession> {
        self.sessions().get(session).cloned()
    }

    /// The payer finished on the hosted page with `outcome`: records it and returns the
    /// signed callback the provider sends. Completing again with the same outcome returns
    /// the same callback (a provider's retry); a session that already ended differently is
    /// refused, and so is one the library closed ([`Gateway::close`]). A payment still
    /// `Processing` (a direct debit) may end later as paid or failed.
    pub fn complete(&self, session: &str, outcome: PaymentOutcome) -> Result<CallbackRequest> {
        let mut sessions = self.sessions();
        let s = sessions.get_mut(session).ok_or_else(|| {
            Error::gateway(
                self.id.0.clone(),
                GatewayErrorKind::Rejected("unknown session".into()),
            )
        })?;
        let open = matches!(
            s.outcome,
            PaymentOutcome::Pending | PaymentOutcome::Processing
        );
        if !open && s.outcome != outcome {
            return Err(Error::gateway(
                self.id.0.clone(),
                GatewayErrorKind::Rejected(format!("session already {:?}", s.outcome)),
            ));
        }
        s.outcome = outcome;
        let body = CallbackBody {
            event_id: format!("evt_{}_{:?}", s.id, outcome).to_lowercase(),
            session: s.id.clone(),
            transaction_id: s.transaction_id.to_string(),
            status: outcome,
            amount: s.amount.amount().to_string(),
            currency: s.amount.currency().code().to_owned(),
        };
        Ok(self.signed_callback(&body))
    }

    /// The refunds the sandbox made, in order: (transaction, amount).
    pub fn refunds(&self) -> Vec<(TransactionId, Money)> {
        self.refunds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A callback with `body`, signed with the sandbox's key: what the provider would send.
    pub fn signed_callback(&self, body: &CallbackBody) -> CallbackRequest {
        let bytes = serde_json::to_vec(body).expect("a callback body serialises");
        let signature = self.sign(&bytes);
        CallbackRequest::new(bytes)
            .with_header("content-type", "application/json")
            .with_header(SIGNATURE_HEADER, signature)
    }

    fn error(&self, kind: GatewayErrorKind) -> Error {
        Error::gateway(self.id.0.clone(), kind)
    }
}

#[async_trait]
impl Gateway for SandboxGateway {
    fn id(&self) -> GatewayId {
        self.id.clone()
    }

    fn kinds(&self) -> Vec<MethodKind> {
        self.kinds.clone()
    }

    async fn start(&self, request: &StartRequest) -> Result<Started> {
        if !self.kinds.contains(&request.method.kind) {
            return Err(self.error(GatewayErrorKind::Rejected(format!(
                "method {} is not served",
                request.method.kind.as_str()
            ))));
        }
        let tx = &request.transaction;
        let id = format!("sbx_{}", uuid::Uuid::now_v7().simple());
        self.sessions().insert(
            id.clone(),
            SandboxSession {
                id: id.clone(),
                transaction_id: tx.id,
                merchant: request.creditor.name.clone(),
                amount: tx.total,
                return_url: request.return_url.clone(),
                outcome: PaymentOutcome::Pending,
            },
        );
        Ok(
            Started::new(Instruction::redirect(format!("{}/pay/{id}", self.base_url)))
                .with_provider_ref(id),
        )
    }

    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        let signature = request
            .header(SIGNATURE_HEADER)
            .and_then(|s| hex::decode(s.trim()).ok())
            .ok_or_else(|| self.error(GatewayErrorKind::InvalidSignature))?;
        let mut mac = self.mac();
        mac.update(&request.body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| self.error(GatewayErrorKind::InvalidSignature))?;
        let body: CallbackBody = serde_json::from_slice(&request.body)
            .map_err(|e| self.error(GatewayErrorKind::Malformed(e.to_string())))?;
        let currency: Currency = body
            .currency
            .parse()
            .map_err(|_| self.error(GatewayErrorKind::Malformed("currency".into())))?;
        let amount = Money::parse(&body.amount, currency)
            .map_err(|e| self.error(GatewayErrorKind::Malformed(format!("amount: {e}"))))?;
        let transaction_id: TransactionId = body
            .transaction_id
            .parse()
            .map_err(|_| self.error(GatewayErrorKind::Malformed("transaction_id".into())))?;
        Ok(CallbackEvent::new(body.status, amount)
            .with_transaction_id(transaction_id)
            .with_provider_ref(body.session)
            .with_note(format!("sandbox event {}", body.event_id)))
    }

    async fn fetch_status(&self, transaction: &Transaction) -> Result<PaymentOutcome> {
        self.sessions()
            .values()
            .find(|s| s.transaction_id == transaction.id)
            .map(|s| s.outcome)
            .ok_or_else(|| self.error(GatewayErrorKind::Rejected("unknown payment".into())))
    }

    /// Closes the session: a page still open can no longer pay (answers `Cancelled`);
    /// a session that ended, or is processing, answers how.
    async fn close(&self, transaction: &Transaction) -> Result<PaymentOutcome> {
        let mut sessions = self.sessions();
        let s = sessions
            .values_mut()
            .find(|s| s.transaction_id == transaction.id)
            .ok_or_else(|| self.error(GatewayErrorKind::Rejected("unknown payment".into())))?;
        if s.outcome == PaymentOutcome::Pending {
            s.outcome = PaymentOutcome::Cancelled;
        }
        Ok(s.outcome)
    }

    fn supports_refunds(&self) -> bool {
        true
    }

    fn processing_window(&self, kind: MethodKind) -> Option<std::time::Duration> {
        (kind == MethodKind::SepaDirectDebit).then_some(crate::SEPA_DIRECT_DEBIT_WINDOW)
    }

    /// Gives the money back at once.
    async fn refund(
        &self,
        transaction: &Transaction,
        refund: &payments_core::Refund,
    ) -> Result<payments_core::RefundAnswer> {
        self.refunds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((transaction.id, refund.amount));
        Ok(payments_core::RefundAnswer::succeeded(format!(
            "sbx_re_{}",
            refund.id.as_uuid().simple()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payments_core::testing::gateway::{GatewayDriver, run_all};

    struct Driver<'a>(&'a SandboxGateway);

    #[async_trait]
    impl GatewayDriver for Driver<'_> {
        async fn complete(
            &self,
            _: &StartRequest,
            started: &Started,
            outcome: PaymentOutcome,
        ) -> CallbackRequest {
            let session = started
                .provider_ref
                .as_deref()
                .expect("the sandbox gives a reference");
            self.0.complete(session, outcome).expect("complete")
        }

        fn secrets(&self) -> Vec<String> {
            vec!["sandbox-test-key-0123456789".into()]
        }
    }

    #[tokio::test]
    async fn passes_the_gateway_conformance_suite() {
        let sandbox = SandboxGateway::new("sandbox-test-key-0123456789");
        run_all(&sandbox, &Driver(&sandbox)).await;
    }

    #[tokio::test]
    async fn a_callback_signed_with_another_key_is_refused() {
        let ours = SandboxGateway::new("ours");
        let theirs = SandboxGateway::new("theirs");
        let body = CallbackBody {
            event_id: "e".into(),
            session: "s".into(),
            transaction_id: TransactionId::new().to_string(),
            status: PaymentOutcome::Paid,
            amount: "1.00".into(),
            currency: "EUR".into(),
        };
        let forged = theirs.signed_callback(&body);
        assert!(matches!(
            ours.parse_callback(&forged).await,
            Err(Error::Gateway {
                kind: GatewayErrorKind::InvalidSignature,
                ..
            })
        ));
        assert!(
            ours.parse_callback(&ours.signed_callback(&body))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_session_ends_once() {
        let sandbox = SandboxGateway::new("k");
        let req =
            payments_core::testing::gateway::start_request(&sandbox, MethodKind::Card, "5.00");
        let started = sandbox.start(&req).await.unwrap();
        let session = started.provider_ref.unwrap();
        let paid = sandbox.complete(&session, PaymentOutcome::Paid).unwrap();
        assert_eq!(
            sandbox.complete(&session, PaymentOutcome::Paid).unwrap(),
            paid,
            "a retry sends the same callback"
        );
        assert!(sandbox.complete(&session, PaymentOutcome::Failed).is_err());
        assert!(sandbox.complete("nope", PaymentOutcome::Paid).is_err());
        let s = sandbox.session(&session).unwrap();
        assert_eq!(
            (s.amount, s.outcome),
            (req.transaction.total, PaymentOutcome::Paid)
        );
    }
}
