//! What the card providers' tests share: the service on one gateway, with the fixture's
//! creditor and its fees payable by the gateway's methods.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use chrono::Utc;
use payments_core::testing::Fixture;
use payments_core::*;

/// Where the providers send the payer back.
pub const RETURN: &str = "https://portale.example.it/pagamenti/esito";

/// The service and its parts, for one gateway.
pub struct Service {
    pub payments: Payments,
    pub notifier: Arc<RecordingNotifier>,
    pub fx: Fixture,
    /// A manager of the fixture's creditor.
    pub operator: Actor,
    pub clock: Arc<ManualClock>,
}

/// `gateway` on `store`, with the fixture installed for `kinds`, and its fees payable by
/// them (and by bank transfer).
pub async fn service(
    gateway: Arc<dyn Gateway>,
    store: Arc<dyn Store>,
    kinds: &[MethodKind],
) -> Service {
    let notifier = Arc::new(RecordingNotifier::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let id = gateway.id();
    let payments = Payments::builder()
        .store(store)
        .gateway(gateway)
        .notifier(notifier.clone())
        .clock(clock.clone())
        .return_url(RETURN)
        .build()
        .unwrap();
    let mut fx = Fixture::install(&payments, id.as_str(), kinds)
        .await
        .unwrap();
    fx.fees = fx
        .fees
        .clone()
        .with_methods(kinds.iter().copied().chain([MethodKind::BankTransfer]));
    payments
        .define_payment_type(&Actor::System, &fx.fees)
        .await
        .unwrap();
    let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");
    Service {
        payments,
        notifier,
        fx,
        operator,
        clock,
    }
}
