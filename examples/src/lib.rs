#![doc = include_str!("../README.md")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use payments_core::MethodKind;
use payments_core::{Creditor, Error, Payments, Result};
use payments_gateways::bank_transfer::BankTransferGateway;
use payments_gateways::nexi::NexiGateway;
use payments_gateways::pagopa::PagoPaGateway;
use payments_gateways::sandbox::SandboxGateway;
use payments_gateways::stripe::StripeGateway;
use payments_sqlx::SqlxStore;
use secrecy::{ExposeSecret, SecretString};

pub mod admin;
pub mod auth;
pub mod citizen;
pub mod modules;
pub mod positions;
mod seed;
mod views;

use auth::{Accounts, DemoAccounts, Sessions};
use modules::DemoModule;
pub use views::{PageError, PageResult};

/// Where the portal listens, keeps its data and sends its mail. `Debug` says whether the
/// database and SMTP URLs are set, never what they are (they may carry passwords).
#[derive(Clone)]
pub struct Config {
    /// The address to listen on (`PORTAL_ADDR`, default `127.0.0.1:3000`).
    pub addr: SocketAddr,
    /// The address browsers and providers reach the portal at (`PUBLIC_URL`, default
    /// `http://` and the address).
    pub public_url: String,
    /// The directory of the SQLite file, the mail files and the modules' data
    /// (`PORTAL_DATA`, default `target/portal`).
    pub data_dir: PathBuf,
    /// The database (`DATABASE_URL`); `None` is a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// The SMTP server (`SMTP_URL`, such as `smtp://localhost:2525`); `None` writes each
    /// mail as an `.eml` file under `data_dir/mail`.
    pub smtp_url: Option<String>,
    /// How often the background worker delivers the outbox.
    pub worker_interval: Duration,
    /// When the outbox tries a message again, and when it gives up (the library's default:
    /// 30 s doubling to 1 h, 10 attempts).
    pub retry: payments_core::RetryPolicy,
    /// Stripe, for card and SEPA direct debit, when its keys are given
    /// (`STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`).
    pub stripe: Option<StripeKeys>,
    /// Nexi XPay, for card and MyBank, when its terminal is given (`NEXI_ALIAS`,
    /// `NEXI_MAC_KEY`, and `NEXI_BASE_URL` for production).
    pub nexi: Option<NexiKeys>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &set(&self.database_url))
            .field("smtp_url", &set(&self.smtp_url))
            .field("worker_interval", &self.worker_interval)
            .field("stripe", &self.stripe)
            .field("nexi", &self.nexi)
            .finish_non_exhaustive()
    }
}

/// A Stripe account's keys. `Debug` shows neither.
#[derive(Clone)]
pub struct StripeKeys {
    /// The secret API key (`sk_…`).
    pub secret_key: SecretString,
    /// The signing secret of the webhook endpoint `POST /webhooks/stripe` (`whsec_…`).
    pub webhook_secret: SecretString,
}

impl std::fmt::Debug for StripeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeKeys { .. }")
    }
}

/// A Nexi XPay terminal. `Debug` hides the MAC key.
#[derive(Clone)]
pub struct NexiKeys {
    /// The terminal's alias (`ALIAS_WEB_…`).
    pub alias: String,
    /// The terminal's MAC key.
    pub mac_key: SecretString,
    /// XPay's address: its test environment unless given
    /// ([`payments_gateways::nexi::PRODUCTION_BASE`] in production).
    pub base_url: String,
}

impl std::fmt::Debug for NexiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexiKeys")
            .field("alias", &self.alias)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// SQLite, mail files and the modules' data under `data_dir`; the portal at `addr`.
    pub fn local(data_dir: impl AsRef<Path>, addr: SocketAddr) -> Config {
        Config {
            addr,
            public_url: format!("http://{addr}"),
            data_dir: data_dir.as_ref().to_owned(),
            database_url: None,
            smtp_url: None,
            worker_interval: Duration::from_millis(500),
            retry: payments_core::RetryPolicy::default(),
            stripe: None,
            nexi: None,
        }
    }

    /// Reads `PORTAL_ADDR`, `PUBLIC_URL`, `PORTAL_DATA`, `DATABASE_URL` and `SMTP_URL`.
    pub fn from_env() -> Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let addr = var("PORTAL_ADDR")
            .unwrap_or_else(|| "127.0.0.1:3000".into())
            .parse()
            .map_err(|_| {
                Error::invalid("PORTAL_ADDR", "must be host:port, such as 127.0.0.1:3000")
            })?;
        let mut config = Config::local(
            var("PORTAL_DATA").unwrap_or_else(|| "target/portal".into()),
            addr,
        );
        if let Some(url) = var("PUBLIC_URL") {
            config.public_url = url.trim_end_matches('/').to_owned();
        }
        config.database_url = var("DATABASE_URL");
        config.smtp_url = var("SMTP_URL");
        if let (Some(secret_key), Some(webhook_secret)) =
            (var("STRIPE_SECRET_KEY"), var("STRIPE_WEBHOOK_SECRET"))
        {
            config.stripe = Some(StripeKeys {
                secret_key: secret_key.into(),
                webhook_secret: webhook_secret.into(),
            });
        }
        if let (Some(alias), Some(mac_key)) = (var("NEXI_ALIAS"), var("NEXI_MAC_KEY")) {
            config.nexi = Some(NexiKeys {
                alias,
                mac_key: mac_key.into(),
                base_url: var("NEXI_BASE_URL")
                    .unwrap_or_else(|| payments_gateways::nexi::TEST_BASE.into()),
            });
        }
        Ok(config)
    }

    /// The directory the mail files go to when there is no SMTP server.
    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }
}

/// The portal: the payments service, its gateways, the demo modules and the web pages.
/// Cheap to clone.
#[derive(Clone)]
pub struct Portal {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    payments: Payments,
    store: Arc<SqlxStore>,
    sandbox: Arc<SandboxGateway>,
    bank: Arc<BankTransferGateway>,
    pagopa: Arc<PagoPaGateway>,
    creditor: Creditor,
    modules: Vec<Arc<DemoModule>>,
    accounts: Arc<dyn Accounts>,
    sessions: Sessions,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("public_url", &self.inner.config.public_url)
            .field("creditor", &self.inner.creditor.name)
            .finish_non_exhaustive()
    }
}

impl Portal {
    /// Opens the store (migrating it), builds the payments service with its gateways,
    /// notifier and the modules' listeners, and seeds the demo body. Starting again on the
    /// same data keeps everything: the seed only writes what is missing or changed.
    pub async fn new(config: Config) -> Result<Portal> {
        Portal::with_accounts(config, Arc::new(DemoAccounts::new())).await
    }

    /// As [`Portal::new`], with the host's own [`Accounts`].
    pub async fn with_accounts(config: Config, accounts: Arc<dyn Accounts>) -> Result<Portal> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::storage("creating the data directory", e))?;
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", config.data_dir.join("portal.db").display()),
        };
        let store = Arc::new(SqlxStore::connect(&url).await?);
        let mail = match &config.smtp_url {
            Some(url) => {
                payments_mail::MailNotifier::builder(seed::MAIL_FROM).smtp_url(url.clone())
            }
            None => payments_mail::MailNotifier::builder(seed::MAIL_FROM).file(config.mail_dir()),
        }
        .build()?;
        // The sandbox plays a provider's hosted page; this portal serves that page too.
        let sandbox = Arc::new(
            SandboxGateway::new(seed::SANDBOX_KEY)
                .with_base_url(format!("{}/sandbox", config.public_url))
                .with_kinds(seed::SANDBOX_KINDS),
        );
        let bank = Arc::new(BankTransferGateway::new());
        let pagopa = Arc::new(PagoPaGateway::new(store.clone(), seed::PAGOPA_KEY)?);
        let modules = modules::demo_modules(&config.data_dir)?;
        let mut builder = Payments::builder()
            .store(store.clone())
            .gateway(sandbox.clone())
            .gateway(bank.clone())
            .gateway(pagopa.clone())
            .notice_issuer(pagopa.clone())
            .listener(positions::MODULE, Arc::new(positions::NoticesModule))
            .notifier(Arc::new(mail))
            .retry_policy(config.retry)
            .return_url(format!("{}/return", config.public_url));
        for module in &modules {
            builder = builder.listener(module.name, module.clone());
        }
        // The card providers, when configured; their methods are enabled beside the
        // sandbox's, and the checkout offers each.
        let mut providers = Vec::new();
        if let Some(keys) = &config.stripe {
            let stripe = StripeGateway::new(
                keys.secret_key.expose_secret(),
                keys.webhook_secret.expose_secret(),
            )?
            .with_methods(&[MethodKind::Card, MethodKind::SepaDirectDebit])?;
            builder = builder.gateway(Arc::new(stripe));
            providers.push((
                payments_gateways::stripe::GATEWAY_ID,
                [MethodKind::Card, MethodKind::SepaDirectDebit],
            ));
        }
        if let Some(keys) = &config.nexi {
            let nexi = NexiGateway::new(
                keys.alias.as_str(),
                keys.mac_key.expose_secret(),
                format!("{}/webhooks/nexi", config.public_url),
            )?
            .with_base_url(keys.base_url.as_str())
            .with_methods(&[MethodKind::Card, MethodKind::AccountDebit])?;
            builder = builder.gateway(Arc::new(nexi));
            providers.push((
                payments_gateways::nexi::GATEWAY_ID,
                [MethodKind::Card, MethodKind::AccountDebit],
            ));
        }
        let payments = builder.build()?;
        let creditor = seed::install(&payments, &bank, &pagopa).await?;
        for (gateway, kinds) in providers {
            seed::enable(&payments, &creditor, gateway, &kinds).await?;
        }
        for module in &modules {
            module.seed(accounts.as_ref())?;
        }
        positions::seed(&payments, creditor.id, accounts.as_ref()).await?;
        Ok(Portal {
            inner: Arc::new(Inner {
                config,
                payments,
                store,
                sandbox,
                bank,
                pagopa,
                creditor,
                modules,
                accounts,
                sessions: Sessions::default(),
            }),
        })
    }

    /// The payments service.
    pub fn payments(&self) -> &Payments {
        &self.inner.payments
    }

    /// The body the portal collects for.
    pub fn creditor(&self) -> &Creditor {
        &self.inner.creditor
    }

    /// The sandbox gateway (its sessions are the demo's hosted pages).
    pub fn sandbox(&self) -> &Arc<SandboxGateway> {
        &self.inner.sandbox
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The demo module named `name` (`tributi`, `segreteria`, `edilizia`, `servizi`).
    pub fn module(&self, name: &str) -> Option<&Arc<DemoModule>> {
        self.inner.modules.iter().find(|m| m.name == name)
    }

    /// The web application: every page, the sandbox's hosted page and the webhooks.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(citizen::home))
            .route("/signin", get(auth::signin_page).post(auth::signin))
            .route("/signout", post(auth::signout))
            .route("/lang/{code}", get(auth::language))
            .route("/modules/{module}/{key}", post(citizen::add_due))
            .route("/free", get(citizen::free_page).post(citizen::add_free))
            .route("/cart", get(citizen::cart))
            .route("/cart/remove", post(citizen::remove))
            .route("/checkout", post(citizen::checkout))
            .route(
                "/sandbox/pay/{session}",
                get(citizen::sandbox_page).post(citizen::sandbox_outcome),
            )
            .route("/return", get(citizen::provider_return))
            .route("/payments/{id}", get(citizen::payment))
            .route("/payments/{id}/report", post(citizen::report))
            .route("/history", get(citizen::history))
            .route("/positions/{id}/notice.pdf", get(positions::notice))
            .route("/positions/{id}/{option}", post(positions::add_option))
            .route("/payments/{id}/receipt.pdf", get(positions::receipt))
            .route("/admin/positions", get(positions::positions))
            .route("/admin/positions/import", post(positions::import))
            .route("/admin/positions/{id}/notice.pdf", get(positions::notice))
            .route(
                "/admin/positions/{id}/invalidate",
                post(positions::invalidate),
            )
            .route("/admin", get(admin::movements))
            .route("/admin/export.csv", get(admin::export_csv))
            .route("/admin/export.xlsx", get(admin::export_xlsx))
            .route("/admin/payments/{id}", get(admin::detail))
            .route("/admin/payments/{id}/{decision}", post(admin::decide))
            .route(
                "/admin/statements",
                get(admin::statements).post(admin::import),
            )
            .route("/admin/outbox", get(admin::outbox))
            .route("/admin/outbox/{id}/retry", post(admin::retry))
            .route("/admin/exceptions", get(admin::exceptions))
            .route(
                "/admin/exceptions/{id}/{action}",
                post(admin::act_on_exception),
            )
            .route("/webhooks/{gateway}", post(citizen::webhook))
            .route("/webhooks/pagopa/station", post(citizen::station))
            .fallback(views::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                auth::session_layer,
            ))
            .with_state(self.clone())
    }

    /// Serves the portal on `listener`, with the outbox worker (receipts, notices, the
    /// modules' settlements, expiry and the reconciliation sweep) in the background, until
    /// Ctrl-C.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let worker = self.clone();
        let interval = self.inner.config.worker_interval;
        tokio::spawn(async move {
            worker
                .payments()
                .run_worker(interval, std::future::pending::<()>())
                .await
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_shows_no_password_or_key() {
        let mut config = Config::local("/tmp/portal", "127.0.0.1:3000".parse().unwrap());
        config.database_url = Some("postgres://portal:db-secret@db/portal".into());
        config.smtp_url = Some("smtps://mailer:smtp-secret@smtp.example.it:465".into());
        config.stripe = Some(StripeKeys {
            secret_key: "sk_test_stripe-secret".to_owned().into(),
            webhook_secret: "whsec_hook-secret".to_owned().into(),
        });
        config.nexi = Some(NexiKeys {
            alias: "ALIAS_WEB_1".into(),
            mac_key: "nexi-secret".to_owned().into(),
            base_url: payments_gateways::nexi::TEST_BASE.into(),
        });
        let debug = format!("{config:?}");
        for secret in [
            "db-secret",
            "smtp-secret",
            "stripe-secret",
            "hook-secret",
            "nexi-secret",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains("ALIAS_WEB_1") && debug.contains("\"set\""),
            "{debug}"
        );
    }
}

/// The snippets of the workspace's README, compiled (and the runnable ones run) as doctests
/// of this crate, which depends on every other.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;
