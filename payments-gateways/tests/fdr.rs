//! pagoPA's reporting flows (FdR) against a stand-in of the `fdr-org` service that answers
//! as its OpenAPI (`fdr_organization.json`) says (each answer is checked against the
//! schema), then the three-way match: flows to receipts, flows to the bank statement, and
//! receipts no flow reported.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use payments_core::testing::Fixture;
use payments_core::testing::store::sample_receipt;
use payments_core::*;
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway};
use payments_gateways::http::HttpClient;
use payments_gateways::pagopa::{FdrClient, PagoPaGateway};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "common/openapi.rs"]
mod openapi;

const KEY: &str = "the FdR subscription key 8910";
const SPEC: &str = "fdr_organization.json";
const ORG: &str = "00488410010";
const IBAN: &str = "IT60X0542811101000000123456";

struct Env {
    payments: Payments,
    pagopa: PagoPaGateway,
    bank: Arc<BankTransferGateway>,
    fx: Fixture,
    operator: Actor,
    clock: Arc<ManualClock>,
    server: MockServer,
}

async fn env() -> Env {
    let server = MockServer::start().await;
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
    ));
    let bank = Arc::new(BankTransferGateway::new());
    let payments = Payments::builder()
        .store(store.clone())
        .gateway(bank.clone())
        .notifier(Arc::new(RecordingNotifier::new()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "bank_transfer", &[MethodKind::BankTransfer])
        .await
        .unwrap();
    assert_eq!(fx.creditor.fiscal_code, ORG);
    bank.set_account(
        fx.creditor.id,
        BankAccount::new("Comune di Esempio", IBAN).unwrap(),
    );
    let fdr = FdrClient::new(KEY)
        .unwrap()
        .with_url(&server.uri())
        .unwrap()
        .with_http(
            HttpClient::new()
                .unwrap()
                .with_retries(2, Duration::from_millis(10)),
        );
    let pagopa = PagoPaGateway::new(store, "a callback key of sixteen+")
        .unwrap()
        .with_fdr(fdr);
    let operator = Actor::operator(fx.creditor.id, Role::Manager, "anna");
    Env {
        payments,
        pagopa,
        bank,
        fx,
        operator,
        clock,
        server,
    }
}

/// Mounts `body` as the answer to GET `at` (with `page` when given), after checking it
/// against the OpenAPI schema `schema`.
async fn answer(server: &MockServer, at: &str, page: Option<u32>, schema: &str, body: Value) {
    openapi::assert_valid(SPEC, schema, &body);
    let mut mock = Mock::given(method("GET"))
        .and(path(at))
        .and(header("Ocp-Apim-Subscription-Key", KEY));
    if let Some(p) = page {
        mock = mock.and(query_param("page", p.to_string()));
    }
    mock.respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

fn list_path() -> String {
    format!("/organizations/{ORG}/fdrs")
}

fn flow_path(fdr: &str, revision: u32, psp: &str) -> String {
    format!("/organizations/{ORG}/fdrs/{fdr}/revisions/{revision}/psps/{psp}")
}

fn listed(fdr: &str, psp: &str, revision: u32, published: &str) -> Value {
    json!({"fdr": fdr, "pspId": psp, "revision": revision, "published": published,
           "flowDate": "2026-11-20T23:30:00.000Z"})
}

fn header_of(fdr: &str, psp: &str, revision: u32, count: u64, sum: f64, published: &str) -> Value {
    json!({
        "status": "PUBLISHED", "revision": revision,
        "created": "2026-11-21T08:00:00.000Z", "updated": "2026-11-21T08:10:00.000Z",
        "fdr": fdr, "fdrDate": "2026-11-20T23:30:00.000Z",
        "regulation": format!("SCT-{fdr}"), "regulationDate": "2026-11-21",
        "bicCodePouringBank": "UNCRITMMXXX",
        "sender": {"type": "ABI_CODE", "id": "ABI03069", "pspId": psp, "pspName": "Banca di Esempio",
                   "pspBrokerId": psp, "channelId": format!("{psp}_01")},
        "receiver": {"id": "APPBIT2B", "organizationId": ORG, "organizationName": "Comune di Esempio"},
        "published": published,
        "computedTotPayments": count, "computedSumPayments": sum,
        "totPayments": count, "sumPayments": sum
    })
}

fn payment(index: u64, iuv: &str, iur: &str, pay: f64, status: &str) -> Value {
    json!({"index": index, "iuv": iuv, "iur": iur, "idTransfer": 1, "pay": pay,
           "payStatus": status, "payDate": "2026-11-20T10:00:00.000Z"})
}

fn page(data: Vec<Value>, number: u32, total: u32) -> Value {
    json!({"metadata": {"pageSize": 1000, "pageNumber": number, "totPage": total},
           "count": data.len(), "data": data})
}

/// Mounts the published flows' listing, page `number` (asked for as such when given) of
/// `total`, holding `flows`.
async fn serve_list(server: &MockServer, number: Option<u32>, total: u32, flows: Vec<Value>) {
    let at = list_path();
    let body = page(flows, number.unwrap_or(1), total);
    answer(server, &at, number, "PaginatedFlowsResponse", body).await;
}

/// Mounts a flow's header (declaring the payments of every page and `sum`) and each page
/// of its payments.
async fn serve_flow(
    server: &MockServer,
    (fdr, psp, revision): (&str, &str, u32),
    published: &str,
    sum: f64,
    pages: Vec<Vec<Value>>,
) {
    let count = pages.iter().map(Vec::len).sum::<usize>() as u64;
    let header = header_of(fdr, psp, revision, count, sum, published);
    let at = flow_path(fdr, revision, psp);
    answer(server, &at, None, "SingleFlowResponse", header).await;
    let total = pages.len() as u32;
    for (n, data) in pages.into_iter().enumerate() {
        let number = n as u32 + 1;
        let body = page(data, number, total);
        let at = format!("{at}/payments");
        answer(server, &at, Some(number), "PaginatedPaymentsResponse", body).await;
    }
}

/// A camt.053 with one credit per `(amount, remittance)`.
fn statement(id: &str, credits: &[(&str, &str)]) -> String {
    let entries: String = credits
        .iter()
        .enumerate()
        .map(|(i, (amount, remittance))| {
            format!(
                "<Ntry><Amt Ccy=\"EUR\">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>\
                 <BookgDt><Dt>2026-11-21</Dt></BookgDt><ValDt><Dt>2026-11-21</Dt></ValDt>\
                 <AcctSvcrRef>{id}-{i}</AcctSvcrRef><NtryDtls><TxDtls><RltdPties><Dbtr><Pty>\
                 <Nm>BANCA DI ESEMPIO</Nm></Pty></Dbtr></RltdPties><RmtInf><Ustrd>{remittance}</Ustrd>\
                 </RmtInf></TxDtls></NtryDtls></Ntry>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.08\"><BkToCstmrStmt>\
         <GrpHdr><MsgId>{id}</MsgId><CreDtTm>2026-11-21T18:00:00+01:00</CreDtTm></GrpHdr>\
         <Stmt><Id>{id}</Id><CreDtTm>2026-11-21T18:00:00+01:00</CreDtTm><Acct><Id><IBAN>{IBAN}</IBAN></Id></Acct>\
         {entries}</Stmt></BkToCstmrStmt></Document>"
    )
}

async fn receipt(env: &Env, id: &str, notice: &str, days_ago: i64) -> ProviderReceipt {
    let mut r = sample_receipt(env.fx.creditor.id, id, 0, notice);
    r.recorded_at = env.clock.now() - chrono::Duration::days(days_ago);
    let gateway = Actor::Gateway {
        id: GatewayId::from("pagopa"),
    };
    assert!(
        env.payments
            .record_provider_receipt(&gateway, &r)
            .await
            .unwrap()
    );
    r
}

fn open_exceptions(list: &[Exception]) -> Vec<(&str, &str)> {
    let mut v: Vec<(&str, &str)> = list
        .iter()
        .map(|e| (e.key.as_str(), e.reason.as_str()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn flows_are_fetched_paged_matched_three_ways_and_a_new_revision_replaces_the_old() {
    let env = env().await;
    // Receipts the body holds: 100.00 EUR each to this body (sample_receipt's one transfer).
    receipt(&env, "r-1", "302000000000000101", 3).await;
    receipt(&env, "r-2", "302000000000000102", 3).await;
    receipt(&env, "r-3", "302000000000000103", 3).await;
    receipt(&env, "r-5", "302000000000000105", 3).await;
    receipt(&env, "r-6", "302000000000000106", 3).await;
    // Paid ten days ago and never reported by any PSP.
    receipt(&env, "r-9", "302000000000000109", 10).await;

    let f1 = "2026-11-20PSPAITMM-S0000001";
    let f2 = "2026-11-20PSPBITMM-S0000002";
    // The list of published flows, in two pages.
    serve_list(
        &env.server,
        Some(1),
        2,
        vec![listed(f1, "PSPAITMM", 1, "2026-11-21T08:15:00.000Z")],
    )
    .await;
    serve_list(
        &env.server,
        Some(2),
        2,
        vec![listed(f2, "PSPBITMM", 1, "2026-11-21T08:20:00.000Z")],
    )
    .await;
    // Flow 1: five payments in two pages — matched, stand-in matched, another amount, no
    // receipt, revoked.
    serve_flow(
        &env.server,
        (f1, "PSPAITMM", 1),
        "2026-11-21T08:15:00.123456Z",
        350.0,
        vec![
            vec![
                payment(1, "02000000000000101", "r-1", 100.0, "EXECUTED"),
                payment(2, "02000000000000102", "r-2", 100.0, "STAND_IN"),
                payment(3, "02000000000000103", "r-3", 90.0, "EXECUTED"),
            ],
            vec![
                payment(4, "02000000000000104", "r-4", 50.0, "EXECUTED"),
                payment(5, "02000000000000105", "r-5x", 10.0, "REVOKED"),
            ],
        ],
    )
    .await;
    // Flow 2, revision 1: one payment.
    serve_flow(
        &env.server,
        (f2, "PSPBITMM", 1),
        "2026-11-21T08:20:00.123Z",
        100.0,
        vec![vec![payment(
            1,
            "02000000000000105",
            "r-5",
            100.0,
            "EXECUTED",
        )]],
    )
    .await;

    let sync = env
        .pagopa
        .sync_flows(&env.payments, env.fx.creditor.id)
        .await
        .unwrap();
    assert_eq!((sync.listed, sync.stored, sync.replaced), (2, 2, 0));
    // The listing asked for the last 29 days (FdR refuses older), with the key.
    let asked = env.server.received_requests().await.unwrap();
    let first = asked.iter().find(|r| r.url.path() == list_path()).unwrap();
    assert!(
        first
            .url
            .query()
            .unwrap()
            .contains("publishedGt=2026-10-25T09%3A00%3A00.000Z"),
        "{:?}",
        first.url.query()
    );
    // Synced again: nothing new.
    let again = env
        .pagopa
        .sync_flows(&env.payments, env.fx.creditor.id)
        .await
        .unwrap();
    assert_eq!((again.stored, again.known), (0, 2));

    // The treasury's statement: flow 2's money (supplementary-transfer form of the
    // remittance), and flow 1's with 10 euro less.
    env.bank
        .import_statement(
            &env.payments,
            &env.operator,
            env.fx.creditor.id,
            statement(
                "S-1",
                &[
                    ("100.00", &format!("/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/{f2}")),
                    ("340.00", &format!("RI1/PUR/LGPE-RIVERSAMENTO/URI/{f1}")),
                ],
            )
            .as_bytes(),
        )
        .await
        .unwrap();

    let report = env
        .payments
        .reconcile_flows(
            &env.operator,
            env.fx.creditor.id,
            &ReconcileOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.flows, 2);
    assert_eq!(report.paid, 1, "flow 2 is closed");
    assert_eq!(report.payments_matched, 3);
    let flows = env
        .payments
        .flows(&env.operator, &FlowQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    let by_id = |id: &str| flows.iter().find(|f| f.flow_id == id).unwrap().clone();
    let one = by_id(f1);
    assert_eq!(one.state(), FlowState::Discrepancies);
    let checks: Vec<&PaymentCheck> = one.payments.iter().map(|p| &p.check).collect();
    assert_eq!(
        checks,
        vec![
            &PaymentCheck::Matched {
                receipt_key: "pagopa:r-1".into()
            },
            &PaymentCheck::Matched {
                receipt_key: "pagopa:r-2".into()
            },
            &PaymentCheck::AmountDiffers {
                receipt_key: "pagopa:r-3".into(),
                expected: Money::parse_eur("100").unwrap()
            },
            &PaymentCheck::ReceiptMissing,
            &PaymentCheck::NoReceipt,
        ]
    );
    assert_eq!(
        one.credit,
        CreditCheck::AmountDiffers {
            entry_key: format!("{IBAN}:S-1-1"),
            credited: Money::parse_eur("340").unwrap()
        }
    );
    assert_eq!(
        one.published_at,
        Utc.with_ymd_and_hms(2026, 11, 21, 8, 15, 0).unwrap(),
        "as listed: the next sync's publishedGt is compared with the listing's instants"
    );
    assert_eq!(by_id(f2).state(), FlowState::Paid);

    // Every discrepancy is one exception an operator sees.
    let mut q = ExceptionQuery::new(env.fx.creditor.id);
    q.kind = Some(ExceptionKind::ReportingMismatch);
    let exceptions = env.payments.exceptions(&env.operator, &q).await.unwrap();
    let keys: Vec<&str> = open_exceptions(&exceptions)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![
            "fdr-amount:PSPAITMM/2026-11-20PSPAITMM-S0000001/r1:3",
            "fdr-credit:PSPAITMM/2026-11-20PSPAITMM-S0000001/r1",
            "fdr-missing:PSPAITMM/2026-11-20PSPAITMM-S0000001/r1:4",
            "fdr-unreported:pagopa:r-9",
        ],
        "r-3's amount, r-4's missing receipt, flow 1's credit, r-9 never reported"
    );
    let reasons = open_exceptions(&exceptions);
    assert!(reasons[0].1.contains("the receipt says 100.00 EUR"));
    assert!(reasons[1].1.contains("is 340.00 EUR on the bank statement"));
    assert!(
        reasons[2]
            .1
            .contains("whose receipt the body does not hold")
    );
    // r-6 is not yet due (recorded 3 days ago): no exception.
    assert!(!keys.iter().any(|k| k.contains("r-6")));

    // Reconciled again: nothing new.
    let again = env
        .payments
        .reconcile_flows(
            &env.operator,
            env.fx.creditor.id,
            &ReconcileOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(again.exceptions, 0);
    assert_eq!(
        env.payments
            .exceptions(&env.operator, &q)
            .await
            .unwrap()
            .len(),
        4
    );

    // PSP B publishes revision 2 of flow 2, adding r-6: it replaces revision 1 visibly.
    env.server.reset().await;
    serve_list(
        &env.server,
        Some(1),
        1,
        vec![listed(f2, "PSPBITMM", 2, "2026-11-22T08:00:00.000Z")],
    )
    .await;
    serve_flow(
        &env.server,
        (f2, "PSPBITMM", 2),
        "2026-11-22T08:00:00.000Z",
        200.0,
        vec![vec![
            payment(1, "02000000000000105", "r-5", 100.0, "EXECUTED"),
            payment(2, "02000000000000106", "r-6", 100.0, "EXECUTED"),
        ]],
    )
    .await;
    let sync = env
        .pagopa
        .sync_flows(&env.payments, env.fx.creditor.id)
        .await
        .unwrap();
    assert_eq!(sync.replaced, 1);
    let asked = env.server.received_requests().await.unwrap();
    assert!(
        asked[0]
            .url
            .query()
            .unwrap()
            .contains("publishedGt=2026-11-20T08%3A20%3A00.000Z"),
        "from a day before the last flow stored: {:?}",
        asked[0].url.query()
    );
    let mut all = FlowQuery::new(env.fx.creditor.id);
    all.flow_id = Some(f2.into());
    all.include_replaced = true;
    let revisions = env.payments.flows(&env.operator, &all).await.unwrap();
    assert_eq!(
        revisions
            .iter()
            .map(|f| (f.revision, f.replaced, f.replaces))
            .collect::<Vec<_>>(),
        vec![(2, false, Some(1)), (1, true, None)]
    );
    assert!(revisions[0].events[0].note.contains("replaces revision 1"));
    env.payments
        .reconcile_flows(
            &env.operator,
            env.fx.creditor.id,
            &ReconcileOptions::default(),
        )
        .await
        .unwrap();
    let two = env
        .payments
        .flows(&env.operator, &all)
        .await
        .unwrap()
        .remove(0);
    // Its money (200.00) is not the 100.00 credited: a discrepancy.
    assert_eq!(two.state(), FlowState::Discrepancies);
    assert!(matches!(two.credit, CreditCheck::AmountDiffers { .. }));
}

#[tokio::test]
async fn the_service_s_errors_are_retried_or_told_and_nothing_is_half_stored() {
    // FdR is down: the sync stops and says so (the next one starts again from there).
    {
        let env = env().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&env.server)
            .await;
        let err = env
            .pagopa
            .sync_flows(&env.payments, env.fx.creditor.id)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Gateway {
                    kind: GatewayErrorKind::Unavailable,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let env = env().await;
    let f1 = "2026-11-20PSPAITMM-S0000001";
    // Two server errors, then the answer: the client retries.
    Mock::given(method("GET"))
        .and(path(list_path()))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&env.server)
        .await;
    serve_list(
        &env.server,
        None,
        1,
        vec![listed(f1, "PSPAITMM", 1, "2026-11-21T08:15:00.000Z")],
    )
    .await;
    // The flow's header is refused as the service refuses (ErrorResponse).
    let refusal = json!({"httpStatusCode": 400, "httpStatusDescription": "Bad Request",
        "appErrorCode": "FDR-0702", "errors": [{"path": "fdr", "message": "Reporting fdr not found"}]});
    openapi::assert_valid(SPEC, "ErrorResponse", &refusal);
    Mock::given(method("GET"))
        .and(path(flow_path(f1, 1, "PSPAITMM")))
        .respond_with(ResponseTemplate::new(400).set_body_json(refusal))
        .mount(&env.server)
        .await;
    // A flow the service refuses will not be mended by asking again: it is an exception an
    // operator sees, and the sync goes on (it would otherwise stop there for good).
    let sync = env
        .pagopa
        .sync_flows(&env.payments, env.fx.creditor.id)
        .await
        .unwrap();
    assert_eq!((sync.listed, sync.stored, sync.unreadable), (1, 0, 1));
    let exceptions = env
        .payments
        .exceptions(&env.operator, &ExceptionQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(exceptions.len(), 1);
    assert_eq!(
        exceptions[0].key,
        format!("fdr-unreadable:PSPAITMM/{f1}/r1")
    );
    assert!(
        exceptions[0]
            .reason
            .contains("FDR-0702 Reporting fdr not found"),
        "{}",
        exceptions[0].reason
    );
    assert!(!exceptions[0].reason.contains(KEY), "the key never shows");
    let asked = env.server.received_requests().await.unwrap();
    assert_eq!(
        asked.iter().filter(|r| r.url.path() == list_path()).count(),
        3,
        "two 503s, then the list"
    );
    assert!(
        env.payments
            .flows(&env.operator, &FlowQuery::new(env.fx.creditor.id))
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );

    // A key the service refuses is said so.
    env.server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&env.server)
        .await;
    let err = env
        .pagopa
        .sync_flows(&env.payments, env.fx.creditor.id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("subscription key"), "{err}");
    // Only a manager reconciles; a viewer reads.
    let viewer = Actor::operator(env.fx.creditor.id, Role::Viewer, "vera");
    assert!(matches!(
        env.payments
            .reconcile_flows(&viewer, env.fx.creditor.id, &ReconcileOptions::default())
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        env.payments
            .record_flow(&env.operator, &sample_flow(env.fx.creditor.id))
            .await,
        Err(Error::Forbidden { .. })
    ));
}

/// The aggregate credit of a treasury's camt.053 in the test data
/// (`data/camt053_psp_transfer.xml`, the remittance cut into lines as CBI statements cut
/// it) is the PSP's transfer of its flow: matched to the flow by the
/// `/PUR/LGPE-RIVERSAMENTO/URI/` remittance and the flow's total (SANP, "Riversamento"),
/// which closes the flow; the file's other credit stays an exception.
#[tokio::test]
async fn the_aggregate_credit_of_a_treasury_statement_pays_its_flow() {
    let env = env().await;
    receipt(&env, "r-1", "302000000000000101", 2).await;
    receipt(&env, "r-2", "302000000000000102", 2).await;
    let flow = "2026-11-20PSPAITMM-S0000042";
    serve_list(
        &env.server,
        Some(1),
        1,
        vec![listed(flow, "PSPAITMM", 1, "2026-11-21T08:15:00.000Z")],
    )
    .await;
    serve_flow(
        &env.server,
        (flow, "PSPAITMM", 1),
        "2026-11-21T08:15:00.000Z",
        200.0,
        vec![vec![
            payment(1, "02000000000000101", "r-1", 100.0, "EXECUTED"),
            payment(2, "02000000000000102", "r-2", 100.0, "EXECUTED"),
        ]],
    )
    .await;
    let sync = env
        .pagopa
        .sync_flows(&env.payments, env.fx.creditor.id)
        .await
        .unwrap();
    assert_eq!(sync.stored, 1);

    let file = include_str!("data/camt053_psp_transfer.xml")
        .replace("{{IBAN}}", IBAN)
        .replace("{{FLOW}}", flow)
        .replace("{{AMOUNT}}", "200.00");
    let imported = env
        .bank
        .import_statement(
            &env.payments,
            &env.operator,
            env.fx.creditor.id,
            file.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(imported.flows.len(), 1, "{imported:#?}");
    assert_eq!(imported.flows[0].flow_id(), Some(flow));
    assert_eq!(
        imported.flows[0].value_on,
        NaiveDate::from_ymd_opt(2026, 11, 21)
    );
    assert_eq!(
        imported.exceptions.len(),
        1,
        "the school-meal refund is no one's"
    );
    assert!(imported.matched.is_empty());

    let report = env
        .payments
        .reconcile_flows(
            &env.operator,
            env.fx.creditor.id,
            &ReconcileOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.flows, report.paid, report.payments_matched),
        (1, 1, 2)
    );
    let stored = env
        .payments
        .flows(&env.operator, &FlowQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(stored[0].state(), FlowState::Paid);
    assert_eq!(
        stored[0].credit,
        CreditCheck::Matched {
            entry_key: format!("{IBAN}:2026112100004711")
        }
    );
}

fn sample_flow(creditor: CreditorId) -> ReportingFlow {
    ReportingFlow {
        creditor_id: creditor,
        flow_id: "F".into(),
        psp_id: "P".into(),
        revision: 1,
        psp_name: None,
        flow_date: Utc::now(),
        published_at: Utc::now(),
        regulation: None,
        regulation_date: None,
        bic: None,
        total: Money::parse_eur("1").unwrap(),
        count: 0,
        payments: Vec::new(),
        credit: CreditCheck::Awaited,
        replaces: None,
        replaced: false,
        received_at: Utc::now(),
        checked_at: None,
        version: 1,
        events: Vec::new(),
    }
}
