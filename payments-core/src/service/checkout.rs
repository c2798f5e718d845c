//! Checkout: one transaction for the whole cart, and the gateway's instruction.

use std::collections::HashMap;

use super::{Change, MAX_IDEMPOTENCY_KEY_LEN, Payments};
use crate::{
    Actor, CartId, Conflict, Error, Instruction, ItemState, MethodId, OverLimit, PaymentType,
    Result, StartRequest, Transaction, TxStatus,
};

/// What [`Payments::checkout`] returns: the transaction and what the payer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkout {
    /// The transaction (`Pending`, or `Paid` when the gateway completed it at once).
    pub transaction: Transaction,
    /// What the payer must do.
    pub instruction: Instruction,
}

impl Payments {
    // ---------------------------------------------------------------- checkout

    /// Pays the whole cart in one transaction with `method`.
    ///
    /// Checks that every item's type accepts the method and that the total is within the
    /// creditor's limit, locks the items (an item is in at most one open transaction; of
    /// concurrent checkouts of the same items exactly one wins, the others get a
    /// `Conflict`), and asks the gateway to start. The same `idempotency_key` from the same
    /// payer returns the same transaction and instruction, never a second transaction.
    pub async fn checkout(
        &self,
        actor: &Actor,
        cart: CartId,
        method: MethodId,
        idempotency_key: &str,
    ) -> Result<Checkout> {
        let (cart, items) = self.cart_with_items(actor, cart).await?;
        actor.check_payer_access(&cart.creditor_id, &cart.payer.id)?;
        let key = idempotency_key.trim();
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || key.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must have 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable characters"),
            ));
        }
        // A replay finds its items locked or paid: look the key up only then. Otherwise the
        // store's insert, idempotent on the key, settles any race.
        if (items.is_empty() || items.iter().any(|i| i.state != ItemState::Open))
            && let Some(existing) = self
                .store_ref()
                .transaction_by_key(&cart.payer.id, key)
                .await?
        {
            return Self::replayed_checkout(existing, cart.id);
        }
        let creditor = self.creditor(cart.creditor_id).await?;
        let method = match self.method(method).await? {
            Some(m) if m.creditor_id == cart.creditor_id && m.enabled => m,
            _ => return Err(Error::invalid("method", "not enabled at this creditor")),
        };
        let gateway = self.gateway(&method.gateway_id)?.clone();
        if let Some(locked) = items.iter().find(|i| i.state != ItemState::Open) {
            return Err(Error::Conflict(Conflict::ItemUnavailable {
                item: locked.id.to_string(),
                state: locked.state.name().into(),
            }));
        }
        if items.is_empty() {
            return Err(Error::invalid("cart", "is empty"));
        }
        let mut items = items;
        if let Some(limit) = gateway.line_limit()
            && items.len() > limit.max
        {
            match limit.over {
                OverLimit::Refuse => {
                    return Err(Error::invalid(
                        "cart",
                        format!(
                            "{} pays at most {} items at a time and this cart has {}: remove {} \
                             and pay them afterwards",
                            method.gateway_id,
                            limit.max,
                            items.len(),
                            items.len() - limit.max
                        ),
                    ));
                }
                // The oldest items now; the others stay open in the cart.
                OverLimit::Split => items.truncate(limit.max),
            }
        }
        let mut types: HashMap<crate::PaymentTypeId, PaymentType> = HashMap::new();
        for item in &items {
            if !types.contains_key(&item.payment_type_id) {
                let t = self
                    .payment_type(item.payment_type_id)
                    .await?
                    .ok_or_else(|| Error::not_found("payment type", item.payment_type_id))?;
                types.insert(t.id, t);
            }
            let t = &types[&item.payment_type_id];
            if !t.methods.contains(&method.kind) {
                return Err(Error::invalid(
                    "method",
                    format!("{} is not accepted for {}", method.kind.as_str(), t.name),
                ));
            }
        }
        let now = self.inner.clock.now();
        let ttl =
            chrono::Duration::from_std(self.inner.transaction_ttl).unwrap_or(chrono::Duration::MAX);
        let (tx, event) = Transaction::create(&cart, &method, &items, key, actor, now, now + ttl)?;
        if tx.total.compare(&creditor.max_transaction_amount) == Some(std::cmp::Ordering::Greater) {
            return Err(Error::invalid(
                "total",
                format!("must not exceed {}", creditor.max_transaction_amount),
            ));
        }
        let created = self.store_ref().create_transaction(&tx, &event).await?;
        if !created.created {
            return Self::replayed_checkout(created.transaction, cart.id);
        }
        let tx = created.transaction;

        let request = StartRequest {
            transaction: tx.clone(),
            creditor,
            method,
            return_url: self.inner.return_url.clone(),
        };
        let started = match gateway.start(&request).await {
            Ok(s) => s,
            Err(e) => {
                let note = format!("gateway start failed: {e}");
                // The transaction fails and frees its items; the gateway's error is returned.
                self.apply(&tx, TxStatus::Failed, &Actor::System, Change::note(note))
                    .await?;
                return Err(e);
            }
        };
        let change = Change {
            provider_ref: started.provider_ref.clone(),
            instruction: Some(started.instruction.clone()),
            expires_at: started.expires_at,
            ..Change::default()
        };
        let actor = Actor::Gateway {
            id: tx.gateway_id.clone(),
        };
        let tx = match self.apply(&tx, TxStatus::Pending, &actor, change).await {
            Ok(t) => t,
            // A callback overtook the start (it moved the transaction on): show where it is.
            Err(Error::Conflict(Conflict::StaleState { .. })) => {
                self.load_transaction(tx.id).await?
            }
            Err(e) => return Err(e),
        };
        let tx = if started.instruction == Instruction::Completed && tx.status == TxStatus::Pending
        {
            self.apply(&tx, TxStatus::Paid, &actor, Change::default())
                .await?
        } else {
            tx
        };
        self.remember_started(&tx);
        Ok(Checkout {
            transaction: tx,
            instruction: started.instruction,
        })
    }

    pub(super) fn replayed_checkout(existing: Transaction, cart: CartId) -> Result<Checkout> {
        if existing.cart_id != cart {
            return Err(Error::Conflict(Conflict::Other(
                "this idempotency key was used for another cart".into(),
            )));
        }
        match existing.instruction.clone() {
            Some(instruction) => Ok(Checkout {
                transaction: existing,
                instruction,
            }),
            None if existing.status == TxStatus::Created => {
                Err(Error::Conflict(Conflict::InProgress {
                    what: format!("checkout {}", existing.id),
                }))
            }
            None => Err(Error::Conflict(Conflict::Other(format!(
                "the checkout with this key ended {}",
                existing.status
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::service::testkit::*;

    #[tokio::test]
    async fn checkout_refuses_a_method_the_type_does_not_accept_before_touching_anything() {
        let (mut s, item) = sample().await;
        s.method.kind = crate::MethodKind::BankTransfer;
        let mut store = store_for_checkout(&s, &item);
        store.expect_create_transaction().never();
        store.expect_transition().never();
        let gateway = gateway_with(|g| {
            g.expect_start().never();
        });
        let p = service(store, gateway, MockNotifier::new());
        let err = p
            .checkout(&Actor::payer("alice"), s.cart.id, s.method.id, "k")
            .await
            .unwrap_err();
        assert_eq!(err.validation_errors().unwrap().fields(), ["method"]);
    }

    /// The start leaves the transaction `Pending`, and the service keeps that copy: the
    /// provider's outcome is applied to it with no read first (the store's
    /// compare-and-set checks it), once; a replay reads the transaction.
    #[tokio::test]
    async fn a_callback_for_a_transaction_started_here_is_applied_without_reading_it() {
        let (s, item) = sample().await;
        let mut store = store_for_checkout(&s, &item);
        // The store's row: created by the checkout, moved by compare-and-set.
        let row: Arc<std::sync::Mutex<Option<Transaction>>> = Arc::default();
        let created = row.clone();
        store
            .expect_create_transaction()
            .times(1)
            .returning(move |tx, _| {
                *created.lock().unwrap() = Some(tx.clone());
                Ok(crate::TransactionCreated {
                    transaction: tx.clone(),
                    created: true,
                })
            });
        let moved = row.clone();
        store.expect_transition().times(2).returning(move |t| {
            let mut row = moved.lock().unwrap();
            let tx = row.as_mut().unwrap();
            if tx.status != t.from {
                return Err(Error::Conflict(Conflict::StaleState {
                    transaction: tx.id.to_string(),
                    expected: t.from.to_string(),
                    actual: tx.status.to_string(),
                }));
            }
            tx.status = t.to;
            tx.provider_ref = t.provider_ref.clone().or(tx.provider_ref.take());
            Ok(tx.clone())
        });
        let read = row.clone();
        store
            .expect_transaction()
            .times(1)
            .returning(move |_| Ok(read.lock().unwrap().clone()));
        store.expect_transaction_by_provider_ref().never();
        let reported = row.clone();
        let gateway = gateway_with(move |g| {
            g.expect_start().times(1).returning(|_| {
                Ok(
                    Started::new(Instruction::redirect("https://pay.example/s-1"))
                        .with_provider_ref("s-1"),
                )
            });
            g.expect_parse_callback().times(2).returning(move |_| {
                let tx = reported.lock().unwrap().clone().unwrap();
                Ok(CallbackEvent::new(PaymentOutcome::Paid, tx.total)
                    .with_transaction_id(tx.id)
                    .with_provider_ref("s-1"))
            });
        });
        let p = service(store, gateway, MockNotifier::new());
        let checkout = p
            .checkout(&Actor::payer("alice"), s.cart.id, s.method.id, "k")
            .await
            .unwrap();
        assert_eq!(checkout.transaction.status, TxStatus::Pending);
        let paid = p
            .handle_callback("sandbox", &CallbackRequest::new("{}"))
            .await
            .unwrap();
        assert!(paid.applied);
        assert_eq!(paid.transaction.status, TxStatus::Paid);
        // The provider sends it again: the copy served once, so the transaction is read,
        // and the replay changes nothing.
        let replay = p
            .handle_callback("sandbox", &CallbackRequest::new("{}"))
            .await
            .unwrap();
        assert!(!replay.applied);
        assert_eq!(replay.transaction.status, TxStatus::Paid);
    }

    #[tokio::test]
    async fn a_gateway_that_fails_to_start_fails_the_transaction_and_frees_the_items() {
        let (s, item) = sample().await;
        let (mut failed, _) = pending_transaction().await;
        failed.status = TxStatus::Failed;
        let mut store = store_for_checkout(&s, &item);
        store
            .expect_create_transaction()
            .times(1)
            .returning(|tx, _| {
                Ok(crate::TransactionCreated {
                    transaction: tx.clone(),
                    created: true,
                })
            });
        // The store frees the items on a move to Failed (its contract); the service asks for it.
        store
            .expect_transition()
            .withf(|t| {
                t.from == TxStatus::Created
                    && t.to == TxStatus::Failed
                    && t.outbox.is_empty()
                    && t.note.as_deref().is_some_and(|n| n.contains("unavailable"))
            })
            .times(1)
            .returning(move |_| Ok(failed.clone()));
        let gateway = gateway_with(|g| {
            g.expect_start()
                .times(1)
                .returning(|_| Err(Error::gateway("sandbox", GatewayErrorKind::Unavailable)));
        });
        let p = service(store, gateway, MockNotifier::new());
        let err = p
            .checkout(&Actor::payer("alice"), s.cart.id, s.method.id, "k")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }
}
