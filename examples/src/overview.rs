//! The operators' first page (collections per day, open against paid, what waits for
//! them) and pagoPA's reporting flows (their states, a CSV export, fetching and
//! reconciling on demand).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Form};
use minijinja::{Value, context};
use payments_core::{
    Actor, CreditCheck, ExceptionKind, FlowQuery, Locale, MethodKind, Money, Overview,
    ReportingFlow,
};
use serde::Deserialize;

use crate::Portal;
use crate::auth::Ctx;
use crate::views::{self, OrPage, PageResult, text};

/// The days the overview's chart covers.
pub const OVERVIEW_DAYS: u32 = 30;

/// A colour per method in the chart. Colour alone does not tell methods apart: each bar's
/// title and the table below it name them.
fn colour(method: MethodKind) -> &'static str {
    match method {
        MethodKind::PagoPa => "#003366",
        MethodKind::Card => "#2a7ab0",
        MethodKind::BankTransfer => "#7fb8de",
        MethodKind::SepaDirectDebit => "#b35900",
        MethodKind::AccountDebit => "#e0a060",
        _ => "#777777",
    }
}

/// Escapes a text for SVG and HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart: a bar per day, stacked by method, drawn on the server. Each bar's segments
/// carry a title with their figure; the numbers themselves are in the table below it,
/// which the chart names (`aria-describedby`).
fn chart(o: &Overview, locale: Locale) -> String {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 64.0;
    const BOTTOM: f64 = 24.0;
    let days: Vec<chrono::NaiveDate> = o.days().collect();
    let methods = o.methods();
    let day_total = |d| -> i64 {
        methods
            .iter()
            .map(|m| o.collected(d, *m).minor_units())
            .sum()
    };
    let max = days
        .iter()
        .map(|d| day_total(*d))
        .max()
        .unwrap_or(0)
        .max(100);
    let slot = (W - LEFT) / days.len().max(1) as f64;
    let scale = |cents: i64| cents as f64 / max as f64 * (H - BOTTOM - 8.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-labelledby="chart-title" aria-describedby="collections-caption" id="collections-chart"><title id="chart-title">{}</title>"#,
        escape(text(locale, "overview.chart"))
    );
    let base = H - BOTTOM;
    svg.push_str(&format!(
        r##"<line x1="{LEFT}" y1="{base}" x2="{W}" y2="{base}" stroke="#444"/><text x="{}" y="14" font-size="11" text-anchor="end">{}</text><text x="{}" y="{base}" font-size="11" text-anchor="end">0</text>"##,
        LEFT - 4.0,
        escape(
            &Money::from_minor(max, payments_core::Currency::Eur)
                .map(|m| m.format(locale))
                .unwrap_or_default()
        ),
        LEFT - 4.0,
    ));
    for (i, day) in days.iter().enumerate() {
        let x = LEFT + i as f64 * slot + slot * 0.15;
        let width = slot * 0.7;
        let mut y = base;
        for m in &methods {
            let cents = o.collected(*day, *m).minor_units();
            if cents == 0 {
                continue;
            }
            let h = scale(cents);
            y -= h;
            svg.push_str(&format!(
                r#"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}" fill="{}" data-day="{day}" data-method="{}"><title>{} · {}: {}</title></rect>"#,
                colour(*m),
                m.as_str(),
                day.format("%d/%m"),
                escape(m.label(locale)),
                escape(&o.collected(*day, *m).format(locale)),
            ));
        }
        if i % 5 == 0 || i + 1 == days.len() {
            svg.push_str(&format!(
                r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
                x + width / 2.0,
                H - 6.0,
                day.format("%d/%m")
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The overview: the first page after an operator signs in.
pub async fn overview(State(portal): State<Portal>, Extension(ctx): Extension<Ctx>) -> PageResult {
    let actor = ctx.operator()?;
    let locale = ctx.locale();
    let o = portal
        .payments()
        .overview(&actor, ctx.body.creditor.id, OVERVIEW_DAYS)
        .await
        .or_page(&ctx)?;
    let methods = o.methods();
    let zero = || Money::zero(payments_core::Currency::Eur);
    let rows: Vec<Value> = o
        .days()
        .map(|day| {
            let amounts: Vec<String> = methods
                .iter()
                .map(|m| o.collected(day, *m).format(locale))
                .collect();
            let total = Money::sum(
                payments_core::Currency::Eur,
                methods
                    .iter()
                    .map(|m| o.collected(day, *m))
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .unwrap_or_else(|_| zero());
            context! {
                day => day.to_string(), label => day.format("%d/%m/%Y").to_string(),
                amounts, total => total.format(locale), empty => total.minor_units() == 0,
            }
        })
        .collect();
    let legend: Vec<Value> = methods
        .iter()
        .map(|m| context! { kind => m.as_str(), label => m.label(locale), colour => colour(*m) })
        .collect();
    let waiting = |kind: ExceptionKind| o.waiting.get(&kind).copied().unwrap_or(0);
    let tiles = vec![
        context! {
            id => "unmatched", label => text(locale, "overview.unmatched"),
            count => waiting(ExceptionKind::UnmatchedCredit),
            href => "/admin/exceptions?kind=unmatched_credit",
        },
        context! {
            id => "fdr", label => text(locale, "overview.fdr"),
            count => waiting(ExceptionKind::ReportingMismatch),
            href => "/admin/exceptions?kind=reporting_mismatch",
        },
        context! {
            id => "double", label => text(locale, "overview.double"),
            count => waiting(ExceptionKind::DoublePayment),
            href => "/admin/exceptions?kind=double_payment",
        },
        context! {
            id => "failed", label => text(locale, "overview.failed"),
            count => o.failed_messages, href => "/admin/outbox?failed=1",
        },
    ];
    let others: u64 = o
        .waiting
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k,
                ExceptionKind::UnmatchedCredit
                    | ExceptionKind::ReportingMismatch
                    | ExceptionKind::DoublePayment
            )
        })
        .map(|(_, n)| n)
        .sum();
    portal.page(
        &ctx,
        "overview.html",
        context! {
            chart => Value::from_safe_string(chart(&o, locale)),
            rows, legend,
            first => o.first_day.format("%d/%m/%Y").to_string(),
            last => o.last_day.format("%d/%m/%Y").to_string(),
            paid_count => o.paid.0, paid_total => o.paid.1.format(locale),
            open_count => o.open.0, open_total => o.open.1.format(locale),
            tiles, others,
        },
    )
}

/// A flow as a row of the page and of the export.
fn flow_row(f: &ReportingFlow, locale: Locale) -> Value {
    let state = f.state();
    let credit = match &f.credit {
        CreditCheck::Awaited => text(locale, "flows.credit_awaited").to_owned(),
        CreditCheck::Matched { entry_key } => entry_key.clone(),
        CreditCheck::AmountDiffers {
            entry_key,
            credited,
        } => {
            format!("{entry_key} ({})", credited.format(locale))
        }
        _ => String::new(),
    };
    context! {
        flow_id => f.flow_id.clone(), psp => f.psp_name.clone().unwrap_or_else(|| f.psp_id.clone()),
        psp_id => f.psp_id.clone(), revision => f.revision,
        flow_date => views::local(f.flow_date, "%d/%m/%Y"),
        published => views::local(f.published_at, "%d/%m/%Y %H:%M"),
        regulation => f.regulation.clone().unwrap_or_default(),
        regulation_date => f.regulation_date.map(|d| d.format("%d/%m/%Y").to_string()).unwrap_or_default(),
        count => f.count, total => f.total.format(locale), total_plain => f.total.amount().to_string(),
        state => state.as_str(), state_label => state.label(locale),
        discrepancies => f.discrepancies(), credit,
    }
}

async fn current_flows(
    portal: &Portal,
    ctx: &Ctx,
    actor: &Actor,
) -> Result<Vec<ReportingFlow>, crate::PageError> {
    let mut q = FlowQuery::new(ctx.body.creditor.id);
    q.limit = payments_core::MAX_PAGE_SIZE;
    let mut flows = Vec::new();
    loop {
        let page = portal.payments().flows(actor, &q).await.or_page(ctx)?;
        let full = page.len() == q.limit as usize;
        q.before = page
            .last()
            .map(|f| (f.published_at, f.flow_id.clone(), f.psp_id.clone()));
        flows.extend(page);
        if !full || flows.len() >= 5_000 {
            break;
        }
    }
    Ok(flows)
}

async fn flows_page(
    portal: &Portal,
    ctx: &Ctx,
    actor: &Actor,
    done: Option<crate::Reconciled>,
) -> PageResult {
    let locale = ctx.locale();
    let rows: Vec<Value> = current_flows(portal, ctx, actor)
        .await?
        .iter()
        .map(|f| flow_row(f, locale))
        .collect();
    portal.page(
        ctx,
        "flows.html",
        context! {
            rows, fetches => portal.fetches_flows(),
            manager => matches!(actor, Actor::Operator { role: payments_core::Role::Manager, .. }),
            done => done.map(|d| {
                let (fetched, fdr_error) = match d.synced {
                    Some(Ok(s)) => (Some(context! {
                        listed => s.listed, stored => s.stored, replaced => s.replaced,
                        unreadable => s.unreadable,
                    }), None),
                    Some(Err(e)) => (None, Some(e)),
                    None => (None, None),
                };
                context! {
                    fetched, fdr_error, flows => d.report.flows, paid => d.report.paid,
                    exceptions => d.report.exceptions,
                }
            }),
        },
    )
}

/// pagoPA's reporting flows: each with its state, and a button that fetches new ones and
/// reconciles now.
pub async fn flows(State(portal): State<Portal>, Extension(ctx): Extension<Ctx>) -> PageResult {
    let actor = ctx.operator()?;
    flows_page(&portal, &ctx, &actor, None).await
}

/// The flows as CSV, one line per flow, amounts with a point and two decimals.
pub async fn flows_csv(State(portal): State<Portal>, Extension(ctx): Extension<Ctx>) -> PageResult {
    let actor = ctx.operator()?;
    let flows = current_flows(&portal, &ctx, &actor).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "flow_id",
        "psp_id",
        "psp_name",
        "revision",
        "flow_date",
        "published_at",
        "regulation",
        "regulation_date",
        "payments",
        "total",
        "currency",
        "state",
        "discrepancies",
        "credit",
    ];
    let write_err = |e: csv::Error| {
        crate::PageError::from_error(&ctx, payments_core::Error::storage("writing the CSV", e))
    };
    out.write_record(header).map_err(write_err)?;
    for f in &flows {
        let credit = match &f.credit {
            CreditCheck::Matched { entry_key } => entry_key.clone(),
            CreditCheck::AmountDiffers {
                entry_key,
                credited,
            } => {
                format!("{entry_key} {}", credited.amount())
            }
            _ => String::new(),
        };
        let cells = [
            f.flow_id.clone(),
            f.psp_id.clone(),
            f.psp_name.clone().unwrap_or_default(),
            f.revision.to_string(),
            f.flow_date.to_rfc3339(),
            f.published_at.to_rfc3339(),
            f.regulation.clone().unwrap_or_default(),
            f.regulation_date.map(|d| d.to_string()).unwrap_or_default(),
            f.count.to_string(),
            f.total.amount().to_string(),
            f.total.currency().code().to_owned(),
            f.state().as_str().to_owned(),
            f.discrepancies().to_string(),
            credit,
        ];
        // Texts from pagoPA and the PSPs: never read as a formula by a spreadsheet.
        out.write_record(
            cells
                .iter()
                .map(|c| payments_sqlx::neutralise(c).into_owned()),
        )
        .map_err(write_err)?;
    }
    let body = out.into_inner().map_err(|e| {
        crate::PageError::from_error(
            &ctx,
            payments_core::Error::storage("writing the CSV", e.into_error()),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"flussi-rendicontazione.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The sync button's form: the CSRF token only.
#[derive(Debug, Deserialize)]
pub struct SyncForm {
    /// The session's CSRF token (checked by the session layer).
    #[serde(default)]
    pub csrf: String,
}

/// Fetches new flows (when FdR is configured) and reconciles now; back to the flows page
/// with what was done. A manager's action.
pub async fn sync(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Form(_form): Form<SyncForm>,
) -> PageResult {
    let actor = ctx.operator()?;
    actor
        .check_operator(&ctx.body.creditor.id, payments_core::Role::Manager)
        .or_page(&ctx)?;
    let done = portal.reconcile(ctx.body.creditor.id).await.or_page(&ctx)?;
    flows_page(&portal, &ctx, &actor, Some(done)).await
}
