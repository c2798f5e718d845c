//! Debt positions in the portal: the citizen's notices with their instalments (pay one,
//! download the notice), the receipt as PDF, and the operator's list with filters, CSV
//! import, invalidation and notices.

use async_trait::async_trait;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use minijinja::{Value, context};
use payments_core::{
    Actor, CreditorId, DebtPosition, Locale, NewDebtPosition, NewOption, OptionKind, PositionPayer,
    PositionQuery, PositionStatus, Result, Settlement, SettlementListener,
};
use serde::Deserialize;

use crate::Portal;
use crate::auth::{AccountKind, Accounts, Ctx};
use crate::views::{self, OrPage, PageError, PageResult, text};

/// The module the portal's debt positions come from: the tax office's notices.
pub const MODULE: &str = "avvisi";

/// Hears of the positions' payments (the position itself records them; a real module
/// would update its own records here).
#[derive(Debug, Default)]
pub struct NoticesModule;

#[async_trait]
impl SettlementListener for NoticesModule {
    async fn settled(&self, _settlement: &Settlement) -> Result<()> {
        Ok(())
    }
}

/// Registers the demo's TARI 2027 notices, one per citizen: € 240 at once or three
/// instalments, due 30, 120 and 210 days after the first start (registering again is
/// idempotent: the first one stays).
pub(crate) async fn seed(
    portal_payments: &payments_core::Payments,
    creditor: CreditorId,
    accounts: &dyn Accounts,
) -> Result<()> {
    let today = portal_payments
        .clock()
        .now()
        .with_timezone(&chrono_tz::Europe::Rome)
        .date_naive();
    let eur = |s: &str| {
        payments_core::Money::parse_eur(s)
            .map_err(|e| payments_core::Error::invalid("amount", e.to_string()))
    };
    let rows: Vec<NewDebtPosition> = accounts
        .list()
        .into_iter()
        .filter_map(|a| match a.kind {
            AccountKind::Citizen { fiscal_code, email } => Some((a.name, fiscal_code, email)),
            AccountKind::Operator { .. } => None,
        })
        .map(|(name, fiscal_code, email)| -> Result<NewDebtPosition> {
            let due = |days| today + chrono::Duration::days(days);
            Ok(NewDebtPosition::new(
                MODULE,
                format!("TARI-2027-{fiscal_code}"),
                PositionPayer::new(fiscal_code, name)
                    .with_email(email)
                    .with_address("Via Roma 1, 10100 Torino (TO)"),
                crate::seed::type_id(crate::seed::TARI),
                "TARI 2027 - Tassa sui rifiuti",
            )
            .with_single(NewOption::new(eur("240.00")?, due(30)))
            .with_instalment(NewOption::new(eur("80.00")?, due(30)))
            .with_instalment(NewOption::new(eur("80.00")?, due(120)))
            .with_instalment(NewOption::new(eur("80.00")?, due(210))))
        })
        .collect::<Result<_>>()?;
    let report = portal_payments
        .register_positions(&Actor::System, creditor, rows)
        .await?;
    if let Some(r) = report.refused.first() {
        return Err(payments_core::Error::invalid(
            r.field.clone(),
            r.reason.clone(),
        ));
    }
    Ok(())
}

fn date(d: chrono::NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// A position as the pages show it.
fn view(p: &DebtPosition, locale: Locale) -> Value {
    let payable = p.payable();
    let options: Vec<Value> = p
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let state = if o.paid_by.is_some() {
                "paid"
            } else if payable.contains(&i) {
                "payable"
            } else {
                "closed"
            };
            context! {
                index => i,
                label => o.kind.describe(locale),
                single => o.kind == OptionKind::Single,
                amount => o.amount.format(locale),
                due => date(o.due_date),
                notice => payments_pdf::grouped_notice(&o.notice_number),
                notice_number => o.notice_number.clone(),
                state,
                paid_by => o.paid_by.map(|t| t.to_string()),
            }
        })
        .collect();
    context! {
        id => p.id.to_string(),
        key => p.key.clone(),
        reason => p.reason.clone(),
        payer => p.payer.name.clone(),
        payer_cf => p.payer.fiscal_code.clone(),
        status => p.status.as_str(),
        status_label => p.status.label(locale),
        next_due => p.next_due().map(date),
        can_invalidate => matches!(p.status, PositionStatus::Draft | PositionStatus::Valid | PositionStatus::Expired),
        options,
    }
}

/// The citizen's notices, for the home page.
pub(crate) async fn citizen_positions(
    portal: &Portal,
    ctx: &Ctx,
    actor: &Actor,
    fiscal_code: &str,
) -> std::result::Result<Vec<Value>, PageError> {
    let list = portal
        .payments()
        .payer_positions(actor, ctx.body.creditor.id, fiscal_code)
        .await
        .or_page(ctx)?;
    Ok(list.iter().map(|p| view(p, ctx.locale())).collect())
}

/// **Paga** on an option of a notice: it goes in the cart.
pub async fn add_option(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path((id, index)): Path<(String, usize)>,
) -> PageResult {
    let (_, actor) = ctx.citizen()?;
    let id = views::parse_id(&ctx, &id)?;
    portal
        .payments()
        .add_position_option(&actor, id, index)
        .await
        .or_page(&ctx)?;
    Ok(Redirect::to("/cart").into_response())
}

fn pdf(name: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// The signed-in person's actor: a citizen or an operator.
fn anyone(ctx: &Ctx) -> std::result::Result<Actor, PageError> {
    match &ctx.session.account {
        Some(a) => Ok(a.actor()),
        None => Err(PageError::redirect("/signin")),
    }
}

/// A position's pagoPA notice as PDF, for its payer or an operator, in the page's
/// language.
pub async fn notice(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> PageResult {
    let actor = anyone(&ctx)?;
    let id = views::parse_id(&ctx, &id)?;
    let p = portal.payments().position(&actor, id).await.or_page(&ctx)?;
    // The notice is its own body's, whichever body the page is about.
    let body = portal
        .body_of(p.creditor_id)
        .ok_or_else(|| PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found"))?;
    let bytes = payments_pdf::notice_pdf(&body.creditor, &p, ctx.locale()).map_err(|e| {
        PageError::from_error(&ctx, payments_core::Error::invalid("notice", e.to_string()))
    })?;
    let name = match ctx.locale() {
        Locale::En => "notice",
        _ => "avviso",
    };
    Ok(pdf(&format!("{name}-{}.pdf", p.key), bytes))
}

/// A paid transaction's receipt as PDF, for its payer or an operator.
pub async fn receipt(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> PageResult {
    let actor = anyone(&ctx)?;
    let id = views::parse_id(&ctx, &id)?;
    let summary = portal.payments().receipt(&actor, id).await.or_page(&ctx)?;
    let bytes = payments_pdf::receipt_pdf(&summary, ctx.locale()).map_err(|e| {
        PageError::from_error(
            &ctx,
            payments_core::Error::invalid("receipt", e.to_string()),
        )
    })?;
    let name = match ctx.locale() {
        Locale::En => "receipt",
        _ => "ricevuta",
    };
    Ok(pdf(&format!("{name}-{id}.pdf"), bytes))
}

/// The operator's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    payment_type: String,
    #[serde(default)]
    payer: String,
    #[serde(default)]
    due_from: String,
    #[serde(default)]
    due_to: String,
    #[serde(default)]
    before: String,
}

async fn positions_page(
    portal: &Portal,
    ctx: &Ctx,
    actor: &Actor,
    filters: &Filters,
    report: Option<Value>,
    status: StatusCode,
) -> PageResult {
    let locale = ctx.locale();
    let mut q = PositionQuery::of(ctx.body.creditor.id);
    q.status = PositionStatus::parse(&filters.status);
    q.payment_type_id = filters.payment_type.parse().ok();
    q.payer = Some(filters.payer.trim().to_owned()).filter(|p| !p.is_empty());
    q.due_from = filters.due_from.parse().ok();
    q.due_to = filters.due_to.parse().ok();
    q.before = filters.before.parse().ok();
    q.limit = 50;
    let list = portal
        .payments()
        .positions(actor, ctx.body.creditor.id, q.clone())
        .await
        .or_page(ctx)?;
    let next = (list.len() as u32 == q.limit)
        .then(|| list.last().map(|p| p.id.to_string()))
        .flatten();
    let rows: Vec<Value> = list.iter().map(|p| view(p, locale)).collect();
    let statuses: Vec<Value> = PositionStatus::ALL
        .iter()
        .map(|s| context! { value => s.as_str(), label => s.label(locale) })
        .collect();
    let types: Vec<Value> = portal
        .payments()
        .payment_types(ctx.body.creditor.id)
        .await
        .or_page(ctx)?
        .iter()
        .map(|t| context! { value => t.id.to_string(), label => t.name.clone() })
        .collect();
    let filters = context! {
        status => filters.status.clone(), payment_type => filters.payment_type.clone(),
        payer => filters.payer.clone(), due_from => filters.due_from.clone(),
        due_to => filters.due_to.clone(),
    };
    let mut response = portal.page(
        ctx,
        "positions.html",
        context! { rows, statuses, types, filters, next, report, header => payments_core::POSITIONS_CSV_HEADER },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

/// The operator's list of debt positions, with filters (status, type, due dates, payer).
pub async fn positions(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(filters): Query<Filters>,
) -> PageResult {
    let actor = ctx.operator()?;
    positions_page(&portal, &ctx, &actor, &filters, None, StatusCode::OK).await
}

/// Imports debt positions from an uploaded CSV file in the documented format: each row
/// registered once, refused rows listed with their line and column.
pub async fn import(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    form: Multipart,
) -> PageResult {
    let actor = ctx.operator()?;
    let file = views::upload(&ctx, form).await?;
    let (report, status) = match portal
        .payments()
        .import_positions_csv(&actor, ctx.body.creditor.id, MODULE, file.as_slice())
        .await
    {
        Ok(r) => (
            context! {
                registered => r.registered, unchanged => r.unchanged,
                refused => r.refused.iter().map(|x| context! {
                    row => x.row, key => x.key.clone(), field => x.field.clone(), reason => x.problem.message(ctx.locale()),
                }).collect::<Vec<_>>(),
            },
            StatusCode::OK,
        ),
        Err(e @ payments_core::Error::Validation(_)) => (
            context! { error => views::reader_text(&e, ctx.locale()) },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => return Err(PageError::from_error(&ctx, e)),
    };
    positions_page(
        &portal,
        &ctx,
        &actor,
        &Filters::default(),
        Some(report),
        status,
    )
    .await
}

/// A manager invalidates an unpaid position.
pub async fn invalidate(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(why): Form<crate::admin::Note>,
) -> PageResult {
    let actor = ctx.operator()?;
    let id = views::parse_id(&ctx, &id)?;
    let reason = crate::admin::note(why)
        .unwrap_or_else(|| text(ctx.locale(), "positions.invalidated_by_operator").to_owned());
    portal
        .payments()
        .invalidate_position(&actor, id, &reason)
        .await
        .or_page(&ctx)?;
    Ok(Redirect::to("/admin/positions").into_response())
}
