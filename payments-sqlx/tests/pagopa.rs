//! pagoPA notice numbers allocated from two stores (two connection pools, as two
//! application instances have) on one database: never the same number twice. SQLite
//! always, PostgreSQL with `DATABASE_URL`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use payments_core::testing::gateway::start_request;
use payments_core::*;
use payments_gateways::pagopa::{NoticeNumber, PagoPaCreditor, PagoPaGateway};
use payments_sqlx::SqlxStore;

const KEY: &str = "the station's key for receipts";
const PER_INSTANCE: usize = 40;

async fn never_collide(a: SqlxStore, b: SqlxStore) {
    let mut tasks = Vec::new();
    for store in [a, b] {
        let gateway = Arc::new(
            PagoPaGateway::new(Arc::new(store), KEY)
                .unwrap()
                .with_default_creditor(PagoPaCreditor::new("02").unwrap().notices_only()),
        );
        for i in 0..PER_INSTANCE {
            let gateway = gateway.clone();
            tasks.push(tokio::spawn(async move {
                // One to three lines: blocks of ten bases, whatever the cart's size.
                let mut request = start_request(gateway.as_ref(), MethodKind::PagoPa, "10");
                let line = request.transaction.lines[0].clone();
                for _ in 0..i % 3 {
                    request.transaction.lines.push(line.clone());
                }
                let started = gateway.start(&request).await.unwrap();
                let Instruction::PagoPa(p) = started.instruction else {
                    panic!("a pagoPA instruction")
                };
                p.notices
                    .into_iter()
                    .map(|n| n.notice_number)
                    .collect::<Vec<_>>()
            }));
        }
    }
    let mut seen = BTreeSet::new();
    let mut blocks = BTreeSet::new();
    for t in tasks {
        for number in t.await.unwrap() {
            let n = NoticeNumber::parse(&number).expect("a valid notice number");
            assert_eq!(n.segregation_code(), Some(2));
            blocks.insert(n.base().unwrap() / 10);
            assert!(seen.insert(number.clone()), "{number} was handed out twice");
        }
    }
    assert_eq!(
        blocks,
        (1..=(2 * PER_INSTANCE) as u64).collect(),
        "one block per transaction, none lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_instances_never_allocate_the_same_notice_number() {
    let url = common::sqlite_url();
    let a = SqlxStore::connect(&url).await.unwrap();
    let b = SqlxStore::connect(&url).await.unwrap();
    never_collide(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_instances_never_allocate_the_same_notice_number() {
    let Some(url) =
        common::postgres_url("two_postgres_instances_never_allocate_the_same_notice_number")
    else {
        return;
    };
    let schema = common::schema();
    let a = SqlxStore::builder(&url)
        .with_schema(schema.clone())
        .build()
        .await
        .unwrap();
    let b = SqlxStore::builder(&url)
        .with_schema(schema)
        .build()
        .await
        .unwrap();
    never_collide(a, b).await;
}
