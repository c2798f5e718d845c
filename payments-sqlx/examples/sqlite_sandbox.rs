//! The same service on a SQLite file (created and migrated at start), with the sandbox
//! gateway: a payment, then the payer's history and an operator's search, which survive a
//! restart.
//!
//! ```sh
//! cargo run -p payments-sqlx --example sqlite_sandbox
//! ```

use std::sync::Arc;

use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;
use payments_sqlx::SqlxStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let file = std::env::temp_dir().join("payments-example.db");
    let _ = std::fs::remove_file(&file);
    let store = Arc::new(SqlxStore::connect(&format!("sqlite://{}", file.display())).await?);
    let sandbox = Arc::new(SandboxGateway::new(
        "a signing key only the sandbox and we know",
    ));
    let payments = Payments::builder()
        .store(store)
        .gateway(sandbox.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .build()?;

    let system = Actor::System;
    let body = Creditor::new(
        "Comune di Esempio",
        "00488410010",
        "ragioneria@comune.example.it",
    )?;
    payments.register_creditor(&system, &body).await?;
    let fees =
        PaymentType::new(body.id, "diritti", "Diritti di segreteria").with_free_payments(true);
    payments.define_payment_type(&system, &fees).await?;
    let card = PaymentMethod::new(body.id, MethodKind::Card, "sandbox");
    payments.enable_method(&system, &card).await?;

    let mario = Actor::payer("mario");
    let cart = payments
        .open_cart(&mario, body.id, Payer::new("mario", "Mario Rossi"))
        .await?;
    let free = NewFreeItem::new(fees.id, "16,00", "Diritti di segreteria, pratica 2026/15");
    payments.add_free_item(&mario, cart.id, free).await?;
    let checkout = payments
        .checkout(&mario, cart.id, card.id, "checkout-1")
        .await?;
    let Instruction::Redirect { url, .. } = &checkout.instruction else {
        return Err("the sandbox answers with a page".into());
    };
    let callback = sandbox.complete(
        url.rsplit('/').next().unwrap_or_default(),
        PaymentOutcome::Paid,
    )?;
    payments.handle_callback("sandbox", &callback).await?;

    // The payer's history and the body's movements, read back from the file.
    let history = payments
        .history(&mario, &HistoryQuery::new("mario"))
        .await?;
    for entry in &history.items {
        println!(
            "history: {} {} {}",
            entry.transaction.id, entry.transaction.total, entry.transaction.status
        );
    }
    let operator = Actor::operator(body.id, Role::Viewer, "luca");
    let found = payments
        .search(&operator, &MovementQuery::new(body.id))
        .await?;
    println!("movements: {} for {}", found.count, found.total);
    println!("database: {}", file.display());
    Ok(())
}
