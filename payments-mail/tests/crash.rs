//! Killed mid-batch: a child process delivers a batch of 50 mails through a slow SMTP
//! server and is killed with SIGKILL while doing it. A new process on the same SQLite file
//! delivers the rest: every mail arrives, and no more than were in flight at the kill
//! (`DELIVERY_CONCURRENCY`, 8) arrive twice.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{free_port, notifier, pay_many, start_server};
use mail_parser::MessageParser;
use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;
use payments_sqlx::SqlxStore;

const CHILD_URL: &str = "PAYMENTS_MAIL_CRASH_URL";
const CHILD_PORT: &str = "PAYMENTS_MAIL_CRASH_PORT";

/// Short leases, so the survivor can take over what the dead one had claimed.
fn policy() -> RetryPolicy {
    RetryPolicy {
        lease: Duration::from_secs(2),
        ..RetryPolicy::default()
    }
}

fn instance(store: Arc<dyn Store>, port: u16) -> Payments {
    Payments::builder()
        .store(store)
        .gateway(Arc::new(SandboxGateway::new("mail-crash-key")))
        .notifier(Arc::new(notifier(port)))
        .listener("tributi", Arc::new(RecordingListener::new()))
        .retry_policy(policy())
        .build()
        .unwrap()
}

/// The child's part: run by the parent only (`--ignored --exact crash_child`).
#[tokio::test]
#[ignore = "the child process of the crash test; run by it"]
async fn crash_child() {
    let url = std::env::var(CHILD_URL).expect("run by the crash test");
    let port: u16 = std::env::var(CHILD_PORT).unwrap().parse().unwrap();
    let store = Arc::new(SqlxStore::connect(&url).await.unwrap());
    let payments = instance(store, port);
    loop {
        payments.dispatch_outbox().await.unwrap();
    }
}

#[tokio::test]
async fn killed_in_the_middle_of_a_batch_it_sends_again_at_most_what_was_in_flight() {
    let port = free_port();
    let mailbox = start_server(port);
    mailbox.delay_ms.store(150, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("payments-mail-crash-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("payments.db").display());
    let store: Arc<dyn Store> = Arc::new(SqlxStore::connect(&url).await.unwrap());
    let sandbox = Arc::new(SandboxGateway::new("mail-crash-key"));
    let payments = Payments::builder()
        .store(store.clone())
        .gateway(sandbox.clone())
        .notifier(Arc::new(notifier(port)))
        .listener("tributi", Arc::new(RecordingListener::new()))
        .retry_policy(policy())
        .build()
        .unwrap();
    let fx = Fixture::install(&payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    // 25 payments: a batch of 50 mails (and 25 settlements) waiting in the outbox.
    pay_many(&payments, &sandbox, &fx, 25).await;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "crash_child", "--nocapture"])
        .env(CHILD_URL, &url)
        .env(CHILD_PORT, port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed with SIGKILL once 20 mails arrived: the batch is under way.
    let started = Instant::now();
    while mailbox.mails.lock().unwrap().len() < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child sends nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = mailbox.mails.lock().unwrap().len();
    assert!(
        at_kill < 50,
        "killed in the middle of the batch ({at_kill} sent)"
    );

    // A new process takes over once the dead one's leases end.
    tokio::time::sleep(policy().lease + Duration::from_millis(500)).await;
    let survivor = instance(store.clone(), port);
    let started = Instant::now();
    loop {
        survivor.dispatch_outbox().await.unwrap();
        let waiting = survivor
            .outbox(&Actor::System, fx.creditor.id, OutboxQuery::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.status != OutboxStatus::Delivered)
            .count();
        if waiting == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{waiting} messages never delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids: Vec<String> = mailbox
        .mails
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            MessageParser::default()
                .parse(&r.data)
                .and_then(|m| m.message_id().map(str::to_owned))
                .expect("a Message-ID")
        })
        .collect();
    let sent = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every mail arrived");
    let twice = sent - ids.len();
    assert!(
        twice <= DELIVERY_CONCURRENCY as usize,
        "{twice} mails went out twice: more than were in flight at the kill"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
