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
