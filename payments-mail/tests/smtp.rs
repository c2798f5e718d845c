//! The mail notifier against a real SMTP server listening on TCP (mailin-embedded, in
//! process): the conformance suite, a paid transaction's two mails, escaping, accented
//! names, a server that is down, a recipient the server refuses, stable Message-IDs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use payments_core::testing::Fixture;
use payments_core::testing::notifier::{Inbox, ReceivedMessage, run_all, sample_notification};
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;
use payments_mail::{MailNotifier, SmtpSecurity};

mod common;
use common::{Mailbox, Received, free_port, notifier, pay_many, start_server};

/// A parsed mail.
struct Mail {
    to: Vec<String>,
    to_name: Option<String>,
    subject: String,
    text: String,
    html: String,
    message_id: String,
    content_type: String,
    /// Attachments: file name, content type, bytes.
    attachments: Vec<(String, String, Vec<u8>)>,
}

fn parse(r: &Received) -> Mail {
    let m = MessageParser::default()
        .parse(&r.data)
        .expect("a parsable mail");
    let to = m.to().and_then(|a| a.first()).expect("a recipient");
    Mail {
        to: r.to.clone(),
        to_name: to.name().map(str::to_owned),
        subject: m.subject().unwrap_or_default().to_owned(),
        text: m.body_text(0).expect("a text part").into_owned(),
        html: m.body_html(0).expect("an html part").into_owned(),
        message_id: m.message_id().unwrap_or_default().to_owned(),
        content_type: m
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
            .unwrap_or_default(),
        attachments: m
            .attachments()
            .map(|a| {
                (
                    a.attachment_name().unwrap_or_default().to_owned(),
                    a.content_type()
                        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
                        .unwrap_or_default(),
                    a.contents().to_vec(),
                )
            })
            .collect(),
    }
}

fn mails(mailbox: &Mailbox) -> Vec<Mail> {
    mailbox.mails.lock().unwrap().iter().map(parse).collect()
}

struct ServerInbox(Arc<Mailbox>);

#[async_trait]
impl Inbox for ServerInbox {
    async fn received(&self, to: &str) -> Vec<ReceivedMessage> {
        mails(&self.0)
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .map(|m| ReceivedMessage {
                subject: m.subject,
                body: m.text,
            })
            .collect()
    }
}

#[tokio::test]
async fn passes_the_notifier_suite_over_smtp() {
    let port = free_port();
    let mailbox = start_server(port);
    run_all(&notifier(port), &ServerInbox(mailbox)).await;
}

struct Env {
    payments: Payments,
    sandbox: Arc<SandboxGateway>,
    clock: Arc<ManualClock>,
    fx: Fixture,
}

async fn env(port: u16) -> Env {
    let sandbox = Arc::new(SandboxGateway::new("mail-test-key"));
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 7, 1, 8, 30, 0).single().unwrap(),
    ));
    let payments = Payments::builder()
        .store(Arc::new(InMemoryStore::new()))
        .gateway(sandbox.clone())
        .notifier(Arc::new(notifier(port)))
        .listener("tributi", Arc::new(RecordingListener::new()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    Env {
        payments,
        sandbox,
        clock,
        fx,
    }
}

/// Pays a cart of a TARI item and a free fee whose reason holds a script, for `payer`.
async fn pay(env: &Env, payer: Payer) -> Transaction {
    let actor = Actor::payer(payer.id.clone());
    let p = &env.payments;
    let cart = p
        .open_cart(&actor, env.fx.creditor.id, payer)
        .await
        .unwrap();
    let tari = NewItem::new(
        Source::new("tributi", "TARI-1"),
        env.fx.tari.id,
        "TARI 2026 rata unica",
        Money::parse_eur("1000").unwrap(),
    )
    .with_extra("year", "2026");
    p.add_item(&actor, cart.id, tari).await.unwrap();
    let fee = NewFreeItem::new(
        env.fx.fees.id,
        "234,56",
        "<script>alert('x')</script> diritti",
    )
    .with_extra("case_number", "2026/9")
    .with_extra("office", "edilizia");
    p.add_free_item(&actor, cart.id, fee).await.unwrap();
    let c = p
        .checkout(&actor, cart.id, env.fx.method(MethodKind::Card).id, "k")
        .await
        .unwrap();
    let Instruction::Redirect { url, .. } = &c.instruction else {
        unreachable!()
    };
    let cb = env
        .sandbox
        .complete(url.rsplit('/').next().unwrap(), PaymentOutcome::Paid)
        .unwrap();
    p.handle_callback("sandbox", &cb).await.unwrap().transaction
}

#[tokio::test]
async fn a_paid_transaction_sends_both_mails() {
    let port = free_port();
    let mailbox = start_server(port);
    let env = env(port).await;
    let payer =
        Payer::new("NCCLVR80A01H501U", "Niccolò Àlvaro-Düring").with_email("niccolo@example.it");
    let tx = pay(&env, payer).await;
    let report = env.payments.dispatch_outbox().await.unwrap();
    assert_eq!(
        report.delivered, 3,
        "two mails and a settlement for the taxes module: {report:?}"
    );

    let got = mails(&mailbox);
    assert_eq!(got.len(), 2);
    let receipt = got
        .iter()
        .find(|m| m.to == ["niccolo@example.it"])
        .expect("the citizen's receipt");
    let notice = got
        .iter()
        .find(|m| m.to == ["ragioneria@comune.example.it"])
        .expect("the body's notice");
    let id = tx.id.to_string();
    assert_eq!(
        receipt.subject,
        format!("Ricevuta di pagamento {id} - Comune di Esempio")
    );
    assert_eq!(
        notice.subject,
        format!("Pagamento ricevuto {id} - € 1.234,56")
    );
    // The payer's receipt carries the receipt as a PDF; the body's notice does not.
    assert_eq!(receipt.content_type, "multipart/mixed");
    assert_eq!(receipt.attachments.len(), 1);
    let (name, kind, pdf) = &receipt.attachments[0];
    assert_eq!(name, &format!("ricevuta-{}.pdf", tx.id));
    assert_eq!(kind, "application/pdf");
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    assert_eq!(notice.content_type, "multipart/alternative");
    assert!(notice.attachments.is_empty());
    for m in [receipt, notice] {
        // minijinja's HTML escaping also escapes `/`, which a mail client shows as is.
        let html = m.html.replace("&#x2f;", "/");
        for part in [&m.text, &html] {
            assert!(part.contains(&id), "the payment identifier");
            assert!(
                part.contains(tx.provider_ref.as_deref().unwrap()),
                "the provider's reference"
            );
            assert!(
                part.contains("€ 1.234,56")
                    && part.contains("€ 1.000,00")
                    && part.contains("€ 234,56")
            );
            assert!(
                part.contains("01/07/2026 10:30"),
                "the time in Europe/Rome (UTC+2 in July)"
            );
            assert!(part.contains("Carta di pagamento"));
            assert!(
                part.contains("Diritti di segreteria") && part.contains("tributi"),
                "type and module"
            );
        }
        assert!(
            m.html.contains("&lt;script&gt;"),
            "the reason is escaped in HTML:\n{}",
            m.html
        );
        assert!(!m.html.contains("<script>"));
        assert!(
            m.text.contains("<script>alert('x')</script> diritti"),
            "plain text shows it as typed"
        );
    }
    assert_eq!(
        receipt.to_name.as_deref(),
        Some("Niccolò Àlvaro-Düring"),
        "the accented name arrives intact"
    );
    assert!(receipt.text.contains("Gentile Niccolò Àlvaro-Düring"));
    assert!(notice.html.contains("Niccolò Àlvaro-Düring"));
    assert_eq!(
        env.payments.dispatch_outbox().await.unwrap().claimed(),
        0,
        "nothing is sent twice"
    );
    assert_eq!(mails(&mailbox).len(), 2);
}

#[tokio::test]
async fn with_the_server_down_mail_waits_and_then_goes_once() {
    let port = free_port();
    let env = env(port).await;
    let tx = pay(&env, Fixture::payer("alice")).await;
    assert_eq!(
        tx.status,
        TxStatus::Paid,
        "the payment completes without the mail server"
    );
    let r = env.payments.dispatch_outbox().await.unwrap();
    assert_eq!(
        (r.delivered, r.retrying, r.dead),
        (1, 2, 0),
        "both mails wait"
    );
    let waiting = env
        .payments
        .outbox(
            &Actor::System,
            env.fx.creditor.id,
            OutboxQuery {
                status: Some(OutboxStatus::Pending),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(waiting.len(), 2);
    assert!(
        waiting
            .iter()
            .all(|m| m.last_error.as_deref().is_some_and(|e| e.contains("smtp")))
    );

    let mailbox = start_server(port);
    env.clock.advance(Duration::from_secs(60));
    let r = env.payments.dispatch_outbox().await.unwrap();
    assert_eq!((r.delivered, r.retrying, r.dead), (2, 0, 0));
    env.clock.advance(Duration::from_secs(3600));
    assert_eq!(env.payments.dispatch_outbox().await.unwrap().claimed(), 0);
    assert_eq!(mails(&mailbox).len(), 2, "each mail exactly once");
}

#[tokio::test]
async fn a_refused_recipient_leaves_a_failed_message_an_operator_retries() {
    let port = free_port();
    let mailbox = start_server(port);
    let env = env(port).await;
    pay(
        &env,
        Payer::new("bob", "Bob").with_email("refuse-me@example.it"),
    )
    .await;
    let r = env.payments.dispatch_outbox().await.unwrap();
    assert_eq!(
        (r.delivered, r.retrying, r.dead),
        (2, 0, 1),
        "a 550 is not retried by itself"
    );
    let operator = Actor::operator(env.fx.creditor.id, Role::Manager, "anna");
    let dead = env
        .payments
        .outbox(
            &operator,
            env.fx.creditor.id,
            OutboxQuery {
                status: Some(OutboxStatus::Dead),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("550"),
        "{:?}",
        dead[0].last_error
    );

    // The mailbox is fixed; the operator retries.
    mailbox.refusing.store(false, Ordering::SeqCst);
    env.payments
        .retry_message(&operator, dead[0].id)
        .await
        .unwrap();
    assert_eq!(env.payments.dispatch_outbox().await.unwrap().delivered, 1);
    assert!(
        mails(&mailbox)
            .iter()
            .any(|m| m.to == ["refuse-me@example.it"])
    );
}

#[tokio::test]
async fn a_retried_delivery_carries_the_same_message_id() {
    let port = free_port();
    let mailbox = start_server(port);
    let notifier = notifier(port);
    let n = sample_notification(NotificationKind::Receipt, "alice@example.it", Locale::En);
    notifier.send(&n).await.unwrap();
    notifier.send(&n).await.unwrap();
    let got = mails(&mailbox);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].message_id, got[1].message_id,
        "one Message-ID per outbox message"
    );
    assert_eq!(format!("<{}>", got[0].message_id), notifier.message_id(&n));
    let other = sample_notification(NotificationKind::Receipt, "alice@example.it", Locale::En);
    assert_ne!(notifier.message_id(&other), notifier.message_id(&n));
}

#[tokio::test]
async fn the_file_transport_writes_both_parts() {
    // A directory that does not exist yet: `build` creates it.
    let dir = std::env::temp_dir()
        .join(format!("payments-mail-{}", uuid_like()))
        .join("mail");
    let notifier = MailNotifier::builder("pagamenti@comune.example.it")
        .file(&dir)
        .build()
        .unwrap();
    let n = sample_notification(
        NotificationKind::CreditorNotice,
        "ente@example.it",
        Locale::It,
    );
    notifier.send(&n).await.unwrap();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mail = parse(&Received {
        to: vec![],
        data: std::fs::read(file).unwrap(),
    });
    assert!(mail.subject.starts_with("Pagamento ricevuto"));
    assert!(mail.text.contains("€ 1.234,56") && mail.html.contains("€ 1.234,56"));
    assert!(!format!("{notifier:?}").is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn credentials_never_show_in_debug() {
    let n = MailNotifier::builder("a@example.it")
        .smtp_url("smtps://user:s3cr3t-pass@smtp.example.it:465")
        .build()
        .unwrap();
    let shown = format!("{n:?}");
    assert!(
        !shown.contains("s3cr3t-pass") && !shown.contains("user:"),
        "{shown}"
    );
    assert!(shown.contains("smtp.example.it"));
    let b = MailNotifier::builder("a@example.it")
        .smtp_url("smtps://user:s3cr3t-pass@smtp.example.it:465");
    assert!(!format!("{b:?}").contains("s3cr3t-pass"));
    assert!(matches!(
        MailNotifier::builder("not an address").file("/tmp").build(),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        MailNotifier::builder("a@example.it")
            .smtp_url("http://x")
            .build(),
        Err(Error::Validation(_))
    ));
}

#[tokio::test]
async fn a_server_given_by_builder_receives_mail() {
    let port = free_port();
    let mailbox = start_server(port);
    let notifier = MailNotifier::builder("pagamenti@comune.example.it")
        .smtp("127.0.0.1", port, SmtpSecurity::PlainDangerous)
        .build()
        .unwrap();
    notifier
        .send(&sample_notification(
            NotificationKind::Receipt,
            "alice@example.it",
            Locale::It,
        ))
        .await
        .unwrap();
    assert_eq!(mails(&mailbox).len(), 1);
    let tls = MailNotifier::builder("a@example.it")
        .smtp("smtp.example.it", 465, SmtpSecurity::ImplicitTls)
        .credentials("user", "s3cr3t-pass")
        .build()
        .unwrap();
    assert!(!format!("{tls:?}").contains("s3cr3t-pass"));
    let both = MailNotifier::builder("a@example.it")
        .smtp("h", 25, SmtpSecurity::StartTls)
        .file("/tmp")
        .build();
    assert!(
        matches!(both, Err(Error::Validation(_))),
        "one transport only"
    );
}

fn uuid_like() -> String {
    format!(
        "{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn a_reminder_goes_in_the_payers_language_with_the_notice_attached() {
    let port = free_port();
    let mailbox = start_server(port);
    let notifier = notifier(port);
    let creditor = Creditor::new(
        "Comune di Esempio",
        "00488410010",
        "ragioneria@comune.example.it",
    )
    .unwrap();
    let amount = Money::parse_eur("150.00").unwrap();
    let option = |due: &str| {
        NewOption::new(amount, due.parse().unwrap())
            .with_description("TARI 2027")
            .with_transfer(Transfer::to_iban(
                "00488410010",
                "IT60X0542811101000000123456",
                amount,
                "TARI 2027",
                "9/0101101IM/",
            ))
    };
    let position = NewDebtPosition::new(
        "tributi",
        "TARI 2027/1",
        PositionPayer::new("RSSMRA80A01H501U", "Mario Rossi").with_email("mario@example.it"),
        PaymentTypeId::new(),
        "TARI 2027",
    )
    .with_instalment(option("2027-04-30"))
    .with_instalment(option("2027-09-30"))
    .to_position(
        creditor.id,
        vec!["302000000000000103".into(), "302000000000000200".into()],
        chrono::Utc::now(),
    );
    for (locale, to, subject, file) in [
        (
            Locale::It,
            "mario@example.it",
            "Promemoria: TARI 2027 entro il 30/04/2027",
            "avviso-TARI_2027_1.pdf",
        ),
        (
            Locale::En,
            "mario.en@example.it",
            "Reminder: TARI 2027 due by 2027-04-30",
            "notice-TARI_2027_1.pdf",
        ),
    ] {
        let reminder = Reminder {
            id: OutboxId::new(),
            to: to.into(),
            locale,
            creditor: creditor.clone(),
            position: position.clone(),
            option: 0,
            offset_days: -7,
        };
        notifier.remind(&reminder).await.unwrap();
        let got = mails(&mailbox);
        let m = got
            .iter()
            .find(|m| m.to == [to])
            .expect("the reminder arrived");
        assert_eq!(m.subject, subject);
        assert_eq!(m.to_name.as_deref(), Some("Mario Rossi"));
        assert!(m.text.contains("302000000000000103"), "{}", m.text);
        assert_eq!(m.message_id, format!("{}@comune.example.it", reminder.id));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].0, file);
        assert_eq!(m.attachments[0].1, "application/pdf");
        assert!(m.attachments[0].2.starts_with(b"%PDF-"));
    }
}

#[tokio::test]
async fn two_instances_on_one_store_send_each_mail_once_through_a_slow_server() {
    let port = free_port();
    let mailbox = start_server(port);
    // Each mail takes the server 400 ms; a claimed message is leased for two seconds.
    mailbox.delay_ms.store(400, Ordering::SeqCst);
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let sandbox = Arc::new(SandboxGateway::new("mail-test-key"));
    let instance = || {
        Payments::builder()
            .store(store.clone())
            .gateway(sandbox.clone())
            .notifier(Arc::new(notifier(port)))
            .listener("tributi", Arc::new(RecordingListener::new()))
            .retry_policy(RetryPolicy {
                lease: Duration::from_secs(2),
                ..RetryPolicy::default()
            })
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let fx = Fixture::install(&a, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    // 25 payments: 50 mails, one batch, more than a lease's worth at this server's pace
    // eight at a time.
    pay_many(&a, &sandbox, &fx, 25).await;
    let run = |p: Payments| async move {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            p.dispatch_outbox().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (ra, rb) = tokio::join!(tokio::spawn(run(a)), tokio::spawn(run(b)));
    ra.unwrap();
    rb.unwrap();
    let received = mails(&mailbox);
    let mut ids: Vec<&str> = received.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every mail went out");
    assert_eq!(before, 50, "and none twice");
}
