//! What the SMTP tests share: a real SMTP server on the loopback (mailin-embedded, in
//! process) that keeps what it receives, can refuse recipients and can be slow, and the
//! mail notifier pointed at it.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, response};
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;
use payments_mail::MailNotifier;

/// A mail as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

/// What the server keeps, shared by its connections.
#[derive(Debug, Default)]
pub struct Mailbox {
    pub mails: Mutex<Vec<Received>>,
    /// While set, recipients whose address starts with `refuse` get a 550.
    pub refusing: AtomicBool,
    /// How long the server takes to accept each mail, in milliseconds (a slow server).
    pub delay_ms: AtomicU64,
}

#[derive(Clone)]
struct Sink {
    mailbox: Arc<Mailbox>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Sink {
    fn rcpt(&mut self, to: &str) -> Response {
        if to.starts_with("refuse") && self.mailbox.refusing.load(Ordering::SeqCst) {
            response::NO_MAILBOX
        } else {
            response::OK
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let delay = self.mailbox.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        self.mailbox.mails.lock().unwrap().push(Received {
            to: self.to.clone(),
            data: self.data.clone(),
        });
        response::OK
    }
}

/// A free port on the loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts an SMTP server on `port`; it runs until the test process ends.
pub fn start_server(port: u16) -> Arc<Mailbox> {
    let mailbox = Arc::new(Mailbox {
        refusing: AtomicBool::new(true),
        ..Default::default()
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let sink = Sink {
        mailbox: mailbox.clone(),
        to: Vec::new(),
        data: Vec::new(),
    };
    std::thread::spawn(move || {
        let mut server = Server::new(sink);
        server
            .with_name("mail.test")
            .with_num_threads(64)
            .with_tcp_listener(listener);
        server.serve().unwrap();
    });
    mailbox
}

pub fn notifier(port: u16) -> MailNotifier {
    MailNotifier::builder("Comune di Esempio <pagamenti@comune.example.it>")
        .smtp_url(format!("smtp://127.0.0.1:{port}"))
        .build()
        .unwrap()
}

/// `n` card payments of € 10 by `payer0`, `payer1`, …, each paid through `sandbox`: two
/// mails (receipt and notice) and a settlement each, waiting in the outbox.
pub async fn pay_many(payments: &Payments, sandbox: &SandboxGateway, fx: &Fixture, n: usize) {
    for i in 0..n {
        let payer = Fixture::payer(&format!("payer{i}"));
        let actor = Actor::payer(payer.id.clone());
        let cart = payments
            .open_cart(&actor, fx.creditor.id, payer)
            .await
            .unwrap();
        let item = NewItem::new(
            Source::new("tributi", format!("TARI-{i}")),
            fx.tari.id,
            "TARI 2026",
            Money::parse_eur("10.00").unwrap(),
        )
        .with_extra("year", "2026");
        payments.add_item(&actor, cart.id, item).await.unwrap();
        let c = payments
            .checkout(&actor, cart.id, fx.method(MethodKind::Card).id, "k")
            .await
            .unwrap();
        let Instruction::Redirect { url, .. } = &c.instruction else {
            unreachable!()
        };
        let cb = sandbox
            .complete(url.rsplit('/').next().unwrap(), PaymentOutcome::Paid)
            .unwrap();
        payments.handle_callback("sandbox", &cb).await.unwrap();
    }
}
