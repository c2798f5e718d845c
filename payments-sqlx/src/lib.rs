#![doc = include_str!("../README.md")]

mod export;
mod rows;
mod store;

pub use export::{COLUMNS, ExportFormat, ExportRow, XLSX_ROWS_PER_SHEET, neutralise};
pub use store::{
    Dialect, IDLE_CHECK_AFTER, SqliteSync, SqlxStore, SqlxStoreBuilder, check_idle_connections,
};
