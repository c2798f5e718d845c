//! The citizen's pages: the modules' dues, free payments, the cart and checkout, the
//! sandbox's hosted page, the payment page (receipt, bank transfer, pagoPA notices) and
//! the history; and the providers' webhooks.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use minijinja::{Value, context};
use payments_core::{
    Actor, AmountRule, CallbackRequest, Cart, Error, FieldKind, HistoryQuery, Instruction,
    ItemState, Locale, NewFreeItem, PaymentOutcome, RedirectMethod, TransactionId, TransferReport,
    TxStatus,
};
use payments_gateways::bank_transfer::{BankTransferGateway, rf};
use payments_gateways::pagopa::{NoticeNumber, PagoPaGateway};
use serde::Deserialize;

use crate::Portal;
use crate::auth::Ctx;
use crate::views::{self, OrPage, PageError, PageResult, text};

impl Portal {
    /// The sandbox account `gateway` of one of the bodies.
    fn sandbox_account(
        &self,
        ctx: &Ctx,
        gateway: &str,
    ) -> Result<&std::sync::Arc<payments_gateways::sandbox::SandboxGateway>, PageError> {
        self.bodies()
            .iter()
            .map(|b| b.sandbox())
            .find(|s| payments_core::Gateway::id(s.as_ref()).as_str() == gateway)
            .ok_or_else(|| PageError::status(ctx, StatusCode::NOT_FOUND, "not_found"))
    }

    /// The signed-in citizen's actor and cart (opened if they have none); anyone else goes
    /// to the sign-in page or is refused.
    async fn citizen_cart(&self, ctx: &Ctx) -> Result<(Actor, Cart), PageError> {
        let (account, actor) = ctx.citizen()?;
        let payer = account
            .payer(ctx.locale())
            .ok_or_else(|| PageError::forbidden(ctx, "citizens_only"))?;
        let cart = self
            .payments()
            .open_cart(&actor, ctx.body.creditor.id, payer)
            .await
            .or_page(ctx)?;
        Ok((actor, cart))
    }
}

/// The home page: each module's dues, with **Paga** or **Pagato**.
pub async fn home(State(portal): State<Portal>, Extension(ctx): Extension<Ctx>) -> PageResult {
    // An operator's home is the administration; nobody signed in goes to sign in.
    if ctx
        .session
        .account
        .as_ref()
        .is_some_and(|a| a.is_operator())
    {
        return Err(PageError::redirect("/admin"));
    }
    let (actor, cart) = portal.citizen_cart(&ctx).await?;
    let contents = portal
        .payments()
        .cart(&actor, cart.id)
        .await
        .or_page(&ctx)?;
    let locale = ctx.locale();
    let fiscal_code = actor_id(&actor);
    let modules: Vec<Value> = ctx
        .body
        .modules()
        .iter()
        .map(|m| {
            let dues: Vec<Value> = m
                .dues_of(&fiscal_code)
                .into_iter()
                .map(|d| {
                    let in_cart = contents
                        .items
                        .iter()
                        .any(|i| i.source.module == m.name && i.source.key == d.key);
                    context! {
                        key => d.key,
                        reason => d.reason,
                        amount => d.amount.format(locale),
                        due_date => d.due_date.map(|d| d.format("%d/%m/%Y").to_string()),
                        paid => d.paid,
                        in_cart,
                    }
                })
                .collect();
            let title = if locale == Locale::En {
                m.title.1
            } else {
                m.title.0
            };
            context! { name => m.name, title, dues }
        })
        .collect();
    let positions =
        crate::positions::citizen_positions(&portal, &ctx, &actor, &fiscal_code).await?;
    portal.page(
        &ctx,
        "home.html",
        context! { modules, positions, cart_count => contents.items.len() },
    )
}

fn actor_id(actor: &Actor) -> String {
    match actor {
        Actor::Payer { id } => id.to_string(),
        _ => String::new(),
    }
}

/// **Paga** on a module's due: the module puts it in the cart.
pub async fn add_due(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path((module, key)): Path<(String, String)>,
) -> PageResult {
    let (actor, cart) = portal.citizen_cart(&ctx).await?;
    let module = ctx
        .body
        .modules()
        .iter()
        .find(|m| m.name == module)
        .ok_or_else(|| PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found"))?;
    module
        .add_to_cart(portal.payments(), &actor, cart.id, &actor_id(&actor), &key)
        .await
        .or_page(&ctx)?;
    Ok(Redirect::to("/cart").into_response())
}

/// The free payment's chosen type.
#[derive(Debug, Deserialize)]
pub struct Chosen {
    #[serde(rename = "type")]
    payment_type: Option<String>,
}

/// The free payment page: choose a type, then fill in the form its fields make.
pub async fn free_page(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(chosen): Query<Chosen>,
) -> PageResult {
    ctx.citizen()?;
    free_form(
        &portal,
        &ctx,
        chosen.payment_type.as_deref(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        StatusCode::OK,
    )
    .await
}

async fn free_form(
    portal: &Portal,
    ctx: &Ctx,
    chosen: Option<&str>,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
    status: StatusCode,
) -> PageResult {
    let locale = ctx.locale();
    let types: Vec<_> = portal
        .payments()
        .payment_types(ctx.body.creditor.id)
        .await
        .or_page(ctx)?
        .into_iter()
        .filter(|t| t.free_payments)
        .collect();
    let options: Vec<Value> = types
        .iter()
        .map(|t| context! { id => t.id.to_string(), name => t.name.clone(), selected => Some(t.id.to_string().as_str()) == chosen })
        .collect();
    let form = types.iter().find(|t| Some(t.id.to_string().as_str()) == chosen).map(|t| {
        let value = |name: &str| values.get(name).cloned().unwrap_or_default();
        let mut fields = Vec::new();
        let fixed = matches!(t.amount_rule, AmountRule::Fixed { .. });
        if !fixed {
            let hint = match &t.amount_rule {
                AmountRule::Range { min, max } => Some(format!("{} – {}", min.format(locale), max.format(locale))),
                _ => None,
            };
            fields.push(context! { name => "amount", label => text(locale, "amount"), input => "text", inputmode => "decimal", required => true, value => value("amount"), error => errors.get("amount"), hint });
        }
        fields.push(context! { name => "reason", label => text(locale, "reason"), input => "text", required => true, value => value("reason"), error => errors.get("reason"), maxlength => 140 });
        for f in &t.fields {
            let name = format!("extra.{}", f.key);
            let (input, options, maxlength) = match &f.kind {
                FieldKind::Text { max_len } => ("text", None, Some(*max_len)),
                FieldKind::Integer { .. } => ("number", None, None),
                FieldKind::Decimal { .. } => ("text", None, None),
                FieldKind::Date => ("date", None, None),
                FieldKind::Email => ("email", None, None),
                FieldKind::OneOf { options } => ("select", Some(options.clone()), None),
                _ => ("text", None, None),
            };
            fields.push(context! {
                name => name.clone(), label => f.label.clone(), input, options, maxlength,
                required => f.required, value => value(&name), error => errors.get(&name),
            });
        }
        // One token per form shown (kept when it comes back with errors): sent twice, it
        // adds one item.
        let token = values
            .get("token")
            .filter(|t| !t.is_empty())
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        context! { id => t.id.to_string(), name => t.name.clone(), fields, token }
    });
    let mut response = portal.page(
        ctx,
        "free.html",
        context! { options, form, has_errors => !errors.is_empty() },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

/// A free payment sent: added to the cart, or the form again with each error beside its
/// field and what was typed kept.
pub async fn add_free(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let (actor, cart) = portal.citizen_cart(&ctx).await?;
    let values: BTreeMap<String, String> = pairs.into_iter().filter(|(k, _)| k != "csrf").collect();
    let chosen = values.get("type").cloned().unwrap_or_default();
    let mut item = NewFreeItem::new(
        chosen
            .parse()
            .map_err(|_| PageError::status(&ctx, StatusCode::UNPROCESSABLE_ENTITY, "invalid"))?,
        values.get("amount").cloned().unwrap_or_default(),
        values.get("reason").cloned().unwrap_or_default(),
    );
    if let Some(token) = values.get("token").filter(|t| !t.trim().is_empty()) {
        item = item.with_token(token.trim());
    }
    for (k, v) in &values {
        if let Some(key) = k.strip_prefix("extra.")
            && !v.trim().is_empty()
        {
            item = item.with_extra(key, v.trim());
        }
    }
    match portal.payments().add_free_item(&actor, cart.id, item).await {
        Ok(_) => Ok(Redirect::to("/cart").into_response()),
        Err(Error::Validation(errors)) => {
            let errors = views::field_messages(errors, ctx.locale());
            free_form(
                &portal,
                &ctx,
                Some(&chosen),
                &values,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(PageError::from_error(&ctx, e)),
    }
}

/// The cart: its items, the total, and the methods every item accepts.
pub async fn cart(State(portal): State<Portal>, Extension(ctx): Extension<Ctx>) -> PageResult {
    let (actor, cart) = portal.citizen_cart(&ctx).await?;
    let locale = ctx.locale();
    let contents = portal
        .payments()
        .cart(&actor, cart.id)
        .await
        .or_page(&ctx)?;
    let methods = portal
        .payments()
        .cart_methods(&actor, cart.id)
        .await
        .or_page(&ctx)?;
    let items: Vec<Value> = contents
        .items
        .iter()
        .map(|i| context! {
            id => i.id.to_string(),
            reason => i.reason.clone(),
            amount => i.amount.format(locale),
            open => i.state == ItemState::Open,
            locked_by => match i.state { ItemState::Locked(tx) => Some(tx.to_string()), _ => None },
        })
        .collect();
    let methods: Vec<Value> = methods
        .iter()
        .map(|m| {
            // The card providers name themselves beside the method; the demo's own do not.
            let (provider, html_id) = match m.gateway_id.as_str() {
                "stripe" => (Some("Stripe"), format!("{}-stripe", m.kind.as_str())),
                "nexi" => (
                    Some(if m.kind == payments_core::MethodKind::AccountDebit {
                        "MyBank, Nexi XPay"
                    } else {
                        "Nexi XPay"
                    }),
                    format!("{}-nexi", m.kind.as_str()),
                ),
                _ => (None, m.kind.as_str().to_owned()),
            };
            context! { id => m.id.to_string(), label => m.kind.label(locale), provider, html_id }
        })
        .collect();
    let open = contents.items.iter().any(|i| i.state == ItemState::Open);
    portal.page(
        &ctx,
        "cart.html",
        context! { items, methods, open, total => contents.total.format(locale), attempt => uuid::Uuid::new_v4().to_string() },
    )
}

/// The item to remove.
#[derive(Debug, Deserialize)]
pub struct Remove {
    item: String,
}

/// Takes an item out of the cart.
pub async fn remove(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<Remove>,
) -> PageResult {
    let (actor, cart) = portal.citizen_cart(&ctx).await?;
    let item = views::parse_id(&ctx, &form.item)?;
    portal
        .payments()
        .remove_item(&actor, cart.id, item)
        .await
        .or_page(&ctx)?;
    Ok(Redirect::to("/cart").into_response())
}

/// The checkout form: the method and the attempt's idempotency key.
#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    method: String,
    attempt: String,
}

/// Pays the whole cart in one transaction. The attempt key, fixed when the cart page was
/// shown, makes a double click (or a resent form) return the same transaction.
pub async fn checkout(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<CheckoutForm>,
) -> PageResult {
    let (actor, cart) = portal.citizen_cart(&ctx).await?;
    let method = form
        .method
        .parse()
        .map_err(|_| PageError::status(&ctx, StatusCode::UNPROCESSABLE_ENTITY, "invalid"))?;
    let checkout = portal
        .payments()
        .checkout(&actor, cart.id, method, &form.attempt)
        .await
        .or_page(&ctx)?;
    let tx = checkout.transaction.id;
    match checkout.instruction {
        Instruction::Redirect {
            url,
            method: RedirectMethod::Get,
            ..
        } => Ok(Redirect::to(&url).into_response()),
        // A provider that takes a form POST (Nexi XPay): a page with the form and a button,
        // which works without JavaScript.
        Instruction::Redirect { url, fields, .. } => {
            let fields: Vec<Value> = fields
                .iter()
                .map(|f| context! { name => f.name.clone(), value => f.value.clone() })
                .collect();
            portal.page(&ctx, "redirect.html", context! { url, fields })
        }
        _ => Ok(Redirect::to(&format!("/payments/{tx}")).into_response()),
    }
}

/// The sandbox's hosted page of one body's account (`/hosted/{gateway}/pay/{session}`):
/// the provider's own page, which this portal serves for the demo.
pub async fn sandbox_page(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path((gateway, session)): Path<(String, String)>,
) -> PageResult {
    let s = portal
        .sandbox_account(&ctx, &gateway)?
        .session(&session)
        .ok_or_else(|| PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found"))?;
    portal.page(
        &ctx,
        "sandbox.html",
        context! { gateway, session => s.id, merchant => s.merchant, amount => s.amount.format(ctx.locale()), open => s.outcome == PaymentOutcome::Pending },
    )
}

/// The button pressed on the sandbox's page.
#[derive(Debug, Deserialize)]
pub struct SandboxForm {
    outcome: String,
}

/// The sandbox completes the session and sends its signed callback, which goes through
/// the same path as any provider's webhook; then the payer comes back to the payment page.
pub async fn sandbox_outcome(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path((gateway, session)): Path<(String, String)>,
    Form(form): Form<SandboxForm>,
) -> PageResult {
    let outcome = match form.outcome.as_str() {
        "paid" => PaymentOutcome::Paid,
        "failed" => PaymentOutcome::Failed,
        _ => PaymentOutcome::Cancelled,
    };
    let account = portal.sandbox_account(&ctx, &gateway)?;
    // Only the payer of the session's transaction, signed in, completes it: the sandbox
    // stands for a provider's page, where nobody else can pay or cancel for them.
    let (_, payer) = ctx.citizen()?;
    let s = account
        .session(&session)
        .ok_or_else(|| PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found"))?;
    let tx = portal
        .payments()
        .transaction(&Actor::System, s.transaction_id)
        .await
        .or_page(&ctx)?;
    if Actor::payer(tx.payer.id.clone()) != payer {
        return Err(PageError::forbidden(&ctx, "not_yours"));
    }
    let callback = account.complete(&session, outcome).or_page(&ctx)?;
    let done = portal
        .payments()
        .handle_callback(&gateway, &callback)
        .await
        .or_page(&ctx)?;
    Ok(Redirect::to(&format!("/payments/{}", done.transaction.id)).into_response())
}

/// Where providers send the payer back: Stripe with `?transaction=…&outcome=…`, Nexi XPay
/// with its signed outcome (`?codTrans=…&esito=…&mac=…`).
#[derive(Debug, Deserialize)]
pub struct Returned {
    transaction: Option<String>,
    #[serde(rename = "codTrans")]
    cod_trans: Option<String>,
}

/// The payer back from a provider's page, to the payment page. XPay's return carries the
/// outcome, signed as its notification is: it goes to the library first, so the page shows
/// the outcome at once (whichever of the two arrives second is a replay).
pub async fn provider_return(
    State(portal): State<Portal>,
    RawQuery(query): RawQuery,
    Query(back): Query<Returned>,
) -> Response {
    let id = match back.cod_trans {
        Some(code) => {
            let request = CallbackRequest {
                query,
                ..Default::default()
            };
            // The transaction names the body's Nexi account that verifies the return.
            let id = payments_gateways::nexi::transaction_of(&code);
            let gateway = match id {
                Some(id) => portal
                    .payments()
                    .transaction(&Actor::System, id)
                    .await
                    .map(|t| t.gateway_id.to_string())
                    .unwrap_or_else(|_| payments_gateways::nexi::GATEWAY_ID.into()),
                None => payments_gateways::nexi::GATEWAY_ID.into(),
            };
            match portal.payments().handle_callback(&gateway, &request).await {
                Ok(done) => Some(done.transaction.id),
                Err(e) => {
                    eprintln!("portal: XPay's return refused: {e}");
                    id
                }
            }
        }
        None => back
            .transaction
            .and_then(|t| t.parse::<TransactionId>().ok()),
    };
    match id {
        Some(id) => Redirect::to(&format!("/payments/{id}")).into_response(),
        None => Redirect::to("/history").into_response(),
    }
}

/// A payment: the receipt once paid, the transfer's details and report form, pagoPA's
/// notices, or the outcome.
pub async fn payment(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> PageResult {
    payment_page(
        &portal,
        &ctx,
        &id,
        &BTreeMap::new(),
        &BTreeMap::new(),
        StatusCode::OK,
    )
    .await
}

async fn payment_page(
    portal: &Portal,
    ctx: &Ctx,
    id: &str,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
    status: StatusCode,
) -> PageResult {
    let (_, actor) = ctx.citizen()?;
    let locale = ctx.locale();
    let id: TransactionId = views::parse_id(ctx, id)?;
    let tx = portal
        .payments()
        .transaction(&actor, id)
        .await
        .or_page(ctx)?;
    let open = tx.status == TxStatus::Pending || tx.status == TxStatus::Created;
    let mut transfer = None;
    let mut notices = Vec::new();
    let mut resume = None;
    match &tx.instruction {
        Some(Instruction::BankTransfer(d)) if open => {
            let qr = BankTransferGateway::qr(d).map(|q| q.svg(220)).ok();
            transfer = Some(context! {
                iban => d.iban.clone(), beneficiary => d.beneficiary.clone(), amount => d.amount.format(locale),
                reference => rf::pretty(&d.reference), reason => d.reason.clone(), qr,
                today => chrono::Utc::now().date_naive().to_string(),
            });
        }
        Some(Instruction::PagoPa(p)) if open => {
            for n in &p.notices {
                let number = NoticeNumber::parse(&n.notice_number)
                    .map(|n| n.pretty())
                    .unwrap_or_else(|_| n.notice_number.clone());
                let qr = PagoPaGateway::qr(n).map(|q| q.svg(180)).ok();
                notices.push(context! { description => n.description.clone(), amount => n.amount.format(locale), number, qr });
            }
        }
        Some(Instruction::Redirect {
            url,
            method: RedirectMethod::Get,
            ..
        }) if open => resume = Some(url.clone()),
        _ => {}
    }
    // pagoPA's receipts of the lines paid: the PSP that took the money and its receipt id.
    let receipts: Vec<_> = portal
        .payments()
        .transaction_receipts(&actor, id)
        .await
        .or_page(ctx)?
        .into_iter()
        .map(|r| {
            context! {
                reference => r.reference, receipt_id => r.receipt_id,
                psp => r.psp_name.or(r.psp_id), amount => r.amount.format(locale),
            }
        })
        .collect();
    let value = |k: &str| values.get(k).cloned().unwrap_or_default();
    let report = context! {
        executed_on => value("executed_on"), amount => value("amount"), bank_reference => value("bank_reference"),
        ordering_iban => value("ordering_iban"),
        errors => errors.clone(),
    };
    let mut response = portal.page(
        ctx,
        "payment.html",
        context! { tx => views::transaction(&tx, locale), transfer, notices, resume, report, receipts },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

/// The citizen reports the transfer they made: the transaction becomes `Reported` until the
/// body checks it; a mistake shows beside its field.
pub async fn report(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let (_, actor) = ctx.citizen()?;
    let values: BTreeMap<String, String> = pairs.into_iter().collect();
    let v = |k: &str| values.get(k).map(String::as_str).unwrap_or_default();
    let tx: TransactionId = views::parse_id(&ctx, &id)?;
    let result = match TransferReport::parse(
        v("executed_on"),
        v("amount"),
        v("bank_reference"),
        v("ordering_iban"),
        "",
    ) {
        Ok(report) => portal
            .payments()
            .report_transfer(&actor, tx, &report)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/payments/{tx}")).into_response()),
        Err(Error::Validation(errors)) => {
            let errors = views::field_messages(errors, ctx.locale());
            payment_page(
                &portal,
                &ctx,
                &id,
                &values,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(PageError::from_error(&ctx, e)),
    }
}

/// The history page's cursor.
#[derive(Debug, Deserialize)]
pub struct After {
    after: Option<String>,
}

/// The citizen's payments, newest first, each with its items and timeline.
pub async fn history(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Query(after): Query<After>,
) -> PageResult {
    let (_, actor) = ctx.citizen()?;
    let locale = ctx.locale();
    let mut query = HistoryQuery::new(actor_id(&actor));
    query.creditor_id = Some(ctx.body.creditor.id);
    query.limit = 10;
    query.after = after.after.and_then(|a| a.parse().ok());
    let page = portal
        .payments()
        .history(&actor, &query)
        .await
        .or_page(&ctx)?;
    let entries: Vec<Value> = page
        .items
        .iter()
        .map(|e| context! { tx => views::transaction(&e.transaction, locale), events => views::events(&e.events, locale) })
        .collect();
    portal.page(
        &ctx,
        "history.html",
        context! { entries, next => page.next.map(|n| n.to_string()) },
    )
}

/// A request from a provider as the library reads it: the raw body, the headers (names in
/// lower case) and the query, exactly as they arrived.
fn callback_request(query: Option<String>, headers: &HeaderMap, body: &[u8]) -> CallbackRequest {
    let mut request = CallbackRequest::new(body.to_vec());
    request.query = query;
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            request = request.with_header(name.as_str(), value);
        }
    }
    request
}

/// A provider's callback, `POST /webhooks/{gateway}`: the raw body, headers and query go
/// to the library, which verifies the signature before anything changes. The answer tells
/// the provider whether to send it again: 200 for done (also a replay), 400 for a callback
/// that does not verify, 404 for a payment that is not ours, 500 to be retried.
pub async fn webhook(
    State(portal): State<Portal>,
    Path(gateway): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if gateway == "pagopa" {
        // pagoPA's node calls one URL per station for every primitive, receipts included.
        return station(State(portal), headers, body).await;
    }
    let request = callback_request(query, &headers, &body);
    let result = if gateway == payments_gateways::bank_transfer::GATEWAY_ID {
        // The bank connector's camt.054 may carry any number of credits and accounts.
        portal
            .inner
            .bank
            .receive_notification(portal.payments(), &request)
            .await
            .map(|_| ())
    } else {
        portal
            .payments()
            .handle_callback(&gateway, &request)
            .await
            .map(|_| ())
    };
    match result {
        Ok(_) => (StatusCode::OK, "OK").into_response(),
        Err(Error::Gateway { .. } | Error::Validation(_)) => {
            (StatusCode::BAD_REQUEST, "refused").into_response()
        }
        Err(Error::NotFound { .. }) => (StatusCode::NOT_FOUND, "unknown").into_response(),
        Err(e) => {
            eprintln!("portal: webhook {gateway}: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, Html("error")).into_response()
        }
    }
}

/// The bodies' pagoPA station, one URL for every request of pagoPA's node (also served at
/// `/webhooks/pagopa`): `paVerifyPaymentNotice` and `paGetPayment`/`paGetPaymentV2` before a
/// bank, post office or app takes a notice's money, and the receipts `paSendRT`/`paSendRTV2`
/// after. The SOAP answer, built by the library, always with 200.
pub async fn station(State(portal): State<Portal>, headers: HeaderMap, body: Bytes) -> Response {
    let request = callback_request(None, &headers, &body);
    let answer = portal
        .inner
        .pagopa
        .station_response(portal.payments(), &request)
        .await;
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        answer,
    )
        .into_response()
}
