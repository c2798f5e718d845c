//! The body's operators: movements with filters, paging and totals; a transaction's detail
//! and events; confirming or rejecting a reported transfer; importing a camt.053 statement;
//! the outbox with a retry button; exports of the selection as CSV and XLSX.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use chrono::{NaiveDate, TimeZone, Utc};
use minijinja::{Value, context};
use payments_core::{
    Actor, BankEntryOutcome, BankEntryQuery, CreditorId, Exception, ExceptionKind, ExceptionQuery,
    ExceptionStatus, Locale, MethodKind, Money, MovementQuery, OutboxPayload, OutboxQuery,
    OutboxStatus, ProviderReceiptQuery, TxStatus,
};
use payments_sqlx::ExportFormat;
use serde::{Deserialize, Serialize};

use crate::Portal;
use crate::auth::Ctx;
use crate::views::{self, OrPage, PageError, PageResult, status_label, text};

/// The movements' filters, as the search form sends them (all optional).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Filters {
    /// From this day (YYYY-MM-DD).
    #[serde(default)]
    pub from: String,
    /// To this day, included.
    #[serde(default)]
    pub to: String,
    /// A state (`paid`, `reported`, …).
    #[serde(default)]
    pub status: String,
    /// A payment type id.
    #[serde(default, rename = "type")]
    pub payment_type: String,
    /// A method kind (`card`, `bank_transfer`, …).
    #[serde(default)]
    pub method: String,
    /// A module (`tributi`, …, or `free-payment` for free payments).
    #[serde(default)]
    pub module: String,
    /// The payer's id (fiscal code).
    #[serde(default)]
    pub payer: String,
    /// The smallest total.
    #[serde(default)]
    pub min: String,
    /// The largest total.
    #[serde(default)]
    pub max: String,
    /// The page's cursor.
    #[serde(default)]
    pub after: String,
}

impl Filters {
    /// The library's query; a filter that does not read is an error naming it.
    pub fn query(&self, creditor: CreditorId) -> payments_core::Result<MovementQuery> {
        let mut q = MovementQuery::new(creditor);
        let mut errors = payments_core::ValidationErrors::default();
        let day = |s: &str, field: &str, errors: &mut payments_core::ValidationErrors| {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| errors.push(field, "must be a date, YYYY-MM-DD"))
                .ok()
        };
        q.from = day(&self.from, "from", &mut errors).and_then(|d| {
            views::ZONE
                .from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
                .single()
                .map(|t| t.with_timezone(&Utc))
        });
        q.to = day(&self.to, "to", &mut errors).and_then(|d| {
            views::ZONE
                .from_local_datetime(&d.succ_opt()?.and_hms_opt(0, 0, 0)?)
                .single()
                .map(|t| t.with_timezone(&Utc))
        });
        if !self.status.is_empty() {
            match TxStatus::parse(&self.status) {
                Some(s) => q.statuses = vec![s],
                None => errors.push("status", payments_core::Problem::Unknown),
            }
        }
        if !self.payment_type.is_empty() {
            match self.payment_type.parse() {
                Ok(t) => q.payment_type_id = Some(t),
                Err(_) => errors.push("type", payments_core::Problem::Unknown),
            }
        }
        if !self.method.is_empty() {
            match MethodKind::parse(&self.method) {
                Some(k) => q.method_kind = Some(k),
                None => errors.push("method", payments_core::Problem::Unknown),
            }
        }
        if !self.module.trim().is_empty() {
            q.module = Some(self.module.trim().to_owned());
        }
        if !self.payer.trim().is_empty() {
            q.payer_id = Some(self.payer.trim().to_uppercase().into());
        }
        for (field, raw, target) in [
            ("min", &self.min, &mut q.min_total),
            ("max", &self.max, &mut q.max_total),
        ] {
            if !raw.trim().is_empty() {
                match Money::parse_eur(raw) {
                    Ok(m) => *target = Some(m),
                    Err(e) => errors.push(field, e),
                }
            }
        }
        if !self.after.is_empty() {
            q.after = self.after.parse().ok();
        }
        q.limit = 20;
        errors.into_result()?;
        Ok(q)
    }

    fn query_string(&self, after: Option<String>) -> String {
        let mut f = self.clone();
        f.after = after.unwrap_or_default();
        let pairs = [
            ("from", &f.from),
            ("to", &f.to),
            ("status", &f.status),
            ("type", &f.payment_type),
            ("method", &f.method),
            ("module", &f.module),
            ("payer", &f.payer),
            ("min", &f.min),
            ("max", &f.max),
            ("after", &f.after),
        ];
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if !v.is_empty() {
                out.append_pair(k, v);
            }
        }
        out.finish()
    }
}

/// Movements: the filters, a page of transactions, how many and their total, links to the
/// next page and to the exports of the same selection.
pub async fn movements(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(filters): Query<Filters>,
) -> PageResult {
    let actor = ctx.operator()?;
    let locale = ctx.locale();
    let (rows, count, total, next, error) = match filters.query(ctx.body.creditor.id) {
        Ok(q) => {
            let found = portal.payments().search(&actor, &q).await.or_page(&ctx)?;
            let rows: Vec<Value> = found
                .page
                .items
                .iter()
                .map(|t| views::transaction(t, locale))
                .collect();
            let next = found
                .page
                .next
                .map(|n| filters.query_string(Some(n.to_string())));
            (rows, found.count, found.total.format(locale), next, None)
        }
        Err(e) => (
            Vec::new(),
            0,
            String::new(),
            None,
            Some(views::reader_text(&e, locale)),
        ),
    };
    let types: Vec<Value> = portal
        .payments()
        .payment_types(ctx.body.creditor.id)
        .await
        .or_page(&ctx)?
        .iter()
        .map(|t| context! { id => t.id.to_string(), name => t.name.clone() })
        .collect();
    let statuses: Vec<Value> = TxStatus::ALL
        .iter()
        .map(|s| context! { code => s.as_str(), label => status_label(*s, locale) })
        .collect();
    let methods: Vec<Value> = MethodKind::ALL
        .iter()
        .map(|m| context! { code => m.as_str(), label => m.label(locale) })
        .collect();
    let modules: Vec<&str> = ctx
        .body
        .modules()
        .iter()
        .map(|m| m.name)
        .chain([payments_core::FREE_PAYMENT_MODULE])
        .collect();
    let selection = filters.query_string(None);
    portal.page(
        &ctx,
        "admin.html",
        context! { rows, count, total, next, error, filters => Value::from(minijinja::value::Serde(filters.clone())), types, statuses, methods, modules, selection },
    )
}

async fn export(portal: Portal, ctx: Ctx, filters: Filters, format: ExportFormat) -> PageResult {
    let actor = ctx.operator()?;
    let query = filters.query(ctx.body.creditor.id).or_page(&ctx)?;
    // Refused here, with a page, rather than in the middle of a download.
    actor
        .check_operator(&query.creditor_id, payments_core::Role::Viewer)
        .or_page(&ctx)?;
    let (mime, name) = match format {
        ExportFormat::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "movimenti.xlsx",
        ),
        ExportFormat::JsonLines => ("application/x-ndjson; charset=utf-8", "movimenti.jsonl"),
        _ => ("text/csv; charset=utf-8", "movimenti.csv"),
    };
    // The store streams rows to a writer in constant memory; here the writer is the
    // response, a few chunks at a time: a slow client holds the export back, and nothing
    // is kept whole in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let store = portal.inner.store.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let writer = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(store.export(&actor, &query, format, writer))
        }));
        let failed = match done {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the export stopped".to_owned()),
        };
        if let Some(why) = failed {
            // The download ends broken, never looking complete.
            let _ = futures::executor::block_on(tokio::task::unconstrained(
                tx.send(Err(std::io::Error::other(why))),
            ));
        }
    });
    let body = axum::body::Body::from_stream(futures::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// How much of an export is sent at once.
const CHUNK: usize = 64 * 1024;

/// A writer that sends what it is given to the response, [`CHUNK`] bytes at a time,
/// waiting while the response is behind (it runs on a blocking thread).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        // A client that stops reading for a minute is given up: the export ends and its
        // database connection goes back to the pool. `unconstrained`: this wait runs inside
        // the export's own `block_on`, whose task budget only refills when the export
        // yields; under a spent budget every `send` would answer "not yet" at once and this
        // loop would spin (it did, at 100 % CPU, once 128 chunks, 8 MiB, had gone).
        match futures::executor::block_on(tokio::task::unconstrained(tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.tx.send(Ok(chunk)),
        ))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client left",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
        }
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// The selection as JSON lines, one object per item.
pub async fn export_jsonl(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(filters): Query<Filters>,
) -> PageResult {
    export(portal, ctx, filters, ExportFormat::JsonLines).await
}

/// The selection as CSV (`;`-separated, for Italian spreadsheets), one row per item.
pub async fn export_csv(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(filters): Query<Filters>,
) -> PageResult {
    export(portal, ctx, filters, ExportFormat::Csv { separator: b';' }).await
}

/// The selection as an Excel workbook.
pub async fn export_xlsx(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(filters): Query<Filters>,
) -> PageResult {
    export(portal, ctx, filters, ExportFormat::Xlsx).await
}

/// A transaction: its lines, its events, the bank entries matched to it, and the
/// confirm/reject forms while a transfer waits.
pub async fn detail(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> PageResult {
    let actor = ctx.operator()?;
    let locale = ctx.locale();
    let id = views::parse_id(&ctx, &id)?;
    let tx = portal
        .payments()
        .transaction(&actor, id)
        .await
        .or_page(&ctx)?;
    let events = portal.payments().events(&actor, id).await.or_page(&ctx)?;
    let mut q = BankEntryQuery::new(ctx.body.creditor.id);
    q.transaction_id = Some(id);
    let entries = portal
        .payments()
        .bank_entries(&actor, &q)
        .await
        .or_page(&ctx)?;
    let entries: Vec<Value> = entries.iter().map(|e| entry(e, locale)).collect();
    let refunds: Vec<Value> = portal
        .payments()
        .refunds(&actor, id)
        .await
        .or_page(&ctx)?
        .iter()
        .map(|r| {
            context! {
                at => views::local(r.updated_at, "%d/%m/%Y %H:%M"), amount => r.amount.format(locale),
                status => r.status.as_str(), status_label => text(locale, &format!("refund.{}", r.status.as_str())),
                provider_ref => r.provider_ref.clone(), note => r.note.clone(),
            }
        })
        .collect();
    let exceptions: Vec<Value> = portal
        .payments()
        .exceptions(
            &actor,
            &ExceptionQuery::new(ctx.body.creditor.id).of_transaction(id),
        )
        .await
        .or_page(&ctx)?
        .iter()
        .map(|e| exception(e, false, locale))
        .collect();
    // The providers' receipts of the lines it paid, kept whole (pagoPA's paSendRT).
    let mut receipts = Vec::new();
    for r in portal
        .payments()
        .transaction_receipts(&actor, id)
        .await
        .or_page(&ctx)?
    {
        let psp = match (&r.psp_name, &r.psp_id) {
            (Some(name), Some(id)) => Some(format!("{name} ({id})")),
            (name, id) => name.clone().or_else(|| id.clone()),
        };
        let href = format!(
            "/admin/receipts/{}",
            form_urlencoded::byte_serialize(r.key.as_bytes()).collect::<String>()
        );
        receipts.push(context! {
            key => r.key, href, receipt_id => r.receipt_id, reference => r.reference,
            share => r.share.format(locale), psp, channel => r.channel_id,
            method => r.payment_method, fee => r.fee.map(|f| f.format(locale)),
            transfer_date => r.transfer_date.map(|d| d.format("%d/%m/%Y").to_string()),
        });
    }
    let can_confirm = matches!(tx.status, TxStatus::Reported | TxStatus::Pending)
        && tx.method_kind == MethodKind::BankTransfer;
    portal.page(
        &ctx,
        "detail.html",
        context! {
            tx => views::transaction(&tx, locale), events => views::events(&events, locale), entries, refunds, exceptions, receipts,
            can_confirm, can_reject => tx.status == TxStatus::Reported,
        },
    )
}

/// A provider's receipt as it arrived (pagoPA's `paSendRT`), to download: the body's
/// operators read the legal proof of a payment whole.
pub async fn receipt_document(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(key): Path<String>,
) -> PageResult {
    let actor = ctx.operator()?;
    let mut q = ProviderReceiptQuery::new(ctx.body.creditor.id);
    q.key = Some(key.clone());
    q.limit = 1;
    let found = portal
        .payments()
        .provider_receipts(&actor, &q)
        .await
        .or_page(&ctx)?
        .pop();
    let Some(r) = found else {
        return Err(PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found"));
    };
    let name: String = r
        .receipt_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/xml; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"ricevuta-{name}.xml\""),
            ),
        ],
        r.document,
    )
        .into_response())
}

fn entry(e: &payments_core::BankEntry, locale: Locale) -> Value {
    let (outcome, tx, reason) = match &e.outcome {
        BankEntryOutcome::Matched { transaction_id } => {
            ("matched", Some(transaction_id.to_string()), None)
        }
        BankEntryOutcome::Exception {
            reason,
            transaction_id,
        } => (
            "exception",
            transaction_id.map(|t| t.to_string()),
            Some(reason.clone()),
        ),
        BankEntryOutcome::Returned {
            transaction_id,
            credit,
        } => (
            "returned",
            Some(transaction_id.to_string()),
            Some(format!(
                "{} ({credit})",
                ExceptionKind::ReturnedByBank.label(locale)
            )),
        ),
        BankEntryOutcome::Flow { flow_id } => (
            "flow",
            None,
            Some(format!("{} {flow_id}", text(locale, "statements.flow"))),
        ),
        _ => ("other", None, None),
    };
    let amount = Money::eur(e.amount)
        .map(|m| m.format(locale))
        .unwrap_or_else(|_| e.amount.to_string());
    context! {
        key => e.key.clone(), booked_on => e.booked_on.map(|d| d.format("%d/%m/%Y").to_string()), amount,
        value_on => e.value_on.map(|d| d.format("%d/%m/%Y").to_string()), info => e.info.clone(),
        debtor => e.debtor.clone(), remittance => e.remittance.clone(), outcome, tx, reason,
    }
}

/// An operator's note on a confirmation, a rejection, an exception resolved or a position
/// invalidated.
#[derive(Debug, Deserialize)]
pub struct Note {
    #[serde(default)]
    note: String,
}

pub(crate) fn note(form: Note) -> Option<String> {
    Some(form.note.trim().to_owned()).filter(|n| !n.is_empty())
}

/// A manager's decision on a transfer: `confirm` that the money arrived (the transaction is
/// paid; the receipt, the notice and the module's settlement go out), or `reject` a report
/// with no transfer behind it (the items are payable again).
pub async fn decide(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<Note>,
) -> PageResult {
    let actor = ctx.operator()?;
    let id = views::parse_id(&ctx, &id)?;
    let payments = portal.payments();
    match decision.as_str() {
        "confirm" => payments.confirm_payment(&actor, id, note(form)).await,
        "reject" => payments.reject_report(&actor, id, note(form)).await,
        _ => return Err(PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found")),
    }
    .or_page(&ctx)?;
    Ok(Redirect::to(&format!("/admin/payments/{id}")).into_response())
}

async fn statements_page(
    portal: &Portal,
    ctx: &Ctx,
    actor: &Actor,
    report: Option<Value>,
    status: StatusCode,
) -> PageResult {
    let locale = ctx.locale();
    let mut q = BankEntryQuery::new(ctx.body.creditor.id);
    q.exceptions_only = true;
    q.limit = 50;
    let open: Vec<Value> = portal
        .payments()
        .bank_entries(actor, &q)
        .await
        .or_page(ctx)?
        .iter()
        .map(|e| entry(e, locale))
        .collect();
    let mut response = portal.page(ctx, "statements.html", context! { report, open })?;
    *response.status_mut() = status;
    Ok(response)
}

/// The statement upload form, and the entries still to check.
pub async fn statements(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
) -> PageResult {
    let actor = ctx.operator()?;
    statements_page(&portal, &ctx, &actor, None, StatusCode::OK).await
}

/// Imports an uploaded camt.053 (or camt.054): each credit matched to the payment its
/// reference names, or kept as an exception to check; importing it again changes nothing.
pub async fn import(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    form: Multipart,
) -> PageResult {
    let actor = ctx.operator()?;
    let file = views::upload(&ctx, form).await?;
    let locale = ctx.locale();
    let (report, status) = match portal
        .inner
        .bank
        .import_statement(portal.payments(), &actor, ctx.body.creditor.id, &file)
        .await
    {
        Ok(r) => (
            context! {
                message_id => r.message_id,
                matched => r.matched.iter().map(|e| entry(e, locale)).collect::<Vec<_>>(),
                exceptions => r.exceptions.iter().map(|e| entry(e, locale)).collect::<Vec<_>>(),
                flows => r.flows.iter().map(|e| entry(e, locale)).collect::<Vec<_>>(),
                already => r.already_imported, ignored => r.ignored,
            },
            StatusCode::OK,
        ),
        Err(e @ (payments_core::Error::Validation(_) | payments_core::Error::Gateway { .. })) => (
            context! { error => views::reader_text(&e, locale) },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => return Err(PageError::from_error(&ctx, e)),
    };
    statements_page(&portal, &ctx, &actor, Some(report), status).await
}

/// Which messages to list.
#[derive(Debug, Deserialize)]
pub struct OutboxFilter {
    #[serde(default)]
    failed: Option<String>,
}

/// The outbox: receipts, notices and settlements, the failed ones with a retry button.
pub async fn outbox(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(filter): Query<OutboxFilter>,
) -> PageResult {
    let actor = ctx.operator()?;
    let locale = ctx.locale();
    let failed_only = filter.failed.is_some();
    let query = OutboxQuery {
        status: failed_only.then_some(OutboxStatus::Dead),
        limit: 100,
        ..Default::default()
    };
    let messages = portal
        .payments()
        .outbox(&actor, ctx.body.creditor.id, query)
        .await
        .or_page(&ctx)?;
    let rows: Vec<Value> = messages
        .iter()
        .map(|m| {
            let what = match &m.payload {
                OutboxPayload::Notification(n) => format!(
                    "{} {}",
                    text(locale, if n.kind.is_for_payer() { "outbox.receipt" } else { "outbox.notice" }),
                    n.to
                ),
                OutboxPayload::Settlement(s) => format!("{} {}: {}", text(locale, "outbox.settlement"), s.source.module, s.source.key),
                OutboxPayload::Refund(r) => format!("{} {}: {}", text(locale, "outbox.refund"), r.source.module, r.source.key),
                OutboxPayload::Reminder(r) => format!("{} {}: {}", text(locale, "outbox.reminder"), r.position.key, r.to),
                OutboxPayload::Archive(a) => format!("{} {}", text(locale, "outbox.archive"), a.position_id),
                _ => text(locale, "outbox.other").to_owned(),
            };
            context! {
                id => m.id.to_string(), tx => m.transaction_id.to_string(), what,
                status => text(locale, &format!("outbox.{}", m.status.as_str())), dead => m.status == OutboxStatus::Dead,
                attempts => m.attempts, error => m.last_error.clone(), created => views::local(m.created_at, "%d/%m/%Y %H:%M"),
            }
        })
        .collect();
    portal.page(&ctx, "outbox.html", context! { rows, failed_only })
}

/// A manager puts a failed message back in the queue.
pub async fn retry(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> PageResult {
    let actor = ctx.operator()?;
    let id = views::parse_id(&ctx, &id)?;
    portal
        .payments()
        .retry_message(&actor, id)
        .await
        .or_page(&ctx)?;
    Ok(Redirect::to("/admin/outbox").into_response())
}

fn exception(e: &Exception, refundable: bool, locale: Locale) -> Value {
    context! {
        id => e.id.to_string(), kind => e.kind.as_str(), kind_label => e.kind.label(locale),
        explain => text(locale, &format!("exceptions.explain.{}", e.kind.as_str())),
        reason => e.reason.clone(), tx => e.transaction_id.map(|t| t.to_string()),
        provider_ref => e.provider_ref.clone(), amount => e.amount.map(|a| a.format(locale)),
        created => views::local(e.created_at, "%d/%m/%Y %H:%M"), open => e.is_open(),
        status_label => text(locale, if e.is_open() { "exceptions.open" } else { "exceptions.resolved" }),
        resolution => e.resolution.as_ref().map(|r| format!("{} ({}, {})", r.note, r.by, views::local(r.at, "%d/%m/%Y %H:%M"))),
        refundable => refundable && e.is_open(),
    }
}

/// Which exceptions to list.
#[derive(Debug, Default, Deserialize)]
pub struct ExceptionFilter {
    /// `open` (the default), `resolved` or `all`.
    #[serde(default)]
    status: String,
    /// A kind (`double_payment`, …); empty for any.
    #[serde(default)]
    kind: String,
}

/// The ledger of exceptions: what needs an operator, with a note to resolve each and, for
/// a double payment taken by a provider that refunds, a button that gives it back.
pub async fn exceptions(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(filter): Query<ExceptionFilter>,
) -> PageResult {
    let actor = ctx.operator()?;
    let locale = ctx.locale();
    let mut query = ExceptionQuery::new(ctx.body.creditor.id);
    query.limit = 200;
    let status = match filter.status.as_str() {
        "resolved" => "resolved",
        "all" => "all",
        _ => "open",
    };
    query.status = ExceptionStatus::parse(status);
    query.kind = ExceptionKind::parse(&filter.kind);
    let listed = portal
        .payments()
        .exceptions(&actor, &query)
        .await
        .or_page(&ctx)?;
    let mut rows = Vec::new();
    for e in &listed {
        let refundable = match (e.kind, e.transaction_id) {
            (ExceptionKind::DoublePayment, Some(t)) => portal
                .payments()
                .transaction(&actor, t)
                .await
                .is_ok_and(|tx| tx.status == TxStatus::Paid && portal.payments().refundable(&tx)),
            _ => false,
        };
        rows.push(exception(e, refundable, locale));
    }
    let kinds: Vec<Value> = ExceptionKind::ALL
        .iter()
        .map(|k| context! { value => k.as_str(), label => k.label(locale) })
        .collect();
    portal.page(
        &ctx,
        "exceptions.html",
        context! { rows, kinds, status, kind => query.kind.map(|k| k.as_str()).unwrap_or("") },
    )
}

/// A manager's action on an exception: `resolve` it with a note, or `refund` a double
/// payment through the provider that took it.
pub async fn act_on_exception(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Note>,
) -> PageResult {
    let actor = ctx.operator()?;
    let id = views::parse_id(&ctx, &id)?;
    let payments = portal.payments();
    let back = match action.as_str() {
        "resolve" => {
            payments
                .resolve_exception(&actor, id, &form.note)
                .await
                .or_page(&ctx)?;
            "/admin/exceptions"
        }
        "refund" => {
            payments.refund_exception(&actor, id).await.or_page(&ctx)?;
            "/admin/exceptions?status=all"
        }
        _ => return Err(PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found")),
    };
    Ok(Redirect::to(back).into_response())
}
