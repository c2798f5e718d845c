//! A bank transfer: the payer gets IBAN, amount and an `RF` creditor reference (and an EPC
//! QR code), pays from their bank, and the body imports its camt.053 statement: the credit
//! that carries the reference pays the transaction, anything else waits for an operator.
//!
//! ```sh
//! cargo run -p payments-gateways --example bank_statement
//! ```

use std::sync::Arc;

use payments_core::*;
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let bank = Arc::new(BankTransferGateway::new());
    let payments = Payments::builder()
        .store(Arc::new(InMemoryStore::new()))
        .gateway(bank.clone())
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
    let transfer = PaymentMethod::new(body.id, MethodKind::BankTransfer, "bank_transfer");
    payments.enable_method(&system, &transfer).await?;
    bank.set_account(
        body.id,
        BankAccount::new(
            "Comune di Esempio - Tesoreria",
            "IT60 X054 2811 1010 0000 0123 456",
        )?,
    );

    let mario = Actor::payer("mario");
    let cart = payments
        .open_cart(&mario, body.id, Payer::new("mario", "Mario Rossi"))
        .await?;
    let free = NewFreeItem::new(fees.id, "16,00", "Diritti di segreteria, pratica 2026/15");
    payments.add_free_item(&mario, cart.id, free).await?;
    let checkout = payments
        .checkout(&mario, cart.id, transfer.id, "checkout-1")
        .await?;
    let Instruction::BankTransfer(details) = &checkout.instruction else {
        return Err("a bank transfer answers with its details".into());
    };
    println!(
        "transfer {} to {} ({}), reference {}",
        details.amount.format(Locale::It),
        details.iban,
        details.beneficiary,
        details.reference
    );

    // The treasury's statement, the next day: the payer's credit and one nobody can place.
    let entry = |n: u32, amount: &str, text: &str| {
        format!(
            r#"<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2026-11-21</Dt></BookgDt><AcctSvcrRef>BANK-{n}</AcctSvcrRef><NtryDtls><TxDtls>
<RltdPties><Dbtr><Pty><Nm>MARIO ROSSI</Nm></Pty></Dbtr></RltdPties><RmtInf><Ustrd>{text}</Ustrd></RmtInf>
</TxDtls></NtryDtls></Ntry>"#
        )
    };
    let statement = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>STATEMENT-2026-11-21</MsgId><CreDtTm>2026-11-21T22:00:00</CreDtTm></GrpHdr>
<Stmt><Id>1</Id><Acct><Id><IBAN>IT60X0542811101000000123456</IBAN></Id></Acct>
{}{}</Stmt></BkToCstmrStmt></Document>"#,
        entry(1, "16.00", &format!("DIRITTI {}", details.reference)),
        entry(2, "99.00", "VERSAMENTO")
    );
    let operator = Actor::operator(body.id, Role::Manager, "anna");
    let report = bank
        .import_statement(&payments, &operator, body.id, statement.as_bytes())
        .await?;
    for e in &report.matched {
        println!("matched: {} {}", e.amount, e.remittance);
    }
    for e in &report.exceptions {
        println!("to check: {} {}", e.amount, e.remittance);
    }
    let tx = payments
        .transaction(&mario, checkout.transaction.id)
        .await?;
    println!("transaction {} is {}", tx.id, tx.status);
    Ok(())
}
