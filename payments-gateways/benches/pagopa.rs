//! `cargo bench -p payments-gateways --bench pagopa`: reading and applying pagoPA receipts.
//!
//! N `paSendRT` receipts (N = `BENCH_RECEIPTS`, 20,000 by default), as pagoPA's node
//! writes them, each paying the notice of one open transaction.
//!
//! 1. The floor: quick-xml alone reading every event of every receipt and unescaping every
//!    text, the least any reader of these receipts does.
//! 2. `receipt::parse`: each receipt to a checked `Receipt`, beside the floor.
//! 3. `Payments::handle_callback`: authenticate, parse, find the transaction, record the
//!    receipt, pay the transaction (its events and outbox messages) — on the in-memory
//!    store, and on SQLite with `BENCH_STORE=sqlite`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{best_of, print_rate, quick_xml_alone, runtime, size, sqlite_store};

use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::pagopa::{
    MAX_RECEIPT_BYTES, NoticeNumber, PagoPaCreditor, PagoPaGateway, receipt,
};

const KEY: &str = "the station's key for receipts";
const FISCAL: &str = "00488410010";

fn receipt_xml(i: usize, notice: &str, cents: i64) -> String {
    let n = NoticeNumber::parse(notice).unwrap();
    let euros = format!("{}.{:02}", cents / 100, cents % 100);
    format!(
        r#"<soapenv:Envelope xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
  <soapenv:Header/>
  <soapenv:Body>
    <pafn:paSendRTReq>
      <idPA>{FISCAL}</idPA>
      <idBrokerPA>15376371009</idBrokerPA>
      <idStation>15376371009_01</idStation>
      <receipt>
        <receiptId>bench{i:027}</receiptId>
        <noticeNumber>{notice}</noticeNumber>
        <fiscalCode>{FISCAL}</fiscalCode>
        <outcome>OK</outcome>
        <creditorReferenceId>{iuv}</creditorReferenceId>
        <paymentAmount>{euros}</paymentAmount>
        <description>TARI 2026 rata {i}</description>
        <companyName>Comune di Esempio</companyName>
        <officeName>Ufficio tributi</officeName>
        <debtor>
          <uniqueIdentifier>
            <entityUniqueIdentifierType>F</entityUniqueIdentifierType>
            <entityUniqueIdentifierValue>RSSMRA80A01H501U</entityUniqueIdentifierValue>
          </uniqueIdentifier>
          <fullName>Mario Rossi &amp; figli</fullName>
          <city>Torino</city>
          <country>IT</country>
        </debtor>
        <transferList>
          <transfer>
            <idTransfer>1</idTransfer>
            <transferAmount>{euros}</transferAmount>
            <fiscalCodePA>{FISCAL}</fiscalCodePA>
            <IBAN>IT60X0542811101000000123456</IBAN>
            <remittanceInformation>/RFB/{iuv}/{euros}/TXT/TARI 2026</remittanceInformation>
            <transferCategory>0101101IM</transferCategory>
          </transfer>
        </transferList>
        <idPSP>BCITITMM</idPSP>
        <pspFiscalCode>00799960158</pspFiscalCode>
        <PSPCompanyName>Intesa Sanpaolo</PSPCompanyName>
        <idChannel>00799960158_01</idChannel>
        <channelDescription>app</channelDescription>
        <paymentMethod>creditCard</paymentMethod>
        <fee>1.50</fee>
        <paymentDateTime>2026-11-20T17:48:22</paymentDateTime>
        <applicationDate>2026-11-20</applicationDate>
        <transferDate>2026-11-21</transferDate>
      </receipt>
    </pafn:paSendRTReq>
  </soapenv:Body>
</soapenv:Envelope>"#,
        iuv = n.iuv()
    )
}

async fn apply_on(store: Arc<dyn Store>, name: &str, n: usize, floor: Duration) {
    let pagopa = Arc::new(
        PagoPaGateway::new(store.clone(), KEY)
            .unwrap()
            .with_default_creditor(PagoPaCreditor::new("02").unwrap().notices_only()),
    );
    let payments = Payments::builder()
        .store(store)
        .gateway(pagopa.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "pagopa", &[MethodKind::PagoPa])
        .await
        .unwrap();
    let setup = Instant::now();
    let mut receipts = Vec::with_capacity(n);
    for i in 0..n {
        let payer = Actor::payer(format!("p{i}"));
        let cart = payments
            .open_cart(&payer, fx.creditor.id, Fixture::payer(&format!("p{i}")))
            .await
            .unwrap();
        let item = NewItem::new(
            Source::new("tributi", format!("TARI-{i}")),
            fx.tari.id,
            format!("TARI 2026 rata {i}"),
            Money::from_minor(1000 + (i % 50_000) as i64, Currency::Eur).unwrap(),
        )
        .with_extra("year", "2026");
        payments.add_item(&payer, cart.id, item).await.unwrap();
        let checkout = payments
            .checkout(&payer, cart.id, fx.method(MethodKind::PagoPa).id, "k")
            .await
            .unwrap();
        let Instruction::PagoPa(p) = checkout.instruction else {
            panic!("a pagoPA instruction")
        };
        let notice = &p.notices[0];
        receipts.push(pagopa.authenticated_request(receipt_xml(
            i,
            &notice.notice_number,
            notice.amount.minor_units(),
        )));
    }
    eprintln!(
        "  ({name}: {n} open transactions and their receipts prepared in {:.1} s)",
        setup.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    for r in &receipts {
        let outcome = payments.handle_callback("pagopa", r).await.unwrap();
        assert_eq!(outcome.transaction.status, TxStatus::Paid);
    }
    let took = start.elapsed();
    print_rate(
        &format!("handle_callback (verify + parse + record + pay) on {name}"),
        n,
        "receipts",
        took,
        floor,
    );
}

fn main() {
    let n = size("BENCH_RECEIPTS", 20_000);
    let rt = runtime();
    println!(
        "# payments-gateways: {n} pagoPA receipts ({} cores)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            let notice = NoticeNumber::aux3(2, 10 * (i as u64 + 1));
            receipt_xml(i, notice.as_str(), 1000 + i as i64)
        })
        .collect();
    let mb = bodies.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    let (floor, bytes) = best_of(3, || {
        bodies.iter().map(|b| quick_xml_alone(b)).sum::<usize>()
    });
    assert!(bytes > 0);
    let (parse, parsed) = best_of(3, || {
        bodies
            .iter()
            .map(|b| {
                receipt::parse(b.as_bytes(), MAX_RECEIPT_BYTES)
                    .unwrap()
                    .transfers
                    .len()
            })
            .sum::<usize>()
    });
    assert_eq!(parsed, n, "one transfer per receipt");
    println!("receipts: {mb:.1} MB");
    println!(
        "floor: quick-xml reading every event: {:>8.0} receipts/s  ({:.3} s)",
        n as f64 / floor.as_secs_f64(),
        floor.as_secs_f64()
    );
    println!(
        "receipt::parse to a checked Receipt:  {:>8.0} receipts/s  ({:.3} s)   ratio {:.2}x",
        n as f64 / parse.as_secs_f64(),
        parse.as_secs_f64(),
        parse.as_secs_f64() / floor.as_secs_f64()
    );
    rt.block_on(apply_on(
        Arc::new(InMemoryStore::new()),
        "the in-memory store",
        n,
        floor,
    ));
    if let Some(store) = sqlite_store(&rt, "pagopa.db") {
        rt.block_on(apply_on(store, "SQLite", n, floor));
    }
}
