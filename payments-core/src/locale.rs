//! The languages texts for citizens come in.

use serde::{Deserialize, Serialize};

/// A language for texts a citizen reads. Italian is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Locale {
    /// Italian (the default).
    #[default]
    It,
    /// English.
    En,
}

impl Locale {
    /// The language tag: `"it"` or `"en"`.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::It => "it",
            Locale::En => "en",
        }
    }

    /// Reads a language tag such as `"en"`, `"en-GB"` or `"it_IT"`; anything else is Italian.
    pub fn from_tag(tag: &str) -> Self {
        if tag.trim().to_ascii_lowercase().starts_with("en") {
            Locale::En
        } else {
            Locale::It
        }
    }
}
