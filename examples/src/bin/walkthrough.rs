//! The whole flow in a terminal, on a SQLite file with the sandbox gateway: a
//! citizen's cart with items from two modules and a free payment, one checkout, the
//! sandbox's signed callback, the receipts and the modules' settlements.
//!
//! Run it with `cargo run -p payments-examples`.

use std::sync::Arc;

use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let sandbox = Arc::new(
        SandboxGateway::new("walkthrough-signing-key")
            .with_base_url("http://localhost:3000/sandbox"),
    );
    // A fresh SQLite file each run; look inside afterwards with `sqlite3`.
    let db = std::env::temp_dir().join("payments-walkthrough.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let store = payments_sqlx::SqlxStore::connect(&format!("sqlite://{}", db.display())).await?;
    let notifier = Arc::new(RecordingNotifier::new());
    let tributi = Arc::new(RecordingListener::new());
    let edilizia = Arc::new(RecordingListener::new());
    let payments = Payments::builder()
        .store(Arc::new(store))
        .gateway(sandbox.clone())
        .notifier(notifier.clone())
        .listener("tributi", tributi.clone())
        .listener("edilizia", edilizia.clone())
        .build()?;
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card]).await?;
    println!(
        "Creditor: {} ({})",
        fx.creditor.name, fx.creditor.fiscal_code
    );

    let citizen = Actor::payer("RSSMRA85T10A562S");
    let payer = Payer::new("RSSMRA85T10A562S", "Mario Rossi").with_email("mario.rossi@example.it");
    let cart = payments.open_cart(&citizen, fx.creditor.id, payer).await?;

    // Two modules add what the citizen owes; the citizen adds a free payment.
    let tari = NewItem::new(
        Source::new("tributi", "TARI-2026-1"),
        fx.tari.id,
        "TARI 2026, prima rata",
        Money::parse_eur("182,40")?,
    )
    .with_extra("year", "2026");
    payments.add_item(&citizen, cart.id, tari).await?;
    let charges = NewItem::new(
        Source::new("edilizia", "PE-2026-031"),
        fx.building.id,
        "Oneri di costruzione, pratica PE-2026-031",
        Money::parse_eur("150")?,
    );
    payments.add_item(&citizen, cart.id, charges).await?;

    let bad = NewFreeItem::new(fx.fees.id, "12,345", "").with_extra("office", "piscina");
    if let Err(Error::Validation(errors)) = payments.add_free_item(&citizen, cart.id, bad).await {
        println!("A free payment filled in wrong is refused, field by field:");
        for e in &errors.0 {
            println!("  {}: {}", e.field, e.reason);
        }
    }
    let fee = NewFreeItem::new(
        fx.fees.id,
        "16,00",
        "Diritti di segreteria, pratica 2026/77",
    )
    .with_extra("case_number", "2026/77")
    .with_extra("office", "edilizia");
    payments.add_free_item(&citizen, cart.id, fee).await?;

    let contents = payments.cart(&citizen, cart.id).await?;
    println!("\nCart ({} items):", contents.items.len());
    for item in &contents.items {
        println!(
            "  {:<45} {:>12}",
            item.reason,
            item.amount.format(Locale::It)
        );
    }
    println!(
        "  {:<45} {:>12}",
        "Totale",
        contents.total.format(Locale::It)
    );

    let card = fx.method(MethodKind::Card).id;
    let checkout = payments
        .checkout(&citizen, cart.id, card, "walkthrough-1")
        .await?;
    let Instruction::Redirect { url } = &checkout.instruction else {
        unreachable!("the sandbox answers with its hosted page");
    };
    println!(
        "\nOne transaction {} for everything: go to {url}",
        checkout.transaction.id
    );

    let session = url.rsplit('/').next().unwrap_or_default();
    let callback = sandbox.complete(session, PaymentOutcome::Paid)?;
    let outcome = payments.handle_callback("sandbox", &callback).await?;
    println!(
        "The sandbox calls back, signed: the transaction is {}",
        outcome.transaction.status
    );
    let replay = payments.handle_callback("sandbox", &callback).await?;
    println!(
        "The same callback again changes nothing (applied: {})",
        replay.applied
    );

    let report = payments.dispatch_outbox().await?;
    println!("\nThe outbox delivered {} messages:", report.delivered);
    for (n, message) in notifier.sent() {
        println!("--- to {} ---\n{}\n{}", n.to, message.subject, message.text);
    }
    for s in tributi.heard().iter().chain(edilizia.heard().iter()) {
        println!(
            "Module {} learns that {} was paid",
            s.source.module, s.source.key
        );
    }

    let history = payments
        .history(&citizen, &HistoryQuery::new("RSSMRA85T10A562S"))
        .await?;
    println!("\nHistory: {} transaction(s)", history.items.len());
    for event in payments.events(&citizen, checkout.transaction.id).await? {
        println!(
            "  {} {} -> {} by {}",
            event.at.format("%H:%M:%S"),
            event.from.map(|s| s.as_str()).unwrap_or("-"),
            event.to,
            event.actor
        );
    }
    println!("\nThe database: {}", db.display());
    Ok(())
}
