//! Operators' exports of movements: CSV, XLSX and JSON lines, streamed row by row from the
//! database to any writer, in constant memory whatever the number of rows.

use std::io::Write;

use futures::TryStreamExt;
use payments_core::{Actor, Error, MovementQuery, Payer, Result, Role};
use serde::Serialize;
use sqlx::any::AnyRow;

use crate::SqlxStore;
use crate::rows::{self, Sql, db_err, from_micros, get};
use crate::store::movement_filters;

/// The most rows an XLSX worksheet holds (beside its header); further rows go on to a new
/// sheet.
pub const XLSX_ROWS_PER_SHEET: u32 = 1_048_575;

/// How to write an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// CSV, UTF-8, with a header row and this separator (`b';'` for Italian spreadsheets,
    /// `b','` elsewhere).
    Csv {
        /// The field separator.
        separator: u8,
    },
    /// An Excel workbook (written with rust_xlsxwriter in constant-memory mode).
    Xlsx,
    /// One JSON object per line.
    JsonLines,
}

/// The columns of an export: one row per item of each selected transaction.
pub const COLUMNS: [&str; 18] = [
    "transaction_id",
    "created_at",
    "updated_at",
    "status",
    "method",
    "provider_ref",
    "payer_id",
    "payer_name",
    "payer_fiscal_code",
    "total",
    "currency",
    "line",
    "item_id",
    "module",
    "source_key",
    "payment_type_id",
    "reason",
    "amount",
];

/// The column that holds the line number, written as a number in XLSX.
const LINE_COLUMN: usize = 11;

/// One row of an export, in the order of [`COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRow {
    /// The payment identifier.
    pub transaction_id: String,
    /// When the transaction was created (RFC 3339, UTC).
    pub created_at: String,
    /// When it last changed state (RFC 3339, UTC).
    pub updated_at: String,
    /// Its state.
    pub status: String,
    /// The method kind.
    pub method: String,
    /// The provider's reference.
    pub provider_ref: String,
    /// The payer's id.
    pub payer_id: String,
    /// The payer's name.
    pub payer_name: String,
    /// The payer's fiscal code.
    pub payer_fiscal_code: String,
    /// The transaction's total, `1234.56`.
    pub total: String,
    /// The currency.
    pub currency: String,
    /// The item's position in the transaction, from 1.
    pub line: i64,
    /// The item.
    pub item_id: String,
    /// The item's module.
    pub module: String,
    /// The module's key.
    pub source_key: String,
    /// The item's payment type.
    pub payment_type_id: String,
    /// The item's reason.
    pub reason: String,
    /// The item's amount, `1234.56`.
    pub amount: String,
}

impl ExportRow {
    /// The cells, in the order of [`COLUMNS`].
    pub fn cells(&self) -> [std::borrow::Cow<'_, str>; 18] {
        [
            std::borrow::Cow::Borrowed(&self.transaction_id),
            std::borrow::Cow::Borrowed(&self.created_at),
            std::borrow::Cow::Borrowed(&self.updated_at),
            std::borrow::Cow::Borrowed(&self.status),
            std::borrow::Cow::Borrowed(&self.method),
            std::borrow::Cow::Borrowed(&self.provider_ref),
            std::borrow::Cow::Borrowed(&self.payer_id),
            std::borrow::Cow::Borrowed(&self.payer_name),
            std::borrow::Cow::Borrowed(&self.payer_fiscal_code),
            std::borrow::Cow::Borrowed(&self.total),
            std::borrow::Cow::Borrowed(&self.currency),
            self.line.to_string().into(),
            std::borrow::Cow::Borrowed(&self.item_id),
            std::borrow::Cow::Borrowed(&self.module),
            std::borrow::Cow::Borrowed(&self.source_key),
            std::borrow::Cow::Borrowed(&self.payment_type_id),
            std::borrow::Cow::Borrowed(&self.reason),
            std::borrow::Cow::Borrowed(&self.amount),
        ]
    }
}

/// Neutralises a cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, and the
/// tab and carriage return that can hide them) by putting an apostrophe before it.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

fn row(r: &AnyRow) -> Result<ExportRow> {
    let payer: Payer = rows::from_json(&get::<String>(r, "payer")?)?;
    let time = |col| -> Result<String> {
        Ok(from_micros(get(r, col)?)?.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    Ok(ExportRow {
        transaction_id: get(r, "id")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        status: get(r, "status")?,
        method: get(r, "method_kind")?,
        provider_ref: get::<Option<String>>(r, "provider_ref")?.unwrap_or_default(),
        payer_id: payer.id.0,
        payer_name: payer.name,
        payer_fiscal_code: payer.fiscal_code.unwrap_or_default(),
        total: cents(get(r, "total_cents")?),
        currency: get(r, "currency")?,
        line: get::<i64>(r, "position")? + 1,
        item_id: get(r, "item_id")?,
        module: get(r, "module")?,
        source_key: get(r, "source_key")?,
        payment_type_id: get(r, "payment_type_id")?,
        reason: get(r, "reason")?,
        amount: cents(get(r, "amount_cents")?),
    })
}

fn io_err(e: impl Into<payments_core::BoxError>) -> Error {
    Error::storage("writing the export", e)
}

/// Writes rows in one format.
enum Sink<W: Write + Send> {
    Csv(csv::Writer<W>),
    Xlsx {
        book: Box<rust_xlsxwriter::Workbook>,
        out: W,
        row: u32,
    },
    Json(std::io::BufWriter<W>),
}

fn xlsx_err(e: rust_xlsxwriter::XlsxError) -> Error {
    io_err(e)
}

impl<W: Write + Send> Sink<W> {
    fn new(format: ExportFormat, out: W) -> Result<Self> {
        Ok(match format {
            ExportFormat::Csv { separator } => {
                let mut w = csv::WriterBuilder::new()
                    .delimiter(separator)
                    .from_writer(out);
                w.write_record(COLUMNS).map_err(io_err)?;
                Sink::Csv(w)
            }
            ExportFormat::Xlsx => {
                let mut sink = Sink::Xlsx {
                    book: Box::new(rust_xlsxwriter::Workbook::new()),
                    out,
                    row: 0,
                };
                sink.new_sheet()?;
                sink
            }
            ExportFormat::JsonLines => Sink::Json(std::io::BufWriter::new(out)),
        })
    }

    fn new_sheet(&mut self) -> Result<()> {
        if let Sink::Xlsx { book, row, .. } = self {
            let sheet = book
                .add_worksheet_with_constant_memory()
                .map_err(xlsx_err)?;
            for (c, name) in COLUMNS.iter().enumerate() {
                sheet.write_string(0, c as u16, *name).map_err(xlsx_err)?;
            }
            *row = 0;
        }
        Ok(())
    }

    fn write(&mut self, r: &ExportRow) -> Result<()> {
        match self {
            Sink::Csv(w) => {
                for cell in r.cells() {
                    w.write_field(neutralise(&cell).as_bytes())
                        .map_err(io_err)?;
                }
                w.write_record(None::<&[u8]>).map_err(io_err)
            }
            Sink::Xlsx { row, .. } if *row >= XLSX_ROWS_PER_SHEET => {
                self.new_sheet()?;
                self.write(r)
            }
            Sink::Xlsx { book, row, .. } => {
                *row += 1;
                let sheet = book
                    .worksheets_mut()
                    .last_mut()
                    .ok_or_else(|| io_err("no worksheet"))?;
                for (c, cell) in r.cells().iter().enumerate() {
                    match c {
                        LINE_COLUMN => sheet.write_number(*row, c as u16, r.line as f64),
                        // Amounts as text keep their exact cents; a spreadsheet converts them
                        // on demand.
                        _ => sheet.write_string(*row, c as u16, neutralise(cell)),
                    }
                    .map_err(xlsx_err)?;
                }
                Ok(())
            }
            Sink::Json(w) => {
                serde_json::to_writer(&mut *w, r).map_err(io_err)?;
                w.write_all(b"\n").map_err(io_err)
            }
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Csv(mut w) => w.flush().map_err(io_err),
            Sink::Xlsx { mut book, out, .. } => book.save_to_writer(out).map_err(xlsx_err),
            Sink::Json(mut w) => w.flush().map_err(io_err),
        }
    }
}

impl SqlxStore {
    /// Exports the movements that `query`'s filters select (its cursor and page size are
    /// ignored), one row per item, newest transaction first, streamed from the database to
    /// `out`. Only an operator of the query's creditor (or the system) may. Returns the
    /// number of rows written.
    pub async fn export<W: Write + Send>(
        &self,
        actor: &Actor,
        query: &MovementQuery,
        format: ExportFormat,
        out: W,
    ) -> Result<u64> {
        actor.check_operator(&query.creditor_id, Role::Viewer)?;
        let mut sql = Sql::new(
            "SELECT t.id, t.created_at, t.updated_at, t.status, t.method_kind, t.provider_ref, t.payer, \
             t.total_cents, t.currency, l.position, l.item_id, l.module, l.source_key, l.payment_type_id, \
             l.reason, l.amount_cents FROM transactions t JOIN transaction_lines l ON l.transaction_id = t.id",
        );
        movement_filters(&mut sql, query);
        sql.push(" ORDER BY t.id DESC, l.position");
        let mut sink = Sink::new(format, out)?;
        let mut rows = sql.query().fetch(self.pool());
        let mut n = 0;
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db_err("reading the export"))?
        {
            sink.write(&row(&r)?)?;
            n += 1;
        }
        sink.finish()?;
        Ok(n)
    }
}
