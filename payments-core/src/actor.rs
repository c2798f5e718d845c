//! Who is calling: every operation names its [`Actor`], and access is decided from it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{CreditorId, Error, GatewayId, PayerId, Result};

/// What an operator may do within their creditor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Reads movements and exports them.
    Viewer,
    /// Also confirms bank transfers, rejects reports, retries failed messages and configures
    /// payment types and methods.
    Manager,
}

/// Who performs an operation. Recorded on every transaction event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Actor {
    /// A citizen, identified by the host application.
    Payer {
        /// The payer's id.
        id: PayerId,
    },
    /// A member of a creditor's staff.
    Operator {
        /// The creditor they work for.
        creditor: CreditorId,
        /// What they may do.
        role: Role,
        /// Their user name, for the audit trail.
        name: String,
    },
    /// A provider's callback, after its gateway verified it.
    Gateway {
        /// The gateway that verified it.
        id: GatewayId,
    },
    /// The library itself or the host application acting on its own (expiry, modules
    /// creating items, set-up).
    System,
}

impl Actor {
    /// A payer.
    pub fn payer(id: impl Into<PayerId>) -> Self {
        Actor::Payer { id: id.into() }
    }

    /// An operator of `creditor`.
    pub fn operator(creditor: CreditorId, role: Role, name: impl Into<String>) -> Self {
        Actor::Operator {
            creditor,
            role,
            name: name.into(),
        }
    }

    /// Refuses unless the actor may act for `payer` of `creditor` (open their cart, add and
    /// remove items, check out, cancel): the payer themself, a manager of that creditor, or
    /// the system. A viewer reads ([`Actor::check_payer_read`]) and never acts.
    pub fn check_payer_access(&self, creditor: &CreditorId, payer: &PayerId) -> Result<()> {
        match self {
            // Only a manager acts for a payer; a viewer, or any role added later, reads.
            Actor::Operator {
                creditor: c, role, ..
            } if c == creditor && *role != Role::Manager => Err(Error::forbidden(
                "a viewer reads a payer's data and never acts for them",
            )),
            _ => self.check_payer_read(creditor, payer),
        }
    }

    /// Refuses unless the actor may read what `payer` of `creditor` has (their cart, a
    /// transaction, its refunds, their positions): the payer themself, any operator of that
    /// creditor, or the system.
    pub fn check_payer_read(&self, creditor: &CreditorId, payer: &PayerId) -> Result<()> {
        match self {
            Actor::Payer { id } if id == payer => Ok(()),
            Actor::Payer { .. } => Err(Error::forbidden("a payer reaches only their own data")),
            Actor::Operator { creditor: c, .. } if c == creditor => Ok(()),
            Actor::Operator { .. } => Err(Error::forbidden(
                "an operator reaches only their creditor's data",
            )),
            Actor::System => Ok(()),
            Actor::Gateway { .. } => Err(Error::forbidden("a gateway acts only through callbacks")),
        }
    }

    /// Refuses unless the actor is an operator of `creditor` (with at least `role`) or the
    /// system.
    pub fn check_operator(&self, creditor: &CreditorId, role: Role) -> Result<()> {
        match self {
            Actor::Operator {
                creditor: c,
                role: r,
                ..
            } if c == creditor => {
                if role == Role::Manager && *r != Role::Manager {
                    Err(Error::forbidden(
                        "this needs an operator with the manager role",
                    ))
                } else {
                    Ok(())
                }
            }
            Actor::Operator { .. } => Err(Error::forbidden(
                "an operator reaches only their creditor's data",
            )),
            Actor::System => Ok(()),
            _ => Err(Error::forbidden("this needs an operator of the creditor")),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Payer { id } => write!(f, "payer:{id}"),
            Actor::Operator { creditor, name, .. } => write!(f, "operator:{creditor}:{name}"),
            Actor::Gateway { id } => write!(f, "gateway:{id}"),
            Actor::System => f.write_str("system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payers_and_operators_reach_only_their_own() {
        let a = CreditorId::new();
        let b = CreditorId::new();
        let alice = PayerId::from("alice");
        assert!(Actor::payer("alice").check_payer_access(&a, &alice).is_ok());
        assert!(matches!(
            Actor::payer("bob").check_payer_access(&a, &alice),
            Err(Error::Forbidden { .. })
        ));
        let op_a = Actor::operator(a, Role::Viewer, "anna");
        // A viewer reads a payer's data and never acts for them.
        assert!(op_a.check_payer_read(&a, &alice).is_ok());
        assert!(matches!(
            op_a.check_payer_access(&a, &alice),
            Err(Error::Forbidden { .. })
        ));
        assert!(op_a.check_payer_read(&b, &alice).is_err());
        let manager_a = Actor::operator(a, Role::Manager, "marta");
        assert!(manager_a.check_payer_access(&a, &alice).is_ok());
        assert!(manager_a.check_payer_access(&b, &alice).is_err());
        assert!(op_a.check_operator(&a, Role::Viewer).is_ok());
        assert!(op_a.check_operator(&a, Role::Manager).is_err());
        assert!(
            Actor::payer("alice")
                .check_operator(&a, Role::Viewer)
                .is_err()
        );
        assert!(Actor::System.check_operator(&b, Role::Manager).is_ok());
    }
}
