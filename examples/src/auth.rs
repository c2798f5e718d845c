//! Who is signed in, behind a trait a host replaces with its own authentication; the
//! sessions, the language and the CSRF token of every form.
//!
//! The demo's sign-in page lists a few people to pick from. A real portal learns who came
//! from SPID or CIE and implements [`Accounts`] over that: the rest of the portal only asks
//! [`Ctx::citizen`] or [`Ctx::operator`] for the `Actor` to pass to
//! the library, which checks every access again.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use payments_core::{Actor, CreditorId, Locale, Payer, Role};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::views::{PageError, PageResult};
use crate::{Portal, seed};

/// Someone who may sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// A stable id (the demo's are short names).
    pub id: String,
    /// The name pages show.
    pub name: String,
    /// A citizen or an operator of the body.
    pub kind: AccountKind,
}

/// What an account may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountKind {
    /// A citizen: pays, and sees their own payments.
    Citizen {
        /// Their fiscal code, the payer's id.
        fiscal_code: String,
        /// Where receipts go.
        email: String,
    },
    /// An operator of one body, with a role: they see and act on that body's payments
    /// only (the library checks the creditor of every operator's call).
    Operator {
        /// The body they work for.
        creditor: CreditorId,
        /// Viewer (reads, exports) or manager (also confirms, imports, retries).
        role: Role,
    },
}

impl Account {
    /// The actor the library checks access with.
    pub fn actor(&self) -> Actor {
        match &self.kind {
            AccountKind::Citizen { fiscal_code, .. } => Actor::payer(fiscal_code.as_str()),
            AccountKind::Operator { creditor, role } => {
                Actor::operator(*creditor, *role, self.id.as_str())
            }
        }
    }

    /// The body an operator works for; `None` for a citizen.
    pub fn creditor(&self) -> Option<CreditorId> {
        match &self.kind {
            AccountKind::Operator { creditor, .. } => Some(*creditor),
            AccountKind::Citizen { .. } => None,
        }
    }

    /// The payer a citizen's cart is opened for, receipts in `locale`.
    pub fn payer(&self, locale: Locale) -> Option<Payer> {
        match &self.kind {
            AccountKind::Citizen { fiscal_code, email } => Some(
                Payer::new(fiscal_code.as_str(), self.name.as_str())
                    .with_email(email.as_str())
                    .with_fiscal_code(fiscal_code.as_str())
                    .with_locale(locale),
            ),
            AccountKind::Operator { .. } => None,
        }
    }

    /// Whether this is an operator.
    pub fn is_operator(&self) -> bool {
        matches!(self.kind, AccountKind::Operator { .. })
    }
}

/// Where accounts come from: the demo's list, or the host's identity provider.
pub trait Accounts: Send + Sync + 'static {
    /// The accounts the demo sign-in page offers (a real portal offers none: its identity
    /// provider says who came).
    fn list(&self) -> Vec<Account>;
    /// The account with `id`.
    fn find(&self, id: &str) -> Option<Account> {
        self.list().into_iter().find(|a| a.id == id)
    }
}

/// Two citizens, two operators of the municipality and one of the union.
#[derive(Debug, Clone, Default)]
pub struct DemoAccounts;

impl DemoAccounts {
    /// The demo's accounts.
    pub fn new() -> Self {
        DemoAccounts
    }
}

impl Accounts for DemoAccounts {
    fn list(&self) -> Vec<Account> {
        let citizen = |id: &str, name: &str, fiscal_code: &str, email: &str| Account {
            id: id.into(),
            name: name.into(),
            kind: AccountKind::Citizen {
                fiscal_code: fiscal_code.into(),
                email: email.into(),
            },
        };
        let operator = |id: &str, name: &str, body: usize, role| Account {
            id: id.into(),
            name: name.into(),
            kind: AccountKind::Operator {
                creditor: seed::BODIES[body].creditor_id(),
                role,
            },
        };
        vec![
            citizen(
                "mario",
                "Mario Rossi",
                "RSSMRA85T10A562S",
                "mario.rossi@example.it",
            ),
            citizen(
                "giulia",
                "Giulia Bianchi",
                "BNCGLI90A41H501E",
                "giulia.bianchi@example.it",
            ),
            operator("anna", "Anna Verdi (ragioneria)", 0, Role::Manager),
            operator("luca", "Luca Neri (consultazione)", 0, Role::Viewer),
            operator(
                "sara",
                "Sara Gallo (Unione, polizia locale)",
                1,
                Role::Manager,
            ),
        ]
    }
}

/// A browser's session as the pages see it: who signed in, the language, the CSRF token of
/// its forms, the body chosen.
///
/// Only the account and its CSRF token are kept server-side (in
/// [`crate::sessions::SqlSessionStore`], from sign-in to sign-out or
/// [`crate::Config::session_idle`] without a request); the language and the body chosen are
/// the browser's own preference cookies, and the CSRF token of a visitor not signed in is a
/// cookie too (double submit; under HTTPS a `__Host-` cookie, which no other site or
/// subdomain can set): a request without cookies creates nothing on the server.
#[derive(Debug, Clone)]
pub struct Session {
    /// The account signed in, if any.
    pub account: Option<Account>,
    /// The language pages are in.
    pub locale: Locale,
    /// The token every form of this session carries.
    pub csrf: String,
    /// The body a citizen chose to pay (its slug); the first body until they choose.
    pub body: Option<String>,
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The session cookie's name (its value is the stored session's id); `__Host-` in front
/// under HTTPS.
pub const COOKIE: &str = "portal_session";
const CSRF_COOKIE: &str = "portal_csrf";

/// The name of a cookie that must come from this site alone: under HTTPS with the
/// `__Host-` prefix, which browsers accept only from this host, secure, for every path (a
/// sibling subdomain or a plain-HTTP page cannot plant one).
fn host_cookie(portal: &Portal, name: &str) -> String {
    if portal.config().public_url.starts_with("https://") {
        format!("__Host-{name}")
    } else {
        name.to_owned()
    }
}
const LANG_COOKIE: &str = "portal_lang";
const BODY_COOKIE: &str = "portal_body";
/// The stored session's keys.
const ACCOUNT: &str = "account";
const CSRF: &str = "csrf";

/// The request's session, which every page handler receives.
#[derive(Debug, Clone)]
pub struct Ctx {
    stored: tower_sessions::Session,
    /// The session as the request found it.
    pub session: Session,
    /// The request's path and query, for the language switch.
    pub path: String,
    /// The body the pages are about: an operator's own, or the one a citizen chose.
    pub body: Arc<crate::Body>,
    /// Every body, as (slug, name), for the citizen's choice.
    pub bodies: Vec<(String, String)>,
}

impl Ctx {
    /// The language of the pages.
    pub fn locale(&self) -> Locale {
        self.session.locale
    }

    /// The signed-in citizen and their actor; anyone else goes to the sign-in page.
    pub fn citizen(&self) -> Result<(Account, Actor), PageError> {
        match &self.session.account {
            Some(a) if !a.is_operator() => Ok((a.clone(), a.actor())),
            Some(_) => Err(PageError::forbidden(self, "citizens_only")),
            None => Err(PageError::redirect("/signin")),
        }
    }

    /// The signed-in operator's actor; a citizen is refused, nobody goes to sign in.
    pub fn operator(&self) -> Result<Actor, PageError> {
        match &self.session.account {
            Some(a) if a.is_operator() => Ok(a.actor()),
            Some(_) => Err(PageError::forbidden(self, "operators_only")),
            None => Err(PageError::redirect("/signin")),
        }
    }
}

/// The portal's session manager: sessions in the portal's database, a cookie not readable
/// by scripts nor sent by other sites' forms (and only over HTTPS when the portal is served
/// over HTTPS), ending after [`crate::Config::session_idle`] without a request.
pub fn session_manager(
    portal: &Portal,
) -> tower_sessions::SessionManagerLayer<crate::sessions::SqlSessionStore> {
    let idle = tower_sessions::cookie::time::Duration::seconds(
        i64::try_from(portal.config().session_idle.as_secs()).unwrap_or(i64::MAX),
    );
    tower_sessions::SessionManagerLayer::new(portal.inner.sessions.clone())
        .with_name(host_cookie(portal, COOKIE))
        .with_http_only(true)
        .with_same_site(tower_sessions::cookie::SameSite::Lax)
        .with_secure(portal.config().public_url.starts_with("https://"))
        .with_path("/")
        .with_expiry(tower_sessions::Expiry::OnInactivity(idle))
        // Every request of a signed-in browser moves its end `session_idle` on.
        .with_always_save(true)
}

/// Finds the browser's session, checks the CSRF token of every form posted, and hands the
/// session to the handlers. The providers' webhooks pass untouched: their signatures are
/// what the library checks.
pub async fn session_layer(
    State(portal): State<Portal>,
    jar: CookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    // Providers' callbacks carry no session and need none.
    if request.uri().path().starts_with("/webhooks/") {
        return next.run(request).await;
    }
    let Some(stored) = request
        .extensions()
        .get::<tower_sessions::Session>()
        .cloned()
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // A stored session that cannot be read is no session: sign in again.
    let account_id: Option<String> = stored.get(ACCOUNT).await.ok().flatten();
    let account = account_id.and_then(|id| portal.inner.accounts.find(&id));
    let session_csrf: Option<String> = match account {
        Some(_) => stored.get(CSRF).await.ok().flatten(),
        None => None,
    };
    let cookie_csrf = jar
        .get(&host_cookie(&portal, CSRF_COOKIE))
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() >= 32);
    let (csrf, new_csrf) = match (session_csrf, cookie_csrf) {
        (Some(token), _) => (token, None),
        (None, Some(token)) => (token, None),
        (None, None) => {
            let token = random_token();
            (token.clone(), Some(token))
        }
    };
    let locale = match jar.get(LANG_COOKIE).map(|c| c.value()) {
        Some("en") => Locale::En,
        _ => Locale::It,
    };
    let chosen = jar.get(BODY_COOKIE).map(|c| c.value().to_owned());
    let session = Session {
        account,
        locale,
        csrf,
        body: chosen,
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // An operator's pages are their own body's; a citizen's, the body they chose.
    let body = match session.account.as_ref().and_then(Account::creditor) {
        Some(creditor) => portal.body_of(creditor),
        None => session.body.as_deref().and_then(|slug| portal.body(slug)),
    }
    .unwrap_or(&portal.bodies()[0])
    .clone();
    let bodies = portal
        .bodies()
        .iter()
        .map(|b| (b.slug.to_owned(), b.creditor.name.clone()))
        .collect();
    let ctx = Ctx {
        stored,
        session,
        path,
        body,
        bodies,
    };
    // Every unsafe request carries the session's token, whatever its content type: in the
    // form (url-encoded), in the upload's own field (multipart, checked by the two upload
    // pages), or in the `x-csrf-token` header (scripts). Anything else is refused.
    if !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let header_token = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let upload = matches!(
            request.uri().path(),
            "/admin/statements" | "/admin/positions/import"
        ) && content_type.starts_with("multipart/form-data");
        // A token minted by this very request was never given to a form.
        let minted = new_csrf.is_some();
        if let Some(sent) = header_token {
            if minted || !ctx.csrf_matches(Some(&sent)) {
                return PageError::forbidden(&ctx, "csrf").into_response();
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            };
            let sent = form_field(&bytes, "csrf");
            if minted || !ctx.csrf_matches(sent.as_deref()) {
                return PageError::forbidden(&ctx, "csrf").into_response();
            }
            request = Request::from_parts(parts, Body::from(bytes));
        } else if !upload || minted {
            return PageError::forbidden(&ctx, "csrf").into_response();
        }
    }
    request.extensions_mut().insert(ctx);
    let response = next.run(request).await;
    match new_csrf {
        Some(token) => (
            jar.add(preference_cookie(
                &portal,
                host_cookie(&portal, CSRF_COOKIE),
                token,
            )),
            response,
        )
            .into_response(),
        None => response,
    }
}

/// A cookie of the browser's own (the CSRF token, the language, the body chosen): not
/// readable by scripts, not sent by other sites' forms, and only over HTTPS when the portal
/// is served over HTTPS.
fn preference_cookie(portal: &Portal, name: impl Into<String>, value: String) -> Cookie<'static> {
    Cookie::build((name.into(), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(portal.config().public_url.starts_with("https://"))
        .path("/")
        .permanent()
        .build()
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url_pairs(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The pairs of a form body or query string, in order.
pub(crate) fn url_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

impl Ctx {
    /// Whether `sent` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(self.session.csrf.as_bytes())))
    }
}

/// The demo's sign-in page: pick someone.
pub async fn signin_page(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
) -> PageResult {
    let accounts: Vec<_> = portal
        .inner
        .accounts
        .list()
        .into_iter()
        .map(|a| {
            let operator = a.is_operator();
            minijinja::context! { id => a.id, name => a.name, operator => operator }
        })
        .collect();
    portal.page(&ctx, "signin.html", minijinja::context! { accounts })
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignIn {
    account: String,
}

/// Signs in as the account picked: a new stored session (new id, new CSRF token), so that
/// a session fixed before sign-in is worth nothing after.
pub async fn signin(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<SignIn>,
) -> PageResult {
    let Some(account) = portal.inner.accounts.find(&form.account) else {
        return Err(PageError::status(
            &ctx,
            StatusCode::BAD_REQUEST,
            "unknown_account",
        ));
    };
    let home = if account.is_operator() {
        "/admin/overview"
    } else {
        "/"
    };
    let stored = &ctx.stored;
    let saved = async {
        stored.cycle_id().await?;
        stored.insert(ACCOUNT, &account.id).await?;
        stored.insert(CSRF, random_token()).await
    };
    if saved.await.is_err() {
        return Err(PageError::status(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ));
    }
    Ok(Redirect::to(home).into_response())
}

/// Signs out: the stored session is deleted, its cookie removed.
pub async fn signout(Extension(ctx): Extension<Ctx>) -> PageResult {
    if ctx.stored.flush().await.is_err() {
        return Err(PageError::status(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ));
    }
    Ok(Redirect::to("/signin").into_response())
}

/// Whether `target` is a path of this site and nothing a browser could read as another
/// site: ASCII, it starts with one `/`, and holds no backslash, whitespace or control
/// character
/// (browsers drop tabs and newlines from URLs, so `/\t/evil.example` becomes
/// `//evil.example`, and read `\` as `/`).
pub fn is_local_path(target: &str) -> bool {
    // ASCII only: a redirect's Location must be, and an encoded path stays encoded.
    if !target.is_ascii() {
        return false;
    }
    let mut chars = target.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !target
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

/// Where to go back to after switching language.
#[derive(Debug, Deserialize)]
pub struct Back {
    back: Option<String>,
}

/// Switches the pages' language (`it` or `en`) and goes back.
pub async fn language(
    State(portal): State<Portal>,
    Path(code): Path<String>,
    Query(back): Query<Back>,
) -> PageResult {
    let locale = if code == "en" { "en" } else { "it" };
    let jar = CookieJar::new().add(preference_cookie(&portal, LANG_COOKIE, locale.into()));
    // Only a path of this site: never an open redirect.
    let back = back
        .back
        .filter(|b| is_local_path(b))
        .unwrap_or_else(|| "/".into());
    Ok((jar, Redirect::to(&back)).into_response())
}

/// A citizen chooses the body to pay (`/body/{slug}`): its modules, free payments and
/// cart are shown from then on. An operator's body is their own and does not change.
pub async fn choose_body(
    State(portal): State<Portal>,
    Extension(ctx): Extension<Ctx>,
    Path(slug): Path<String>,
) -> PageResult {
    let body = portal
        .body(&slug)
        .ok_or_else(|| PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found"))?;
    let jar = CookieJar::new().add(preference_cookie(
        &portal,
        BODY_COOKIE,
        body.slug.to_owned(),
    ));
    Ok((jar, Redirect::to("/")).into_response())
}
