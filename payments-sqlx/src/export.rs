//! Operators' exports of movements: CSV, XLSX and JSON lines, streamed row by row from the
//! database to any writer, in constant memory whatever the number of rows.

use std::io::Write;

use futures::TryStreamExt;
use std::borrow::Cow;

use payments_core::{Actor, Error, MovementQuery, Result, Role};
use serde::{Deserialize, Serialize};

use crate::rows::{Arg, Sql, db_err, from_micros, get};
use crate::store::{NEWEST_FIRST, after_in_order, movement_filters};
use crate::{Dialect, SqlxStore};

/// The most rows an XLSX worksheet holds (beside its header); further rows go on to a new
/// sheet.
pub const XLSX_ROWS_PER_SHEET: u32 = 1_048_575;

/// How to write an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
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

/// The parts of a payer's JSON column an export shows, borrowed from the column's text.
#[derive(Deserialize)]
struct PayerCells<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    fiscal_code: Option<Cow<'a, str>>,
}

/// The parts of a transaction line an export shows, borrowed from the `lines` column.
#[derive(Deserialize)]
struct LineCells<'a> {
    #[serde(borrow)]
    item_id: Cow<'a, str>,
    #[serde(borrow)]
    source: SourceCells<'a>,
    #[serde(borrow)]
    payment_type_id: Cow<'a, str>,
    #[serde(borrow)]
    reason: Cow<'a, str>,
    #[serde(borrow)]
    amount: AmountCells<'a>,
}

#[derive(Deserialize)]
struct SourceCells<'a> {
    #[serde(borrow)]
    module: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
}

/// Money as the column keeps it: the amount with exactly the currency's decimals.
#[derive(Deserialize)]
struct AmountCells<'a> {
    #[serde(borrow)]
    amount: Cow<'a, str>,
}

fn set(cell: &mut String, value: &str) {
    cell.clear();
    cell.push_str(value);
}

/// RFC 3339 in UTC with microseconds, `2026-03-01T09:00:00.000000Z`, written field by
/// field: a format string parsed anew for each of millions of cells cost a tenth of the
/// export.
fn set_time(cell: &mut String, micros: i64) -> Result<()> {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write as _;
    let t = from_micros(micros)?;
    cell.clear();
    write!(
        cell,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_micros()
    )
    .map_err(io_err)
}

/// A transaction's columns as an export reads them, borrowed where the source allows.
struct TxParts<'a> {
    id: &'a str,
    created_at: i64,
    updated_at: i64,
    status: &'a str,
    method: &'a str,
    provider_ref: Option<&'a str>,
    payer: &'a PayerCells<'a>,
    total_cents: i64,
    currency: &'a str,
}

/// The transaction's cells of `out`. Decodes only what the export shows, into the row's own
/// buffers: exports run over millions of rows.
fn fill_transaction(t: &TxParts<'_>, out: &mut ExportRow) -> Result<()> {
    let payer = t.payer;
    set(&mut out.transaction_id, t.id);
    set_time(&mut out.created_at, t.created_at)?;
    set_time(&mut out.updated_at, t.updated_at)?;
    set(&mut out.status, t.status);
    set(&mut out.method, t.method);
    set(&mut out.provider_ref, t.provider_ref.unwrap_or_default());
    set(&mut out.payer_id, &payer.id);
    set(&mut out.payer_name, &payer.name);
    set(
        &mut out.payer_fiscal_code,
        payer.fiscal_code.as_deref().unwrap_or_default(),
    );
    out.total = cents(t.total_cents);
    set(&mut out.currency, t.currency);
    Ok(())
}

/// Writes the rows of one transaction, one per item; answers how many.
fn write_transaction<W: Write + Send>(
    t: &TxParts<'_>,
    lines: &[LineCells<'_>],
    row: &mut ExportRow,
    sink: &mut Sink<W>,
) -> Result<u64> {
    fill_transaction(t, row)?;
    for (position, line) in lines.iter().enumerate() {
        fill_line(position, line, row);
        sink.write(row)?;
    }
    Ok(lines.len() as u64)
}

/// One transaction of a chunk read on SQLite: `[id, created_at, updated_at, status,
/// method_kind, provider_ref, payer, total_cents, currency, lines]`, the payer and lines
/// as JSON values (not texts), so they are read once, without escapes to undo.
#[derive(Deserialize)]
struct ChunkTx<'a>(
    #[serde(borrow)] Cow<'a, str>,
    i64,
    i64,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] PayerCells<'a>,
    i64,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Vec<LineCells<'a>>,
);

/// How many transactions one SQLite chunk carries.
const SQLITE_CHUNK: i64 = 500;

/// The item's cells of `out`.
fn fill_line(position: usize, line: &LineCells<'_>, out: &mut ExportRow) {
    out.line = position as i64 + 1;
    set(&mut out.item_id, &line.item_id);
    set(&mut out.module, &line.source.module);
    set(&mut out.source_key, &line.source.key);
    set(&mut out.payment_type_id, &line.payment_type_id);
    set(&mut out.reason, &line.reason);
    set(&mut out.amount, &line.amount.amount);
}

fn io_err(e: impl Into<payments_core::BoxError>) -> Error {
    Error::storage("writing the export", e)
}

/// Writes rows in one format.
enum Sink<W: Write + Send> {
    Csv(Box<csv::Writer<W>>),
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
                Sink::Csv(Box::new(w))
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
        let mut sink = Sink::new(format, out)?;
        let mut row = ExportRow::default();
        // In chunks only where an index gives the order: otherwise each chunk would sort
        // what is left of the selection (several states, a range of amounts).
        let ordered_by_index =
            query.statuses.len() <= 1 && query.min_total.is_none() && query.max_total.is_none();
        let n = match self.dialect() {
            Dialect::Sqlite if ordered_by_index => {
                self.export_sqlite(query, &mut sink, &mut row).await?
            }
            _ => self.export_rows(query, &mut sink, &mut row).await?,
        };
        sink.finish()?;
        Ok(n)
    }

    /// The export read row by row: one row per transaction, its items from the `lines`
    /// column written with it, which reads faster than a join that repeats the
    /// transaction's columns per item. PostgreSQL sends rows from its own process.
    async fn export_rows<W: Write + Send>(
        &self,
        query: &MovementQuery,
        sink: &mut Sink<W>,
        row: &mut ExportRow,
    ) -> Result<u64> {
        let mut sql = Sql::new(
            "SELECT t.id, t.created_at, t.updated_at, t.status, t.method_kind, t.provider_ref, t.payer, \
             t.total_cents, t.currency, t.lines FROM transactions t",
        );
        movement_filters(&mut sql, query);
        sql.push(" ORDER BY ").push(NEWEST_FIRST);
        let mut rows = sql.query().fetch(self.pool());
        let mut n = 0;
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db_err("reading the export"))?
        {
            let (id, status, method, payer, currency, lines): (
                String,
                String,
                String,
                String,
                String,
                String,
            ) = (
                get(&r, "id")?,
                get(&r, "status")?,
                get(&r, "method_kind")?,
                get(&r, "payer")?,
                get(&r, "currency")?,
                get(&r, "lines")?,
            );
            let provider_ref: Option<String> = get(&r, "provider_ref")?;
            let payer: PayerCells<'_> =
                serde_json::from_str(&payer).map_err(|e| Error::storage("decoding a payer", e))?;
            let lines: Vec<LineCells<'_>> =
                serde_json::from_str(&lines).map_err(|e| Error::storage("decoding lines", e))?;
            let t = TxParts {
                id: &id,
                created_at: get(&r, "created_at")?,
                updated_at: get(&r, "updated_at")?,
                status: &status,
                method: &method,
                provider_ref: provider_ref.as_deref(),
                payer: &payer,
                total_cents: get(&r, "total_cents")?,
                currency: &currency,
            };
            n += write_transaction(&t, &lines, row, sink)?;
        }
        Ok(n)
    }

    /// The export read in chunks of [`SQLITE_CHUNK`] transactions, each one row holding a
    /// JSON array. SQLite runs in a thread of this process and hands each row over to the
    /// reader: row by row, that hand-over (a thread switch every other row) took more time
    /// than the export itself. Each chunk continues after the last transaction of the one
    /// before, in the same order, and all are read in one read transaction: the export is
    /// one snapshot, as a single statement's is.
    async fn export_sqlite<W: Write + Send>(
        &self,
        query: &MovementQuery,
        sink: &mut Sink<W>,
        row: &mut ExportRow,
    ) -> Result<u64> {
        let mut n = 0;
        let mut after: Option<String> = None;
        let mut snapshot = self
            .pool()
            .begin()
            .await
            .map_err(db_err("reading the export"))?;
        loop {
            let mut sql = Sql::new(&format!(
                "SELECT json_group_array(json_array(t.id, t.created_at, t.updated_at, t.status, \
                 t.method_kind, t.provider_ref, json(t.payer), t.total_cents, t.currency, json(t.lines)) \
                 ORDER BY {NEWEST_FIRST}) AS chunk FROM (SELECT t.* FROM transactions t"
            ));
            movement_filters(&mut sql, query);
            if let Some(after) = &after {
                after_in_order(&mut sql, after);
            }
            sql.push(" ORDER BY ")
                .push(NEWEST_FIRST)
                .push(" LIMIT ")
                .arg(Arg::Int(SQLITE_CHUNK))
                .push(") AS t");
            let r = sql
                .query()
                .fetch_one(&mut *snapshot)
                .await
                .map_err(db_err("reading the export"))?;
            let chunk: String = get(&r, "chunk")?;
            let txs: Vec<ChunkTx<'_>> = serde_json::from_str(&chunk)
                .map_err(|e| Error::storage("decoding an export chunk", e))?;
            for c in &txs {
                let t = TxParts {
                    id: &c.0,
                    created_at: c.1,
                    updated_at: c.2,
                    status: &c.3,
                    method: &c.4,
                    provider_ref: c.5.as_deref(),
                    payer: &c.6,
                    total_cents: c.7,
                    currency: &c.8,
                };
                n += write_transaction(&t, &c.9, row, sink)?;
            }
            match txs.last() {
                Some(last) if txs.len() as i64 == SQLITE_CHUNK => {
                    after = Some(last.0.to_string());
                }
                _ => break,
            }
        }
        snapshot
            .rollback()
            .await
            .map_err(db_err("reading the export"))?;
        Ok(n)
    }
}
