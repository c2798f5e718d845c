//! Stores for the tests: a fresh SQLite file each, and, when `DATABASE_URL` points at a
//! PostgreSQL server, a fresh schema each, so tests run in parallel without seeing each
//! other.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use payments_sqlx::SqlxStore;

/// A new, empty directory under the system's temporary directory.
pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("payments-sqlx-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The URL of a new SQLite file.
pub fn sqlite_url() -> String {
    format!("sqlite://{}", temp_dir().join("payments.db").display())
}

/// A store on a new SQLite file.
pub async fn sqlite() -> SqlxStore {
    SqlxStore::connect(&sqlite_url()).await.unwrap()
}

/// The PostgreSQL server's URL, from `DATABASE_URL`; `None`, said loudly, without one.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: set DATABASE_URL=postgres://… to run the PostgreSQL tests \
                 (this machine kind runs one at postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A new schema's name.
pub fn schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// A store in a new schema of the PostgreSQL server.
pub async fn postgres(url: &str) -> SqlxStore {
    SqlxStore::builder(url)
        .with_schema(schema())
        .build()
        .await
        .unwrap()
}
