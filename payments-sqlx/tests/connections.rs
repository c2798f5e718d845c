//! The pool checks a connection before handing it out only once it was idle for
//! [`payments_sqlx::IDLE_CHECK_AFTER`]: a connection the server closed while it was idle
//! is replaced, never handed out.

mod common;

use payments_core::{CreditorId, Store};
use payments_sqlx::{IDLE_CHECK_AFTER, SqlxStore};

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced() {
    let Some(url) = common::postgres_url("a_connection_the_server_closed_while_idle_is_replaced")
    else {
        return;
    };
    let store = SqlxStore::builder(&url)
        .with_schema(common::schema())
        .with_max_connections(1)
        .build()
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    // The server ends the store's only connection, as a restart or an idle timeout would.
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(ended);
    tokio::time::sleep(IDLE_CHECK_AFTER + std::time::Duration::from_millis(300)).await;
    // The check finds it closed: the store answers on a new connection.
    assert_eq!(store.creditor(CreditorId::new()).await.unwrap(), None);
    let now: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_ne!(now, pid, "a new connection");
    admin.close().await;
}
