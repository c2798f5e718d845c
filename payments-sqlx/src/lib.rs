//! # payments-sqlx
//!
//! The [`Store`](payments_core::Store) on a database, with sqlx: **SQLite** (WAL, `synchronous = FULL` by default, the
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
//! let store = Arc::new(store);
//! let payments = Payments::builder()
//!     .store(store.clone())
//!     .notifier(Arc::new(RecordingNotifier::new()))
//!     .build()?;
//! # let creditor = payments_core::Creditor::new("Comune", "00488410010", "ente@example.it")?;
//! # payments.register_creditor(&payments_core::Actor::System, &creditor).await?;
//!
//! // An operator exports the creditor's movements, streamed to any writer.
//! use payments_core::{Actor, MovementQuery, Role};
//! use payments_sqlx::ExportFormat;
//! let operator = Actor::operator(creditor.id, Role::Viewer, "anna");
//! let mut csv = Vec::new();
//! let rows = store
//!     .export(&operator, &MovementQuery::new(creditor.id), ExportFormat::Csv { separator: b';' }, &mut csv)
//!     .await?;
//! assert_eq!(rows, 0);
//! assert!(csv.starts_with(b"transaction_id;created_at;"));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

mod export;
mod rows;
mod store;

pub use export::{COLUMNS, ExportFormat, ExportRow, XLSX_ROWS_PER_SHEET, neutralise};
pub use store::{Dialect, SqliteSync, SqlxStore, SqlxStoreBuilder};
