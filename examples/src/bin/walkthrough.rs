//! The whole flow in a terminal, on a SQLite file with the sandbox gateway: a
//! citizen's cart with items from two modules and a free payment, one checkout, the
//! sandbox's signed callback, the receipts and the modules' settlements. Then a bank
//! transfer: the instruction with its EPC QR code, the citizen's report, and the body's
//! camt.053 statement matched to it. Last, two TARI instalments as pagoPA notices, each with
//! its notice number and QR code, settled by the receipts pagoPA sends.
//!
//! Run it with `cargo run -p payments-examples`.

use std::sync::Arc;

use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway, rf};
use payments_gateways::pagopa::{NoticeNumber, PagoPaCreditor, PagoPaGateway};
use payments_gateways::sandbox::SandboxGateway;

const IBAN: &str = "IT60X0542811101000000123456";

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
    let store: Arc<dyn Store> =
        Arc::new(payments_sqlx::SqlxStore::connect(&format!("sqlite://{}", db.display())).await?);
    let notifier = Arc::new(RecordingNotifier::new());
    let tributi = Arc::new(RecordingListener::new());
    let edilizia = Arc::new(RecordingListener::new());
    let bank = Arc::new(BankTransferGateway::new());
    // pagoPA numbers its notices from a counter in the store.
    let pagopa = Arc::new(PagoPaGateway::new(
        store.clone(),
        "walkthrough-station-key",
    )?);
    let payments = Payments::builder()
        .store(store)
        .gateway(sandbox.clone())
        .gateway(bank.clone())
        .gateway(pagopa.clone())
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
    let Instruction::Redirect { url, .. } = &checkout.instruction else {
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
    bank_transfer(&payments, &bank, &fx, &citizen).await?;
    pago_pa(&payments, &pagopa, &fx, &citizen).await?;
    println!("\nThe database: {}", db.display());
    Ok(())
}

/// A second payment, by bank transfer, matched from the body's statement.
async fn bank_transfer(
    payments: &Payments,
    bank: &BankTransferGateway,
    fx: &Fixture,
    citizen: &Actor,
) -> Result<()> {
    let admin = Actor::System;
    bank.set_account(
        fx.creditor.id,
        BankAccount::new("Comune di Esempio - Tesoreria", IBAN)?,
    );
    let transfer = PaymentMethod::new(fx.creditor.id, MethodKind::BankTransfer, "bank_transfer");
    payments.enable_method(&admin, &transfer).await?;
    let payer = Payer::new("RSSMRA85T10A562S", "Mario Rossi").with_email("mario.rossi@example.it");
    let cart = payments.open_cart(citizen, fx.creditor.id, payer).await?;
    let fee = NewFreeItem::new(
        fx.fees.id,
        "32,00",
        "Diritti di segreteria, pratica 2026/78",
    )
    .with_extra("case_number", "2026/78")
    .with_extra("office", "anagrafe");
    payments.add_free_item(citizen, cart.id, fee).await?;
    let checkout = payments
        .checkout(citizen, cart.id, transfer.id, "walkthrough-2")
        .await?;
    let Instruction::BankTransfer(details) = &checkout.instruction else {
        unreachable!("a bank transfer instruction");
    };
    println!(
        "\nBank transfer: pay {} to",
        details.amount.format(Locale::It)
    );
    println!("  {} - IBAN {}", details.beneficiary, details.iban);
    println!("  reference {}", rf::pretty(&details.reference));
    println!("  reason    {}", details.reason);
    let qr = std::env::temp_dir().join("payments-walkthrough-epc.svg");
    let code = BankTransferGateway::qr(details)
        .map_err(|e| Error::invalid("epc_qr_payload", e.to_string()))?;
    std::fs::write(&qr, code.svg(240)).map_err(|e| Error::storage("writing the QR code", e))?;
    println!("  the EPC QR code for a banking app: {}", qr.display());

    let today = chrono::Utc::now().date_naive().to_string();
    let report = TransferReport::parse(&today, "32,00", "0306909606510", "", "")?;
    let reported = payments
        .report_transfer(citizen, checkout.transaction.id, &report)
        .await?;
    println!("The citizen reports the transfer: {}", reported.status);

    // The next morning the body downloads its statement and imports it.
    let statement = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>WALKTHROUGH-1</MsgId><CreDtTm>{today}T22:00:00</CreDtTm></GrpHdr>
<Stmt><Id>1</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id></Acct>
<Ntry><Amt Ccy="EUR">32.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>{today}</Dt></BookgDt><AcctSvcrRef>0000001</AcctSvcrRef>
<NtryDtls><TxDtls><RltdPties><Dbtr><Pty><Nm>MARIO ROSSI</Nm></Pty></Dbtr></RltdPties>
<RmtInf><Ustrd>DIRITTI {}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>"#,
        rf::pretty(&details.reference)
    );
    let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");
    let imported = bank
        .import_statement(payments, &operator, fx.creditor.id, statement.as_bytes())
        .await?;
    println!(
        "The statement is imported: {} matched, {} exceptions",
        imported.matched.len(),
        imported.exceptions.len()
    );
    let tx = payments
        .transaction(citizen, checkout.transaction.id)
        .await?;
    println!(
        "The transfer is {} (bank reference {})",
        tx.status,
        tx.provider_ref.unwrap_or_default()
    );
    let again = bank
        .import_statement(payments, &operator, fx.creditor.id, statement.as_bytes())
        .await?;
    println!(
        "Imported again, it changes nothing: {} already imported",
        again.already_imported
    );
    Ok(())
}

/// Two TARI instalments as pagoPA notices, settled by pagoPA's receipts.
async fn pago_pa(
    payments: &Payments,
    pagopa: &PagoPaGateway,
    fx: &Fixture,
    citizen: &Actor,
) -> Result<()> {
    // Notices only here (no network); a portal online also gets a checkout page.
    let config = PagoPaCreditor::new("01")?
        .with_taxonomy(fx.tari.id, "0101101IM")?
        .with_iban(IBAN)?
        .notices_only();
    pagopa.set_creditor(&fx.creditor, config)?;
    let method = PaymentMethod::new(fx.creditor.id, MethodKind::PagoPa, "pagopa");
    payments.enable_method(&Actor::System, &method).await?;
    let payer = Payer::new("RSSMRA85T10A562S", "Mario Rossi").with_email("mario.rossi@example.it");
    let cart = payments.open_cart(citizen, fx.creditor.id, payer).await?;
    for (key, reason) in [
        ("TARI-2026-2", "TARI 2026, seconda rata"),
        ("TARI-2026-3", "TARI 2026, terza rata"),
    ] {
        let item = NewItem::new(
            Source::new("tributi", key),
            fx.tari.id,
            reason,
            Money::parse_eur("182,40")?,
        )
        .with_extra("year", "2026");
        payments.add_item(citizen, cart.id, item).await?;
    }
    let checkout = payments
        .checkout(citizen, cart.id, method.id, "walkthrough-3")
        .await?;
    let Instruction::PagoPa(payment) = &checkout.instruction else {
        unreachable!("a pagoPA instruction");
    };
    println!(
        "
pagoPA: two notices, payable at any bank, post office or app"
    );
    for notice in &payment.notices {
        let number = NoticeNumber::parse(&notice.notice_number)
            .map_err(|e| Error::invalid("notice_number", e.to_string()))?;
        let qr = std::env::temp_dir().join(format!("payments-walkthrough-{number}.svg"));
        let code =
            PagoPaGateway::qr(notice).map_err(|e| Error::invalid("qr_payload", e.to_string()))?;
        std::fs::write(&qr, code.svg(240)).map_err(|e| Error::storage("writing the QR code", e))?;
        println!(
            "  {:<28} {:>10}  notice {}  (QR code: {})",
            notice.description,
            notice.amount.format(Locale::It),
            number.pretty(),
            qr.display()
        );
    }

    // At the post office, pagoPA first asks the body's station about the notice.
    let first = &payment.notices[0];
    let verify = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:nod="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><nod:paGetPaymentReq>
<idPA>{fc}</idPA><idBrokerPA>{fc}</idBrokerPA><idStation>{fc}_01</idStation>
<qrCode><fiscalCode>{fc}</fiscalCode><noticeNumber>{n}</noticeNumber></qrCode><amount>182.40</amount>
</nod:paGetPaymentReq></soapenv:Body></soapenv:Envelope>"#,
        fc = first.creditor_fiscal_code,
        n = first.notice_number,
    );
    let answer = pagopa
        .station_response(payments, &pagopa.authenticated_request(verify))
        .await;
    println!(
        "pagoPA asks the station about the first notice (paGetPayment): {}",
        if answer.contains("<outcome>OK</outcome>") && answer.contains(IBAN) {
            "OK, the money goes to the body's IBAN"
        } else {
            "refused"
        }
    );

    // pagoPA sends one receipt per notice to the portal's endpoint for receipts.
    for (i, notice) in payment.notices.iter().enumerate() {
        let cents = notice.amount.minor_units();
        let euros = format!("{}.{:02}", cents / 100, cents % 100);
        let receipt = format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><pafn:paSendRTReq>
<idPA>{fc}</idPA><idBrokerPA>{fc}</idBrokerPA><idStation>{fc}_01</idStation><receipt>
<receiptId>walkthrough-{i}</receiptId><noticeNumber>{n}</noticeNumber><fiscalCode>{fc}</fiscalCode>
<outcome>OK</outcome><creditorReferenceId>{iuv}</creditorReferenceId><paymentAmount>{euros}</paymentAmount>
<debtor><fullName>Mario Rossi</fullName></debtor>
<transferList><transfer><idTransfer>1</idTransfer><transferAmount>{euros}</transferAmount><fiscalCodePA>{fc}</fiscalCodePA>
<IBAN>{IBAN}</IBAN><remittanceInformation>TARI</remittanceInformation><transferCategory>0101101IM</transferCategory></transfer></transferList>
<PSPCompanyName>Poste Italiane</PSPCompanyName><paymentMethod>PO</paymentMethod>
<paymentDateTime>2026-11-27T10:15:00</paymentDateTime></receipt></pafn:paSendRTReq></soapenv:Body></soapenv:Envelope>"#,
            fc = notice.creditor_fiscal_code,
            n = notice.notice_number,
            iuv = notice.iuv,
        );
        let request = pagopa.authenticated_request(receipt);
        let result = payments.handle_callback("pagopa", &request).await;
        let answer = PagoPaGateway::receipt_response(&result, &notice.creditor_fiscal_code);
        println!(
            "Receipt {} of 2: the transaction is {}; the portal answers pagoPA {}",
            i + 1,
            result?.transaction.status,
            if answer.contains("<outcome>OK</outcome>") {
                "OK"
            } else {
                "KO"
            }
        );
    }
    Ok(())
}
