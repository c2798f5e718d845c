//! # payments-sqlx
//!
//! The [`Store`](payments_core::Store) on a database, with sqlx: **SQLite** (WAL, the
//! embedded default, so a newcomer runs everything with no server) and **PostgreSQL** (for
//! several application instances sharing one database: item locks are row updates, the
//! outbox is claimed with `FOR UPDATE SKIP LOCKED`). Money is kept as integer cents, times
//! as UTC microseconds; migrations are embedded (`migrations/<db>/`) and run at start-up.
//! Operators' exports (CSV, XLSX, JSON lines) stream from the database in constant memory.
//!
//! | database | URL | when |
//! | --- | --- | --- |
//! | SQLite | `sqlite://payments.db` | one server; tests; trying it out |
//! | PostgreSQL | `postgres://user@host/db` | several application instances, many bodies |
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> payments_core::Result<()> {
//! use std::sync::Arc;
//! use payments_core::{Payments, RecordingNotifier, Store};
//! use payments_sqlx::SqlxStore;
//!
//! # let dir = std::env::temp_dir().join(format!("payments-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("sqlite://{}", dir.join("payments.db").display());
//! let store = SqlxStore::connect(&url).await?; // or a postgres:// URL
//! let payments = Payments::builder()
//!     .store(Arc::new(store))
//!     .notifier(Arc::new(RecordingNotifier::new()))
//!     .build()?;
//! # let _ = payments;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

mod export;
mod rows;
mod store;

pub use export::{COLUMNS, ExportFormat, ExportRow, XLSX_ROWS_PER_SHEET, neutralise};
pub use store::{Dialect, SqlxStore, SqlxStoreBuilder};
