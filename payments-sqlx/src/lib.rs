//! # payments-sqlx
//!
//! The [`Store`](payments_core::Store) on a database, with sqlx: SQLite (WAL, the embedded
//! default, so a newcomer runs everything with no server) and PostgreSQL (for several
//! application instances sharing one database, with the outbox claimed by
//! `FOR UPDATE SKIP LOCKED`). Money as integer cents, timestamps in UTC, embedded
//! migrations in `migrations/<db>/`, streamed exports (CSV, XLSX, JSON lines).
//!
//! **Not built yet.** This crate is a placeholder for the issue that builds it; every store
//! it will hold must pass `payments_core::testing::store::run_all`. Until then a host uses
//! the in-memory store, which keeps the same contract but nothing across restarts:
//!
//! ```
//! use std::sync::Arc;
//! use payments_core::{InMemoryStore, Store};
//!
//! let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
//! # let _ = store;
//! ```
