#![doc = include_str!("../README.md")]
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
