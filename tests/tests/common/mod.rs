//! What every integration test sets up: the service on the in-memory store with the
//! sandbox gateway, a recording notifier, two modules' listeners and a manual clock.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;

pub const KEY: &str = "integration-test-signing-key";

pub struct Env {
    pub payments: Payments,
    pub sandbox: Arc<SandboxGateway>,
    pub notifier: Arc<RecordingNotifier>,
    pub tributi: Arc<RecordingListener>,
    pub edilizia: Arc<RecordingListener>,
    pub clock: Arc<ManualClock>,
    pub fx: Fixture,
}

impl Env {
    pub async fn new() -> Env {
        Env::with_notifier(RecordingNotifier::new()).await
    }

    pub async fn with_notifier(notifier: RecordingNotifier) -> Env {
        let sandbox = Arc::new(SandboxGateway::new(KEY));
        let notifier = Arc::new(notifier);
        let tributi = Arc::new(RecordingListener::new());
        let edilizia = Arc::new(RecordingListener::new());
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 5, 4, 10, 0, 0).single().unwrap(),
        ));
        let payments = Payments::builder()
            .store(Arc::new(InMemoryStore::new()))
            .gateway(sandbox.clone())
            .notifier(notifier.clone())
            .listener("tributi", tributi.clone())
            .listener("edilizia", edilizia.clone())
            .clock(clock.clone())
            .retry_policy(RetryPolicy {
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
                max_attempts: 5,
                lease: Duration::from_secs(30),
            })
            .return_url("http://localhost:3000/return")
            .build()
            .unwrap();
        let fx = Fixture::install(
            &payments,
            "sandbox",
            &[MethodKind::Card, MethodKind::SepaDirectDebit],
        )
        .await
        .unwrap();
        Env {
            payments,
            sandbox,
            notifier,
            tributi,
            edilizia,
            clock,
            fx,
        }
    }

    /// Opens `payer`'s cart and returns it with the payer's actor.
    pub async fn cart(&self, payer: &str) -> (Actor, Cart) {
        let actor = Actor::payer(payer);
        let cart = self
            .payments
            .open_cart(&actor, self.fx.creditor.id, Fixture::payer(payer))
            .await
            .unwrap();
        (actor, cart)
    }

    /// A TARI item from the `tributi` module.
    pub fn tari(&self, key: &str, amount: &str) -> NewItem {
        NewItem::new(
            Source::new("tributi", key),
            self.fx.tari.id,
            format!("TARI {key}"),
            Money::parse_eur(amount).unwrap(),
        )
        .with_extra("year", "2026")
    }

    /// A building charge from the `edilizia` module (fixed € 150,00).
    pub fn building(&self, key: &str) -> NewItem {
        NewItem::new(
            Source::new("edilizia", key),
            self.fx.building.id,
            format!("Oneri pratica {key}"),
            Money::parse_eur("150").unwrap(),
        )
    }

    /// A well-formed free payment of secretarial fees.
    pub fn fee(&self, amount: &str) -> NewFreeItem {
        NewFreeItem::new(
            self.fx.fees.id,
            amount,
            "Diritti di segreteria pratica 2026/7",
        )
        .with_extra("case_number", "2026/7")
        .with_extra("office", "edilizia")
    }

    pub fn card(&self) -> MethodId {
        self.fx.method(MethodKind::Card).id
    }

    /// A cart with one TARI item, checked out by card.
    pub async fn pending(&self, payer: &str, key: &str) -> (Actor, Checkout) {
        let (actor, cart) = self.cart(payer).await;
        self.payments
            .add_item(&actor, cart.id, self.tari(key, "80.00"))
            .await
            .unwrap();
        let checkout = self
            .payments
            .checkout(&actor, cart.id, self.card(), &format!("checkout-{key}"))
            .await
            .unwrap();
        (actor, checkout)
    }

    /// The sandbox session of a checkout.
    pub fn session(checkout: &Checkout) -> String {
        match &checkout.instruction {
            Instruction::Redirect { url, .. } => url.rsplit('/').next().unwrap().to_owned(),
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    /// The signed callback the sandbox sends when the payer completes with `outcome`.
    pub fn callback(&self, checkout: &Checkout, outcome: PaymentOutcome) -> CallbackRequest {
        self.sandbox
            .complete(&Env::session(checkout), outcome)
            .unwrap()
    }
}
