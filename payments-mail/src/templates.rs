//! The receipt and the notice, in Italian and English, as minijinja templates a host can
//! override. HTML templates escape everything they show.

use std::collections::BTreeMap;

use chrono_tz::Europe::Rome;
use minijinja::{Environment, Value, context};
use payments_core::{Error, Locale, Notification, NotificationKind, TxStatus};

/// A notification rendered as an email.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderedMail {
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// The names of the templates, each in `it/` and `en/`: the payer's receipt, the
/// creditor's notice, the payer's refund receipt and the creditor's refund notice, and the
/// payer's news of a double payment. `items.txt` and `items.html` are the list of items
/// and the total, which the others include.
pub const TEMPLATE_NAMES: [&str; 17] = [
    "receipt.subject",
    "receipt.txt",
    "receipt.html",
    "notice.subject",
    "notice.txt",
    "notice.html",
    "refund.subject",
    "refund.txt",
    "refund.html",
    "refund_notice.subject",
    "refund_notice.txt",
    "refund_notice.html",
    "duplicate.subject",
    "duplicate.txt",
    "duplicate.html",
    "items.txt",
    "items.html",
];

const DEFAULTS: [(&str, &str); 34] = [
    (
        "it/receipt.subject",
        include_str!("../templates/it/receipt.subject"),
    ),
    (
        "it/receipt.txt",
        include_str!("../templates/it/receipt.txt"),
    ),
    (
        "it/receipt.html",
        include_str!("../templates/it/receipt.html"),
    ),
    (
        "it/notice.subject",
        include_str!("../templates/it/notice.subject"),
    ),
    ("it/notice.txt", include_str!("../templates/it/notice.txt")),
    (
        "it/notice.html",
        include_str!("../templates/it/notice.html"),
    ),
    (
        "it/refund.subject",
        include_str!("../templates/it/refund.subject"),
    ),
    ("it/refund.txt", include_str!("../templates/it/refund.txt")),
    (
        "it/refund.html",
        include_str!("../templates/it/refund.html"),
    ),
    (
        "it/refund_notice.subject",
        include_str!("../templates/it/refund_notice.subject"),
    ),
    (
        "it/refund_notice.txt",
        include_str!("../templates/it/refund_notice.txt"),
    ),
    (
        "it/refund_notice.html",
        include_str!("../templates/it/refund_notice.html"),
    ),
    (
        "it/duplicate.subject",
        include_str!("../templates/it/duplicate.subject"),
    ),
    (
        "it/duplicate.txt",
        include_str!("../templates/it/duplicate.txt"),
    ),
    (
        "it/duplicate.html",
        include_str!("../templates/it/duplicate.html"),
    ),
    ("it/items.txt", include_str!("../templates/it/items.txt")),
    ("it/items.html", include_str!("../templates/it/items.html")),
    (
        "en/receipt.subject",
        include_str!("../templates/en/receipt.subject"),
    ),
    (
        "en/receipt.txt",
        include_str!("../templates/en/receipt.txt"),
    ),
    (
        "en/receipt.html",
        include_str!("../templates/en/receipt.html"),
    ),
    (
        "en/notice.subject",
        include_str!("../templates/en/notice.subject"),
    ),
    ("en/notice.txt", include_str!("../templates/en/notice.txt")),
    (
        "en/notice.html",
        include_str!("../templates/en/notice.html"),
    ),
    (
        "en/refund.subject",
        include_str!("../templates/en/refund.subject"),
    ),
    ("en/refund.txt", include_str!("../templates/en/refund.txt")),
    (
        "en/refund.html",
        include_str!("../templates/en/refund.html"),
    ),
    (
        "en/refund_notice.subject",
        include_str!("../templates/en/refund_notice.subject"),
    ),
    (
        "en/refund_notice.txt",
        include_str!("../templates/en/refund_notice.txt"),
    ),
    (
        "en/refund_notice.html",
        include_str!("../templates/en/refund_notice.html"),
    ),
    (
        "en/duplicate.subject",
        include_str!("../templates/en/duplicate.subject"),
    ),
    (
        "en/duplicate.txt",
        include_str!("../templates/en/duplicate.txt"),
    ),
    (
        "en/duplicate.html",
        include_str!("../templates/en/duplicate.html"),
    ),
    ("en/items.txt", include_str!("../templates/en/items.txt")),
    ("en/items.html", include_str!("../templates/en/items.html")),
];

/// The templates. [`Templates::default`] holds the built-in ones; [`Templates::set`]
/// replaces one.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        // `.html` templates escape every value (minijinja's default for that extension).
        env.set_auto_escape_callback(minijinja::default_auto_escape_callback);
        for (name, source) in DEFAULTS {
            env.add_template(name, source)
                .expect("the built-in templates parse");
        }
        Templates { env }
    }
}

fn template_error(e: minijinja::Error) -> Error {
    Error::Notification {
        message: format!("template: {e}"),
        transient: false,
        source: Some(Box::new(e)),
    }
}

impl Templates {
    /// Replaces the template `name` (`"it/receipt.html"`, …: a language and one of
    /// [`TEMPLATE_NAMES`]) with `source`. Refuses an unknown name or a source that does not
    /// parse.
    pub fn set(&mut self, name: &str, source: impl Into<String>) -> payments_core::Result<()> {
        if !DEFAULTS.iter().any(|(n, _)| *n == name) {
            return Err(Error::invalid(
                "template",
                format!("no template is named {name}"),
            ));
        }
        self.env
            .add_template_owned(name.to_owned(), source.into())
            .map_err(|e| Error::invalid("template", e.to_string()))
    }

    /// Renders `n` in its language.
    pub fn render(&self, n: &Notification) -> payments_core::Result<RenderedMail> {
        let s = &n.summary;
        let locale = n.locale;
        let kind = match n.kind {
            NotificationKind::Receipt => "receipt",
            NotificationKind::CreditorNotice => "notice",
            NotificationKind::RefundReceipt => "refund",
            NotificationKind::RefundNotice => "refund_notice",
            NotificationKind::DuplicatePayment => "duplicate",
            other => {
                return Err(Error::Notification {
                    message: format!("no template for a notification of kind {other:?}"),
                    transient: false,
                    source: None,
                });
            }
        };
        let when = s.paid_at.with_timezone(&Rome);
        let date = match locale {
            Locale::En => when.format("%Y-%m-%d %H:%M").to_string(),
            _ => when.format("%d/%m/%Y %H:%M").to_string(),
        };
        let items: Vec<Value> = s
            .lines
            .iter()
            .map(|l| {
                Value::from_pairs([
                    ("module", l.source.module.clone()),
                    ("reason", l.reason.clone()),
                    (
                        "payment_type",
                        s.type_names
                            .get(&l.payment_type_id)
                            .cloned()
                            .unwrap_or_default(),
                    ),
                    ("amount", l.amount.format(locale)),
                ])
            })
            .collect();
        let ctx = context! {
            transaction_id => s.transaction_id.to_string(),
            provider_ref => s.provider_ref.clone().unwrap_or_default(),
            creditor_name => s.creditor_name.clone(),
            creditor_fiscal_code => s.creditor_fiscal_code.clone(),
            payer_name => s.payer_name.clone(),
            payer_fiscal_code => s.payer_fiscal_code.clone().unwrap_or_default(),
            method => s.method_kind.label(locale),
            date => date,
            timezone => "Europe/Rome",
            items => Value::from(items),
            total => s.total.format(locale),
            returned => s.returned.map(|m| m.format(locale)).unwrap_or_default(),
            awaiting_verification => s.status == TxStatus::Reported,
        };
        let render = |part: &str| -> payments_core::Result<String> {
            let name = format!("{}/{kind}.{part}", locale.tag());
            self.env
                .get_template(&name)
                .and_then(|t| t.render(&ctx))
                .map_err(template_error)
        };
        Ok(RenderedMail {
            subject: render("subject")?.trim().to_owned(),
            text: render("txt")?,
            html: render("html")?,
        })
    }
}

/// The values the templates see, listed for documentation and for hosts writing their own.
pub fn template_variables() -> BTreeMap<&'static str, &'static str> {
    [
        ("transaction_id", "our payment identifier"),
        ("provider_ref", "the provider's reference (may be empty)"),
        ("creditor_name", "the public body"),
        ("creditor_fiscal_code", "its fiscal code"),
        ("payer_name", "the payer"),
        (
            "payer_fiscal_code",
            "the payer's fiscal code (may be empty)",
        ),
        ("method", "the method, in the mail's language"),
        ("date", "date and time of the payment in Europe/Rome"),
        ("timezone", "\"Europe/Rome\""),
        ("items", "a list of {module, reason, payment_type, amount}"),
        ("total", "the total, formatted for the language"),
        (
            "returned",
            "for a refund, the amount given back; for a double payment, the amount to give back",
        ),
        (
            "awaiting_verification",
            "true for a reported bank transfer not yet verified",
        ),
    ]
    .into()
}
