//! # payments-mail
//!
//! A [`Notifier`](payments_core::Notifier) over lettre: receipts to the citizen and
//! notices to the body, over SMTP or written to files, from templates in Italian (the
//! default) and English.
//!
//! **Not built yet.** This crate is a placeholder for the issue that builds it; every
//! notifier it will hold must pass `payments_core::testing::notifier::run_all`. Until then
//! the plain-text rendering in core shows what a receipt says:
//!
//! ```
//! use payments_core::testing::notifier::sample_notification;
//! use payments_core::{Locale, NotificationKind, render_text};
//!
//! let n = sample_notification(NotificationKind::Receipt, "alice@example.it", Locale::It);
//! let message = render_text(&n);
//! assert!(message.subject.starts_with("Ricevuta di pagamento"));
//! assert!(message.text.contains("Totale: € 1.234,56"));
//! ```
