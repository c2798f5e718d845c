//! The [`Gateway`] conformance suite.

use async_trait::async_trait;
use chrono::Utc;

use crate::Gateway;
use crate::{
    CallbackRequest, CartId, Creditor, Error, GatewayErrorKind, Instruction, ItemId, MethodKind,
    Money, Payer, PaymentMethod, PaymentOutcome, PaymentTypeId, Source, StartRequest, Started,
    Transaction, TransactionId, TransactionLine, TxStatus,
};

/// Plays the provider's side for the suite: completes a started payment the way the payer
/// would on the provider's page, and returns the callback the provider then sends.
#[async_trait]
pub trait GatewayDriver: Send + Sync {
    /// Completes `started` (for `request`) with `outcome`; returns the provider's callback.
    async fn complete(
        &self,
        request: &StartRequest,
        started: &Started,
        outcome: PaymentOutcome,
    ) -> CallbackRequest;
    /// The secrets the gateway holds, which must never show in its `Debug` or errors.
    fn secrets(&self) -> Vec<String>;
    /// Whether the provider signs the callback's body. When it does not (pagoPA's receipts
    /// come over an authenticated channel instead), a tampered body must still be refused,
    /// with any gateway error, and a callback without the channel's credentials must fail
    /// verification.
    fn body_signed(&self) -> bool {
        true
    }
    /// `callback` without its signature. By default its headers and query are cleared; a
    /// provider that signs inside the body (Nexi's `mac` field) removes that instead.
    fn unsigned(&self, callback: &CallbackRequest) -> CallbackRequest {
        let mut unsigned = callback.clone();
        unsigned.headers.clear();
        unsigned.query = None;
        unsigned
    }
    /// The outcomes the provider can report by callback. All three by default; a bank
    /// transfer's callback only ever reports money received.
    fn outcomes(&self) -> Vec<PaymentOutcome> {
        vec![
            PaymentOutcome::Paid,
            PaymentOutcome::Failed,
            PaymentOutcome::Cancelled,
        ]
    }
}

/// A `Created` transaction of `total` for `kind` on `gateway`, with the creditor and method
/// a [`StartRequest`] needs.
pub fn start_request(gateway: &dyn Gateway, kind: MethodKind, total: &str) -> StartRequest {
    let creditor =
        Creditor::new("Comune di Prova", "00488410010", "enti@example.it").expect("creditor");
    let method = PaymentMethod::new(creditor.id, kind, gateway.id());
    let amount = Money::parse_eur(total).expect("amount");
    let now = Utc::now();
    let transaction = Transaction {
        id: TransactionId::new(),
        creditor_id: creditor.id,
        cart_id: CartId::new(),
        payer: Payer::new("alice", "Alice").with_email("alice@example.it"),
        method_id: method.id,
        method_kind: kind,
        gateway_id: gateway.id(),
        lines: vec![TransactionLine {
            item_id: ItemId::new(),
            source: Source::new("tributi", "k1"),
            payment_type_id: PaymentTypeId::new(),
            reason: "TARI 2026".into(),
            amount,
            paid_at: None,
        }],
        total: amount,
        status: TxStatus::Created,
        provider_ref: None,
        idempotency_key: "k".into(),
        instruction: None,
        created_at: now,
        updated_at: now,
        expires_at: now + chrono::Duration::minutes(30),
    };
    StartRequest {
        transaction,
        creditor,
        method,
        return_url: Some("http://localhost/return".into()),
    }
}

fn assert_no_secret(gateway: &dyn Gateway, driver: &dyn GatewayDriver, text: &str, what: &str) {
    for secret in driver.secrets() {
        assert!(!secret.is_empty(), "a secret to check is not empty");
        assert!(
            !text.contains(&secret),
            "{}: a secret shows in {what}",
            gateway.id()
        );
    }
}

/// Runs every check against `gateway`, with `driver` playing the provider.
pub async fn run_all(gateway: &dyn Gateway, driver: &dyn GatewayDriver) {
    assert!(!gateway.id().0.is_empty(), "a gateway has an id");
    let kinds = gateway.kinds();
    assert!(
        !kinds.is_empty(),
        "a gateway serves at least one method kind"
    );
    assert_no_secret(gateway, driver, &format!("{gateway:?}"), "Debug");

    for kind in &kinds {
        let req = start_request(gateway, *kind, "12.34");
        let started = gateway.start(&req).await.expect("start");
        match &started.instruction {
            Instruction::Redirect { url, .. } => {
                assert!(url.starts_with("http"), "a redirect goes to a URL")
            }
            Instruction::BankTransfer(d) => assert_eq!(
                d.amount, req.transaction.total,
                "the transfer is of the total"
            ),
            Instruction::PagoPa(p) => {
                assert_eq!(
                    p.notices.len(),
                    req.transaction.lines.len(),
                    "one notice per line"
                );
                assert_eq!(
                    p.total(),
                    Some(req.transaction.total),
                    "the notices add up to the total"
                );
            }
            Instruction::Completed => {}
        }
    }

    let kind = kinds[0];
    let outcomes = driver.outcomes();
    assert!(
        outcomes.contains(&PaymentOutcome::Paid),
        "a gateway reports payments"
    );
    for outcome in outcomes {
        let req = start_request(gateway, kind, "1234.56");
        let started = gateway.start(&req).await.expect("start");
        let callback = driver.complete(&req, &started, outcome).await;
        let event = gateway
            .parse_callback(&callback)
            .await
            .expect("a genuine callback verifies");
        assert_eq!(event.outcome, outcome, "the callback reports the outcome");
        assert_eq!(
            event.amount, req.transaction.total,
            "the callback reports the amount"
        );
        assert!(
            event.transaction_id == Some(req.transaction.id)
                || (event.provider_ref.is_some() && event.provider_ref == started.provider_ref),
            "the callback names the transaction or the provider's reference"
        );
        let again = gateway
            .parse_callback(&callback)
            .await
            .expect("parsing again");
        assert_eq!(
            again, event,
            "parsing does not change anything: the same callback gives the same event"
        );
        if outcome == PaymentOutcome::Paid {
            // As the service has it by then: pending, with the provider's reference.
            let mut tx = req.transaction.clone();
            tx.status = crate::TxStatus::Pending;
            tx.provider_ref = started.provider_ref.clone();
            tx.instruction = Some(started.instruction.clone());
            match gateway.fetch_status(&tx).await {
                Ok(status) => assert_eq!(
                    status,
                    PaymentOutcome::Paid,
                    "fetch_status reports the payment"
                ),
                Err(Error::Gateway {
                    kind: GatewayErrorKind::NotSupported(_),
                    ..
                }) => {}
                Err(e) => panic!("fetch_status failed: {e}"),
            }
        }

        let mut tampered = callback.clone();
        let last = tampered.body.len().saturating_sub(2);
        match tampered.body.get_mut(last) {
            Some(b) => *b = if *b == b'1' { b'2' } else { b'1' },
            None => tampered.body = b"{}".to_vec(),
        }
        match gateway.parse_callback(&tampered).await {
            Err(Error::Gateway {
                kind: GatewayErrorKind::InvalidSignature,
                ..
            }) => {}
            Err(Error::Gateway { .. }) if !driver.body_signed() => {}
            r => panic!("a tampered callback must fail verification, got {r:?}"),
        }
        let unsigned = driver.unsigned(&callback);
        let err = gateway
            .parse_callback(&unsigned)
            .await
            .expect_err("an unsigned callback is refused");
        assert!(
            matches!(err, Error::Gateway { .. }),
            "a refused callback is a gateway error, got {err:?}"
        );
        if !driver.body_signed() {
            assert!(
                matches!(
                    err,
                    Error::Gateway {
                        kind: GatewayErrorKind::InvalidSignature,
                        ..
                    }
                ),
                "a callback without the channel's credentials fails verification, got {err:?}"
            );
        }
        assert_no_secret(gateway, driver, &format!("{err} {err:?}"), "errors");
    }
}
