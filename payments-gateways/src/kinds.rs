//! The method kinds a provider is configured for.

use payments_core::{Error, MethodKind, Result};

/// `kinds`, once each, if it is not empty and every one is among `served`; otherwise a
/// validation error on `methods` that says what the provider serves.
pub(crate) fn enabled(
    kinds: &[MethodKind],
    served: &[MethodKind],
    provider: &str,
) -> Result<Vec<MethodKind>> {
    if kinds.is_empty() || kinds.iter().any(|k| !served.contains(k)) {
        let names: Vec<&str> = served.iter().map(|k| k.as_str()).collect();
        return Err(Error::invalid(
            "methods",
            format!("{provider} serves {}", names.join(" and ")),
        ));
    }
    let mut once = Vec::with_capacity(kinds.len());
    for k in kinds {
        if !once.contains(k) {
            once.push(*k);
        }
    }
    Ok(once)
}
