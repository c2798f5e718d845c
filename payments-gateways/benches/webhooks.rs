//! `cargo bench -p payments-gateways --bench webhooks`: verifying and applying provider
//! callbacks.
//!
//! N callbacks of each kind (N = `BENCH_WEBHOOKS`, 20,000 by default):
//!
//! 1. Stripe: `checkout.session.completed` events as Stripe sends them (about 1.3 KB), with
//!    `Stripe-Signature`. The floor is the least any verifier does: the HMAC-SHA256 of
//!    `"{t}.{body}"`.
//!    `StripeGateway::parse_callback` (verify in constant time, check the timestamp, read
//!    the event, map it) is measured beside it.
//! 2. Nexi XPay: `urlpost` notifications (form bodies). The floor: splitting the form and
//!    the SHA-1 of the MAC string; `NexiGateway::parse_callback` beside it.
//! 3. `Payments::handle_callback` with Nexi (whose start needs no server): verify, find the
//!    transaction, pay it (its event, settled item and outbox messages): `BENCH_APPLIED`
//!    a run (5,000 by default) on the in-memory store, on SQLite with `BENCH_STORE=sqlite`,
//!    on PostgreSQL with `BENCH_STORE=postgres` and `DATABASE_URL`.
//!
//! Each measure runs `BENCH_RUNS` times (at least 5), the floor and the library in turn,
//! and prints the median, min and max of both and of their ratio. The callbacks are made
//! in memory before the runs (a warm cache); each run applying them has its own open
//! transactions, made before it and not timed, in a store that grows run by run.

mod common;

use std::sync::Arc;

use common::{alternate, apply_runs, postgres_store, runs, runtime, size, sqlite_store};

use hmac::{Hmac, Mac};
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::nexi::{NexiGateway, result_mac};
use payments_gateways::stripe::StripeGateway;
use serde_json::json;
use sha1::{Digest, Sha1};
use sha2::Sha256;

const WEBHOOK_SECRET: &str = "whsec_0nlyStripeAndTheBodyKnowThis";
const MAC_KEY: &str = "TLGHTOWIZXQPTIZRALWKG";

fn stripe_event(i: usize, t: i64) -> Vec<u8> {
    let id = format!("cs_test_a1{i:020}");
    serde_json::to_vec(&json!({
        "id": format!("evt_{i:024}"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": t,
        "data": {"object": {
            "id": id,
            "object": "checkout.session",
            "amount_subtotal": 1000 + i,
            "amount_total": 1000 + i,
            "client_reference_id": TransactionId::new().to_string(),
            "currency": "eur",
            "customer_email": "alice@example.it",
            "expires_at": t + 3600,
            "livemode": false,
            "metadata": {"transaction_id": "x", "creditor_id": "y"},
            "mode": "payment",
            "payment_intent": format!("pi_3{i:020}"),
            "payment_method_types": ["card"],
            "payment_status": "paid",
            "status": "complete",
            "success_url": "https://portale.example.it/pagamenti/esito?outcome=success",
            "cancel_url": "https://portale.example.it/pagamenti/esito?outcome=cancel",
            "url": null,
        }},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "checkout.session.completed",
    }))
    .unwrap()
}

fn nexi_notification(code: &str, cents: i64) -> CallbackRequest {
    let importo = cents.to_string();
    let mac = result_mac(
        code, "OK", &importo, "EUR", "20261127", "101500", "TESTOK", MAC_KEY,
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("codTrans", code)
        .append_pair("esito", "OK")
        .append_pair("importo", &importo)
        .append_pair("divisa", "EUR")
        .append_pair("data", "20261127")
        .append_pair("orario", "101500")
        .append_pair("codAut", "TESTOK")
        .append_pair("alias", "ALIAS_WEB_00000001")
        .append_pair("brand", "VISA")
        .append_pair("mac", &mac)
        .finish();
    CallbackRequest::new(body)
}

/// The floor for a Nexi notification: the form split and the MAC string hashed.
fn nexi_floor(body: &[u8]) -> usize {
    let fields: Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> =
        form_urlencoded::parse(body).collect();
    let mut text = String::with_capacity(200);
    for (k, v) in fields.iter().take(7) {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
    }
    text.push_str(MAC_KEY);
    Sha1::digest(text.as_bytes())[0] as usize + fields.len()
}

/// [`runs`] runs on `store`, each of `n` Nexi notifications of card payments opened for
/// it (untimed): the floor reads them, then `handle_callback` applies them.
async fn apply_on(store: Arc<dyn Store>, name: &str, n: usize) {
    let nexi = Arc::new(
        NexiGateway::new(
            "ALIAS_WEB_00000001",
            MAC_KEY,
            "https://portale.example.it/webhooks/nexi",
        )
        .unwrap(),
    );
    let payments = Payments::builder()
        .store(store)
        .gateway(nexi)
        .notifier(Arc::new(RecordingNotifier::new()))
        .return_url("https://portale.example.it/pagamenti/esito")
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "nexi", &[MethodKind::Card])
        .await
        .unwrap();
    apply_runs(
        &payments,
        "nexi",
        name,
        n,
        "Nexi handle_callback (verify + find + pay), floor form split + SHA-1",
        "callbacks",
        async |run| {
            let mut callbacks = Vec::with_capacity(n);
            for i in run * n..(run + 1) * n {
                let checkout = fx
                    .pay_fee(&payments, &format!("p{i}"), "16,00", MethodKind::Card)
                    .await
                    .unwrap();
                let code = checkout.transaction.provider_ref.clone().unwrap();
                callbacks.push(nexi_notification(&code, 1600));
            }
            callbacks
        },
        |c| nexi_floor(&c.body),
    )
    .await;
}

/// How many of `requests` `gateway` reads as paid.
fn paid_callbacks(
    rt: &tokio::runtime::Runtime,
    gateway: &dyn Gateway,
    requests: &[CallbackRequest],
) -> usize {
    rt.block_on(async {
        let mut paid = 0;
        for r in requests {
            if gateway.parse_callback(r).await.unwrap().outcome == PaymentOutcome::Paid {
                paid += 1;
            }
        }
        paid
    })
}

fn main() {
    let n = size("BENCH_WEBHOOKS", 20_000);
    let applied = size("BENCH_APPLIED", 5_000);
    let rt = runtime();
    println!(
        "# payments-gateways: {n} webhooks of each kind read, {applied} applied, {} runs \
         each, floor and library in turn ({} cores)",
        runs(),
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    // Stripe.
    let t = chrono::Utc::now().timestamp();
    let stripe = StripeGateway::new("sk_test_x", WEBHOOK_SECRET).unwrap();
    let events: Vec<(Vec<u8>, String)> = (0..n)
        .map(|i| {
            let body = stripe_event(i, t);
            let header = StripeGateway::signature_header(WEBHOOK_SECRET, t, &body);
            (body, header)
        })
        .collect();
    let kb = events.iter().map(|(b, _)| b.len()).sum::<usize>() as f64 / n as f64 / 1e3;
    let requests: Vec<CallbackRequest> = events
        .iter()
        .map(|(b, h)| CallbackRequest::new(b.clone()).with_header("Stripe-Signature", h.clone()))
        .collect();
    let (measure, paid) = alternate(
        || {
            events
                .iter()
                .map(|(body, _)| {
                    let mut mac =
                        Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
                    mac.update(format!("{t}.").as_bytes());
                    mac.update(body);
                    mac.finalize().into_bytes()[0] as usize
                })
                .sum::<usize>()
        },
        || paid_callbacks(&rt, &stripe, &requests),
    );
    assert_eq!(paid, n);
    println!("Stripe events: {kb:.2} KB each, in memory (warm)");
    measure.print(
        "Stripe parse_callback (verify + read + map), floor HMAC-SHA256 alone",
        n,
        "events",
    );

    // Nexi.
    let nexi = NexiGateway::new(
        "ALIAS_WEB_00000001",
        MAC_KEY,
        "https://portale.example.it/webhooks/nexi",
    )
    .unwrap();
    let notifications: Vec<CallbackRequest> = (0..n)
        .map(|_| {
            nexi_notification(
                &payments_gateways::nexi::cod_trans(TransactionId::new()),
                1600,
            )
        })
        .collect();
    let (measure, paid) = alternate(
        || {
            notifications
                .iter()
                .map(|c| nexi_floor(&c.body))
                .sum::<usize>()
        },
        || paid_callbacks(&rt, &nexi, &notifications),
    );
    assert_eq!(paid, n);
    measure.print(
        "Nexi parse_callback (verify + read + map), floor form split + SHA-1",
        n,
        "notifications",
    );

    rt.block_on(apply_on(
        Arc::new(InMemoryStore::new()),
        "the in-memory store",
        applied,
    ));
    if let Some(store) = sqlite_store(&rt, "webhooks.db") {
        rt.block_on(apply_on(store, "SQLite (a new file)", applied));
    }
    if let Some(store) = postgres_store(&rt, "bench_webhooks") {
        rt.block_on(apply_on(store, "PostgreSQL (a new schema)", applied));
    }
}
