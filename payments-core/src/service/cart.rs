//! The payer's cart: items from modules, free payments, and the methods that can pay them.

use super::Payments;
use crate::item::check_reason;
use crate::{
    Actor, Cart, CartContents, CartId, Conflict, CreditorId, Error, FREE_PAYMENT_MODULE, ItemId,
    ItemState, Money, NewFreeItem, NewItem, PayableItem, Payer, PaymentMethod, PaymentType, Result,
    Source, ValidationErrors,
};

/// How long the service keeps whose a cart is: any time is right, since it never
/// changes; an hour bounds what a cart no one uses any more takes.
pub(super) const CART_OWNER_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whose a cart is: what never changes once it is opened (its payer's details do).
#[derive(Debug, Clone)]
pub(super) struct CartOwner {
    pub(super) id: CartId,
    pub(super) creditor_id: CreditorId,
    pub(super) payer_id: crate::PayerId,
}

impl CartOwner {
    pub(super) fn of(cart: &Cart) -> Self {
        CartOwner {
            id: cart.id,
            creditor_id: cart.creditor_id,
            payer_id: cart.payer.id.clone(),
        }
    }
}

impl Payments {
    // ---------------------------------------------------------------- cart

    /// The payer's cart at `creditor`, opened if they have none.
    pub async fn open_cart(
        &self,
        actor: &Actor,
        creditor: CreditorId,
        payer: Payer,
    ) -> Result<Cart> {
        actor.check_payer_access(&creditor, &payer.id)?;
        payer.validate()?;
        self.creditor(creditor).await?;
        let cart = Cart {
            id: CartId::new(),
            creditor_id: creditor,
            payer,
            created_at: self.inner.clock.now(),
        };
        let cart = self.store_ref().open_cart(&cart).await?;
        self.inner.cart_owners.put(cart.id, CartOwner::of(&cart));
        Ok(cart)
    }

    /// Whose `cart` is, for an actor who may act for its payer: from the cache of owners
    /// when it holds the cart (a cart's creditor and payer never change), else read.
    async fn cart_owner(&self, actor: &Actor, cart: CartId) -> Result<CartOwner> {
        if let Some(owner) = self.inner.cart_owners.get(&cart) {
            actor.check_payer_access(&owner.creditor_id, &owner.payer_id)?;
            return Ok(owner);
        }
        let owner = CartOwner::of(&self.cart_for(actor, cart).await?);
        self.inner.cart_owners.put(cart, owner.clone());
        Ok(owner)
    }

    /// The cart, for an actor who may act for its payer.
    async fn cart_for(&self, actor: &Actor, cart: CartId) -> Result<Cart> {
        let cart = self
            .store_ref()
            .cart(cart)
            .await?
            .ok_or_else(|| Error::not_found("cart", cart))?;
        actor.check_payer_access(&cart.creditor_id, &cart.payer.id)?;
        Ok(cart)
    }

    /// The cart and its open and locked items, oldest first, for an actor who may read its
    /// payer's data (a viewer too): one read where the store can.
    pub(super) async fn cart_with_items(
        &self,
        actor: &Actor,
        cart: CartId,
    ) -> Result<(Cart, Vec<PayableItem>)> {
        let (cart, items) = self
            .store_ref()
            .cart_with_items(cart)
            .await?
            .ok_or_else(|| Error::not_found("cart", cart))?;
        actor.check_payer_read(&cart.creditor_id, &cart.payer.id)?;
        Ok((cart, items))
    }

    pub(super) async fn payment_type_of(
        &self,
        creditor: CreditorId,
        id: crate::PaymentTypeId,
        errors: &mut ValidationErrors,
    ) -> Result<Option<PaymentType>> {
        match self.payment_type(id).await? {
            Some(t) if t.creditor_id == creditor => Ok(Some(t)),
            _ => {
                errors.push("payment_type_id", crate::Problem::Unknown);
                Ok(None)
            }
        }
    }

    /// Puts an item a module wants paid in the cart. Adding the same source twice returns
    /// the first item (a removed item comes back); adding it again with another amount,
    /// reason or due date changes it while it is open, and is refused with
    /// [`Conflict::ItemUnavailable`] once it is in a payment or paid: an old amount is never
    /// what gets paid.
    pub async fn add_item(
        &self,
        actor: &Actor,
        cart: CartId,
        item: NewItem,
    ) -> Result<PayableItem> {
        let cart = self.cart_owner(actor, cart).await?;
        let creditor = self.creditor(cart.creditor_id).await?;
        let mut errors = ValidationErrors::default();
        item.source.check(&mut errors);
        let reason = check_reason(&mut errors, &item.reason);
        let mut extra = Default::default();
        if let Some(t) = self
            .payment_type_of(cart.creditor_id, item.payment_type_id, &mut errors)
            .await?
        {
            if let Err(reason) = t.check_amount(&item.amount, &creditor) {
                errors.push("amount", reason);
            }
            extra = t.check_extra(&item.extra, &mut errors);
        }
        errors.into_result()?;
        let added = self
            .insert_item(
                &cart,
                item.source,
                item.payment_type_id,
                reason.clone(),
                item.amount,
                item.due_date,
                extra,
            )
            .await?;
        if added.amount == item.amount && added.reason == reason && added.due_date == item.due_date
        {
            return Ok(added);
        }
        // The module recalculated what is due: a module acts as the system (or a manager
        // for it), never as the payer, who would choose what they pay.
        if matches!(actor, Actor::Payer { .. }) {
            return Err(Error::Conflict(Conflict::Other(format!(
                "source {}/{} is already in the cart at {}: the module changes it \
                 (Payments::update_item), not the payer",
                added.source.module, added.source.key, added.amount
            ))));
        }
        self.check_not_positional(&added).await?;
        let mut changed = added;
        changed.amount = item.amount;
        changed.reason = reason;
        changed.due_date = item.due_date;
        self.store_ref().update_item(&changed).await
    }

    /// Changes an item still open in a cart: the module that created it (the system) or a
    /// manager of its creditor, after a due was recalculated, say. Refused with
    /// [`Conflict::ItemUnavailable`] once it is in a payment in progress or paid, and checked
    /// as [`Payments::add_item`] checks a new one; nothing changes on a refusal.
    pub async fn update_item(
        &self,
        actor: &Actor,
        item: ItemId,
        update: crate::ItemUpdate,
    ) -> Result<PayableItem> {
        let current = self
            .store_ref()
            .item(item)
            .await?
            .ok_or_else(|| Error::not_found("item", item))?;
        actor.check_operator(&current.creditor_id, crate::Role::Manager)?;
        self.check_not_positional(&current).await?;
        let creditor = self.creditor(current.creditor_id).await?;
        let mut errors = ValidationErrors::default();
        let mut next = current.clone();
        if let Some(reason) = &update.reason {
            next.reason = check_reason(&mut errors, reason);
        }
        if let Some(amount) = update.amount {
            next.amount = amount;
            if let Some(t) = self
                .payment_type_of(current.creditor_id, current.payment_type_id, &mut errors)
                .await?
                && let Err(reason) = t.check_amount(&amount, &creditor)
            {
                errors.push("amount", reason);
            }
        }
        if let Some(due) = update.due_date {
            next.due_date = due;
        }
        errors.into_result()?;
        self.store_ref().update_item(&next).await
    }

    /// Refuses a change of an item that pays a debt position's option: its amount, due
    /// date and transfers are the position's, changed with
    /// [`Payments::update_position`].
    async fn check_not_positional(&self, item: &PayableItem) -> Result<()> {
        if self
            .position_option_of(item.creditor_id, &item.source)
            .await?
            .is_some()
        {
            return Err(Error::Conflict(Conflict::Other(format!(
                "item {} pays a debt position's option: change the position (update_position)",
                item.id
            ))));
        }
        Ok(())
    }

    /// Withdraws an item still open in a cart (the module no longer wants it paid): the
    /// system or a manager of its creditor. Refused with [`Conflict::ItemUnavailable`] once
    /// it is in a payment in progress or paid.
    pub async fn withdraw_item(&self, actor: &Actor, item: ItemId) -> Result<PayableItem> {
        let current = self
            .store_ref()
            .item(item)
            .await?
            .ok_or_else(|| Error::not_found("item", item))?;
        actor.check_operator(&current.creditor_id, crate::Role::Manager)?;
        self.store_ref().remove_item(item).await
    }

    /// Puts a free payment (*pagamento libero*) the payer filled in in the cart, after
    /// checking it against its payment type. All problems are reported at once, each with
    /// its field.
    pub async fn add_free_item(
        &self,
        actor: &Actor,
        cart: CartId,
        item: NewFreeItem,
    ) -> Result<PayableItem> {
        let cart = self.cart_for(actor, cart).await?;
        let creditor = self.creditor(cart.creditor_id).await?;
        let mut errors = ValidationErrors::default();
        let reason = check_reason(&mut errors, &item.reason);
        let Some(type_id) = item.payment_type_id else {
            errors.push("payment_type_id", crate::Problem::Required);
            return Err(Error::Validation(errors));
        };
        let Some(t) = self
            .payment_type_of(cart.creditor_id, type_id, &mut errors)
            .await?
        else {
            return Err(Error::Validation(errors));
        };
        if !t.free_payments {
            errors.push("payment_type_id", crate::Problem::NoFreePayments);
        }
        let amount = match (item.amount.as_deref().map(str::trim), &t.amount_rule) {
            (None | Some(""), crate::AmountRule::Fixed { amount }) => Some(*amount),
            (None | Some(""), _) => {
                errors.push("amount", crate::Problem::Required);
                None
            }
            // Read as the payer means it in their language: "1.000" is a thousand euro to
            // an Italian.
            (Some(text), _) => match Money::parse_in(text, crate::Currency::Eur, cart.payer.locale)
            {
                Ok(m) => Some(m),
                Err(e) => {
                    errors.push("amount", e);
                    None
                }
            },
        };
        if let Some(amount) = &amount
            && let Err(reason) = t.check_amount(amount, &creditor)
        {
            errors.push("amount", reason);
        }
        let extra = t.check_extra(&item.extra, &mut errors);
        errors.into_result()?;
        // The form's token makes a second submission (a double click) the first one's
        // item; per payer, so no one reaches another's item by its token.
        let key = match item.token.as_deref().map(str::trim) {
            None | Some("") => uuid::Uuid::now_v7().to_string(),
            Some(token) => {
                if token.len() > crate::MAX_FORM_TOKEN_LEN
                    || !token
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(Error::invalid(
                        "token",
                        "a form token has 1 to 64 letters, digits, - or _",
                    ));
                }
                format!("{token}@{}", cart.payer.id)
            }
        };
        let source = Source::new(FREE_PAYMENT_MODULE, key);
        let amount = amount.ok_or_else(|| Error::invalid("amount", "required"))?;
        let added = self
            .insert_item(
                &CartOwner::of(&cart),
                source,
                type_id,
                reason.clone(),
                amount,
                None,
                extra.clone(),
            )
            .await?;
        // The same form sent again with other values (restored by the back button and
        // changed): not taken as the first one, nor as a new payment.
        if item.token.is_some()
            && (added.amount != amount || added.reason != reason || added.extra != extra)
        {
            return Err(Error::Conflict(Conflict::Other(
                "this form was already sent with other values: open a new one".into(),
            )));
        }
        Ok(added)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn insert_item(
        &self,
        cart: &CartOwner,
        source: Source,
        payment_type_id: crate::PaymentTypeId,
        reason: String,
        amount: Money,
        due_date: Option<chrono::NaiveDate>,
        extra: std::collections::BTreeMap<String, String>,
    ) -> Result<PayableItem> {
        let item = PayableItem {
            id: ItemId::new(),
            creditor_id: cart.creditor_id,
            cart_id: cart.id,
            payer_id: cart.payer_id.clone(),
            source,
            payment_type_id,
            reason,
            amount,
            due_date,
            extra,
            state: ItemState::Open,
            created_at: self.inner.clock.now(),
        };
        let added = self.store_ref().add_item(&item).await?;
        if added.item.payer_id != cart.payer_id {
            return Err(Error::Conflict(Conflict::Other(format!(
                "source {}/{} belongs to another payer",
                item.source.module, item.source.key
            ))));
        }
        Ok(added.item)
    }

    /// Takes an open item out of the cart.
    pub async fn remove_item(
        &self,
        actor: &Actor,
        cart: CartId,
        item: ItemId,
    ) -> Result<PayableItem> {
        let cart = self.cart_owner(actor, cart).await?;
        match self.store_ref().item(item).await? {
            Some(i) if i.cart_id == cart.id => self.store_ref().remove_item(item).await,
            _ => Err(Error::not_found("item", item)),
        }
    }

    /// What the cart holds: open items and items in an unfinished transaction; the total is
    /// that of the open ones, what a checkout would charge.
    pub async fn cart(&self, actor: &Actor, cart: CartId) -> Result<CartContents> {
        let (cart, items) = self.cart_with_items(actor, cart).await?;
        let total = Money::sum(
            crate::Currency::Eur,
            items
                .iter()
                .filter(|i| i.state == ItemState::Open)
                .map(|i| &i.amount),
        )
        .map_err(|e| Error::invalid("total", e.to_string()))?;
        Ok(CartContents { cart, items, total })
    }

    /// The methods that can pay everything open in the cart: enabled at its creditor, served
    /// by a registered gateway, and accepted by every open item's payment type. This is the
    /// choice a checkout page offers; an empty cart can be paid by none.
    pub async fn cart_methods(&self, actor: &Actor, cart: CartId) -> Result<Vec<PaymentMethod>> {
        let (cart, items) = self.cart_with_items(actor, cart).await?;
        let open: Vec<_> = items
            .iter()
            .filter(|i| i.state == ItemState::Open)
            .collect();
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let mut types = Vec::new();
        for item in &open {
            if !types
                .iter()
                .any(|t: &PaymentType| t.id == item.payment_type_id)
            {
                let t = self
                    .payment_type(item.payment_type_id)
                    .await?
                    .ok_or_else(|| Error::not_found("payment type", item.payment_type_id))?;
                types.push(t);
            }
        }
        let mut methods = self.methods(cart.creditor_id).await?;
        methods.retain(|m| {
            self.inner.gateways.contains_key(&m.gateway_id)
                && types.iter().all(|t| t.methods.contains(&m.kind))
        });
        Ok(methods)
    }
}

#[cfg(test)]
mod tests {
    use crate::service::testkit::*;

    /// Whose a cart is never changes: items go into a cart read once, and every call
    /// still checks that the actor may act for its payer.
    #[tokio::test]
    async fn items_go_into_a_cart_read_once_and_access_is_checked_each_time() {
        let (s, _) = sample().await;
        let mut store = MockStore::new();
        let (cart, creditor, ptype) = (s.cart.clone(), s.creditor.clone(), s.payment_type.clone());
        store
            .expect_cart()
            .times(1)
            .returning(move |_| Ok(Some(cart.clone())));
        store
            .expect_creditor()
            .returning(move |_| Ok(Some(creditor.clone())));
        store
            .expect_payment_type()
            .returning(move |_| Ok(Some(ptype.clone())));
        store.expect_add_item().times(2).returning(|i| {
            Ok(ItemAdded {
                item: i.clone(),
                created: true,
            })
        });
        let p = service(store, gateway_with(|_| {}), MockNotifier::new());
        let new = |key: &str| {
            NewItem::new(
                Source::new("tributi", key),
                s.payment_type.id,
                "TARI",
                Money::parse_eur("10.00").unwrap(),
            )
        };
        let payer = s.cart.payer.id.0.as_str();
        for key in ["x", "y"] {
            let added = p
                .add_item(&Actor::payer(payer), s.cart.id, new(key))
                .await
                .unwrap();
            assert_eq!((added.cart_id, &added.source.key[..]), (s.cart.id, key));
        }
        let other = p
            .add_item(&Actor::payer("someone-else"), s.cart.id, new("z"))
            .await
            .unwrap_err();
        assert!(matches!(other, Error::Forbidden { .. }), "{other:?}");
    }
}
