//! The one error type of the library, with kinds a caller can act on.

use std::fmt;

use crate::Problem;

/// A boxed error kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, payments_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
///
/// Match on the variant to decide what to do: show field errors to the user
/// ([`Error::Validation`]), answer 404 ([`Error::NotFound`]) or 403 ([`Error::Forbidden`]),
/// retry later ([`Error::is_retryable`]). Adapters keep their own error as the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input was refused; nothing was changed. Every problem names its field.
    #[error("invalid input: {0}")]
    Validation(ValidationErrors),
    /// The named thing does not exist (or the actor may not know it exists).
    #[error("{entity} not found: {id}")]
    NotFound {
        /// What was looked for: `"transaction"`, `"cart"`, …
        entity: &'static str,
        /// The identifier that was looked for.
        id: String,
    },
    /// The actor may not do this.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why the actor was refused.
        reason: String,
    },
    /// The request conflicts with the current state; nothing was changed.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// A payment provider refused, failed, or sent something that does not verify.
    #[error("gateway {gateway}: {kind}")]
    Gateway {
        /// The gateway's id.
        gateway: String,
        /// What went wrong.
        kind: GatewayErrorKind,
        /// The adapter's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store failed.
    #[error("storage: {message}")]
    Storage {
        /// What the store was doing.
        message: String,
        /// The adapter's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A notification could not be delivered.
    #[error("notification: {message}")]
    Notification {
        /// What failed.
        message: String,
        /// Whether trying again later may succeed.
        transient: bool,
        /// The adapter's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// A validation error about one field.
    pub fn invalid(field: impl Into<String>, problem: impl Into<Problem>) -> Self {
        Error::Validation(ValidationErrors(vec![FieldError::new(field, problem)]))
    }

    /// A `NotFound` error.
    pub fn not_found(entity: &'static str, id: impl fmt::Display) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// A `Forbidden` error.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Error::Forbidden {
            reason: reason.into(),
        }
    }

    /// A `Storage` error that keeps the adapter's error as its source.
    pub fn storage(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Storage {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A `Gateway` error without a source.
    pub fn gateway(gateway: impl Into<String>, kind: GatewayErrorKind) -> Self {
        Error::Gateway {
            gateway: gateway.into(),
            kind,
            source: None,
        }
    }

    /// The field errors, when this is a validation error.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match self {
            Error::Validation(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again later, unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Storage { .. } => true,
            Error::Notification { transient, .. } => *transient,
            Error::Gateway { kind, .. } => matches!(kind, GatewayErrorKind::Unavailable),
            Error::Conflict(Conflict::InProgress { .. }) => true,
            _ => false,
        }
    }
}

/// One refused field and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// The field's name: `"amount"`, `"reason"`, `"extra.year"`, …
    pub field: String,
    /// Why it was refused, in English, for logs and developers.
    pub reason: String,
    /// Why it was refused, as a code with parameters: [`Problem::message`] is its text for
    /// a reader, in Italian or English.
    #[serde(default = "unspecified")]
    pub problem: Problem,
}

pub(crate) fn unspecified() -> Problem {
    Problem::Invalid {
        reason: String::new(),
    }
}

impl FieldError {
    /// A refused `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<Problem>) -> Self {
        let problem = problem.into();
        FieldError {
            field: field.into(),
            reason: problem.reason(),
            problem,
        }
    }

    /// The text for a reader in `locale`, from the catalogue.
    pub fn message(&self, locale: crate::Locale) -> String {
        self.problem.message(locale)
    }
}

/// All the refused fields of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// Adds a refused field: a [`Problem`], or an English reason for developers (which a
    /// reader sees as a generic "invalid value").
    pub fn push(&mut self, field: impl Into<String>, problem: impl Into<Problem>) {
        self.0.push(FieldError::new(field, problem));
    }

    /// Whether no field was refused.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The error about `field`, if any.
    pub fn field(&self, field: &str) -> Option<&FieldError> {
        self.0.iter().find(|e| e.field == field)
    }

    /// The names of all refused fields.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.field.as_str()).collect()
    }

    /// `Ok(())` when empty, the validation error otherwise.
    pub fn into_result(self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self))
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.reason)?;
        }
        Ok(())
    }
}

/// Why a request conflicts with the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Conflict {
    /// The item is already in an open transaction, already paid, or removed.
    #[error("item {item} is not payable now ({state})")]
    ItemUnavailable {
        /// The item's id.
        item: String,
        /// Its current state.
        state: String,
    },
    /// A compare-and-set found another state than expected.
    #[error("transaction {transaction} is {actual}, expected {expected}")]
    StaleState {
        /// The transaction's id.
        transaction: String,
        /// The state the caller expected.
        expected: String,
        /// The state it is in.
        actual: String,
    },
    /// The transition is not one the state machine allows.
    #[error("a transaction cannot move from {from} to {to}")]
    InvalidTransition {
        /// Current state.
        from: String,
        /// Requested state.
        to: String,
    },
    /// A move to `Paid` found the items of the transaction's lines other than the service
    /// read them (another payment settled one meanwhile): read again and retry.
    #[error("the items of transaction {transaction} changed meanwhile")]
    ItemsChanged {
        /// The transaction's id.
        transaction: String,
    },
    /// The same request is still being processed; try again shortly.
    #[error("{what} is in progress")]
    InProgress {
        /// What is in progress.
        what: String,
    },
    /// A debt position changed since it was read (its version moved on), or its state
    /// does not allow the change: read it again.
    #[error("debt position {position} changed meanwhile or cannot change now ({why})")]
    PositionChanged {
        /// The position's id.
        position: String,
        /// Why.
        why: String,
    },
    /// Another conflict, described.
    #[error("{0}")]
    Other(String),
}

/// What went wrong with a payment provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayErrorKind {
    /// A callback's signature did not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// A callback could not be understood.
    #[error("malformed callback: {0}")]
    Malformed(String),
    /// A callback's amount or currency differs from the transaction's.
    #[error("amount mismatch: expected {expected}, got {actual}")]
    AmountMismatch {
        /// The transaction's total.
        expected: String,
        /// What the provider reported.
        actual: String,
    },
    /// The provider refused the request.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The provider could not be reached or answered with a server error.
    #[error("unavailable")]
    Unavailable,
    /// The provider does not offer this operation.
    #[error("{0} is not supported")]
    NotSupported(&'static str),
}
