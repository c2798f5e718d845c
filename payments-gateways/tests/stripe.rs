//! Stripe end to end on the in-memory store, against a wiremock server that answers as
//! Stripe's API documents (Checkout Sessions, refunds, errors) and honours
//! `Idempotency-Key` as Stripe does; webhooks signed as Stripe signs them.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use async_trait::async_trait;
use chrono::Utc;
use common::RETURN;
use hmac::{Hmac, Mac};
use payments_core::testing::Fixture;
use payments_core::testing::gateway::{GatewayDriver, run_all};
use payments_core::*;
use payments_gateways::http::HttpClient;
use payments_gateways::stripe::StripeGateway;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const API_KEY: &str = "sk_test_51Hx0nlyTheBodyKnowsThis";
const WEBHOOK_SECRET: &str = "whsec_0nlyStripeAndTheBodyKnowThis";

/// What the test server should do with the next request, before answering normally.
enum Trouble {
    /// Answer 500, doing nothing.
    ServerError,
    /// Do the work, then answer only after this long.
    Slow(Duration),
    /// Answer 409: a request with this idempotency key is still running.
    KeyInUse,
}

/// A form as Stripe reads it: name and value pairs, in order.
type Form = Vec<(String, String)>;

#[derive(Default)]
struct State {
    sessions: HashMap<String, Value>,
    refunds: Vec<Value>,
    by_key: HashMap<String, Value>,
    /// (method, path, Idempotency-Key, form)
    requests: Vec<(String, String, Option<String>, Form)>,
    trouble: VecDeque<Trouble>,
    counter: u32,
    /// The status new refunds get (`succeeded` unless a test says otherwise).
    refund_status: Option<String>,
    /// The API key this account takes (`API_KEY` unless a test says otherwise).
    api_key: Option<String>,
}

/// Stripe's API as far as the gateway uses it.
#[derive(Clone, Default)]
struct StripeApi(Arc<Mutex<State>>);

fn stripe_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"type": "invalid_request_error", "code": code, "message": message}
    }))
}

impl Respond for StripeApi {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let key = req
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
        let path = req.url.path().to_owned();
        s.requests.push((
            req.method.to_string(),
            path.clone(),
            key.clone(),
            form.clone(),
        ));
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let account_key = s.api_key.clone().unwrap_or_else(|| API_KEY.to_owned());
        if auth != Some(&format!("Bearer {account_key}")) {
            return stripe_error(401, "api_key_invalid", "Invalid API Key provided");
        }
        let trouble = if req.method.as_str() == "POST" {
            s.trouble.pop_front()
        } else {
            None
        };
        let delay = match trouble {
            Some(Trouble::ServerError) => {
                return ResponseTemplate::new(500).set_body_json(json!({
                    "error": {"type": "api_error", "message": "An unknown error occurred"}
                }));
            }
            Some(Trouble::Slow(d)) => Some(d),
            Some(Trouble::KeyInUse) => {
                return stripe_error(
                    409,
                    "idempotency_key_in_use",
                    "There is currently another in-progress request using this Stripe-Idempotency-Key",
                );
            }
            None => None,
        };
        let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let answer = match (req.method.as_str(), path.as_str()) {
            ("POST", "/v1/checkout/sessions") => {
                let key = key.expect("a session is created with an Idempotency-Key");
                if let Some(same) = s.by_key.get(&key) {
                    // Stripe replays the first answer to a key.
                    ResponseTemplate::new(200).set_body_json(same.clone())
                } else {
                    s.counter += 1;
                    let id = format!("cs_test_a1{:06}", s.counter);
                    let total: i64 = form
                        .iter()
                        .filter(|(k, _)| k.ends_with("[price_data][unit_amount]"))
                        .map(|(_, v)| v.parse::<i64>().unwrap())
                        .sum();
                    let metadata: serde_json::Map<String, Value> = form
                        .iter()
                        .filter_map(|(k, v)| {
                            k.strip_prefix("metadata[")
                                .and_then(|k| k.strip_suffix(']'))
                                .map(|k| (k.to_owned(), Value::from(v.clone())))
                        })
                        .collect();
                    let session = json!({
                        "id": id,
                        "object": "checkout.session",
                        "amount_subtotal": total,
                        "amount_total": total,
                        "client_reference_id": get("client_reference_id"),
                        "currency": get("line_items[0][price_data][currency]"),
                        "customer_email": get("customer_email"),
                        "expires_at": get("expires_at").unwrap().parse::<i64>().unwrap(),
                        "livemode": false,
                        "metadata": metadata,
                        "mode": "payment",
                        "payment_intent": null,
                        "payment_method_types": [get("payment_method_types[0]")],
                        "payment_status": "unpaid",
                        "status": "open",
                        "success_url": get("success_url"),
                        "cancel_url": get("cancel_url"),
                        "url": format!("https://checkout.stripe.com/c/pay/{id}#fidkdWxOYHwnPyd1blpxYHZxWjA0"),
                    });
                    s.sessions.insert(id, session.clone());
                    s.by_key.insert(key, session.clone());
                    ResponseTemplate::new(200).set_body_json(session)
                }
            }
            ("POST", p) if p.starts_with("/v1/checkout/sessions/") && p.ends_with("/expire") => {
                // Only an open session can be expired (Stripe's API reference).
                let id = p.split('/').nth(4).unwrap().to_owned();
                match s.sessions.get_mut(&id) {
                    Some(session) if session["status"] == "open" => {
                        session["status"] = "expired".into();
                        ResponseTemplate::new(200).set_body_json(session.clone())
                    }
                    Some(_) => stripe_error(
                        400,
                        "checkout_session_not_expirable",
                        "Only Checkout Sessions with a status in [\"open\"] can be expired.",
                    ),
                    None => stripe_error(404, "resource_missing", "No such checkout.session"),
                }
            }
            ("GET", p) if p.starts_with("/v1/refunds/") => {
                let id = p.rsplit('/').next().unwrap();
                match s.refunds.iter().find(|r| r["id"] == id) {
                    Some(r) => ResponseTemplate::new(200).set_body_json(r.clone()),
                    None => stripe_error(404, "resource_missing", "No such refund"),
                }
            }
            ("GET", p) if p.starts_with("/v1/checkout/sessions/") => {
                let id = p.rsplit('/').next().unwrap();
                match s.sessions.get(id) {
                    Some(session) => {
                        let mut session = session.clone();
                        let expand = req
                            .url
                            .query()
                            .is_some_and(|q| q.contains("payment_intent"));
                        if !expand && let Some(pi) = session["payment_intent"].get("id").cloned() {
                            session["payment_intent"] = pi;
                        }
                        ResponseTemplate::new(200).set_body_json(session)
                    }
                    None => stripe_error(404, "resource_missing", "No such checkout.session"),
                }
            }
            ("POST", "/v1/refunds") => {
                let key = key.expect("a refund is created with an Idempotency-Key");
                if let Some(same) = s.by_key.get(&key) {
                    ResponseTemplate::new(200).set_body_json(same.clone())
                } else {
                    let intent = get("payment_intent").unwrap_or_default();
                    let amount: i64 = get("amount").unwrap().parse().unwrap();
                    let paid = s
                        .sessions
                        .values()
                        .find(|v| v["payment_intent"]["id"] == intent.as_str())
                        .map(|v| v["amount_total"].as_i64().unwrap());
                    let refunded: i64 = s
                        .refunds
                        .iter()
                        .filter(|r| r["payment_intent"] == intent.as_str())
                        .map(|r| r["amount"].as_i64().unwrap())
                        .sum();
                    match paid {
                        None => stripe_error(400, "resource_missing", "No such payment_intent"),
                        Some(paid) if refunded + amount > paid => stripe_error(
                            400,
                            "amount_too_large",
                            "Refund amount is greater than unrefunded amount on charge",
                        ),
                        Some(_) => {
                            s.counter += 1;
                            let metadata: serde_json::Map<String, Value> = form
                                .iter()
                                .filter_map(|(k, v)| {
                                    k.strip_prefix("metadata[")
                                        .and_then(|k| k.strip_suffix(']'))
                                        .map(|k| (k.to_owned(), Value::from(v.clone())))
                                })
                                .collect();
                            let refund = json!({
                                "id": format!("re_3Mt{:06}", s.counter),
                                "object": "refund",
                                "amount": amount,
                                "currency": "eur",
                                "metadata": metadata,
                                "payment_intent": intent,
                                "reason": get("reason"),
                                "status": s.refund_status.clone().unwrap_or_else(|| "succeeded".into()),
                            });
                            s.refunds.push(refund.clone());
                            s.by_key.insert(key, refund.clone());
                            ResponseTemplate::new(200).set_body_json(refund)
                        }
                    }
                }
            }
            _ => stripe_error(404, "resource_missing", "Unrecognized request URL"),
        };
        match delay {
            Some(d) => answer.set_delay(d),
            None => answer,
        }
    }
}

impl StripeApi {
    fn session(&self, id: &str) -> Value {
        self.0.lock().unwrap().sessions[id].clone()
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Value)) -> Value {
        let mut s = self.0.lock().unwrap();
        let session = s.sessions.get_mut(id).unwrap();
        change(session);
        session.clone()
    }

    /// The payer paid on Stripe's page (card: at once; SEPA debit: still processing).
    fn pay(&self, id: &str, settled: bool) -> Value {
        self.update(id, |s| {
            s["status"] = "complete".into();
            s["payment_status"] = if settled { "paid" } else { "unpaid" }.into();
            s["payment_intent"] = json!({
                "id": format!("pi_3{}", &id[8..]),
                "object": "payment_intent",
                "status": if settled { "succeeded" } else { "processing" },
            });
        })
    }

    fn requests(&self, method: &str, path: &str) -> Vec<(Option<String>, Form)> {
        self.0
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p, _, _)| m == method && p == path)
            .map(|(_, _, k, f)| (k.clone(), f.clone()))
            .collect()
    }

    fn session_count(&self) -> usize {
        self.0.lock().unwrap().sessions.len()
    }

    fn trouble(&self, t: Trouble) {
        self.0.lock().unwrap().trouble.push_back(t);
    }

    /// New refunds get `status` (Stripe's `pending` for a slow method, say).
    fn refunds_become(&self, status: &str) {
        self.0.lock().unwrap().refund_status = Some(status.into());
    }

    /// The refund `id` moves on at Stripe: its object afterwards.
    fn refund_moves(&self, id: &str, status: &str, failure: Option<&str>) -> Value {
        let mut s = self.0.lock().unwrap();
        let r = s.refunds.iter_mut().find(|r| r["id"] == id).unwrap();
        r["status"] = status.into();
        if let Some(f) = failure {
            r["failure_reason"] = f.into();
        }
        r.clone()
    }
}

/// An event as Stripe sends it to a webhook endpoint.
fn event(kind: &str, session: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "object": "event",
        "api_version": "2024-06-20",
        "created": Utc::now().timestamp(),
        "data": {"object": session},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind,
    }))
    .unwrap()
}

/// `Stripe-Signature` as Stripe computes it: HMAC-SHA256 of "{t}.{body}", hex.
fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn signed(body: Vec<u8>, header: String) -> CallbackRequest {
    CallbackRequest::new(body).with_header("Stripe-Signature", header)
}

fn webhook(kind: &str, session: &Value) -> CallbackRequest {
    let body = event(kind, session);
    let t = Utc::now().timestamp();
    let header = format!("t={t},v1={}", signature(WEBHOOK_SECRET, t, &body));
    signed(body, header)
}

async fn server(api: &StripeApi) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(api.clone())
        .mount(&server)
        .await;
    server
}

fn gateway(base: &str, attempt: Duration) -> StripeGateway {
    StripeGateway::new(API_KEY, WEBHOOK_SECRET)
        .unwrap()
        .with_base_url(base)
        .with_methods(&[MethodKind::Card, MethodKind::SepaDirectDebit])
        .unwrap()
        .with_http(
            HttpClient::with_timeouts(Duration::from_secs(2), attempt)
                .unwrap()
                .with_retries(3, Duration::from_millis(20)),
        )
}

struct Env {
    payments: Payments,
    api: StripeApi,
    notifier: Arc<RecordingNotifier>,
    fx: Fixture,
    operator: Actor,
    clock: Arc<ManualClock>,
    _server: MockServer,
}

impl Env {
    async fn new() -> Env {
        Env::with(|uri| gateway(uri, Duration::from_secs(2))).await
    }

    async fn with(make: impl FnOnce(&str) -> StripeGateway) -> Env {
        let api = StripeApi::default();
        let server = server(&api).await;
        let uri = server.uri();
        Env::at(api, server, &uri, make).await
    }

    async fn at(
        api: StripeApi,
        server: MockServer,
        base: &str,
        make: impl FnOnce(&str) -> StripeGateway,
    ) -> Env {
        Env::on_store(api, server, base, make, Arc::new(InMemoryStore::new())).await
    }

    async fn on_store(
        api: StripeApi,
        server: MockServer,
        base: &str,
        make: impl FnOnce(&str) -> StripeGateway,
        store: Arc<dyn Store>,
    ) -> Env {
        let s = common::service(
            Arc::new(make(base)),
            store,
            &[MethodKind::Card, MethodKind::SepaDirectDebit],
        )
        .await;
        Env {
            payments: s.payments,
            api,
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

    /// The payer paid by card on Stripe's page; Stripe's webhook pays the transaction.
    async fn paid(&self, checkout: &Checkout) -> Value {
        let session = self.api.pay(&session_id(checkout), true);
        let out = self
            .payments
            .handle_callback("stripe", &webhook("checkout.session.completed", &session))
            .await
            .unwrap();
        assert_eq!(out.transaction.status, TxStatus::Paid);
        session
    }

    async fn tx(&self, id: TransactionId) -> Transaction {
        self.payments.transaction(&self.operator, id).await.unwrap()
    }

    async fn mails(&self) -> Vec<NotificationKind> {
        self.payments.dispatch_outbox().await.unwrap();
        self.notifier.sent().iter().map(|(n, _)| n.kind).collect()
    }
}

fn session_id(checkout: &Checkout) -> String {
    checkout.transaction.provider_ref.clone().unwrap()
}

// ------------------------------------------------------------------ the suite

struct Driver(StripeApi);

#[async_trait]
impl GatewayDriver for Driver {
    async fn complete(
        &self,
        _: &StartRequest,
        started: &Started,
        outcome: PaymentOutcome,
    ) -> CallbackRequest {
        let id = started.provider_ref.as_deref().unwrap();
        let (kind, session) = match outcome {
            PaymentOutcome::Paid => ("checkout.session.completed", self.0.pay(id, true)),
            PaymentOutcome::Failed => {
                self.0.pay(id, false);
                let session = self.0.update(id, |s| {
                    s["payment_intent"]["status"] = "requires_payment_method".into();
                });
                ("checkout.session.async_payment_failed", session)
            }
            PaymentOutcome::Cancelled => (
                "checkout.session.expired",
                self.0.update(id, |s| s["status"] = "expired".into()),
            ),
            PaymentOutcome::Pending | PaymentOutcome::Processing => {
                unreachable!("the suite never asks for pending")
            }
        };
        webhook(kind, &session)
    }

    fn secrets(&self) -> Vec<String> {
        vec![API_KEY.into(), WEBHOOK_SECRET.into()]
    }
}

#[tokio::test]
async fn stripe_passes_the_gateway_suite() {
    let api = StripeApi::default();
    let server = server(&api).await;
    let stripe = gateway(&server.uri(), Duration::from_secs(2));
    run_all(&stripe, &Driver(api)).await;
}

// ------------------------------------------------------------------ starting

#[tokio::test]
async fn a_session_is_created_with_stripes_form_fields_and_an_idempotency_key() {
    let env = Env::new().await;
    let alice = Actor::payer("alice");
    let cart = env
        .payments
        .open_cart(&alice, env.fx.creditor.id, Fixture::payer("alice"))
        .await
        .unwrap();
    for (case, amount) in [("2026/15", "16,00"), ("2026/16", "32,50")] {
        let fee = NewFreeItem::new(env.fx.fees.id, amount, format!("Diritti pratica {case}"))
            .with_extra("case_number", case)
            .with_extra("office", "edilizia");
        env.payments
            .add_free_item(&alice, cart.id, fee)
            .await
            .unwrap();
    }
    let checkout = env
        .payments
        .checkout(&alice, cart.id, env.fx.method(MethodKind::Card).id, "k1")
        .await
        .unwrap();
    let tx = &checkout.transaction;
    let requests = env.api.requests("POST", "/v1/checkout/sessions");
    assert_eq!(requests.len(), 1);
    let (key, form) = &requests[0];
    assert_eq!(
        key.as_deref(),
        Some(format!("payments-start-{}", tx.id).as_str())
    );
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no field {name}"))
    };
    assert_eq!(field("mode"), "payment");
    assert_eq!(field("payment_method_types[0]"), "card");
    assert!(!form.iter().any(|(k, _)| k == "payment_method_types[1]"));
    assert_eq!(field("client_reference_id"), tx.id.to_string());
    assert_eq!(field("metadata[transaction_id]"), tx.id.to_string());
    assert_eq!(
        field("payment_intent_data[metadata][transaction_id]"),
        tx.id.to_string()
    );
    assert_eq!(field("customer_email"), "alice@example.it");
    assert_eq!(field("locale"), "it");
    assert_eq!(
        field("success_url"),
        format!("{RETURN}?transaction={}&outcome=success", tx.id)
    );
    assert_eq!(
        field("cancel_url"),
        format!("{RETURN}?transaction={}&outcome=cancel", tx.id)
    );
    // One line item per item, oldest first, in cents.
    for (i, (reason, cents)) in [
        ("Diritti pratica 2026/15", "1600"),
        ("Diritti pratica 2026/16", "3250"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(field(&format!("line_items[{i}][quantity]")), "1");
        assert_eq!(
            field(&format!("line_items[{i}][price_data][currency]")),
            "eur"
        );
        assert_eq!(
            field(&format!("line_items[{i}][price_data][unit_amount]")),
            cents
        );
        assert_eq!(
            field(&format!("line_items[{i}][price_data][product_data][name]")),
            reason
        );
    }
    assert!(!form.iter().any(|(k, _)| k.starts_with("line_items[2]")));
    let expires: i64 = field("expires_at").parse().unwrap();
    let now = env.clock.now().timestamp();
    assert!(
        (now + 30 * 60..=now + 24 * 3600).contains(&expires),
        "Stripe takes 30 minutes to 24 hours"
    );
    // The payer goes to the session's page; the session is the provider's reference.
    let Instruction::Redirect {
        url,
        method,
        fields,
    } = &checkout.instruction
    else {
        panic!("a redirect")
    };
    assert_eq!(*method, RedirectMethod::Get);
    assert!(fields.is_empty());
    let session = env.api.session(&session_id(&checkout));
    assert_eq!(url, session["url"].as_str().unwrap());
    assert_eq!(tx.status, TxStatus::Pending);
    assert_eq!(
        tx.expires_at.timestamp(),
        expires,
        "the transaction lives as long"
    );

    // SEPA debit: its own method type, and days more for the debit to confirm.
    let sepa = env.pay("bruno", "20,00", MethodKind::SepaDirectDebit).await;
    let requests = env.api.requests("POST", "/v1/checkout/sessions");
    let (_, form) = requests.last().unwrap();
    assert!(form.contains(&("payment_method_types[0]".into(), "sepa_debit".into())));
    assert!(sepa.transaction.expires_at >= env.clock.now() + chrono::Duration::days(15));
}

/// A TCP proxy in front of `upstream` that, for the first `drops` connections, passes the
/// request on and hangs up as soon as the answer starts: the provider did the work, the
/// caller never hears of it.
async fn dropping_proxy(upstream: SocketAddr, drops: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut server = TcpStream::connect(upstream).await.unwrap();
            n += 1;
            if n > drops {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                continue;
            }
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut first = [0u8; 1];
                loop {
                    tokio::select! {
                        r = client.read(&mut buf) => match r {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if server.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        },
                        // The answer began: drop both ends.
                        _ = server.read(&mut first) => break,
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_start_retried_after_a_dropped_connection_creates_one_session() {
    let api = StripeApi::default();
    let server = server(&api).await;
    let proxy = dropping_proxy(*server.address(), 1).await;
    let env = Env::at(api, server, &format!("http://{proxy}"), |base| {
        gateway(base, Duration::from_secs(2))
    })
    .await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let requests = env.api.requests("POST", "/v1/checkout/sessions");
    assert_eq!(
        requests.len(),
        2,
        "the dropped attempt reached Stripe, then one retry"
    );
    assert_eq!(
        requests[0].0, requests[1].0,
        "both with the same Idempotency-Key"
    );
    assert_eq!(env.api.session_count(), 1, "one session");
    assert_eq!(
        env.api.session(&session_id(&checkout))["amount_total"],
        1234
    );
}

#[tokio::test]
async fn a_500_then_a_timeout_then_an_answer_make_one_session_and_one_charge() {
    let env = Env::with(|uri| gateway(uri, Duration::from_millis(400))).await;
    env.api.trouble(Trouble::ServerError);
    env.api.trouble(Trouble::Slow(Duration::from_secs(2)));
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let requests = env.api.requests("POST", "/v1/checkout/sessions");
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|(k, _)| *k == requests[0].0));
    assert_eq!(
        env.api.session_count(),
        1,
        "the slow attempt's session is the one used"
    );

    // The full flow: the payer pays once; the webhook pays the transaction; both mails.
    let session = env.api.pay(&session_id(&checkout), true);
    let out = env
        .payments
        .handle_callback("stripe", &webhook("checkout.session.completed", &session))
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(out.transaction.status, TxStatus::Paid);
    let kinds = env.mails().await;
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&NotificationKind::Receipt));
    assert!(kinds.contains(&NotificationKind::CreditorNotice));
    // Stripe delivers webhooks at least once: the replay changes nothing.
    let again = env
        .payments
        .handle_callback("stripe", &webhook("checkout.session.completed", &session))
        .await
        .unwrap();
    assert!(!again.applied);
    assert_eq!(env.mails().await.len(), 2);
}

#[tokio::test]
async fn stripe_unreachable_fails_the_start_and_frees_the_items() {
    let env = Env::with(|_| gateway("http://127.0.0.1:9", Duration::from_millis(200))).await;
    let err = env
        .fx
        .pay_fee(&env.payments, "alice", "12,34", MethodKind::Card)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Gateway {
            kind: GatewayErrorKind::Unavailable,
            ..
        }
    ));
    assert!(!format!("{err:?}").contains(API_KEY));
}

// ------------------------------------------------------------------ webhooks

#[tokio::test]
async fn webhooks_are_verified_as_stripe_signs_them() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let session = env.api.pay(&session_id(&checkout), true);
    let body = event("checkout.session.completed", &session);
    let now = Utc::now().timestamp();
    let good = signature(WEBHOOK_SECRET, now, &body);

    let mut tampered = body.clone();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b' ' { b'_' } else { b' ' };
    let old = now - 301;
    let refused = [
        (
            "a changed body",
            signed(tampered, format!("t={now},v1={good}")),
        ),
        (
            "a timestamp older than the tolerance",
            signed(
                body.clone(),
                format!("t={old},v1={}", signature(WEBHOOK_SECRET, old, &body)),
            ),
        ),
        (
            "another secret",
            signed(
                body.clone(),
                format!("t={now},v1={}", signature("whsec_another", now, &body)),
            ),
        ),
        (
            "a signature for another timestamp",
            signed(body.clone(), format!("t={},v1={good}", now - 1)),
        ),
        (
            "only a v0 scheme",
            signed(body.clone(), format!("t={now},v0={good}")),
        ),
        ("no header", CallbackRequest::new(body.clone())),
        (
            "a garbled header",
            signed(body.clone(), "t=abc,v1=zz".into()),
        ),
    ];
    for (what, request) in refused {
        let err = env
            .payments
            .handle_callback("stripe", &request)
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
        let tx = env.tx(checkout.transaction.id).await;
        assert_eq!(tx.status, TxStatus::Pending, "{what} changes nothing");
    }
    assert_eq!(
        env.payments
            .events(&env.operator, checkout.transaction.id)
            .await
            .unwrap()
            .len(),
        2,
        "no event from a refused webhook"
    );

    // Any of several v1 signatures (Stripe sends one per secret while rolling it) will do;
    // a timestamp within the tolerance is fine.
    let recent = now - 200;
    let header = format!(
        "t={recent},v1={},v1={},v0=ignored",
        signature("whsec_the_old_secret", recent, &body),
        signature(WEBHOOK_SECRET, recent, &body)
    );
    let out = env
        .payments
        .handle_callback("stripe", &signed(body, header))
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
}

#[tokio::test]
async fn a_sepa_debit_stays_pending_until_stripe_says_it_succeeded_or_failed() {
    let env = Env::new().await;
    let ok = env.pay("alice", "20,00", MethodKind::SepaDirectDebit).await;
    let processing = env.api.pay(&session_id(&ok), false);
    let out = env
        .payments
        .handle_callback(
            "stripe",
            &webhook("checkout.session.completed", &processing),
        )
        .await
        .unwrap();
    assert!(!out.applied, "completed but not paid: still pending");
    assert_eq!(out.transaction.status, TxStatus::Pending);
    assert!(
        env.mails().await.is_empty(),
        "no receipt before the money arrives"
    );

    let paid = env
        .api
        .update(&session_id(&ok), |s| s["payment_status"] = "paid".into());
    let out = env
        .payments
        .handle_callback(
            "stripe",
            &webhook("checkout.session.async_payment_succeeded", &paid),
        )
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
    assert_eq!(env.mails().await.len(), 2);

    let ko = env.pay("bruno", "20,00", MethodKind::SepaDirectDebit).await;
    let session = env.api.pay(&session_id(&ko), false);
    let out = env
        .payments
        .handle_callback(
            "stripe",
            &webhook("checkout.session.async_payment_failed", &session),
        )
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Failed);
    // The item is payable again.
    let bruno = Actor::payer("bruno");
    let cart = env
        .payments
        .open_cart(&bruno, env.fx.creditor.id, Fixture::payer("bruno"))
        .await
        .unwrap();
    let contents = env.payments.cart(&bruno, cart.id).await.unwrap();
    assert_eq!(contents.items.len(), 1);
    assert_eq!(contents.items[0].state, ItemState::Open);

    let gone = env.pay("carla", "5,00", MethodKind::Card).await;
    let expired = env
        .api
        .update(&session_id(&gone), |s| s["status"] = "expired".into());
    let out = env
        .payments
        .handle_callback("stripe", &webhook("checkout.session.expired", &expired))
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Cancelled);
}

#[tokio::test]
async fn an_amount_or_currency_that_differs_is_flagged_and_not_applied() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let paid = env.api.pay(&session_id(&checkout), true);
    let mut less = paid.clone();
    less["amount_total"] = 1.into();
    // Money all the same: recorded for operators and answered Ok, so Stripe does not send
    // it again (DESIGN.md, "Money is a fact"); the transaction is not paid by it.
    let out = env
        .payments
        .handle_callback("stripe", &webhook("checkout.session.completed", &less))
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(
        out.exception.as_ref().map(|e| e.kind),
        Some(ExceptionKind::AmountMismatch)
    );
    let mut dollars = paid.clone();
    dollars["currency"] = "usd".into();
    let err = env
        .payments
        .handle_callback("stripe", &webhook("checkout.session.completed", &dollars))
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
    assert_eq!(
        flagged.len(),
        1,
        "the wrong amount is there for operators to see"
    );
    assert_eq!(flagged[0].transaction_id, Some(checkout.transaction.id));
    assert_eq!(flagged[0].amount.map(|m| m.amount()), Some(cents(1)));
    // The right amount still pays.
    let out = env
        .payments
        .handle_callback("stripe", &webhook("checkout.session.completed", &paid))
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
}

fn cents(cents: i64) -> rust_decimal::Decimal {
    Money::from_minor(cents, Currency::Eur).unwrap().amount()
}

// ------------------------------------------------------------------ status and refunds

#[tokio::test]
async fn a_lost_webhook_is_recovered_by_the_reconciliation_sweep() {
    let env = Env::new().await;
    let paid = env.pay("alice", "12,34", MethodKind::Card).await;
    let open = env.pay("bruno", "1,00", MethodKind::Card).await;
    let expired = env.pay("carla", "2,00", MethodKind::Card).await;
    env.api.pay(&session_id(&paid), true);
    env.api
        .update(&session_id(&expired), |s| s["status"] = "expired".into());
    // Too recent: not asked yet.
    let report = env
        .payments
        .reconcile_pending(Duration::from_secs(600), 100)
        .await
        .unwrap();
    assert_eq!(report.checked, 0);
    env.clock.advance(Duration::from_secs(11 * 60));
    let report = env
        .payments
        .reconcile_pending(Duration::from_secs(600), 100)
        .await
        .unwrap();
    assert_eq!(
        (
            report.checked,
            report.applied,
            report.failed,
            report.skipped
        ),
        (3, 2, 0, 0)
    );
    assert_eq!(env.tx(paid.transaction.id).await.status, TxStatus::Paid);
    assert_eq!(env.tx(open.transaction.id).await.status, TxStatus::Pending);
    assert_eq!(
        env.tx(expired.transaction.id).await.status,
        TxStatus::Cancelled
    );
    assert_eq!(
        env.mails().await.len(),
        2,
        "the recovered payment's two mails"
    );
    // The webhook arriving late is a replay.
    let late = env
        .payments
        .handle_callback(
            "stripe",
            &webhook(
                "checkout.session.completed",
                &env.api.session(&session_id(&paid)),
            ),
        )
        .await
        .unwrap();
    assert!(!late.applied);
}

#[tokio::test]
async fn refunds_full_and_partial_never_exceed_what_was_paid() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "12,34", MethodKind::Card).await;
    let tx_id = checkout.transaction.id;
    let session = env.paid(&checkout).await;

    let eur = |s: &str| Money::parse_eur(s).unwrap();
    let first = env
        .payments
        .refund(
            &env.operator,
            tx_id,
            RefundRequest::partial(eur("5.00"), "r1").with_reason("duplicate fee"),
        )
        .await
        .unwrap();
    assert_eq!(first.status, RefundStatus::Succeeded);
    assert!(first.provider_ref.as_deref().unwrap().starts_with("re_"));
    let refunds = env.api.requests("POST", "/v1/refunds");
    assert_eq!(refunds.len(), 1);
    let (key, form) = &refunds[0];
    assert_eq!(
        key.as_deref(),
        Some(format!("payments-refund-{}", first.id).as_str())
    );
    let intent = session["payment_intent"]["id"].as_str().unwrap();
    assert!(form.contains(&("payment_intent".into(), intent.into())));
    assert!(form.contains(&("amount".into(), "500".into())));
    assert_eq!(
        env.tx(tx_id).await.status,
        TxStatus::Paid,
        "partly refunded: still paid"
    );

    // 7.34 is left: 8.00 is refused before Stripe is asked.
    let err = env
        .payments
        .refund(
            &env.operator,
            tx_id,
            RefundRequest::partial(eur("8.00"), "r2"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.validation_errors().map(|v| v.fields()),
        Some(vec!["amount"]),
        "{err}"
    );
    assert!(err.to_string().contains("7.34"), "{err}");
    assert_eq!(env.api.requests("POST", "/v1/refunds").len(), 1);

    // The same key again is the same refund, not a second one.
    let same = env
        .payments
        .refund(
            &env.operator,
            tx_id,
            RefundRequest::partial(eur("5.00"), "r1"),
        )
        .await
        .unwrap();
    assert_eq!(same.id, first.id);
    assert_eq!(env.api.requests("POST", "/v1/refunds").len(), 1);

    // A payer may not refund; a viewer neither.
    for actor in [
        Actor::payer("alice"),
        Actor::operator(env.fx.creditor.id, Role::Viewer, "vera"),
    ] {
        let err = env
            .payments
            .refund(&actor, tx_id, RefundRequest::full("r3"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    }

    // The rest: the transaction is refunded.
    let rest = env
        .payments
        .refund(&env.operator, tx_id, RefundRequest::full("r3"))
        .await
        .unwrap();
    assert_eq!(rest.amount, eur("7.34"));
    assert_eq!(env.tx(tx_id).await.status, TxStatus::Refunded);
    let err = env
        .payments
        .refund(
            &env.operator,
            tx_id,
            RefundRequest::partial(eur("0.01"), "r4"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let list = env
        .payments
        .refunds(&Actor::payer("alice"), tx_id)
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    let notes: Vec<String> = env
        .payments
        .events(&env.operator, tx_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("refund of 5.00 EUR requested: duplicate fee"))
    );
    assert!(notes.iter().any(|n| n.contains("refunded in full")));
}

#[tokio::test]
async fn a_refund_stripe_could_not_answer_is_retried_with_the_same_key() {
    let env = Env::with(|uri| gateway(uri, Duration::from_millis(300))).await;
    let checkout = env.pay("alice", "10,00", MethodKind::Card).await;
    env.paid(&checkout).await;
    // Every attempt of the first call fails (a 500, then slow answers that did the work).
    env.api.trouble(Trouble::ServerError);
    for _ in 0..3 {
        env.api.trouble(Trouble::Slow(Duration::from_secs(1)));
    }
    let err = env
        .payments
        .refund(
            &env.operator,
            checkout.transaction.id,
            RefundRequest::full("once"),
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
    let list = env
        .payments
        .refunds(&env.operator, checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(
        list[0].status,
        RefundStatus::Requested,
        "in doubt: still counted"
    );
    let err = env
        .payments
        .refund(
            &env.operator,
            checkout.transaction.id,
            RefundRequest::full("another"),
        )
        .await
        .unwrap_err();
    assert!(
        err.validation_errors().is_some(),
        "nothing left while in doubt"
    );

    let done = env
        .payments
        .refund(
            &env.operator,
            checkout.transaction.id,
            RefundRequest::full("once"),
        )
        .await
        .unwrap();
    assert_eq!(done.status, RefundStatus::Succeeded);
    let requests = env.api.requests("POST", "/v1/refunds");
    assert!(requests.len() >= 5);
    assert!(requests.iter().all(|(k, _)| *k == requests[0].0), "one key");
    assert_eq!(
        env.api.0.lock().unwrap().refunds.len(),
        1,
        "one refund at Stripe"
    );
    assert_eq!(
        env.tx(checkout.transaction.id).await.status,
        TxStatus::Refunded
    );
}

#[tokio::test]
async fn configuration_errors_name_their_field_and_keys_never_show() {
    let field = |r: Result<StripeGateway>| {
        r.unwrap_err()
            .validation_errors()
            .map(|v| v.fields().join(","))
    };
    assert_eq!(
        field(StripeGateway::new("", WEBHOOK_SECRET)).as_deref(),
        Some("api_key")
    );
    assert_eq!(
        field(StripeGateway::new(API_KEY, " ")).as_deref(),
        Some("webhook_secret")
    );
    assert_eq!(
        field(
            StripeGateway::new(API_KEY, WEBHOOK_SECRET)
                .unwrap()
                .with_methods(&[MethodKind::BankTransfer])
        )
        .as_deref(),
        Some("methods")
    );
    let debug = format!("{:?}", gateway("http://x", Duration::from_secs(1)));
    assert!(
        !debug.contains(API_KEY) && !debug.contains(WEBHOOK_SECRET),
        "{debug}"
    );
    // A method the body did not enable on Stripe is refused.
    let only_cards = StripeGateway::new(API_KEY, WEBHOOK_SECRET)
        .unwrap()
        .with_base_url("http://127.0.0.1:9");
    let req = payments_core::testing::gateway::start_request(
        &only_cards,
        MethodKind::SepaDirectDebit,
        "1.00",
    );
    let err = only_cards.start(&req).await.unwrap_err();
    assert_eq!(
        err.validation_errors().map(|v| v.fields()),
        Some(vec!["method"])
    );
}

#[tokio::test]
async fn concurrent_refunds_on_sqlite_never_exceed_what_was_paid() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stripe-refunds");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join(format!("{}.db", TransactionId::new()));
    let store = payments_sqlx::SqlxStore::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let api = StripeApi::default();
    let server = server(&api).await;
    let uri = server.uri();
    let env = Env::on_store(
        api,
        server,
        &uri,
        |base| gateway(base, Duration::from_secs(5)),
        Arc::new(store),
    )
    .await;
    let checkout = env.pay("alice", "10,00", MethodKind::Card).await;
    env.paid(&checkout).await;

    // Eight operators refund 3.00 each at once: three fit in 10.00.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let payments = env.payments.clone();
        let operator = env.operator.clone();
        let tx = checkout.transaction.id;
        tasks.push(tokio::spawn(async move {
            payments
                .refund(
                    &operator,
                    tx,
                    RefundRequest::partial(Money::parse_eur("3.00").unwrap(), format!("k{i}")),
                )
                .await
        }));
    }
    let mut done = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.status, RefundStatus::Succeeded);
                done += 1;
            }
            Err(e) => assert_eq!(
                e.validation_errors().map(|v| v.fields()),
                Some(vec!["amount"]),
                "{e}"
            ),
        }
    }
    assert_eq!(done, 3);
    let at_stripe: i64 = env
        .api
        .0
        .lock()
        .unwrap()
        .refunds
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(at_stripe, 900, "Stripe was asked for 9.00 in all");
    assert_eq!(
        env.tx(checkout.transaction.id).await.status,
        TxStatus::Paid,
        "1.00 is left"
    );
    let rest = env
        .payments
        .refund(
            &env.operator,
            checkout.transaction.id,
            RefundRequest::full("rest"),
        )
        .await
        .unwrap();
    assert_eq!(rest.amount, Money::parse_eur("1.00").unwrap());
    assert_eq!(
        env.tx(checkout.transaction.id).await.status,
        TxStatus::Refunded
    );
}

#[tokio::test]
async fn a_refund_whose_key_stripe_says_is_in_use_stays_in_doubt() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "10,00", MethodKind::Card).await;
    env.paid(&checkout).await;
    env.api.trouble(Trouble::KeyInUse);
    let tx = checkout.transaction.id;
    let err = env
        .payments
        .refund(&env.operator, tx, RefundRequest::full("k"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Gateway {
            kind: GatewayErrorKind::Unavailable,
            ..
        }
    ));
    let refunds = env.payments.refunds(&env.operator, tx).await.unwrap();
    assert_eq!(
        refunds[0].status,
        RefundStatus::Requested,
        "not marked failed"
    );
    let done = env
        .payments
        .refund(&env.operator, tx, RefundRequest::full("k"))
        .await
        .unwrap();
    assert_eq!(done.status, RefundStatus::Succeeded);
    assert_eq!(env.tx(tx).await.status, TxStatus::Refunded);
}

// ------------------------------------------------------------------ closing and refunds that end later

/// A refund event as Stripe sends it: `kind` with the refund object.
fn refund_webhook(kind: &str, refund: &Value) -> CallbackRequest {
    webhook(kind, refund)
}

#[tokio::test]
async fn cancelling_expires_the_checkout_session_at_stripe_first() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "10,00", MethodKind::Card).await;
    let id = session_id(&checkout);
    let cancelled = env
        .payments
        .cancel(&Actor::payer("alice"), checkout.transaction.id)
        .await
        .unwrap();
    assert_eq!(cancelled.status, TxStatus::Cancelled);
    // Before the items were freed, Stripe was told to expire the session (Stripe's API:
    // "After it expires, a customer can't complete a Checkout Session"), so a page the
    // payer left open can no longer take the money.
    let expired = env
        .api
        .requests("POST", &format!("/v1/checkout/sessions/{id}/expire"));
    assert_eq!(expired.len(), 1);
    assert_eq!(env.api.session(&id)["status"], "expired");
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
            .contains("closed"),
        "{events:?}"
    );
    // Stripe then tells of the expiry: old news, answered and changing nothing.
    let news = env
        .payments
        .handle_callback(
            "stripe",
            &webhook("checkout.session.expired", &env.api.session(&id)),
        )
        .await
        .unwrap();
    assert!(!news.applied);
    assert_eq!(news.transaction.status, TxStatus::Cancelled);

    // A payer who paid a moment ago cannot cancel the payment away: it is recorded.
    let paid = env.pay("bruno", "10,00", MethodKind::Card).await;
    env.api.pay(&session_id(&paid), true);
    let answer = env
        .payments
        .cancel(&Actor::payer("bruno"), paid.transaction.id)
        .await
        .unwrap();
    assert_eq!(answer.status, TxStatus::Paid);
    assert!(
        env.api
            .requests(
                "POST",
                &format!("/v1/checkout/sessions/{}/expire", session_id(&paid))
            )
            .is_empty(),
        "nothing to expire"
    );
}

#[tokio::test]
async fn the_expiry_closes_the_session_and_waits_for_a_sepa_debit() {
    let env = Env::new().await;
    let card = env.pay("alice", "10,00", MethodKind::Card).await;
    let sepa = env.pay("bruno", "20,00", MethodKind::SepaDirectDebit).await;
    // The SEPA payer completed Stripe's page: the debit is processing.
    let session = env.api.pay(&session_id(&sepa), false);
    let processing = env
        .payments
        .handle_callback("stripe", &webhook("checkout.session.completed", &session))
        .await
        .unwrap();
    assert!(!processing.applied);
    assert_eq!(processing.transaction.status, TxStatus::Pending);
    env.clock.advance(Duration::from_secs(30 * 24 * 3600));
    assert_eq!(env.payments.expire_due().await.unwrap(), 1, "the card's");
    assert_eq!(env.tx(card.transaction.id).await.status, TxStatus::Expired);
    assert_eq!(env.api.session(&session_id(&card))["status"], "expired");
    // Never expired while Stripe says processing; past the longest window an operator
    // is told.
    let sepa_tx = env.tx(sepa.transaction.id).await;
    assert_eq!(sepa_tx.status, TxStatus::Pending);
    let ledger = env
        .payments
        .exceptions(&env.operator, &ExceptionQuery::new(env.fx.creditor.id))
        .await
        .unwrap();
    assert_eq!(
        ledger.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [ExceptionKind::StillProcessing]
    );
    assert!(
        env.api
            .requests(
                "POST",
                &format!("/v1/checkout/sessions/{}/expire", session_id(&sepa))
            )
            .is_empty()
    );
}

#[tokio::test]
async fn a_refund_stripe_accepts_as_pending_ends_by_webhook_or_by_the_sweep() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "30,00", MethodKind::Card).await;
    env.paid(&checkout).await;
    let tx = checkout.transaction.id;
    let mails_before = env.mails().await.len();
    env.api.refunds_become("pending");

    // Stripe accepts the first refund as pending: not done, nobody told yet.
    let first = env
        .payments
        .refund(
            &env.operator,
            tx,
            RefundRequest::partial(Money::parse_eur("10").unwrap(), "one"),
        )
        .await
        .unwrap();
    assert_eq!(first.status, RefundStatus::Pending);
    let re = first.provider_ref.clone().unwrap();
    assert!(re.starts_with("re_"));
    assert_eq!(env.mails().await.len(), mails_before, "nothing to tell yet");

    // Its webhook says it succeeded: now the payer and the body are told.
    let done = env.api.refund_moves(&re, "succeeded", None);
    let out = env
        .payments
        .handle_callback("stripe", &refund_webhook("refund.updated", &done))
        .await
        .unwrap();
    assert!(out.applied);
    let refunds = env.payments.refunds(&env.operator, tx).await.unwrap();
    assert_eq!(refunds[0].status, RefundStatus::Succeeded);
    let mails = env.mails().await;
    assert_eq!(
        mails[mails_before..],
        [
            NotificationKind::RefundReceipt,
            NotificationKind::RefundNotice
        ]
    );
    let replay = env
        .payments
        .handle_callback("stripe", &refund_webhook("refund.updated", &done))
        .await
        .unwrap();
    assert!(!replay.applied, "once");

    // The second, pending too, fails at Stripe and no webhook comes: the sweep finds it,
    // and an operator sees it and retries it.
    let second = env
        .payments
        .refund(
            &env.operator,
            tx,
            RefundRequest::partial(Money::parse_eur("5").unwrap(), "two"),
        )
        .await
        .unwrap();
    assert_eq!(second.status, RefundStatus::Pending);
    env.api.refund_moves(
        second.provider_ref.as_deref().unwrap(),
        "failed",
        Some("expired_or_canceled_card"),
    );
    env.clock.advance(Duration::from_secs(11 * 60));
    let report = env
        .payments
        .reconcile_pending(Duration::from_secs(600), 100)
        .await
        .unwrap();
    assert_eq!((report.refunds_checked, report.refunds_applied), (1, 1));
    let refunds = env.payments.refunds(&env.operator, tx).await.unwrap();
    assert_eq!(refunds[1].status, RefundStatus::Failed);
    assert!(
        refunds[1]
            .note
            .as_deref()
            .unwrap()
            .contains("expired_or_canceled_card")
    );
    let ledger = env
        .payments
        .exceptions(
            &env.operator,
            &ExceptionQuery::new(env.fx.creditor.id).of_kind(ExceptionKind::RefundFailed),
        )
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].amount, Some(Money::parse_eur("5").unwrap()));
    env.api.refunds_become("succeeded");
    let retried = env
        .payments
        .retry_refund(&env.operator, tx, second.id)
        .await
        .unwrap();
    assert_eq!(retried.status, RefundStatus::Succeeded);
    assert_eq!(retried.amount, Money::parse_eur("5").unwrap());
    let again = env
        .payments
        .retry_refund(&env.operator, tx, second.id)
        .await
        .unwrap();
    assert_eq!(again.id, retried.id, "one retry, however many clicks");
    assert_eq!(
        env.tx(tx).await.status,
        TxStatus::Paid,
        "15.00 of 30.00 back"
    );
}

#[tokio::test]
async fn a_refund_made_in_stripes_dashboard_is_recorded_and_acknowledged() {
    let env = Env::new().await;
    let checkout = env.pay("alice", "30,00", MethodKind::Card).await;
    env.paid(&checkout).await;
    // Money left the account without the library asking: Stripe tells of it.
    let refund = json!({
        "id": "re_3MtDashboard00001",
        "object": "refund",
        "amount": 1000,
        "currency": "eur",
        "metadata": {"transaction_id": checkout.transaction.id.to_string()},
        "payment_intent": "pi_3whatever",
        "status": "succeeded",
    });
    let news = refund_webhook("refund.updated", &refund);
    let out = env.payments.handle_callback("stripe", &news).await.unwrap();
    assert!(
        out.applied,
        "recorded, and acknowledged so Stripe stops sending it"
    );
    let e = out.exception.expect("an exception");
    assert_eq!(e.kind, ExceptionKind::OutsideRefund);
    assert_eq!(e.amount, Some(Money::parse_eur("10").unwrap()));
    assert_eq!(e.provider_ref.as_deref(), Some("re_3MtDashboard00001"));
    let again = env.payments.handle_callback("stripe", &news).await.unwrap();
    assert!(!again.applied, "once");
    assert_eq!(env.tx(checkout.transaction.id).await.status, TxStatus::Paid);
}

/// A deployment serving two bodies, each with its own Stripe account: a gateway per account
/// (`with_id`), each body's method on its own, webhooks routed by the account's id.
#[tokio::test]
async fn two_bodies_pay_through_their_own_stripe_accounts() {
    const UNIONE_KEY: &str = "sk_test_51UnioneDeiComuniOnly";
    const UNIONE_SECRET: &str = "whsec_UnioneDeiComuniOnlyKnowsThis";
    let (api_a, api_b) = (StripeApi::default(), StripeApi::default());
    api_b.0.lock().unwrap().api_key = Some(UNIONE_KEY.into());
    let (server_a, server_b) = (server(&api_a).await, server(&api_b).await);
    let comune = gateway(&server_a.uri(), Duration::from_secs(2)).with_id("stripe-comune");
    let unione = StripeGateway::new(UNIONE_KEY, UNIONE_SECRET)
        .unwrap()
        .with_base_url(server_b.uri())
        .with_id("stripe-unione");
    let payments = Payments::builder()
        .store(Arc::new(InMemoryStore::new()))
        .gateway(Arc::new(comune))
        .gateway(Arc::new(unione))
        .notifier(Arc::new(RecordingNotifier::new()))
        .return_url(RETURN)
        .build()
        .unwrap();
    let a = Fixture::install(&payments, "stripe-comune", &[MethodKind::Card])
        .await
        .unwrap();
    let b = Fixture::install(&payments, "stripe-unione", &[MethodKind::Card])
        .await
        .unwrap();
    let pay_a = a
        .pay_fee(&payments, "mario", "16.00", MethodKind::Card)
        .await
        .unwrap();
    let pay_b = b
        .pay_fee(&payments, "giulia", "25.00", MethodKind::Card)
        .await
        .unwrap();
    // Each body's session was opened on its own account.
    assert_eq!((api_a.session_count(), api_b.session_count()), (1, 1));
    assert_eq!(pay_a.transaction.gateway_id.as_str(), "stripe-comune");
    assert_eq!(pay_b.transaction.gateway_id.as_str(), "stripe-unione");

    // The first body's webhook, signed with its secret, verifies only at its account.
    let session_a = api_a.pay(&session_id(&pay_a), true);
    let hook_a = webhook("checkout.session.completed", &session_a);
    let wrong = payments.handle_callback("stripe-unione", &hook_a).await;
    assert!(
        matches!(
            wrong,
            Err(Error::Gateway {
                kind: GatewayErrorKind::InvalidSignature,
                ..
            })
        ),
        "{wrong:?}"
    );
    let out = payments
        .handle_callback("stripe-comune", &hook_a)
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
    // The second body's, with its own secret.
    let session_b = api_b.pay(&session_id(&pay_b), true);
    let body = event("checkout.session.completed", &session_b);
    let t = Utc::now().timestamp();
    let hook_b = signed(
        body.clone(),
        format!("t={t},v1={}", signature(UNIONE_SECRET, t, &body)),
    );
    let out = payments
        .handle_callback("stripe-unione", &hook_b)
        .await
        .unwrap();
    assert_eq!(out.transaction.status, TxStatus::Paid);
    // An operator of one body never sees the other's payment.
    let operator_b = Actor::operator(b.creditor.id, Role::Manager, "bruno");
    assert!(matches!(
        payments
            .transaction(&operator_b, pay_a.transaction.id)
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(
        payments
            .transaction(&operator_b, pay_b.transaction.id)
            .await
            .is_ok()
    );
}
