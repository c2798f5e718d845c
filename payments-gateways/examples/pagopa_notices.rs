//! pagoPA notices: a body registers a TARI debt position ahead (a single payment or two
//! instalments, each with its notice number and QR code), pagoPA's node asks the body's
//! station about a notice before a bank takes its payment, and the receipt settles it.
//!
//! ```sh
//! cargo run -p payments-gateways --example pagopa_notices
//! ```

use std::sync::Arc;

use payments_core::*;
use payments_gateways::pagopa::{PagoPaCreditor, PagoPaGateway};

/// The credential pagoPA's node sends with its requests (from the environment, in real life).
const STATION_KEY: &str = "the station's credential, 16+ characters";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let pagopa = Arc::new(PagoPaGateway::new(store.clone(), STATION_KEY)?);
    let payments = Payments::builder()
        .store(store)
        .gateway(pagopa.clone())
        .notice_issuer(pagopa.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .listener("tributi", Arc::new(RecordingListener::new()))
        .build()?;

    let system = Actor::System;
    let body = Creditor::new(
        "Comune di Esempio",
        "00488410010",
        "ragioneria@comune.example.it",
    )?;
    payments.register_creditor(&system, &body).await?;
    let tari = PaymentType::new(body.id, "tari", "TARI - Tassa rifiuti");
    payments.define_payment_type(&system, &tari).await?;
    payments
        .enable_method(
            &system,
            &PaymentMethod::new(body.id, MethodKind::PagoPa, "pagopa"),
        )
        .await?;
    pagopa.set_creditor(
        &body,
        PagoPaCreditor::new("01")? // the segregation code pagoPA assigned
            .with_iban("IT60X0542811101000000123456")?
            .with_taxonomy(tari.id, "9/0101101IM/")?
            .notices_only(),
    )?;

    // The tax office issues the notice ahead.
    let eur = |s: &str| Money::parse_eur(s);
    let day = |d: &str| d.parse::<chrono::NaiveDate>();
    let manager = Actor::operator(body.id, Role::Manager, "anna");
    let position = payments
        .register_position(
            &manager,
            body.id,
            NewDebtPosition::new(
                "tributi",
                "TARI-2027-000123",
                PositionPayer::new("RSSMRA80A01H501U", "Mario Rossi"),
                tari.id,
                "TARI 2027",
            )
            .with_single(NewOption::new(eur("300.00")?, day("2027-04-30")?))
            .with_instalment(NewOption::new(eur("150.00")?, day("2027-04-30")?))
            .with_instalment(NewOption::new(eur("150.00")?, day("2027-09-30")?)),
        )
        .await?;
    for o in &position.options {
        println!(
            "{:<18} notice {}  {}  QR PAGOPA|002|{}|{}|{}",
            o.kind.describe(Locale::It),
            o.notice_number,
            o.amount.format(Locale::It),
            o.notice_number,
            body.fiscal_code,
            o.amount.minor_units()
        );
    }

    // A bank is about to take the first instalment: pagoPA's node asks the station.
    let notice = &position.options[1].notice_number;
    let verify = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:nod="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><nod:paVerifyPaymentNoticeReq>
<idPA>{cf}</idPA><idBrokerPA>{cf}</idBrokerPA><idStation>{cf}_01</idStation>
<qrCode><fiscalCode>{cf}</fiscalCode><noticeNumber>{notice}</noticeNumber></qrCode>
</nod:paVerifyPaymentNoticeReq></soapenv:Body></soapenv:Envelope>"#,
        cf = body.fiscal_code
    );
    let answer = pagopa
        .station_response(&payments, &pagopa.authenticated_request(verify))
        .await;
    println!("\nthe station answers:\n{answer}");
    Ok(())
}
