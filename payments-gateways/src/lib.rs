//! # payments-gateways
//!
//! Payment providers for `payments-core`, one module per provider, each behind a cargo
//! feature so a host compiles only the ones it uses.
//!
//! | feature | module | methods | status |
//! | --- | --- | --- | --- |
//! | `sandbox` (default) | [`sandbox`] | card, SEPA direct debit, account debit | a hosted page that the test or example drives; HMAC-SHA256 signed callbacks |
//! | `bank_transfer` (default) | [`bank_transfer`] | bank transfer | IBAN, ISO 11649 creditor reference, EPC QR code, the payer's report, camt.053/camt.054 statement import and matching, signed camt.054 notifications |
//! | `stripe` (default) | [`stripe`] | card, SEPA direct debit | Checkout Sessions with idempotency keys, `Stripe-Signature` verified webhooks, session status, full and partial refunds |
//! | `nexi` (default) | [`nexi`] | card, MyBank (account debit) | the XPay hosted page by POST form with its MAC, verified returns and notifications, order status and refunds through the back-office API |
//! | `pagopa` (default) | [`pagopa`] | pagoPA | notices with IUV and QR code, online checkout of up to five notices, `paSendRT` receipts that settle each item |
//!
//! Every gateway passes the conformance suite `payments_core::testing::gateway`.
//!
//! ## Example
//! ```
//! # #[cfg(feature = "sandbox")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> payments_core::Result<()> {
//! use std::sync::Arc;
//! use payments_core::testing::Fixture;
//! use payments_core::*;
//! use payments_gateways::sandbox::SandboxGateway;
//!
//! let sandbox = Arc::new(SandboxGateway::new("a signing key only the sandbox and we know"));
//! let notifier = Arc::new(RecordingNotifier::new());
//! let payments = Payments::builder()
//!     .store(Arc::new(InMemoryStore::new()))
//!     .gateway(sandbox.clone())
//!     .notifier(notifier.clone())
//!     .build()?;
//! let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card]).await?;
//!
//! let alice = Actor::payer("alice");
//! let cart = payments.open_cart(&alice, fx.creditor.id, Fixture::payer("alice")).await?;
//! let fee = NewFreeItem::new(fx.fees.id, "16,00", "Diritti pratica 2026/15")
//!     .with_extra("case_number", "2026/15")
//!     .with_extra("office", "edilizia");
//! payments.add_free_item(&alice, cart.id, fee).await?;
//! let checkout = payments.checkout(&alice, cart.id, fx.method(MethodKind::Card).id, "k1").await?;
//!
//! // The payer pays on the sandbox's page, which then calls back, signed.
//! let Instruction::Redirect { url, .. } = &checkout.instruction else { unreachable!() };
//! let session = url.rsplit('/').next().unwrap();
//! let callback = sandbox.complete(session, PaymentOutcome::Paid)?;
//! let outcome = payments.handle_callback("sandbox", &callback).await?;
//! assert_eq!(outcome.transaction.status, TxStatus::Paid);
//! // A replay changes nothing.
//! assert!(!payments.handle_callback("sandbox", &callback).await?.applied);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sandbox"))]
//! # fn main() {}
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The longest a SEPA direct debit may stay processing: the SEPA Core rulebook lets the
/// debtor's bank answer within days of settlement, and providers (Stripe) say a debit can
/// take up to 14 business days to succeed or fail. Three calendar weeks cover 14 business
/// days with a holiday to spare. Gateways state it in
/// [`Gateway::processing_window`](payments_core::Gateway::processing_window).
pub const SEPA_DIRECT_DEBIT_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(21 * 24 * 3600);

#[cfg(feature = "bank_transfer")]
#[cfg_attr(docsrs, doc(cfg(feature = "bank_transfer")))]
pub mod bank_transfer;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(any(feature = "stripe", feature = "nexi"))]
mod kinds;
#[cfg(feature = "nexi")]
#[cfg_attr(docsrs, doc(cfg(feature = "nexi")))]
pub mod nexi;
#[cfg(feature = "pagopa")]
#[cfg_attr(docsrs, doc(cfg(feature = "pagopa")))]
pub mod pagopa;
#[cfg(feature = "qr")]
#[cfg_attr(docsrs, doc(cfg(feature = "qr")))]
pub mod qr;
#[cfg(feature = "sandbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "sandbox")))]
pub mod sandbox;
#[cfg(feature = "stripe")]
#[cfg_attr(docsrs, doc(cfg(feature = "stripe")))]
pub mod stripe;
#[cfg(any(
    feature = "bank_transfer",
    feature = "pagopa",
    feature = "stripe",
    feature = "nexi"
))]
mod text;
