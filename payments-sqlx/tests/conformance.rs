//! Both stores pass the `Store` conformance suite of `payments-core`.

mod common;

use std::sync::Arc;

use payments_core::Store;
use payments_core::testing::store::run_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_suite() {
    run_all(|| async { Arc::new(common::sqlite().await) as Arc<dyn Store> }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_suite() {
    let Some(url) = common::postgres_url("postgres_passes_the_store_suite") else {
        return;
    };
    run_all(|| {
        let url = url.clone();
        async move { Arc::new(common::postgres(&url).await) as Arc<dyn Store> }
    })
    .await;
}

/// `sqlite::memory:` is one database shared by the pool's single connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_the_store_suite() {
    run_all(|| async {
        Arc::new(
            payments_sqlx::SqlxStore::connect("sqlite::memory:")
                .await
                .unwrap(),
        ) as Arc<dyn Store>
    })
    .await;
}
