//! The quick start: a body, a payment type, a card method served by the sandbox, and a
//! citizen who puts a module's item and a free payment in the cart and pays them in one
//! transaction; all in memory.
//!
//! ```sh
//! cargo run -p payments-gateways --example quick_start
//! ```

use std::sync::Arc;

use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    // The parts: a store, a provider, who is told of payments.
    let sandbox = Arc::new(SandboxGateway::new(
        "a signing key only the sandbox and we know",
    ));
    let mail = Arc::new(RecordingNotifier::new());
    let taxes = Arc::new(RecordingListener::new());
    let payments = Payments::builder()
        .store(Arc::new(InMemoryStore::new()))
        .gateway(sandbox.clone())
        .notifier(mail.clone())
        .listener("tributi", taxes.clone())
        .build()?;

    // The body, what it collects, and how.
    let system = Actor::System;
    let body = Creditor::new(
        "Comune di Esempio",
        "00488410010",
        "ragioneria@comune.example.it",
    )?;
    payments.register_creditor(&system, &body).await?;
    let tari = PaymentType::new(body.id, "tari", "TARI - Tassa rifiuti");
    let fees =
        PaymentType::new(body.id, "diritti", "Diritti di segreteria").with_free_payments(true);
    for t in [&tari, &fees] {
        payments.define_payment_type(&system, t).await?;
    }
    let card = PaymentMethod::new(body.id, MethodKind::Card, "sandbox");
    payments.enable_method(&system, &card).await?;

    // A citizen's cart: the taxes module's item, and a free payment.
    let mario = Actor::payer("RSSMRA80A01H501U");
    let payer = Payer::new("RSSMRA80A01H501U", "Mario Rossi").with_email("mario@example.it");
    let cart = payments.open_cart(&mario, body.id, payer).await?;
    let due = NewItem::new(
        Source::new("tributi", "TARI-2026-1"),
        tari.id,
        "TARI 2026, rata 1",
        Money::parse_eur("182.40")?,
    );
    payments.add_item(&mario, cart.id, due).await?;
    let free = NewFreeItem::new(fees.id, "16,00", "Diritti di segreteria, pratica 2026/15");
    payments.add_free_item(&mario, cart.id, free).await?;

    // One transaction for both; the payer goes to the provider's page.
    let checkout = payments
        .checkout(&mario, cart.id, card.id, "checkout-1")
        .await?;
    let Instruction::Redirect { url, .. } = &checkout.instruction else {
        return Err("the sandbox answers with a page".into());
    };
    println!(
        "pay {} at {url}",
        checkout.transaction.total.format(Locale::It)
    );

    // The provider calls back, signed; the library verifies it and applies it once.
    let session = url.rsplit('/').next().unwrap_or_default();
    let callback = sandbox.complete(session, PaymentOutcome::Paid)?;
    let outcome = payments.handle_callback("sandbox", &callback).await?;
    println!(
        "transaction {} is {}",
        outcome.transaction.id, outcome.transaction.status
    );

    // The worker delivers the receipt, the body's notice and the module's settlement.
    payments.dispatch_outbox().await?;
    for (_, mail) in mail.sent() {
        println!("mail: {}", mail.subject);
    }
    for s in taxes.heard() {
        println!("module tributi: {} paid ({})", s.source.key, s.amount);
    }
    Ok(())
}
