//! Nexi XPay end to end on the in-memory store: the hosted page's POST form and its MAC,
//! the browser's return and the server notification as XPay sends them, and the
//! back-office API (order status, refunds) served by wiremock, which checks every MAC the
//! way XPay does and signs its answers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use async_trait::async_trait;
use common::RETURN;
use payments_core::testing::Fixture;
use payments_core::testing::gateway::{GatewayDriver, run_all};
use payments_core::*;
use payments_gateways::http::HttpClient;
use payments_gateways::nexi::{
    NexiGateway, PAYMENT_PATH, REFUND_PATH, STATUS_PATH, cod_trans, request_mac, result_mac,
    transaction_of,
};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ALIAS: &str = "ALIAS_WEB_00000001";
const MAC_KEY: &str = "TLGHTOWIZXQPTIZRALWKG";
const NOTIFY: &str = "https://portale.example.it/webhooks/nexi";

fn sha1_hex(text: &str) -> String {
    hex::encode(Sha1::digest(text.as_bytes()))
}

#[test]
fn macs_match_values_worked_out_by_hand() {
    // sha1("codTrans=TESTPS_20261127divisa=EURimporto=5000esempiodichiavesegreta"),
    // computed apart with Python's hashlib.
    assert_eq!(
        request_mac("TESTPS_20261127", "EUR", 5000, "esempiodichiavesegreta"),
        "7dfad063d61bfc084fd1a6896afdca601a2ade04"
    );
    // sha1("codTrans=TESTPS_20261127esito=OKimporto=5000divisa=EURdata=20261127
    //       orario=101500codAut=TESTOKesempiodichiavesegreta")
    assert_eq!(
        result_mac(
            "TESTPS_20261127",
            "OK",
            "5000",
            "EUR",
            "20261127",
            "101500",
            "TESTOK",
            "esempiodichiavesegreta"
        ),
        "754d6ecd903c1525e21ceb83214ed68eb02fdb0a"
    );
    // And the back office's, as the mock below checks it:
    // sha1("apiKey=ALIAS_WEB_00000001codiceTransazione=TESTPS_20261127divisa=978
    //       importo=2000timeStamp=1795000000000esempiodichiavesegreta")
    assert_eq!(
        sha1_hex(
            "apiKey=ALIAS_WEB_00000001codiceTransazione=TESTPS_20261127divisa=978importo=2000timeStamp=1795000000000esempiodichiavesegreta"
        ),
        "7a78de349023a94494aadf737b1267929d2f012f"
    );
}

#[test]
fn cod_trans_is_the_transaction_id_in_25_characters_xpay_accepts() {
    for _ in 0..200 {
        let id = TransactionId::new();
        let code = cod_trans(id);
        assert!((2..=30).contains(&code.len()), "{code}");
        assert!(
            code.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_eq!(transaction_of(&code), Some(id));
    }
    assert_eq!(transaction_of("not-ours!"), None);
    assert_eq!(transaction_of(&"Z".repeat(26)), None);
}

// ------------------------------------------------------------------ the back office

enum Trouble {
    ServerError,
    Slow(Duration),
}

#[derive(Default)]
struct State {
    /// codTrans → (cents, stato)
    orders: HashMap<String, (i64, String)>,
    refunds: Vec<(String, i64)>,
    requests: Vec<(String, Value)>,
    trouble: VecDeque<Trouble>,
    forge_answers: bool,
    operations: u32,
}

/// XPay's back-office API: `situazioneOrdine` and `storna`.
#[derive(Clone, Default)]
struct BackOffice(Arc<Mutex<State>>);

fn answer(esito: &str, operation: u32, extra: Value, forge: bool) -> ResponseTemplate {
    let ts = 1_795_000_000_123u64;
    let id = operation.to_string();
    let key = if forge { "not the key" } else { MAC_KEY };
    let mut body = json!({
        "esito": esito,
        "idOperazione": id,
        "timeStamp": ts,
        "mac": sha1_hex(&format!("esito={esito}idOperazione={id}timeStamp={ts}{key}")),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    ResponseTemplate::new(200).set_body_json(body)
}

impl Respond for BackOffice {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let path = req.url.path().to_owned();
        s.requests.push((path.clone(), body.clone()));
        let delay = match s.trouble.pop_front() {
            Some(Trouble::ServerError) => return ResponseTemplate::new(500),
            Some(Trouble::Slow(d)) => Some(d),
            None => None,
        };
        s.operations += 1;
        let op = s.operations;
        let forge = s.forge_answers;
        let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
        let code = text("codiceTransazione");
        // The MAC, worked out here as XPay's documentation writes it.
        let expected = if path == STATUS_PATH {
            sha1_hex(&format!(
                "apiKey={}codiceTransazione={code}timeStamp={}{MAC_KEY}",
                text("apiKey"),
                text("timeStamp")
            ))
        } else {
            sha1_hex(&format!(
                "apiKey={}codiceTransazione={code}divisa={}importo={}timeStamp={}{MAC_KEY}",
                text("apiKey"),
                text("divisa"),
                text("importo"),
                text("timeStamp")
            ))
        };
        let response = if text("apiKey") != ALIAS || text("mac") != expected {
            answer(
                "KO",
                op,
                json!({"errore": {"codice": 3, "messaggio": "MAC errato"}}),
                forge,
            )
        } else if path == STATUS_PATH {
            match s.orders.get(&code) {
                Some((cents, stato)) => answer(
                    "OK",
                    op,
                    json!({"report": [{
                        "numeroMerchant": "00000001",
                        "codiceTransazione": code,
                        "importo": cents,
                        "divisa": "EUR",
                        "codiceAutorizzazione": "TESTOK",
                        "brand": "VISA",
                        "tipoPagamento": "Carta di credito",
                        "stato": stato,
                        "dataTransazione": "27/11/2026 10:15:00",
                    }]}),
                    forge,
                ),
                None => answer(
                    "KO",
                    op,
                    json!({"errore": {"codice": 20, "messaggio": "Ordine non presente"}}),
                    forge,
                ),
            }
        } else {
            let cents: i64 = text("importo").parse().unwrap();
            let refunded: i64 = s
                .refunds
                .iter()
                .filter(|(c, _)| *c == code)
                .map(|(_, a)| a)
                .sum();
            match s.orders.get(&code).cloned() {
                Some((paid, _)) if refunded + cents <= paid && text("divisa") == "978" => {
                    s.refunds.push((code, cents));
                    answer("OK", op, json!({}), forge)
                }
                _ => answer(
                    "KO",
                    op,
                    json!({"errore": {"codice": 2, "messaggio": "Importo non valido"}}),
                    forge,
                ),
            }
        };
        match delay {
            Some(d) => response.set_delay(d),
            None => response,
        }
    }
}

impl BackOffice {
    fn order(&self, code: &str, cents: i64, stato: &str) {
        self.0
            .lock()
            .unwrap()
            .orders
            .insert(code.to_owned(), (cents, stato.to_owned()));
    }

    fn requests(&self, path: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn trouble(&self, t: Trouble) {
        self.0.lock().unwrap().trouble.push_back(t);
    }
}

async fn server(office: &BackOffice) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(office.clone())
        .mount(&server)
        .await;
    server
}

fn gateway(base: &str) -> NexiGateway {
    NexiGateway::new(ALIAS, MAC_KEY, NOTIFY)
        .unwrap()
        .with_base_url(base)
        .with_methods(&[MethodKind::Card, MethodKind::AccountDebit])
        .unwrap()
        .with_http(
            HttpClient::with_timeouts(Duration::from_secs(2), Duration::from_millis(400))
                .unwrap()
                .with_retries(3, Duration::from_millis(20)),
        )
}

// ------------------------------------------------------------------ XPay's callbacks

/// The fields XPay sends back for a payment: to `url` as a query, to `urlpost` as a form.
fn outcome_fields(code: &str, esito: &str, cents: i64, key: &str) -> Vec<(String, String)> {
    let importo = cents.to_string();
    let (data, orario, cod_aut) = (
        "20261127",
        "101500",
        if esito == "OK" { "TESTOK" } else { "" },
    );
    // The MAC, worked out here from XPay's documented concatenation.
    let mac = sha1_hex(&format!(
        "codTrans={code}esito={esito}importo={importo}divisa=EURdata={data}orario={orario}codAut={cod_aut}{key}"
    ));
    [
        ("codTrans", code),
        ("esito", esito),
        ("importo", importo.as_str()),
        ("divisa", "EUR"),
        ("data", data),
        ("orario", orario),
        ("codAut", cod_aut),
        ("alias", ALIAS),
        ("brand", "VISA"),
        ("nome", "Alice"),
        ("cognome", "Rossi"),
        ("mail", "alice@example.it"),
        (
            "messaggio",
            if esito == "OK" {
                "Message OK"
            } else {
                "Autorizzazione negata"
            },
        ),
        ("mac", mac.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn encode(fields: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// XPay's server-to-server notification to `urlpost`.
fn notification(fields: &[(String, String)]) -> CallbackRequest {
    CallbackRequest::new(encode(fields))
        .with_header("content-type", "application/x-www-form-urlencoded")
}

/// The browser's return to `url`.
fn browser_return(fields: &[(String, String)]) -> CallbackRequest {
    CallbackRequest {
        query: Some(encode(fields)),
        ..Default::default()
    }
}

fn with(fields: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if k == name {
                    value.to_owned()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

struct Driver(BackOffice);

#[async_trait]
impl GatewayDriver for Driver {
    async fn complete(
        &self,
        request: &StartRequest,
        started: &Started,
        outcome: PaymentOutcome,
    ) -> CallbackRequest {
        let code = started.provider_ref.as_deref().unwrap();
        let cents = request.transaction.total.minor_units();
        let (esito, stato) = match outcome {
            PaymentOutcome::Paid => ("OK", "Contabilizzato"),
            PaymentOutcome::Failed => ("KO", "Negato"),
            PaymentOutcome::Cancelled => ("ANNULLO", "Annullato"),
            PaymentOutcome::Pending | PaymentOutcome::Processing => ("PEN", "In attesa"),
        };
        self.0.order(code, cents, stato);
        notification(&outcome_fields(code, esito, cents, MAC_KEY))
    }

    fn secrets(&self) -> Vec<String> {
        vec![MAC_KEY.into()]
    }

    fn unsigned(&self, callback: &CallbackRequest) -> CallbackRequest {
        let fields: Vec<(String, String)> = form_urlencoded::parse(&callback.body)
            .into_owned()
            .filter(|(k, _)| k != "mac")
            .collect();
        notification(&fields)
    }
}

#[tokio::test]
async fn nexi_passes_the_gateway_suite() {
    let office = BackOffice::default();
    let server = server(&office).await;
    run_all(&gateway(&server.uri()), &Driver(office)).await;
}

// ------------------------------------------------------------------ flows

struct Env {
    payments: Payments,
    office: BackOffice,
    notifier: Arc<RecordingNotifier>,
    fx: Fixture,
    operator: Actor,
    clock: Arc<ManualClock>,
    _server: MockServer,
}

impl Env {
    async fn new() -> Env {
        let office = BackOffice::default();
        let server = server(&office).await;
        let s = common::service(
            Arc::new(gateway(&server.uri())),
            Arc::new(InMemoryStore::new()),
            &[MethodKind::Card, MethodKind::AccountDebit],
        )
        .await;
        Env {
            payments: s.payments,
            office,
            notifier: s.notifier,
            fx: s.fx,
            operator: s.operator,
            clock: s.clock,
            _server: server,
        }
    }

    async fn pay(&self, payer: &str, amount: &str, kind: MethodKind) -> Checkout {
        self.fx
            .pay_fee(&self.payments, payer, amount, kind)
            .await
            .unwrap()
    }

    /// The payer paid on XPay's page; XPay notifies.
    async fn paid(&self, checkout: &Checkout) -> CallbackOutcome {
        let code = checkout.transaction.provider_ref.clone().unwrap();
        let cents = checkout.transaction.total.minor_units();
        self.office.order(&code, cents, "Contabilizzato");
        self.payments
            .handle_callback(
                "nexi",
                &notification(&outcome_fields(&code, "OK", cents, MAC_KEY)),
            )
            .await
            .unwrap()
    }

    async fn tx(&self, id: TransactionId) -> Transaction {
        self.payments.transaction(&self.operator, id).await.unwrap()
    }

    async fn mails(&self) -> usize {
        self.payments.dispatch_outbox().await.unwrap();
        self.notifier.sent().len()
    }
}

fn form_of(checkout: &Checkout) -> (String, Vec<(String, String)>) {
    let Instruction::Redirect {
        url,
        method,
        fields,
    } = &checkout.instruction
    else {
        panic!("a redirect");
    };
    assert_eq!(
        *method,
        RedirectMethod::Post,
        "XPay's page takes a POST form"
    );
    (
        url.clone(),
        fields
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect(),
    )
}

#[tokio::test]
async fn start_answers_with_xpays_post_form_and_its_mac() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let tx = &checkout.transaction;
    let (url, fields) = form_of(&checkout);
    assert!(url.ends_with(PAYMENT_PATH), "{url}");
    let code = cod_trans(tx.id);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "alias",
            "importo",
            "divisa",
            "codTrans",
            "url",
            "url_back",
            "urlpost",
            "descrizione",
            "languageId",
            "mail",
            "mac"
        ]
    );
    let value = |name: &str| fields.iter().find(|(k, _)| k == name).unwrap().1.as_str();
    assert_eq!(value("alias"), ALIAS);
    assert_eq!(value("importo"), "1234");
    assert_eq!(value("divisa"), "EUR");
    assert_eq!(value("codTrans"), code);
    assert_eq!(tx.provider_ref.as_deref(), Some(code.as_str()));
    assert_eq!(value("url"), RETURN);
    assert_eq!(value("url_back"), RETURN);
    assert_eq!(value("urlpost"), NOTIFY);
    assert_eq!(value("descrizione"), "Diritti pratica alice");
    assert_eq!(value("languageId"), "ITA");
    assert_eq!(value("mail"), "alice@example.it");
    assert_eq!(
        value("mac"),
        sha1_hex(&format!("codTrans={code}divisa=EURimporto=1234{MAC_KEY}"))
    );

    // MyBank: the same form, with MyBank chosen on XPay's page.
    let mybank = env.pay("bruno", "20,00", MethodKind::AccountDebit).await;
    let (_, fields) = form_of(&mybank);
    assert!(fields.contains(&("selectedcard".into(), "MYBANK".into())));
}

#[tokio::test]
async fn the_return_and_the_notification_both_verify_and_pay_once() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let code = checkout.transaction.provider_ref.clone().unwrap();
    let fields = outcome_fields(&code, "OK", 1234, MAC_KEY);
    // The browser comes back first, with the outcome in its query.
    let out = env
        .payments
        .handle_callback("nexi", &browser_return(&fields))
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(out.transaction.status, TxStatus::Paid);
    // XPay's notification then finds it paid.
    let again = env
        .payments
        .handle_callback("nexi", &notification(&fields))
        .await
        .unwrap();
    assert!(!again.applied);
    assert_eq!(
        env.mails().await,
        2,
        "the receipt and the creditor's notice"
    );
    let events = env
        .payments
        .events(&env.operator, checkout.transaction.id)
        .await
        .unwrap();
    assert!(
        events
            .last()
            .unwrap()
            .note
            .as_deref()
            .unwrap()
            .contains("authorisation TESTOK")
    );
}

#[tokio::test]
async fn callbacks_that_do_not_verify_change_nothing() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let code = checkout.transaction.provider_ref.clone().unwrap();
    let good = outcome_fields(&code, "OK", 1234, MAC_KEY);
    let without_mac: Vec<_> = good.iter().filter(|(k, _)| k != "mac").cloned().collect();
    let mut twice = good.clone();
    twice.push(("esito".into(), "KO".into()));
    let refused = [
        (
            "another key",
            outcome_fields(&code, "OK", 1234, "another key"),
        ),
        ("no mac", without_mac),
        ("the amount changed", with(&good, "importo", "1")),
        ("the outcome changed", with(&good, "esito", "KO")),
        (
            "another order",
            with(&good, "codTrans", &cod_trans(TransactionId::new())),
        ),
        ("a field twice", twice),
        ("a broken mac", with(&good, "mac", "zz")),
    ];
    for (what, fields) in refused {
        for request in [notification(&fields), browser_return(&fields)] {
            let err = env
                .payments
                .handle_callback("nexi", &request)
                .await
                .expect_err(what);
            assert!(
                matches!(
                    err,
                    Error::Gateway {
                        kind: GatewayErrorKind::InvalidSignature,
                        ..
                    }
                ),
                "{what}: {err:?}"
            );
            assert!(!format!("{err:?}").contains(MAC_KEY));
        }
    }
    let tx = env
        .payments
        .transaction(&env.operator, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(tx.status, TxStatus::Pending);
    assert_eq!(env.mails().await, 0);
    // The genuine one still pays.
    let out = env
        .payments
        .handle_callback("nexi", &notification(&good))
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
}

#[tokio::test]
async fn an_amount_or_currency_that_differs_is_flagged_and_not_applied() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let code = checkout.transaction.provider_ref.clone().unwrap();
    // Signed with the right key, for another amount: money all the same, recorded for
    // operators and answered Ok, so XPay does not notify it again (DESIGN.md, "Money is a
    // fact"); the transaction is not paid by it.
    let out = env
        .payments
        .handle_callback(
            "nexi",
            &notification(&outcome_fields(&code, "OK", 1000, MAC_KEY)),
        )
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(
        out.exception.as_ref().map(|e| e.kind),
        Some(ExceptionKind::AmountMismatch)
    );
    // Another currency, signed too.
    let mut usd = outcome_fields(&code, "OK", 1234, MAC_KEY);
    let mac = sha1_hex(&format!(
        "codTrans={code}esito=OKimporto=1234divisa=USDdata=20261127orario=101500codAut=TESTOK{MAC_KEY}"
    ));
    usd = with(&with(&usd, "divisa", "USD"), "mac", &mac);
    let err = env
        .payments
        .handle_callback("nexi", &notification(&usd))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Gateway {
            kind: GatewayErrorKind::AmountMismatch { .. },
            ..
        }
    ));
    assert_eq!(
        env.tx(checkout.transaction.id).await.status,
        TxStatus::Pending
    );
    let flagged = env
        .payments
        .exceptions(
            &env.operator,
            &ExceptionQuery::new(env.fx.creditor.id).of_kind(ExceptionKind::AmountMismatch),
        )
        .await
        .unwrap();
    assert_eq!(flagged.len(), 1);
    assert!(flagged[0].reason.contains("Paid"), "{}", flagged[0].reason);
    assert_eq!(flagged[0].transaction_id, Some(checkout.transaction.id));
    assert_eq!(flagged[0].amount, Some(Money::parse_eur("10").unwrap()));
    assert_eq!(flagged[0].expected, Some(checkout.transaction.total));
}

#[tokio::test]
async fn a_refused_or_abandoned_payment_frees_the_items() {
    let env = Env::new().await;
    for (payer, esito, status) in [
        ("alice", "KO", TxStatus::Failed),
        ("bruno", "ANNULLO", TxStatus::Cancelled),
        ("carla", "ERRORE", TxStatus::Failed),
    ] {
        let checkout = env.pay(payer, "12,34", MethodKind::Card).await;
        let code = checkout.transaction.provider_ref.clone().unwrap();
        let out = env
            .payments
            .handle_callback(
                "nexi",
                &browser_return(&outcome_fields(&code, esito, 1234, MAC_KEY)),
            )
            .await
            .unwrap();
        assert_eq!(out.transaction.status, status, "{esito}");
        let actor = Actor::payer(payer);
        let cart = env
            .payments
            .open_cart(&actor, env.fx.creditor.id, Fixture::payer(payer))
            .await
            .unwrap();
        let items = env.payments.cart(&actor, cart.id).await.unwrap().items;
        assert_eq!(items[0].state, ItemState::Open, "{esito}: payable again");
    }
}

// ------------------------------------------------------------------ back office

#[tokio::test]
async fn card_refunds_go_through_the_back_office_and_never_exceed_what_was_paid() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let tx_id = checkout.transaction.id;
    env.paid(&checkout).await;
    let eur = |s: &str| Money::parse_eur(s).unwrap();

    let first = env
        .payments
        .refund(
            &env.operator,
            tx_id,
            RefundRequest::partial(eur("5.00"), "r1"),
        )
        .await
        .unwrap();
    assert_eq!(first.status, RefundStatus::Succeeded, "{first:?}");
    let sent = env.office.requests(REFUND_PATH);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["apiKey"], ALIAS);
    assert_eq!(sent[0]["codiceTransazione"], cod_trans(tx_id));
    assert_eq!(sent[0]["importo"], "500");
    assert_eq!(sent[0]["divisa"], "978");
    assert_eq!(
        first.provider_ref.as_deref(),
        Some("1"),
        "XPay's idOperazione"
    );

    let err = env
        .payments
        .refund(
            &env.operator,
            tx_id,
            RefundRequest::partial(eur("7.35"), "r2"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.validation_errors().map(|v| v.fields()),
        Some(vec!["amount"])
    );
    assert_eq!(
        env.office.requests(REFUND_PATH).len(),
        1,
        "XPay is not asked"
    );

    let rest = env
        .payments
        .refund(&env.operator, tx_id, RefundRequest::full("r3"))
        .await
        .unwrap();
    assert_eq!(rest.amount, eur("7.34"));
    assert_eq!(env.tx(tx_id).await.status, TxStatus::Refunded);
    assert_eq!(env.office.0.lock().unwrap().refunds.len(), 2);
}

#[tokio::test]
async fn mybank_payments_are_not_refunded() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "20,00", MethodKind::AccountDebit).await;
    env.paid(&checkout).await;
    let err = env
        .payments
        .refund(
            &env.operator,
            checkout.transaction.id,
            RefundRequest::full("r1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Gateway {
            kind: GatewayErrorKind::NotSupported(_),
            ..
        }
    ));
    let refunds = env
        .payments
        .refunds(&env.operator, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(
        refunds[0].status,
        RefundStatus::Failed,
        "recorded as refused"
    );
    assert!(env.office.requests(REFUND_PATH).is_empty());
    assert_eq!(env.tx(checkout.transaction.id).await.status, TxStatus::Paid);
}

#[tokio::test]
async fn a_refund_xpay_did_not_answer_is_sent_once_and_left_in_doubt() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    env.paid(&checkout).await;
    env.office.trouble(Trouble::Slow(Duration::from_secs(2)));
    let err = env
        .payments
        .refund(
            &env.operator,
            checkout.transaction.id,
            RefundRequest::full("r1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Gateway {
            kind: GatewayErrorKind::Unavailable,
            ..
        }
    ));
    assert_eq!(
        env.office.requests(REFUND_PATH).len(),
        1,
        "storna has no idempotency key: never sent twice"
    );
    let refunds = env
        .payments
        .refunds(&env.operator, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(refunds[0].status, RefundStatus::Requested);

    // An answer whose MAC does not verify is not taken as a refund either.
    let other = env.pay("bruno", "3,00", MethodKind::Card).await;
    env.paid(&other).await;
    env.office.0.lock().unwrap().forge_answers = true;
    let err = env
        .payments
        .refund(
            &env.operator,
            other.transaction.id,
            RefundRequest::full("r1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Gateway { .. }), "{err:?}");
    let refunds = env
        .payments
        .refunds(&env.operator, other.transaction.id)
        .await
        .unwrap();
    assert_eq!(
        refunds[0].status,
        RefundStatus::Requested,
        "in doubt, not done"
    );
    assert_eq!(env.tx(other.transaction.id).await.status, TxStatus::Paid);
}

#[tokio::test]
async fn a_lost_notification_is_recovered_from_the_order_status_through_500_and_timeout() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let never_paid = env.pay("bruno", "1,00", MethodKind::Card).await;
    let code = checkout.transaction.provider_ref.clone().unwrap();
    env.office.order(&code, 1234, "Contabilizzato");
    // The payer paid; XPay's notification never arrived; the back office first answers
    // 500, then too late, then in time.
    env.office.trouble(Trouble::ServerError);
    env.office.trouble(Trouble::Slow(Duration::from_secs(2)));
    env.clock.advance(Duration::from_secs(15 * 60));
    let report = env
        .payments
        .reconcile_pending(Duration::from_secs(600), 100)
        .await
        .unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.applied, 1);
    assert_eq!(
        report.failed, 1,
        "XPay knows no order for the one never paid"
    );
    assert_eq!(env.tx(checkout.transaction.id).await.status, TxStatus::Paid);
    assert_eq!(
        env.tx(never_paid.transaction.id).await.status,
        TxStatus::Pending
    );
    let events = env
        .payments
        .events(&env.operator, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(
        events.iter().filter(|e| e.to == TxStatus::Paid).count(),
        1,
        "paid once"
    );
    assert_eq!(env.mails().await, 2);
    // The notification arriving late is a replay.
    let late = env
        .payments
        .handle_callback(
            "nexi",
            &notification(&outcome_fields(&code, "OK", 1234, MAC_KEY)),
        )
        .await
        .unwrap();
    assert!(!late.applied);
}

#[tokio::test]
async fn configuration_errors_name_their_field() {
    let field = |r: Result<NexiGateway>| {
        r.unwrap_err()
            .validation_errors()
            .map(|v| v.fields().join(","))
    };
    assert_eq!(
        field(NexiGateway::new("", MAC_KEY, NOTIFY)).as_deref(),
        Some("alias")
    );
    assert_eq!(
        field(NexiGateway::new(ALIAS, "", NOTIFY)).as_deref(),
        Some("mac_key")
    );
    assert_eq!(
        field(NexiGateway::new(ALIAS, MAC_KEY, "ftp://x")).as_deref(),
        Some("notify_url")
    );
    assert_eq!(
        field(
            NexiGateway::new(ALIAS, MAC_KEY, NOTIFY)
                .unwrap()
                .with_methods(&[MethodKind::SepaDirectDebit])
        )
        .as_deref(),
        Some("methods")
    );
    let debug = format!("{:?}", gateway("http://x"));
    assert!(!debug.contains(MAC_KEY), "{debug}");
}

/// A second merchant account (another body's alias and MAC key) is a second gateway with
/// its own id: its methods and its notifications go by that id.
#[tokio::test]
async fn a_second_merchant_account_is_a_gateway_with_its_own_id() {
    let unione = payments_gateways::nexi::NexiGateway::new(
        "ALIAS_WEB_00000002",
        "ANOTHERMACKEYFORTHEUNIONE",
        "https://portale.example.it/webhooks/nexi-unione",
    )
    .unwrap()
    .with_id("nexi-unione");
    assert_eq!(unione.id().as_str(), "nexi-unione");
    assert!(format!("{unione:?}").contains("nexi-unione"));
    // Both accounts in one service: two gateways, told apart by their ids.
    let comune = payments_gateways::nexi::NexiGateway::new(ALIAS, MAC_KEY, NOTIFY).unwrap();
    let built = Payments::builder()
        .store(Arc::new(InMemoryStore::new()))
        .gateway(Arc::new(comune))
        .gateway(Arc::new(unione))
        .notifier(Arc::new(RecordingNotifier::new()))
        .build();
    assert!(built.is_ok(), "{built:?}");
}
