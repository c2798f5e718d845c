//! `cargo bench -p payments-gateways --bench pagopa`: reading and applying pagoPA receipts.
//!
//! N `paSendRT` receipts (N = `BENCH_RECEIPTS`, 20,000 by default), as pagoPA's node
//! writes them, each paying the notice of one open transaction.
//!
//! 1. The floor: quick-xml alone reading every event of every receipt and unescaping every
//!    text, the least any reader of these receipts does.
//! 2. `receipt::parse`: each receipt to a checked `Receipt`, beside the floor.
//! 3. `Payments::handle_callback`: authenticate, parse, find the transaction, record the
//!    receipt, pay the transaction (its events and outbox messages) — `BENCH_APPLIED`
//!    receipts a run (5,000 by default) on the in-memory store, on SQLite with
//!    `BENCH_STORE=sqlite`, on PostgreSQL with `BENCH_STORE=postgres` and `DATABASE_URL`.
//!
//! Each measure runs `BENCH_RUNS` times (at least 5), the floor and the library in turn,
//! and prints the median, min and max of both and of their ratio. The receipts are made
//! in memory before the runs (a warm cache); each run applying them has its own open
//! transactions, made before it and not timed, in a store that grows run by run.

mod common;

use std::sync::Arc;

use common::{
    alternate, apply_runs, postgres_store, quick_xml_alone, runs, runtime, size, sqlite_store,
};

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

/// `n` open transactions on `payments`, from payer number `from`, and each one's receipt.
async fn open_with_receipts(
    payments: &Payments,
    pagopa: &PagoPaGateway,
    fx: &Fixture,
    from: usize,
    n: usize,
) -> Vec<CallbackRequest> {
    let mut receipts = Vec::with_capacity(n);
    for i in from..from + n {
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
    receipts
}

/// [`runs`] runs on `store`, each of `n` receipts of transactions opened for it (untimed):
/// the floor reads them, then `handle_callback` applies them.
async fn apply_on(store: Arc<dyn Store>, name: &str, n: usize) {
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
    apply_runs(
        &payments,
        "pagopa",
        name,
        n,
        "handle_callback (verify + parse + record + pay), floor quick-xml",
        "receipts",
        async |run| open_with_receipts(&payments, &pagopa, &fx, run * n, n).await,
        |r| quick_xml_alone(std::str::from_utf8(&r.body).unwrap()),
    )
    .await;
}

fn main() {
    let n = size("BENCH_RECEIPTS", 20_000);
    let applied = size("BENCH_APPLIED", 5_000);
    let rt = runtime();
    println!(
        "# payments-gateways: {n} pagoPA receipts read, {applied} applied, {} runs each, \
         floor and library in turn ({} cores)",
        runs(),
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            let notice = NoticeNumber::aux3(2, 10 * (i as u64 + 1));
            receipt_xml(i, notice.as_str(), 1000 + i as i64)
        })
        .collect();
    let mb = bodies.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    println!("receipts: {mb:.1} MB, in memory (warm)");
    let (parse, parsed) = alternate(
        || bodies.iter().map(|b| quick_xml_alone(b)).sum::<usize>(),
        || {
            bodies
                .iter()
                .map(|b| {
                    receipt::parse(b.as_bytes(), MAX_RECEIPT_BYTES)
                        .unwrap()
                        .transfers
                        .len()
                })
                .sum::<usize>()
        },
    );
    assert_eq!(parsed, n, "one transfer per receipt");
    parse.print(
        "receipt::parse to a checked Receipt, floor quick-xml reading every event",
        n,
        "receipts",
    );
    rt.block_on(apply_on(
        Arc::new(InMemoryStore::new()),
        "the in-memory store",
        applied,
    ));
    if let Some(store) = sqlite_store(&rt, "pagopa.db") {
        rt.block_on(apply_on(store, "SQLite (a new file)", applied));
    }
    if let Some(store) = postgres_store(&rt, "bench_pagopa") {
        rt.block_on(apply_on(store, "PostgreSQL (a new schema)", applied));
    }
}
