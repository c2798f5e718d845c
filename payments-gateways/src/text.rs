//! Text helpers shared by the providers that read documents from outside.

/// A message cut to 300 characters, with `…` when cut: a hostile document must not fill a
/// log or an error.
pub(crate) fn shorten(message: &str) -> String {
    let mut out: String = message.chars().take(300).collect();
    if out.len() < message.len() {
        out.push('…');
    }
    out
}

/// `url` with the transaction and the outcome added to its query: where a provider's page
/// sends the payer back (`…?transaction=<id>&outcome=<outcome>`). Both values are URL-safe.
#[cfg(any(feature = "pagopa", feature = "stripe"))]
pub(crate) fn return_to(
    url: &str,
    transaction: payments_core::TransactionId,
    outcome: &str,
) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}transaction={transaction}&outcome={outcome}")
}
