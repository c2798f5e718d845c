//! Telling people and modules: the [`Notifier`] and [`SettlementListener`] traits, a plain
//! text rendering of notifications in Italian and English, and recording test doubles.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::{
    Error, Locale, Notification, NotificationKind, RefundSettlement, Reminder, Result, Settlement,
};

/// Delivers one notification. The outbox decides when and how often; an implementation
/// only tries once per call and says whether a failure is worth retrying
/// ([`Error::Notification`] with `transient`).
///
/// # Contract
/// The conformance suite (`payments_core::testing::notifier`, feature `testing`) checks that
/// the recipient receives the rendered message in the notification's language, with the
/// payment identifier and the total, and that a failure is an `Error::Notification`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Notifier: std::fmt::Debug + Send + Sync + 'static {
    /// Delivers `notification`.
    async fn send(&self, notification: &Notification) -> Result<()>;

    /// Delivers a reminder of a debt position's due date. A notifier written before
    /// reminders existed refuses it for good (the message is dead, an operator sees it).
    async fn remind(&self, reminder: &Reminder) -> Result<()> {
        let _ = reminder;
        Err(Error::Notification {
            message: "this notifier does not send reminders".into(),
            transient: false,
            source: None,
        })
    }
}

/// Gives debt positions their notice numbers (*codici avviso*) when they are registered.
/// `payments_gateways::pagopa::PagoPaGateway` is one: aux digit 3, the creditor's
/// segregation code, bases from [`Store::allocate_sequence`](crate::Store::allocate_sequence).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait NoticeIssuer: std::fmt::Debug + Send + Sync + 'static {
    /// `count` new notice numbers of `creditor`, never handed out before.
    async fn issue(&self, creditor: &crate::Creditor, count: u32) -> Result<Vec<String>>;
    /// The transfer of a whole option to the creditor, for an option that names none:
    /// `amount` to the creditor's own account, with `remittance` and the payment type's
    /// taxonomy code.
    fn default_transfer(
        &self,
        creditor: &crate::Creditor,
        payment_type: &crate::PaymentType,
        amount: &crate::Money,
        remittance: &str,
    ) -> Result<crate::Transfer>;
}

/// Keeps a copy of the creditors' debt positions where pagoPA's node finds them when the
/// body's own systems are not asked: pagoPA's debt-position service (GPD), which then
/// answers for the body, or the central archive of notices (ACA) a body with its own
/// station must feed. `payments_gateways::pagopa::PagoPaGateway` is one.
///
/// The service calls it from the outbox after each change of a position (registered,
/// published, changed, invalidated, expired, paid), with the position as it stands at
/// delivery: an implementation makes the archive hold that state (create, update, publish
/// or withdraw), idempotently, so a retry or an old message changes nothing. A failure is
/// retried with the outbox's backoff when [`Error::is_retryable`](crate::Error::is_retryable),
/// and is otherwise a dead message an operator sees.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PositionArchive: std::fmt::Debug + Send + Sync + 'static {
    /// Makes the archive hold `position` of `creditor` as it now stands. A creditor whose
    /// positions the archive does not keep is `Ok` with nothing done.
    async fn sync(&self, creditor: &crate::Creditor, position: &crate::DebtPosition) -> Result<()>;
}

/// The plain text of a reminder, in its language: subject and body.
pub fn render_reminder(r: &Reminder) -> RenderedMessage {
    let it = r.locale == Locale::It;
    let option = &r.position.options[r.option.min(r.position.options.len().saturating_sub(1))];
    let due = match r.locale {
        Locale::It => option.due_date.format("%d/%m/%Y").to_string(),
        _ => option.due_date.format("%Y-%m-%d").to_string(),
    };
    let subject = if r.offset_days <= 0 {
        if it {
            format!("Promemoria: {} entro il {due}", r.position.reason)
        } else {
            format!("Reminder: {} due by {due}", r.position.reason)
        }
    } else if it {
        format!("Scaduto il {due}: {}", r.position.reason)
    } else {
        format!("Overdue since {due}: {}", r.position.reason)
    };
    let what = option.kind.describe(r.locale);
    let amount = option.amount.format(r.locale);
    let mut text = if it {
        format!(
            "Gentile {},\n\n{} ti ricorda il pagamento di \"{}\" ({what}): {amount} entro il {due}.\n",
            r.position.payer.name, r.creditor.name, r.position.reason
        )
    } else {
        format!(
            "Dear {},\n\n{} reminds you of the payment of \"{}\" ({what}): {amount} by {due}.\n",
            r.position.payer.name, r.creditor.name, r.position.reason
        )
    };
    if r.offset_days > 0 {
        text.push_str(if it {
            "La scadenza è passata: se hai già pagato, ignora questo messaggio.\n"
        } else {
            "The due date has passed: if you have already paid, ignore this message.\n"
        });
    }
    text.push_str(&if it {
        format!(
            "\nCodice avviso: {}\nCodice fiscale ente: {}\n\nPuoi pagare con l'avviso allegato presso banche, uffici postali, tabaccherie, home banking e app IO, oppure dal portale dell'ente.\n",
            option.notice_number, r.creditor.fiscal_code
        )
    } else {
        format!(
            "\nNotice code: {}\nPayee fiscal code: {}\n\nYou can pay with the attached notice at banks, post offices, tobacconists, in home banking and the IO app, or on the body's portal.\n",
            option.notice_number, r.creditor.fiscal_code
        )
    });
    RenderedMessage { subject, text }
}

/// What a portal module registers to learn that its items were paid, and that money paid
/// for them was given back. Called at least once per message: make it idempotent on the
/// message's id ([`Settlement::id`], [`RefundSettlement::id`]).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SettlementListener: std::fmt::Debug + Send + Sync + 'static {
    /// The item in `settlement` was paid.
    async fn settled(&self, settlement: &Settlement) -> Result<()>;
    /// Money paid for the item in `refund` was given back (all of it when
    /// [`RefundSettlement::in_full`]: the item is no longer paid). By default nothing is
    /// done, so a listener written before refunds were told keeps compiling.
    async fn refunded(&self, refund: &RefundSettlement) -> Result<()> {
        let _ = refund;
        Ok(())
    }
}

/// A notification rendered as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMessage {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

/// Renders a notification as plain text in its language. Adapters with richer templates
/// (HTML email) may use their own, but keep the same facts.
pub fn render_text(n: &Notification) -> RenderedMessage {
    let s = &n.summary;
    let l = n.locale;
    let t = |it: &'static str, en: &'static str| if l == Locale::It { it } else { en };
    let returned = s.returned.unwrap_or(s.total);
    let subject = match n.kind {
        NotificationKind::Receipt => format!(
            "{} {} - {}",
            t("Ricevuta di pagamento", "Payment receipt"),
            s.transaction_id,
            s.creditor_name
        ),
        NotificationKind::CreditorNotice => format!(
            "{} {} - {}",
            t("Pagamento ricevuto", "Payment received"),
            s.transaction_id,
            s.total.format(l)
        ),
        NotificationKind::RefundReceipt => format!(
            "{} {} - {}",
            t("Rimborso del pagamento", "Refund of payment"),
            s.transaction_id,
            s.creditor_name
        ),
        NotificationKind::RefundNotice => format!(
            "{} {} - {}",
            t("Rimborso eseguito", "Refund made"),
            s.transaction_id,
            returned.format(l)
        ),
        NotificationKind::DuplicatePayment => format!(
            "{} {} - {}",
            t("Pagamento doppio", "Double payment"),
            s.transaction_id,
            s.creditor_name
        ),
    };
    let mut text = String::new();
    if s.status == crate::TxStatus::Reported {
        text.push_str(t(
            "Il bonifico è stato segnalato ed è in attesa di verifica da parte dell'ente.\n\n",
            "The bank transfer has been reported and awaits verification by the public body.\n\n",
        ));
    }
    match n.kind {
        NotificationKind::Receipt => text.push_str(t(
            "Gentile utente, il pagamento è stato completato.\n\n",
            "Dear citizen, your payment is complete.\n\n",
        )),
        NotificationKind::CreditorNotice => text.push_str(t(
            "È stato completato un pagamento.\n\n",
            "A payment has been completed.\n\n",
        )),
        NotificationKind::RefundReceipt => text.push_str(&format!(
            "{} {}.\n\n",
            t(
                "Gentile utente, le è stato rimborsato l'importo di",
                "Dear citizen, you have been refunded"
            ),
            returned.format(l)
        )),
        NotificationKind::RefundNotice => text.push_str(&format!(
            "{} {}.\n\n",
            t("È stato eseguito un rimborso di", "A refund was made of"),
            returned.format(l)
        )),
        NotificationKind::DuplicatePayment => text.push_str(&format!(
            "{} {} {}\n\n",
            t(
                "Gentile utente, il suo pagamento comprende voci già pagate. L'importo di",
                "Dear citizen, your payment includes items already paid. The amount of"
            ),
            returned.format(l),
            t(
                "le sarà restituito dall'ente.",
                "will be given back to you by the public body."
            ),
        )),
    }
    let date = match l {
        Locale::It => s.paid_at.format("%d/%m/%Y %H:%M UTC").to_string(),
        Locale::En => s.paid_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    };
    let rows = [
        (
            t("Identificativo del pagamento", "Payment identifier"),
            s.transaction_id.to_string(),
        ),
        (
            t("Riferimento del gestore", "Provider reference"),
            s.provider_ref.clone().unwrap_or_else(|| "-".into()),
        ),
        (t("Ente", "Public body"), s.creditor_name.clone()),
        (t("Pagatore", "Payer"), s.payer_name.clone()),
        (t("Modalità", "Method"), s.method_kind.label(l).to_owned()),
        (t("Data", "Date"), date),
    ];
    for (k, v) in rows {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str(&format!("\n{}:\n", t("Voci pagate", "Items paid")));
    for line in &s.lines {
        text.push_str(&format!("- {}: {}\n", line.reason, line.amount.format(l)));
    }
    text.push_str(&format!(
        "\n{}: {}\n",
        t("Totale", "Total"),
        s.total.format(l)
    ));
    RenderedMessage { subject, text }
}

/// A notifier that keeps what it is asked to send, for tests and examples. It can be told
/// to fail a number of times first, as a mail server that is down would.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    sent: Mutex<Vec<(Notification, RenderedMessage)>>,
    reminders: Mutex<Vec<(Reminder, RenderedMessage)>>,
    failures_left: Mutex<u32>,
    attempts: Mutex<HashMap<crate::OutboxId, u32>>,
}

impl RecordingNotifier {
    /// A notifier that always succeeds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A notifier whose first `n` deliveries fail with a transient error.
    pub fn failing_first(n: u32) -> Self {
        let notifier = Self::default();
        *notifier
            .failures_left
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = n;
        notifier
    }

    /// What was delivered, in order.
    pub fn sent(&self) -> Vec<(Notification, RenderedMessage)> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The reminders delivered so far, with their rendering.
    pub fn reminders(&self) -> Vec<(Reminder, RenderedMessage)> {
        self.reminders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times delivery of `id` was attempted, failures included.
    pub fn attempts(&self, id: crate::OutboxId) -> u32 {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn send(&self, notification: &Notification) -> Result<()> {
        *self
            .attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(notification.id)
            .or_default() += 1;
        {
            let mut left = self.failures_left.lock().unwrap_or_else(|e| e.into_inner());
            if *left > 0 {
                *left -= 1;
                return Err(Error::Notification {
                    message: "recording notifier told to fail".into(),
                    transient: true,
                    source: None,
                });
            }
        }
        let rendered = render_text(notification);
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((notification.clone(), rendered));
        Ok(())
    }

    async fn remind(&self, reminder: &Reminder) -> Result<()> {
        let rendered = render_reminder(reminder);
        self.reminders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((reminder.clone(), rendered));
        Ok(())
    }
}

/// A settlement listener that keeps what it hears, for tests and examples.
#[derive(Debug, Default)]
pub struct RecordingListener {
    heard: Mutex<Vec<Settlement>>,
    refunds: Mutex<Vec<RefundSettlement>>,
}

impl RecordingListener {
    /// An empty listener.
    pub fn new() -> Self {
        Self::default()
    }

    /// The payments it heard of, in order.
    pub fn heard(&self) -> Vec<Settlement> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The refunds it heard of, in order.
    pub fn refunds(&self) -> Vec<RefundSettlement> {
        self.refunds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl SettlementListener for RecordingListener {
    async fn settled(&self, settlement: &Settlement) -> Result<()> {
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(settlement.clone());
        Ok(())
    }

    async fn refunded(&self, refund: &RefundSettlement) -> Result<()> {
        self.refunds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(refund.clone());
        Ok(())
    }
}
