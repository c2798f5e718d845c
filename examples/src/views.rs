//! Pages: minijinja templates (escaped as HTML), the Italian and English texts, and the
//! error page.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, State, Value, context};
use payments_core::{Locale, TxStatus};

use crate::Portal;
use crate::auth::Ctx;

/// What a page handler answers.
pub type PageResult = Result<Response, PageError>;

/// The templates, compiled once (on first use).
pub(crate) struct Views {
    env: Environment<'static>,
}

const TEMPLATES: [(&str, &str); 18] = [
    ("base.html", include_str!("../templates/base.html")),
    ("signin.html", include_str!("../templates/signin.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("free.html", include_str!("../templates/free.html")),
    ("cart.html", include_str!("../templates/cart.html")),
    ("sandbox.html", include_str!("../templates/sandbox.html")),
    ("redirect.html", include_str!("../templates/redirect.html")),
    ("payment.html", include_str!("../templates/payment.html")),
    ("history.html", include_str!("../templates/history.html")),
    ("admin.html", include_str!("../templates/admin.html")),
    ("overview.html", include_str!("../templates/overview.html")),
    ("flows.html", include_str!("../templates/flows.html")),
    ("detail.html", include_str!("../templates/detail.html")),
    (
        "statements.html",
        include_str!("../templates/statements.html"),
    ),
    ("outbox.html", include_str!("../templates/outbox.html")),
    (
        "exceptions.html",
        include_str!("../templates/exceptions.html"),
    ),
    (
        "positions.html",
        include_str!("../templates/positions.html"),
    ),
    ("error.html", include_str!("../templates/error.html")),
];

impl Views {
    fn new() -> Views {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .expect("the portal's templates compile");
        }
        env.add_function("t", |state: &State, key: &str| -> String {
            let locale = match state.lookup("lang").as_ref().and_then(Value::as_str) {
                Some("en") => Locale::En,
                _ => Locale::It,
            };
            text(locale, key).to_owned()
        });
        Views { env }
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

fn views() -> &'static Views {
    static VIEWS: OnceLock<Views> = OnceLock::new();
    VIEWS.get_or_init(Views::new)
}

impl Portal {
    /// Renders page `name` with `values` and what every page has: the language, the
    /// signed-in account, the CSRF token and the path (for the language switch).
    pub(crate) fn page(&self, ctx: &Ctx, name: &str, values: Value) -> PageResult {
        render(ctx, StatusCode::OK, name, values)
    }
}

fn render(ctx: &Ctx, status: StatusCode, name: &str, values: Value) -> PageResult {
    let account = ctx.session.account.as_ref().map(|a| {
        context! { name => a.name.clone(), operator => a.is_operator() }
    });
    // A citizen (or someone not signed in) may switch to another body; an operator's
    // pages are their own body's.
    let operator = ctx
        .session
        .account
        .as_ref()
        .is_some_and(|a| a.is_operator());
    let others: Vec<Value> = if operator {
        Vec::new()
    } else {
        ctx.bodies
            .iter()
            .filter(|(slug, _)| slug != ctx.body.slug)
            .map(|(slug, name)| context! { slug, name })
            .collect()
    };
    let base = context! {
        lang => ctx.locale().tag(),
        body => ctx.body.creditor.name.clone(),
        others,
        account,
        csrf => ctx.session.csrf.clone(),
        back => form_urlencoded::byte_serialize(ctx.path.as_bytes()).collect::<String>(),
    };
    let html = views()
        .render(name, context! { ..values, ..base })
        .map_err(|e| PageError::internal(format!("template {name}: {e:#}")))?;
    Ok((status, Html(html)).into_response())
}

/// A page that could not be shown: a redirect, or an error page in the session's language.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    location: Option<String>,
    ctx: Option<Box<Ctx>>,
    key: &'static str,
    detail: String,
}

impl PageError {
    pub(crate) fn redirect(to: &str) -> PageError {
        PageError {
            status: StatusCode::SEE_OTHER,
            location: Some(to.into()),
            ctx: None,
            key: "",
            detail: String::new(),
        }
    }

    pub(crate) fn status(ctx: &Ctx, status: StatusCode, key: &'static str) -> PageError {
        PageError {
            status,
            location: None,
            ctx: Some(Box::new(ctx.clone())),
            key,
            detail: String::new(),
        }
    }

    pub(crate) fn forbidden(ctx: &Ctx, key: &'static str) -> PageError {
        PageError::status(ctx, StatusCode::FORBIDDEN, key)
    }

    pub(crate) fn internal(detail: String) -> PageError {
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            location: None,
            ctx: None,
            key: "internal",
            detail,
        }
    }

    /// The library's error as a page: forbidden, not found, a conflict, bad input, or
    /// (logged, not shown) anything else.
    pub(crate) fn from_error(ctx: &Ctx, error: payments_core::Error) -> PageError {
        use payments_core::Error;
        let (status, key) = match &error {
            Error::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        // What a reader sees comes from the catalogue, in their language: the fields' own
        // messages for bad input, the key's text otherwise. The library's English is for
        // the log.
        let detail = match &error {
            Error::Validation(errors) => errors
                .0
                .iter()
                .map(|e| e.message(ctx.locale()))
                .collect::<Vec<_>>()
                .join(" "),
            _ => {
                if status == StatusCode::INTERNAL_SERVER_ERROR {
                    eprintln!("portal: {error}");
                }
                String::new()
            }
        };
        PageError {
            status,
            location: None,
            ctx: Some(Box::new(ctx.clone())),
            key,
            detail,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Some(to) = self.location {
            return Redirect::to(&to).into_response();
        }
        if self.status == StatusCode::INTERNAL_SERVER_ERROR && !self.detail.is_empty() {
            eprintln!("portal: {}", self.detail);
        }
        let values = context! { status => self.status.as_u16(), key => self.key, detail => self.detail.clone() };
        match &self.ctx {
            Some(ctx) => render(ctx, self.status, "error.html", values)
                .unwrap_or_else(|e| e.status.into_response()),
            None => (
                self.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Errore / Error",
            )
                .into_response(),
        }
    }
}

/// Each refused field's message, by field, from the catalogue in the reader's language.
pub(crate) fn field_messages(
    errors: payments_core::ValidationErrors,
    locale: Locale,
) -> std::collections::BTreeMap<String, String> {
    errors
        .0
        .into_iter()
        .map(|e| {
            let message = e.message(locale);
            (e.field, message)
        })
        .collect()
}

/// What a reader is told of a refused request, from the catalogue in their language: each
/// refused field's message, or the text for a file the provider's format does not read.
/// Never the library's English, which goes to the log.
pub(crate) fn reader_text(error: &payments_core::Error, locale: Locale) -> String {
    match error {
        payments_core::Error::Validation(errors) => errors
            .0
            .iter()
            .map(|e| e.message(locale))
            .collect::<Vec<_>>()
            .join(" "),
        payments_core::Error::Gateway { .. } => {
            eprintln!("portal: {error}");
            text(locale, "error.unreadable_file").to_owned()
        }
        other => {
            eprintln!("portal: {other}");
            text(locale, "error.internal").to_owned()
        }
    }
}

/// An id from the address (or a form), or the not-found page: an id that does not read
/// names nothing.
pub(crate) fn parse_id<T: std::str::FromStr>(ctx: &Ctx, raw: &str) -> Result<T, PageError> {
    raw.trim()
        .parse()
        .map_err(|_| PageError::status(ctx, StatusCode::NOT_FOUND, "not_found"))
}

/// The file of an upload form (`file`), once its CSRF token (`csrf`) is checked: multipart
/// forms check their token themselves.
pub(crate) async fn upload(
    ctx: &Ctx,
    mut form: axum::extract::Multipart,
) -> Result<Vec<u8>, PageError> {
    let mut csrf = None;
    let mut file = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("csrf") => csrf = field.text().await.ok(),
            Some("file") => file = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
            _ => {}
        }
    }
    if !ctx.csrf_matches(csrf.as_deref()) {
        return Err(PageError::forbidden(ctx, "csrf"));
    }
    Ok(file)
}

/// Any other address: a page that says so.
pub(crate) async fn not_found(axum::Extension(ctx): axum::Extension<Ctx>) -> PageError {
    PageError::status(&ctx, StatusCode::NOT_FOUND, "not_found")
}

/// The library's results, as pages.
pub(crate) trait OrPage<T> {
    /// An error becomes the error page of `ctx`'s language.
    fn or_page(self, ctx: &Ctx) -> Result<T, PageError>;
}

impl<T> OrPage<T> for payments_core::Result<T> {
    fn or_page(self, ctx: &Ctx) -> Result<T, PageError> {
        self.map_err(|e| PageError::from_error(ctx, e))
    }
}

/// A transaction state as citizens and operators read it.
pub(crate) fn status_label(status: TxStatus, locale: Locale) -> &'static str {
    let key = match status {
        TxStatus::Created => "status.created",
        TxStatus::Pending => "status.pending",
        TxStatus::Reported => "status.reported",
        TxStatus::Paid => "status.paid",
        TxStatus::Failed => "status.failed",
        TxStatus::Cancelled => "status.cancelled",
        TxStatus::Expired => "status.expired",
        TxStatus::Rejected => "status.rejected",
        TxStatus::Refunded => "status.refunded",
        TxStatus::PartiallyPaid => "status.partially_paid",
        _ => "status.other",
    };
    text(locale, key)
}

/// The text of `key` in `locale`; the key itself when missing (a test looks for none).
pub(crate) fn text(locale: Locale, key: &str) -> &str {
    match TEXTS.iter().find(|(k, _, _)| *k == key) {
        Some((_, it, en)) => match locale {
            Locale::En => en,
            _ => it,
        },
        None => key,
    }
}

/// Every text of the pages: key, Italian, English.
pub(crate) const TEXTS: &[(&str, &str, &str)] = &[
    ("site", "Portale dei pagamenti", "Payments portal"),
    ("skip", "Vai al contenuto", "Skip to content"),
    ("nav.home", "Servizi", "Services"),
    ("nav.free", "Pagamento spontaneo", "Free payment"),
    ("nav.cart", "Carrello", "Cart"),
    ("nav.history", "I miei pagamenti", "My payments"),
    ("nav.overview", "Quadro", "Overview"),
    ("nav.flows", "Rendicontazione", "Reporting flows"),
    ("nav.admin", "Movimenti", "Movements"),
    (
        "overview.title",
        "Quadro degli incassi",
        "Collections at a glance",
    ),
    ("overview.waiting", "Da verificare", "Waiting for you"),
    (
        "overview.unmatched",
        "accrediti non abbinati",
        "unmatched credits",
    ),
    (
        "overview.fdr",
        "anomalie di rendicontazione pagoPA",
        "pagoPA reporting discrepancies",
    ),
    ("overview.double", "pagamenti doppi", "double payments"),
    (
        "overview.failed",
        "messaggi non recapitati",
        "messages not delivered",
    ),
    ("overview.others", "Altre anomalie", "Other exceptions"),
    ("overview.money", "Pagato e da pagare", "Paid and open"),
    (
        "overview.paid",
        "Pagato negli ultimi 30 giorni",
        "Paid in the last 30 days",
    ),
    (
        "overview.open",
        "Aperto ora (avviato, non ancora pagato)",
        "Open now (started, not yet paid)",
    ),
    ("overview.payments", "pagamenti", "payments"),
    (
        "overview.collections",
        "Incassi per giorno e metodo",
        "Collections per day and method",
    ),
    (
        "overview.chart",
        "Incassi degli ultimi 30 giorni per metodo di pagamento",
        "Collections of the last 30 days by payment method",
    ),
    (
        "overview.table",
        "Incassi per giorno e metodo,",
        "Collections per day and method,",
    ),
    ("overview.day_total", "Totale del giorno", "Day total"),
    (
        "flows.title",
        "Flussi di rendicontazione pagoPA",
        "pagoPA reporting flows",
    ),
    (
        "flows.intro",
        "Ogni PSP versa gli incassi di un giorno con un solo bonifico e li rendiconta in un flusso: qui ogni flusso è abbinato alle ricevute e all'accredito sull'estratto conto.",
        "Each PSP pays a day's collections in one transfer and reports them in a flow: here each flow is matched to its receipts and to its credit on the statement.",
    ),
    (
        "flows.sync",
        "Scarica i nuovi flussi e riconcilia",
        "Fetch new flows and reconcile",
    ),
    ("flows.reconcile", "Riconcilia ora", "Reconcile now"),
    (
        "flows.no_fdr",
        "Il servizio FdR di pagoPA non è configurato: si riconciliano i flussi già registrati.",
        "pagoPA's FdR service is not configured: the flows already recorded are reconciled.",
    ),
    ("flows.csv", "Esporta in CSV", "Export as CSV"),
    ("flows.flow", "Flusso", "Flow"),
    ("flows.psp", "PSP", "PSP"),
    ("flows.payments", "Pagamenti", "Payments"),
    ("flows.state", "Stato", "State"),
    ("flows.credit", "Accredito", "Credit"),
    (
        "flows.credit_awaited",
        "non ancora sull'estratto conto",
        "not yet on the statement",
    ),
    ("flows.revision", "revisione", "revision"),
    (
        "flows.caption",
        "Flussi registrati, i più recenti per primi",
        "Flows recorded, newest first",
    ),
    ("flows.discrepancies", "anomalie", "discrepancies"),
    (
        "flows.done_fetched",
        "Flussi pubblicati da pagoPA",
        "Flows published by pagoPA",
    ),
    ("flows.done_new", "nuovi", "new"),
    ("flows.done_replaced", "nuove revisioni", "new revisions"),
    ("flows.done_unreadable", "illeggibili", "unreadable"),
    (
        "flows.done_fdr_error",
        "Il servizio FdR non ha risposto: riprova più tardi.",
        "pagoPA's FdR service did not answer: try again later.",
    ),
    (
        "flows.done_reconciled",
        "Flussi riconciliati",
        "Flows reconciled",
    ),
    ("flows.done_paid", "chiusi", "closed"),
    ("flows.done_exceptions", "nuove anomalie", "new exceptions"),
    (
        "flows.none",
        "Nessun flusso registrato.",
        "No flow recorded.",
    ),
    ("nav.statements", "Estratti conto", "Statements"),
    ("nav.outbox", "Messaggi", "Messages"),
    ("nav.exceptions", "Anomalie", "Exceptions"),
    ("nav.positions", "Avvisi", "Notices"),
    (
        "positions.title",
        "Avvisi di pagamento emessi",
        "Payment notices issued",
    ),
    ("positions.filters", "Filtri", "Filters"),
    ("positions.status", "Stato", "Status"),
    ("positions.any", "Tutti", "Any"),
    ("positions.type", "Tipo di pagamento", "Payment type"),
    (
        "positions.payer_cf",
        "Codice fiscale del debitore",
        "Payer's fiscal code",
    ),
    ("positions.due_from", "Scadenza dal", "Due from"),
    ("positions.due_to", "Scadenza al", "Due to"),
    ("positions.filter", "Filtra", "Filter"),
    ("positions.key", "Identificativo", "Identifier"),
    ("positions.payer", "Debitore", "Payer"),
    ("positions.next_due", "Prossima scadenza", "Next due date"),
    ("positions.actions", "Azioni", "Actions"),
    ("positions.notice", "Avviso PDF", "Notice PDF"),
    ("positions.why", "Motivo", "Reason"),
    ("positions.invalidate", "Annulla", "Invalidate"),
    (
        "positions.invalidated_by_operator",
        "Annullata dall'ufficio",
        "Invalidated by the office",
    ),
    (
        "positions.import",
        "Importa avvisi da CSV",
        "Import notices from CSV",
    ),
    (
        "positions.import_intro",
        "Una riga per rata (U per la rata unica, 1, 2, ... per le rate); le righe con lo stesso identificativo formano un avviso. Colonne:",
        "One row per option (U for the single payment, 1, 2, ... for instalments); rows with the same identifier make one notice. Columns:",
    ),
    ("positions.file", "File CSV", "CSV file"),
    (
        "positions.report",
        "Esito dell'importazione",
        "Import result",
    ),
    (
        "positions.registered",
        "Avvisi registrati",
        "Notices registered",
    ),
    ("positions.unchanged", "Già presenti", "Already there"),
    ("positions.refused", "Righe rifiutate", "Rows refused"),
    ("positions.row", "Riga", "Row"),
    ("positions.field", "Campo", "Field"),
    ("positions.why_refused", "Motivo", "Reason"),
    (
        "home.notices",
        "I tuoi avvisi di pagamento",
        "Your payment notices",
    ),
    (
        "home.download_notice",
        "Scarica l'avviso (PDF)",
        "Download the notice (PDF)",
    ),
    ("home.option", "Rata", "Option"),
    ("home.notice_code", "Codice avviso", "Notice code"),
    (
        "home.option_closed",
        "Non più pagabile",
        "No longer payable",
    ),
    ("history.receipt_pdf", "Ricevuta PDF", "Receipt PDF"),
    (
        "outbox.reminder",
        "Promemoria di scadenza",
        "Due date reminder",
    ),
    (
        "outbox.archive",
        "Copia della posizione per pagoPA",
        "Position copied to pagoPA",
    ),
    (
        "exceptions.title",
        "Anomalie da verificare",
        "Exceptions to check",
    ),
    (
        "exceptions.intro",
        "Pagamenti tardivi o doppi, importi diversi dal dovuto, accrediti non abbinati e rimborsi non riusciti: il denaro è registrato, serve la verifica di un operatore.",
        "Late or double payments, amounts other than due, unmatched credits and failed refunds: the money is recorded, and needs an operator's check.",
    ),
    ("exceptions.status", "Stato", "State"),
    ("exceptions.open", "Da verificare", "Open"),
    ("exceptions.resolved", "Risolta", "Resolved"),
    ("exceptions.all", "Tutte", "All"),
    ("exceptions.kind", "Tipo", "Kind"),
    ("exceptions.any_kind", "Qualsiasi tipo", "Any kind"),
    ("exceptions.reason", "Motivo", "Reason"),
    ("exceptions.what_to_do", "Azioni", "Actions"),
    (
        "exceptions.refund",
        "Rimborsa il pagamento doppio",
        "Refund the double payment",
    ),
    (
        "exceptions.note",
        "Nota su cosa è stato fatto",
        "Note on what was done",
    ),
    ("exceptions.resolve", "Segna come risolta", "Mark resolved"),
    ("exceptions.none", "Nessuna anomalia.", "No exceptions."),
    (
        "exceptions.details",
        "Dettaglio tecnico",
        "Technical detail",
    ),
    (
        "exceptions.explain.late_payment",
        "Pagamento arrivato dopo la chiusura del pagamento: le voci erano libere e risultano ora pagate.",
        "A payment that came after the payment had ended: its items were free and are now paid.",
    ),
    (
        "exceptions.explain.double_payment",
        "Voci pagate due volte: l'ente ha incassato due volte questo importo e deve restituirlo.",
        "Items paid twice: the body received this amount twice and must give it back.",
    ),
    (
        "exceptions.explain.amount_mismatch",
        "Il gestore ha incassato un importo diverso dal dovuto: non è stato applicato.",
        "The provider took another amount than was due: it was not applied.",
    ),
    (
        "exceptions.explain.unknown_payment",
        "Pagamento di un avviso o di una transazione che il sistema non conosce.",
        "A payment of a notice or transaction the system does not know.",
    ),
    (
        "exceptions.explain.unmatched_credit",
        "Accredito dell'estratto conto che non è stato possibile abbinare a un pagamento.",
        "A statement credit that could not be matched to a payment.",
    ),
    (
        "exceptions.explain.refund_failed",
        "Rimborso non riuscito: il denaro è ancora presso l'ente; ripetere il rimborso.",
        "A refund that failed: the money is still with the body; refund it again.",
    ),
    (
        "exceptions.explain.outside_refund",
        "Rimborso fatto presso il gestore senza passare dal sistema: il denaro è uscito dal conto dell'ente; verificare il pagamento.",
        "A refund made at the provider outside the system: the money left the body's account; check the payment.",
    ),
    (
        "exceptions.explain.provider_unanswered",
        "Il gestore (per pagoPA, GPD) non ha risposto: un pagamento che ha incassato non è ancora registrato; verificare con il gestore e riprovare.",
        "The provider (for pagoPA, GPD) did not answer: a payment it took is not recorded yet; check with the provider and try again.",
    ),
    (
        "exceptions.explain.returned_by_bank",
        "La banca ha stornato l'accredito che aveva pagato questa transazione: il denaro è tornato al pagatore e non è più sul conto dell'ente; il pagamento va richiesto di nuovo o chiarito con la banca.",
        "The bank reversed the credit that had paid this transaction: the money went back to the payer and is no longer in the body's account; ask for the payment again or clear it with the bank.",
    ),
    (
        "exceptions.explain.reporting_mismatch",
        "La rendicontazione pagoPA non torna: un pagamento del flusso del PSP senza ricevuta o di importo diverso, una ricevuta mai rendicontata, oppure il riversamento del flusso non trovato sull'estratto conto o di importo diverso.",
        "pagoPA's reporting does not close: a payment in a PSP's flow without its receipt or of another amount, a receipt never reported, or the flow's transfer not found on the statement or of another amount.",
    ),
    (
        "exceptions.explain.still_processing",
        "Pagamento ancora in lavorazione presso il gestore oltre i tempi massimi: verificare con il gestore.",
        "A payment still processing at the provider beyond its longest time: check with the provider.",
    ),
    ("detail.paid_line", "Pagata", "Paid"),
    ("detail.refunds", "Rimborsi", "Refunds"),
    (
        "detail.exceptions",
        "Anomalie del pagamento",
        "Exceptions of this payment",
    ),
    ("refund.requested", "Richiesto", "Requested"),
    ("refund.pending", "In corso", "Under way"),
    ("refund.succeeded", "Eseguito", "Done"),
    ("refund.failed", "Non riuscito", "Failed"),
    ("nav.signin", "Accedi", "Sign in"),
    ("nav.signout", "Esci", "Sign out"),
    ("nav.language", "Lingua", "Language"),
    ("nav.body", "Paga a un altro ente", "Pay another body"),
    ("signin.title", "Accesso (dimostrativo)", "Sign in (demo)"),
    (
        "signin.intro",
        "Scegli con chi entrare. Un portale vero usa SPID o CIE al posto di questa pagina.",
        "Pick who to sign in as. A real portal uses SPID or CIE instead of this page.",
    ),
    ("signin.citizen", "Cittadino", "Citizen"),
    ("signin.operator", "Operatore dell'ente", "Body's operator"),
    ("signin.submit", "Entra", "Sign in"),
    ("home.title", "Cosa devi pagare", "What you owe"),
    ("home.none", "Nulla da pagare.", "Nothing to pay."),
    ("home.due", "Scadenza", "Due"),
    ("pay", "Paga", "Pay"),
    ("paid", "Pagato", "Paid"),
    ("in_cart", "Nel carrello", "In the cart"),
    ("amount", "Importo", "Amount"),
    ("reason", "Causale", "Reason"),
    ("total", "Totale", "Total"),
    ("required", "obbligatorio", "required"),
    ("free.title", "Pagamento spontaneo", "Free payment"),
    ("free.type", "Tipo di pagamento", "Payment type"),
    ("free.choose", "Scegli", "Choose"),
    ("free.add", "Aggiungi al carrello", "Add to cart"),
    (
        "free.errors",
        "Alcuni campi non vanno bene: correggili e riprova.",
        "Some fields are not right: correct them and try again.",
    ),
    (
        "error.required",
        "Campo obbligatorio.",
        "This field is required.",
    ),
    ("cart.title", "Carrello", "Cart"),
    ("cart.empty", "Il carrello è vuoto.", "The cart is empty."),
    ("cart.remove", "Rimuovi", "Remove"),
    (
        "cart.method",
        "Come vuoi pagare?",
        "How do you want to pay?",
    ),
    (
        "cart.methods_note",
        "Sono elencati solo i metodi accettati da tutte le voci del carrello.",
        "Only the methods every item of the cart accepts are listed.",
    ),
    (
        "cart.no_method",
        "Nessun metodo accetta tutte le voci insieme: pagale separatamente.",
        "No method accepts every item together: pay them separately.",
    ),
    ("cart.pay", "Procedi al pagamento", "Proceed to payment"),
    ("cart.locked", "In pagamento", "Being paid"),
    (
        "sandbox.title",
        "Pagina di pagamento (sandbox)",
        "Payment page (sandbox)",
    ),
    (
        "sandbox.intro",
        "Questa pagina fa le veci del fornitore: nessun denaro si muove.",
        "This page stands in for the provider: no money moves.",
    ),
    ("sandbox.pay", "Paga", "Pay"),
    ("sandbox.fail", "Simula un rifiuto", "Simulate a refusal"),
    ("sandbox.cancel", "Annulla", "Cancel"),
    (
        "redirect.title",
        "Prosegui presso il fornitore",
        "Continue at the provider",
    ),
    ("redirect.continue", "Continua", "Continue"),
    ("payment.title", "Pagamento", "Payment"),
    (
        "payment.id",
        "Identificativo del pagamento",
        "Payment identifier",
    ),
    ("payment.status", "Stato", "Status"),
    ("payment.method", "Metodo", "Method"),
    (
        "payment.provider_ref",
        "Riferimento del fornitore",
        "Provider's reference",
    ),
    ("payment.receipt", "Ricevuta", "Receipt"),
    (
        "payment.receipt_mail",
        "Ti abbiamo inviato la ricevuta per email.",
        "We emailed you the receipt.",
    ),
    (
        "payment.failed",
        "Il pagamento non è andato a buon fine. Le voci sono di nuovo nel carrello.",
        "The payment did not go through. The items are back in the cart.",
    ),
    (
        "payment.waiting",
        "In attesa dell'esito dal fornitore.",
        "Waiting for the provider's outcome.",
    ),
    (
        "payment.resume",
        "Torna alla pagina di pagamento",
        "Back to the payment page",
    ),
    (
        "payment.reported",
        "Hai segnalato il bonifico: l'ente lo verificherà.",
        "You reported the transfer: the body will verify it.",
    ),
    (
        "transfer.title",
        "Paga con bonifico",
        "Pay by bank transfer",
    ),
    ("transfer.beneficiary", "Beneficiario", "Beneficiary"),
    (
        "transfer.reference",
        "Riferimento (da indicare nella causale)",
        "Reference (put it in the transfer's reason)",
    ),
    (
        "transfer.qr",
        "Inquadra il codice con l'app della tua banca",
        "Scan the code with your banking app",
    ),
    (
        "report.title",
        "Hai già fatto il bonifico? Segnalalo",
        "Made the transfer already? Report it",
    ),
    (
        "report.executed_on",
        "Data del bonifico",
        "Date of the transfer",
    ),
    ("report.bank_reference", "CRO / TRN", "CRO / TRN"),
    (
        "report.ordering_iban",
        "IBAN da cui hai pagato",
        "IBAN you paid from",
    ),
    (
        "report.submit",
        "Segnala il bonifico",
        "Report the transfer",
    ),
    ("pagopa.title", "Avvisi pagoPA", "pagoPA notices"),
    (
        "pagopa.intro",
        "Paga in banca, alla posta, in tabaccheria o in app con il codice avviso o il QR.",
        "Pay at a bank, post office, tobacconist or app with the notice code or the QR.",
    ),
    ("pagopa.notice", "Codice avviso", "Notice code"),
    ("history.title", "I miei pagamenti", "My payments"),
    ("history.none", "Nessun pagamento.", "No payments."),
    ("history.items", "Voci", "Items"),
    ("history.timeline", "Cronologia", "Timeline"),
    ("date", "Data", "Date"),
    ("more", "Pagina successiva", "Next page"),
    ("admin.title", "Movimenti", "Movements"),
    ("admin.filters", "Filtri", "Filters"),
    ("admin.from", "Dal", "From"),
    ("admin.to", "Al", "To"),
    ("admin.status", "Stato", "Status"),
    ("admin.type", "Tipo", "Type"),
    ("admin.method", "Metodo", "Method"),
    ("admin.module", "Modulo", "Module"),
    (
        "admin.payer",
        "Pagatore (codice fiscale)",
        "Payer (fiscal code)",
    ),
    ("admin.min", "Importo minimo", "Minimum amount"),
    ("admin.max", "Importo massimo", "Maximum amount"),
    ("admin.any", "Tutti", "Any"),
    ("admin.search", "Cerca", "Search"),
    ("admin.count", "Transazioni trovate", "Transactions found"),
    (
        "admin.sum",
        "Totale della selezione",
        "Total of the selection",
    ),
    ("admin.export_csv", "Esporta CSV", "Export CSV"),
    ("admin.export_xlsx", "Esporta Excel", "Export Excel"),
    (
        "admin.export_jsonl",
        "Esporta JSON lines",
        "Export JSON lines",
    ),
    ("admin.none", "Nessun movimento.", "No movements."),
    ("admin.payer_col", "Pagatore", "Payer"),
    ("admin.open", "Dettaglio", "Detail"),
    ("detail.title", "Dettaglio del pagamento", "Payment detail"),
    ("detail.events", "Eventi", "Events"),
    ("detail.actor", "Da", "By"),
    ("detail.note", "Nota", "Note"),
    (
        "detail.confirm",
        "Conferma l'incasso",
        "Confirm the payment",
    ),
    (
        "detail.reject",
        "Respingi la segnalazione",
        "Reject the report",
    ),
    (
        "detail.entries",
        "Movimenti bancari collegati",
        "Bank entries matched",
    ),
    ("detail.receipts", "Ricevute pagoPA", "pagoPA receipts"),
    ("payment.psp_receipt", "Avviso pagato", "Notice paid"),
    ("payment.psp", "tramite", "through"),
    ("payment.psp_receipt_id", "ricevuta", "receipt"),
    ("detail.receipt_id", "Ricevuta", "Receipt"),
    ("detail.psp", "Prestatore (PSP)", "Payment service provider"),
    ("detail.channel", "Canale", "Channel"),
    ("detail.method", "Strumento", "Method"),
    ("detail.fee", "Commissione", "Fee"),
    ("detail.transfer_date", "Data riversamento", "Transfer date"),
    ("detail.download", "Scarica XML", "Download XML"),
    ("statements.title", "Estratti conto", "Statements"),
    (
        "statements.intro",
        "Importa un estratto conto camt.053 della tesoreria: i bonifici vengono abbinati ai pagamenti.",
        "Import a camt.053 statement of the treasury account: transfers are matched to payments.",
    ),
    (
        "statements.file",
        "File camt.053 (XML)",
        "camt.053 file (XML)",
    ),
    ("statements.import", "Importa", "Import"),
    ("statements.matched", "Abbinati", "Matched"),
    ("statements.exceptions", "Da verificare", "To check"),
    (
        "statements.flows",
        "Riversamenti pagoPA (spiegati dai flussi di rendicontazione)",
        "pagoPA transfers (explained by the reporting flows)",
    ),
    ("statements.flow", "Flusso", "Flow"),
    ("statements.value_on", "Valuta", "Value date"),
    ("statements.already", "Già importati", "Already imported"),
    (
        "statements.ignored",
        "Ignorati (addebiti, non contabilizzati)",
        "Ignored (debits, not booked)",
    ),
    (
        "statements.open_exceptions",
        "Movimenti da verificare",
        "Entries to check",
    ),
    ("statements.debtor", "Ordinante", "Debtor"),
    ("outbox.title", "Messaggi in uscita", "Outgoing messages"),
    (
        "outbox.intro",
        "Ricevute, avvisi all'ente e notifiche ai moduli. Quelli falliti si possono rimettere in coda.",
        "Receipts, notices to the body and news to the modules. Failed ones can be queued again.",
    ),
    ("outbox.what", "Messaggio", "Message"),
    ("outbox.attempts", "Tentativi", "Attempts"),
    ("outbox.error", "Ultimo errore", "Last error"),
    ("outbox.retry", "Riprova", "Retry"),
    ("outbox.failed_only", "Solo falliti", "Failed only"),
    ("outbox.all", "Tutti", "All"),
    ("outbox.receipt", "Ricevuta a", "Receipt to"),
    (
        "outbox.notice",
        "Avviso all'ente a",
        "Notice to the body at",
    ),
    ("outbox.settlement", "Notifica al modulo", "News for module"),
    (
        "outbox.refund",
        "Rimborso al modulo",
        "Refund to the module",
    ),
    ("status.created", "Creato", "Created"),
    ("status.pending", "In attesa", "Pending"),
    ("status.reported", "Segnalato", "Reported"),
    ("status.paid", "Pagato", "Paid"),
    ("status.failed", "Non riuscito", "Failed"),
    ("status.cancelled", "Annullato", "Cancelled"),
    ("status.expired", "Scaduto", "Expired"),
    ("status.rejected", "Respinto", "Rejected"),
    ("status.refunded", "Rimborsato", "Refunded"),
    ("status.partially_paid", "Pagato in parte", "Partially paid"),
    ("outbox.pending", "Da inviare", "To send"),
    ("outbox.delivered", "Inviato", "Sent"),
    ("outbox.dead", "Fallito", "Failed"),
    ("error.title", "Errore", "Error"),
    (
        "error.forbidden",
        "Non hai accesso a questa pagina.",
        "You have no access to this page.",
    ),
    (
        "error.operators_only",
        "Questa pagina è riservata agli operatori dell'ente.",
        "This page is for the body's operators only.",
    ),
    (
        "error.citizens_only",
        "Questa pagina è per i cittadini.",
        "This page is for citizens.",
    ),
    (
        "error.not_yours",
        "Questo pagamento è di un'altra persona.",
        "This payment is someone else's.",
    ),
    (
        "error.csrf",
        "Il modulo è scaduto o non viene da questo sito: ricarica la pagina e riprova.",
        "The form has expired or does not come from this site: reload the page and try again.",
    ),
    ("error.not_found", "Pagina non trovata.", "Page not found."),
    (
        "error.conflict",
        "L'operazione non è possibile nello stato attuale.",
        "This cannot be done in the current state.",
    ),
    ("error.invalid", "Dati non validi.", "Invalid data."),
    (
        "error.unknown_account",
        "Account sconosciuto.",
        "Unknown account.",
    ),
    (
        "error.unreadable_file",
        "Il file non è leggibile: controlla che sia nel formato richiesto.",
        "The file cannot be read: check that it is in the format asked for.",
    ),
    (
        "error.unavailable",
        "Il servizio non è disponibile in questo momento. Riprova tra poco.",
        "The service is not available right now. Try again shortly.",
    ),
    (
        "error.internal",
        "Qualcosa è andato storto. Riprova più tardi.",
        "Something went wrong. Try again later.",
    ),
    (
        "back_home",
        "Torna alla pagina iniziale",
        "Back to the home page",
    ),
];

/// The body's time zone: pages show, and filters read, Italian time.
pub(crate) const ZONE: chrono_tz::Tz = chrono_tz::Europe::Rome;

/// `at` in Italian time.
pub(crate) fn local(at: chrono::DateTime<chrono::Utc>, format: &str) -> String {
    at.with_timezone(&ZONE).format(format).to_string()
}

/// A transaction as pages show it.
pub(crate) fn transaction(tx: &payments_core::Transaction, locale: Locale) -> Value {
    let lines: Vec<Value> = tx
        .lines
        .iter()
        .map(|l| context! { reason => l.reason.clone(), amount => l.amount.format(locale), module => l.source.module.clone(), paid_at => l.paid_at.map(|t| local(t, "%d/%m/%Y %H:%M")) })
        .collect();
    context! {
        id => tx.id.to_string(),
        status => tx.status.as_str(),
        status_label => status_label(tx.status, locale),
        total => tx.total.format(locale),
        method => tx.method_kind.label(locale),
        payer => tx.payer.name.clone(),
        payer_id => tx.payer.id.to_string(),
        provider_ref => tx.provider_ref.clone(),
        created => local(tx.created_at, "%d/%m/%Y %H:%M"),
        updated => local(tx.updated_at, "%d/%m/%Y %H:%M"),
        lines,
    }
}

/// A transaction's events as a timeline.
pub(crate) fn events(events: &[payments_core::TransactionEvent], locale: Locale) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            context! {
                at => local(e.at, "%d/%m/%Y %H:%M:%S"),
                from => e.from.map(|s| status_label(s, locale)),
                to => status_label(e.to, locale),
                actor => e.actor.to_string(),
                note => e.note.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_key_used_by_a_template_exists_in_both_languages() {
        let mut missing = Vec::new();
        for (name, source) in TEMPLATES {
            let quoted = source.split("t(\"").skip(1).map(|p| p.split('"').next());
            let single = source.split("t('").skip(1).map(|p| p.split('\'').next());
            for key in quoted.chain(single).flatten() {
                // `t("error." ~ key)`: a prefix, completed at run time.
                if key.ends_with('.') {
                    continue;
                }
                if !TEXTS
                    .iter()
                    .any(|(k, it, en)| *k == key && !it.is_empty() && !en.is_empty())
                {
                    missing.push(format!("{name}: {key}"));
                }
            }
        }
        assert!(missing.is_empty(), "texts missing: {missing:?}");
        let mut keys: Vec<_> = TEXTS.iter().map(|(k, _, _)| *k).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key is defined twice");
    }

    #[test]
    fn italian_is_the_default() {
        assert_eq!(text(Locale::It, "paid"), "Pagato");
        assert_eq!(text(Locale::En, "paid"), "Paid");
        assert_eq!(status_label(TxStatus::Reported, Locale::It), "Segnalato");
    }
}
