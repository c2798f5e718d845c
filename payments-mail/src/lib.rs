#![doc = include_str!("../README.md")]

mod templates;

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use payments_core::{Error, Notification, Notifier, Reminder, Result};

pub use templates::{RenderedMail, TEMPLATE_NAMES, Templates, template_variables};

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Delivers notifications as email. See the crate documentation.
pub struct MailNotifier {
    transport: Transport,
    from: Mailbox,
    domain: String,
    templates: Templates,
    /// Where the mail goes, with no credentials, for `Debug`.
    describe: String,
}

impl fmt::Debug for MailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailNotifier")
            .field("transport", &self.describe)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmtpSecurity {
    /// TLS from the first byte (usually port 465).
    ImplicitTls,
    /// A plain connection upgraded with STARTTLS, required (usually port 587).
    StartTls,
    /// No encryption: only for a relay on the same machine or network.
    PlainDangerous,
}

/// An SMTP server given piece by piece instead of as a URL.
#[derive(Clone)]
struct SmtpServer {
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<(String, String)>,
}

/// Builds a [`MailNotifier`].
pub struct MailNotifierBuilder {
    from: String,
    smtp_url: Option<String>,
    smtp: Option<SmtpServer>,
    file: Option<PathBuf>,
    domain: Option<String>,
    templates: Templates,
}

impl fmt::Debug for MailNotifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailNotifierBuilder")
            .field("from", &self.from)
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "[REDACTED]"))
            .field(
                "smtp",
                &self.smtp.as_ref().map(|s| (&s.host, s.port, s.security)),
            )
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl MailNotifierBuilder {
    /// A builder sending as `from` (`"Comune di Esempio <pagamenti@comune.example.it>"`).
    pub fn new(from: impl Into<String>) -> Self {
        MailNotifierBuilder {
            from: from.into(),
            smtp_url: None,
            smtp: None,
            file: None,
            domain: None,
            templates: Templates::default(),
        }
    }

    /// Sends over SMTP: `smtps://user:pass@host:465` (implicit TLS),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtp://host:25` (plain, for
    /// a local relay). Credentials in the URL never show in `Debug` or errors.
    pub fn smtp_url(mut self, url: impl Into<String>) -> Self {
        self.smtp_url = Some(url.into());
        self
    }

    /// Sends over SMTP to `host:port`, secured as `security`: the builder's way to say what
    /// [`MailNotifierBuilder::smtp_url`] says in a URL.
    pub fn smtp(mut self, host: impl Into<String>, port: u16, security: SmtpSecurity) -> Self {
        self.smtp = Some(SmtpServer {
            host: host.into(),
            port,
            security,
            credentials: None,
        });
        self
    }

    /// Authenticates to the server given with [`MailNotifierBuilder::smtp`]. The password
    /// never shows in `Debug` or errors.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        if let Some(s) = &mut self.smtp {
            s.credentials = Some((user.into(), password.into()));
        }
        self
    }

    /// Writes each message as an `.eml` file in `dir` (created by [`build`](Self::build) if
    /// missing), for development.
    pub fn file(mut self, dir: impl Into<PathBuf>) -> Self {
        self.file = Some(dir.into());
        self
    }

    /// The domain of Message-IDs (by default the sender's).
    pub fn message_id_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// The templates, to override some with [`Templates::set`].
    pub fn templates_mut(&mut self) -> &mut Templates {
        &mut self.templates
    }

    /// Builds the notifier; refuses a bad sender or URL, or both a URL and a directory.
    pub fn build(self) -> Result<MailNotifier> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|_| Error::invalid("from", "not an email address"))?;
        let chosen = usize::from(self.smtp_url.is_some())
            + usize::from(self.smtp.is_some())
            + usize::from(self.file.is_some());
        if chosen != 1 {
            return Err(Error::invalid(
                "transport",
                "set exactly one of an SMTP URL, an SMTP server or a directory",
            ));
        }
        let (transport, describe) = if let Some(url) = self.smtp_url {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
                .map_err(|_| Error::invalid("smtp_url", "not an smtp:// or smtps:// URL"))?
                .build();
            let host = url
                .split_once("://")
                .map(|(scheme, rest)| {
                    format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or(rest))
                })
                .unwrap_or_default();
            (Transport::Smtp(transport), host)
        } else if let Some(server) = self.smtp {
            type Smtp = AsyncSmtpTransport<Tokio1Executor>;
            let builder = match server.security {
                SmtpSecurity::ImplicitTls => Smtp::relay(&server.host),
                SmtpSecurity::StartTls => Smtp::starttls_relay(&server.host),
                SmtpSecurity::PlainDangerous => Ok(Smtp::builder_dangerous(&server.host)),
            }
            .map_err(|_| Error::invalid("smtp", "not a host TLS can verify"))?
            .port(server.port);
            let builder = match server.credentials {
                Some((user, password)) => builder.credentials(Credentials::new(user, password)),
                None => builder,
            };
            let describe = format!(
                "smtp {}:{} ({:?})",
                server.host, server.port, server.security
            );
            (Transport::Smtp(builder.build()), describe)
        } else {
            let dir = self.file.unwrap_or_default();
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::invalid("file", format!("cannot create {}: {e}", dir.display()))
            })?;
            let describe = format!("files in {}", dir.display());
            (Transport::File(AsyncFileTransport::new(dir)), describe)
        };
        let domain = self
            .domain
            .unwrap_or_else(|| from.email.domain().to_owned());
        Ok(MailNotifier {
            transport,
            from,
            domain,
            templates: self.templates,
            describe,
        })
    }
}

impl MailNotifier {
    /// Starts building a notifier sending as `from`.
    pub fn builder(from: impl Into<String>) -> MailNotifierBuilder {
        MailNotifierBuilder::new(from)
    }

    /// The Message-ID of the mail that carries `n`: the same on every attempt.
    pub fn message_id(&self, n: &Notification) -> String {
        format!("<{}@{}>", n.id, self.domain)
    }

    /// The email for `n`, as it would be sent. A payer's receipt carries the receipt as a
    /// PDF attachment ([`payments_pdf::receipt_pdf`]), in their language.
    pub fn message(&self, n: &Notification) -> Result<Message> {
        let mail = self.templates.render(n)?;
        let to: Mailbox =
            n.to.parse()
                .map_err(|_| permanent(format!("not an email address: {}", n.to)))?;
        let to = if n.kind == payments_core::NotificationKind::Receipt {
            Mailbox::new(Some(n.summary.payer_name.clone()), to.email)
        } else {
            to
        };
        let body = MultiPart::alternative_plain_html(mail.text, mail.html);
        let body = if n.kind == payments_core::NotificationKind::Receipt {
            let pdf = payments_pdf::receipt_pdf(&n.summary, n.locale)
                .map_err(|e| permanent(format!("writing the receipt: {e}")))?;
            let name = match n.locale {
                payments_core::Locale::En => format!("receipt-{}.pdf", n.summary.transaction_id),
                _ => format!("ricevuta-{}.pdf", n.summary.transaction_id),
            };
            MultiPart::mixed()
                .multipart(body)
                .singlepart(pdf_part(name, pdf))
        } else {
            body
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .message_id(Some(self.message_id(n)))
            .multipart(body)
            .map_err(|e| permanent(format!("building the message: {e}")))
    }

    /// The email for a reminder of a debt position's due date, as it would be sent: the
    /// text of [`render_reminder`](payments_core::render_reminder) in the payer's language,
    /// with the position's pagoPA notice attached as a PDF ([`payments_pdf::notice_pdf`]).
    pub fn reminder_message(&self, r: &Reminder) -> Result<Message> {
        let rendered = payments_core::render_reminder(r);
        let to: Mailbox =
            r.to.parse()
                .map_err(|_| permanent(format!("not an email address: {}", r.to)))?;
        let to = Mailbox::new(Some(r.position.payer.name.clone()), to.email);
        let pdf = payments_pdf::notice_pdf(&r.creditor, &r.position, r.locale)
            .map_err(|e| permanent(format!("writing the notice: {e}")))?;
        let name = match r.locale {
            payments_core::Locale::En => format!("notice-{}.pdf", r.position.key),
            _ => format!("avviso-{}.pdf", r.position.key),
        };
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(format!("<{}@{}>", r.id, self.domain)))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(rendered.text))
                    .singlepart(pdf_part(name, pdf)),
            )
            .map_err(|e| permanent(format!("building the message: {e}")))
    }

    async fn deliver(&self, message: Message) -> Result<()> {
        match &self.transport {
            Transport::Smtp(t) => {
                t.send(message)
                    .await
                    .map(drop)
                    .map_err(|e| Error::Notification {
                        message: format!("smtp: {e}"),
                        // A 5xx answer will not change by itself; anything else (a server that is
                        // down, a 4xx answer) may.
                        transient: !e.is_permanent(),
                        source: Some(Box::new(e)),
                    })
            }
            Transport::File(t) => {
                t.send(message)
                    .await
                    .map(drop)
                    .map_err(|e| Error::Notification {
                        message: format!("writing the mail: {e}"),
                        transient: true,
                        source: Some(Box::new(e)),
                    })
            }
        }
    }
}

/// A PDF attachment.
fn pdf_part(name: String, pdf: Vec<u8>) -> SinglePart {
    Attachment::new(name).body(
        pdf,
        ContentType::parse("application/pdf").expect("a valid content type"),
    )
}

fn permanent(message: String) -> Error {
    Error::Notification {
        message,
        transient: false,
        source: None,
    }
}

#[async_trait]
impl Notifier for MailNotifier {
    async fn send(&self, n: &Notification) -> Result<()> {
        let message = self.message(n)?;
        self.deliver(message).await
    }

    async fn remind(&self, r: &Reminder) -> Result<()> {
        let message = self.reminder_message(r)?;
        self.deliver(message).await
    }
}
