//! Identifiers: UUID v7 (time-ordered) for what the library creates, strings for what the
//! host or a provider names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

uuid_id!(
    /// Identifies a [`Creditor`](crate::Creditor).
    CreditorId
);
uuid_id!(
    /// Identifies a [`PaymentType`](crate::PaymentType).
    PaymentTypeId
);
uuid_id!(
    /// Identifies a [`PaymentMethod`](crate::PaymentMethod).
    MethodId
);
uuid_id!(
    /// Identifies a [`Cart`](crate::Cart).
    CartId
);
uuid_id!(
    /// Identifies a [`PayableItem`](crate::PayableItem).
    ItemId
);
uuid_id!(
    /// Identifies a [`Transaction`](crate::Transaction); the payment identifier a citizen sees.
    TransactionId
);
uuid_id!(
    /// Identifies a [`TransactionEvent`](crate::TransactionEvent).
    EventId
);
uuid_id!(
    /// Identifies an [`OutboxMessage`](crate::OutboxMessage).
    OutboxId
);
uuid_id!(
    /// Identifies a [`Refund`](crate::Refund).
    RefundId
);
uuid_id!(
    /// Identifies a [`DebtPosition`](crate::DebtPosition).
    DebtPositionId
);
uuid_id!(
    /// Identifies an [`Exception`](crate::Exception) of the ledger operators resolve.
    ExceptionId
);
string_id!(
    /// Identifies a payer, as the host application knows them (its user id).
    PayerId
);
string_id!(
    /// Identifies a [`Gateway`](crate::Gateway): `"sandbox"`, `"stripe"`, …
    GatewayId
);
