#![doc = include_str!("../README.md")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use payments_core::MethodKind;
use payments_core::{Creditor, CreditorId, Error, Payments, Result};
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
pub mod overview;
pub mod positions;
mod seed;
pub mod sessions;
mod views;

use auth::{Accounts, DemoAccounts};
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
    /// 30 s doubling to 1 h, 10 attempts); how long an instance holds the messages it
    /// claimed (`PORTAL_OUTBOX_LEASE_SECS`, default 300 s: after a crash, its messages wait
    /// that long before another instance sends them).
    pub retry: payments_core::RetryPolicy,
    /// Each body's own card-provider accounts, by the body's slug (`comune`, `unione`): a
    /// body with none pays by card through its own sandbox account.
    pub accounts: BTreeMap<String, ProviderAccounts>,
    /// The credential pagoPA's node presents to the station (`PAGOPA_STATION_KEY`, 16
    /// characters or more); unset, one is generated once per data directory
    /// (`data_dir/secrets/pagopa-station-key`, readable by its owner only).
    pub pagopa_station_key: Option<String>,
    /// pagoPA's reporting-flow service (FdR) for bodies: its address and subscription key
    /// (`PAGOPA_FDR_URL`, `PAGOPA_FDR_KEY`). Without them, flows are neither fetched nor
    /// shown as fetched; those recorded are still reconciled.
    pub fdr: Option<(String, SecretString)>,
    /// How often the worker fetches new reporting flows and reconciles, and folds the
    /// search's summary changes (an hour by default; `PORTAL_RECONCILE_SECS`).
    pub reconcile_interval: Duration,
    /// The key the sandbox accounts sign their callbacks with (`SANDBOX_SIGNING_KEY`);
    /// unset, generated once per data directory as the station key is.
    pub sandbox_key: Option<String>,
    /// Whether a body with a real card provider (Stripe, Nexi) also offers the sandbox's
    /// methods (`PORTAL_SANDBOX=1`); a body with none always does, as its only card account.
    pub sandbox_beside_providers: bool,
    /// How long a signed-in session lasts without a request (`PORTAL_SESSION_IDLE_SECS`,
    /// default 30 minutes); sessions are kept in the portal's database.
    pub session_idle: Duration,
    /// How long a payment started and not finished holds its items before it expires
    /// (`PORTAL_TRANSACTION_TTL_SECS`, default 30 minutes, the library's).
    pub transaction_ttl: Duration,
}

/// A body's own contracts with the card providers: each is a gateway of its own, with an
/// id that names the body (`stripe`, `stripe-unione`), so callbacks reach the right
/// verifier at `/webhooks/{id}`.
#[derive(Clone, Debug, Default)]
pub struct ProviderAccounts {
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
            .field("accounts", &self.accounts)
            .field("pagopa_station_key", &set(&self.pagopa_station_key))
            .field("fdr", &self.fdr.as_ref().map(|(url, _)| url))
            .field("reconcile_interval", &self.reconcile_interval)
            .field("sandbox_key", &set(&self.sandbox_key))
            .finish_non_exhaustive()
    }
}

/// A Stripe account's keys. `Debug` shows neither.
#[derive(Clone)]
pub struct StripeKeys {
    /// The secret API key (`sk_…`).
    pub secret_key: SecretString,
    /// The signing secret of the account's webhook endpoint, `POST /webhooks/stripe` (or
    /// `/webhooks/stripe-{body}` for a body other than the municipality) (`whsec_…`).
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
            accounts: BTreeMap::new(),
            pagopa_station_key: None,
            fdr: None,
            reconcile_interval: Duration::from_secs(3600),
            sandbox_key: None,
            session_idle: Duration::from_secs(30 * 60),
            transaction_ttl: Duration::from_secs(30 * 60),
            sandbox_beside_providers: false,
        }
    }

    /// The secret `name`: `given`, or the one generated for this data directory the first
    /// time it was asked (random, kept in `data_dir/secrets/{name}`, mode 0600). Never a
    /// constant of the source, so no one can forge a receipt from reading it.
    pub fn secret(&self, name: &str, given: Option<&str>) -> std::io::Result<String> {
        let weak = |s: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the secret {name} has fewer than 16 characters ({} given)",
                    s.len()
                ),
            )
        };
        if let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) {
            if given.len() < 16 {
                return Err(weak(given));
            }
            return Ok(given.to_owned());
        }
        let dir = self.data_dir.join("secrets");
        let path = dir.join(name);
        let read = |path: &Path| -> std::io::Result<String> {
            let kept = std::fs::read_to_string(path)?.trim().to_owned();
            // Never an empty or short key that anyone could guess.
            if kept.len() < 32 {
                return Err(weak(&kept));
            }
            Ok(kept)
        };
        if path.exists() {
            return read(&path);
        }
        std::fs::create_dir_all(&dir)?;
        // Two random UUIDs: 244 bits from the system's generator, written whole to a file of
        // its own and then linked in place, so no one ever reads half a key, and a second
        // instance starting at the same moment keeps the first one's.
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let draft = dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        {
            let mut file = options.open(&draft)?;
            std::io::Write::write_all(&mut file, secret.as_bytes())?;
            file.sync_all()?;
        }
        let linked = std::fs::hard_link(&draft, &path);
        let _ = std::fs::remove_file(&draft);
        match linked {
            Ok(()) => Ok(secret),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
            Err(e) => Err(e),
        }
    }

    /// The provider accounts of the body `slug`, to fill in.
    pub fn accounts_mut(&mut self, slug: &str) -> &mut ProviderAccounts {
        self.accounts.entry(slug.to_owned()).or_default()
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
        config.pagopa_station_key = var("PAGOPA_STATION_KEY");
        match (var("PAGOPA_FDR_URL"), var("PAGOPA_FDR_KEY")) {
            (Some(url), Some(key)) => config.fdr = Some((url, key.into())),
            (None, None) => {}
            _ => {
                return Err(Error::invalid(
                    "PAGOPA_FDR_URL",
                    "PAGOPA_FDR_URL and PAGOPA_FDR_KEY go together: set both, or neither",
                ));
            }
        }
        config.sandbox_key = var("SANDBOX_SIGNING_KEY");
        config.sandbox_beside_providers = var("PORTAL_SANDBOX").as_deref() == Some("1");
        // A duration in whole seconds, more than none.
        let seconds = |name: &str| -> Result<Option<Duration>> {
            var(name)
                .map(|v| {
                    v.parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .map(Duration::from_secs)
                        .ok_or_else(|| {
                            Error::invalid(name, "must be a number of seconds, such as 1800")
                        })
                })
                .transpose()
        };
        if let Some(d) = seconds("PORTAL_SESSION_IDLE_SECS")? {
            config.session_idle = d;
        }
        if let Some(d) = seconds("PORTAL_OUTBOX_LEASE_SECS")? {
            config.retry.lease = d;
        }
        if let Some(d) = seconds("PORTAL_TRANSACTION_TTL_SECS")? {
            config.transaction_ttl = d;
        }
        if let Some(d) = seconds("PORTAL_RECONCILE_SECS")? {
            config.reconcile_interval = d;
        }
        // The municipality's accounts have the plain names; each other body's carry its
        // slug in front (`UNIONE_STRIPE_SECRET_KEY`, `UNIONE_NEXI_ALIAS`, ...).
        for body in seed::BODIES {
            let prefix = if body.is_first() {
                String::new()
            } else {
                format!("{}_", body.slug.to_uppercase())
            };
            let var = |name: &str| var(&format!("{prefix}{name}"));
            let mut accounts = ProviderAccounts::default();
            if let (Some(secret_key), Some(webhook_secret)) =
                (var("STRIPE_SECRET_KEY"), var("STRIPE_WEBHOOK_SECRET"))
            {
                accounts.stripe = Some(StripeKeys {
                    secret_key: secret_key.into(),
                    webhook_secret: webhook_secret.into(),
                });
            }
            if let (Some(alias), Some(mac_key)) = (var("NEXI_ALIAS"), var("NEXI_MAC_KEY")) {
                accounts.nexi = Some(NexiKeys {
                    alias,
                    mac_key: mac_key.into(),
                    base_url: var("NEXI_BASE_URL")
                        .unwrap_or_else(|| payments_gateways::nexi::TEST_BASE.into()),
                });
            }
            if accounts.stripe.is_some() || accounts.nexi.is_some() {
                config.accounts.insert(body.slug.to_owned(), accounts);
            }
        }
        Ok(config)
    }

    /// The directory the mail files go to when there is no SMTP server.
    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }
}

/// The portal: the payments service, its gateways, the bodies it collects for with their
/// demo modules, and the web pages. Cheap to clone.
#[derive(Clone)]
pub struct Portal {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    payments: Payments,
    store: Arc<SqlxStore>,
    bank: Arc<BankTransferGateway>,
    pagopa: Arc<PagoPaGateway>,
    bodies: Vec<Arc<Body>>,
    accounts: Arc<dyn Accounts>,
    sessions: sessions::SqlSessionStore,
}

/// What [`Portal::reconcile`] did.
#[derive(Debug, Clone, Default)]
pub struct Reconciled {
    /// The flows fetched when FdR is configured, or why they could not be.
    pub synced: Option<std::result::Result<payments_gateways::pagopa::FlowSync, String>>,
    /// The reconciliation.
    pub report: payments_core::ReconcileReport,
}

impl Reconciled {
    /// Whether anything new was fetched or recorded.
    pub fn changed(&self) -> bool {
        self.synced.as_ref().is_some_and(|s| match s {
            Ok(s) => s.stored > 0 || s.replaced > 0 || s.unreadable > 0,
            Err(_) => true,
        }) || self.report.exceptions > 0
            || self.report.paid > 0
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let fetched = match &self.synced {
            Some(Ok(s)) => format!(
                "{} flows listed ({} new, {} replacing a revision, {} unreadable), ",
                s.listed, s.stored, s.replaced, s.unreadable
            ),
            Some(Err(e)) => format!("FdR not reached ({e}), "),
            None => String::new(),
        };
        format!(
            "{fetched}{} flows reconciled, {} closed, {} new exceptions",
            self.report.flows, self.report.paid, self.report.exceptions
        )
    }
}

/// One body the portal collects for: its creditor record, its own sandbox account (and
/// card-provider accounts when configured), its payment types, its modules and its
/// operators. The bodies share the portal, the database, the bank-transfer gateway and
/// the pagoPA station (one intermediary serving both), each with its own IBAN and
/// pagoPA settings.
pub struct Body {
    /// Its short name, in URLs and environment variables: `comune`, `unione`.
    pub slug: &'static str,
    /// Its creditor record.
    pub creditor: Creditor,
    sandbox: Arc<SandboxGateway>,
    modules: Vec<Arc<DemoModule>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("slug", &self.slug)
            .field("creditor", &self.creditor.name)
            .finish_non_exhaustive()
    }
}

impl Body {
    /// Its demo modules.
    pub fn modules(&self) -> &[Arc<DemoModule>] {
        &self.modules
    }

    /// Its sandbox account (the demo's hosted card page).
    pub fn sandbox(&self) -> &Arc<SandboxGateway> {
        &self.sandbox
    }
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("public_url", &self.inner.config.public_url)
            .field("bodies", &self.inner.bodies)
            .finish_non_exhaustive()
    }
}

impl Portal {
    /// The credential pagoPA's node presents to the station (from `PAGOPA_STATION_KEY`, or
    /// generated for the data directory): for the host's API gateway or proxy to add, and
    /// for tests.
    pub fn station_key(&self) -> String {
        self.inner
            .config
            .secret(
                "pagopa-station-key",
                self.inner.config.pagopa_station_key.as_deref(),
            )
            .unwrap_or_default()
    }
    /// Opens the store (migrating it), builds the payments service with its gateways,
    /// notifier and the modules' listeners, and seeds the demo bodies. Starting again on
    /// the same data keeps everything: the seed only writes what is missing or changed.
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
        let sessions = sessions::SqlSessionStore::new(store.pool().clone());
        sessions
            .migrate()
            .await
            .map_err(|e| Error::storage("creating the sessions' table", e))?;
        let mail = match &config.smtp_url {
            Some(url) => {
                payments_mail::MailNotifier::builder(seed::MAIL_FROM).smtp_url(url.clone())
            }
            None => payments_mail::MailNotifier::builder(seed::MAIL_FROM).file(config.mail_dir()),
        }
        .build()?;
        let bank = Arc::new(BankTransferGateway::new());
        let secret = |name: &str, given: &Option<String>| {
            config.secret(name, given.as_deref()).map_err(|e| {
                Error::invalid(
                    "data_dir",
                    format!("its secrets cannot be read or written: {e}"),
                )
            })
        };
        let station_key = secret("pagopa-station-key", &config.pagopa_station_key)?;
        let sandbox_key = secret("sandbox-signing-key", &config.sandbox_key)?;
        let mut pagopa = PagoPaGateway::new(store.clone(), station_key)?;
        if let Some((url, key)) = &config.fdr {
            use secrecy::ExposeSecret;
            pagopa = pagopa.with_fdr(
                payments_gateways::pagopa::FdrClient::new(key.expose_secret())?.with_url(url)?,
            );
        }
        let pagopa = Arc::new(pagopa);
        let mut builder = Payments::builder()
            .store(store.clone())
            .gateway(bank.clone())
            .gateway(pagopa.clone())
            .notice_issuer(pagopa.clone())
            .listener(positions::MODULE, Arc::new(positions::NoticesModule))
            .notifier(Arc::new(mail))
            .retry_policy(config.retry)
            .transaction_ttl(config.transaction_ttl)
            .return_url(format!("{}/return", config.public_url));
        // Each body has its own accounts: a sandbox account (which plays a provider's
        // hosted page, served by this portal too) and, when configured, Stripe and Nexi.
        let mut bodies = Vec::new();
        let mut providers = Vec::new();
        for spec in seed::BODIES {
            let sandbox = Arc::new(
                SandboxGateway::new(spec.gateway_id(&sandbox_key))
                    .with_id(spec.gateway_id("sandbox"))
                    .with_base_url(format!(
                        "{}/hosted/{}",
                        config.public_url,
                        spec.gateway_id("sandbox")
                    ))
                    .with_kinds(seed::SANDBOX_KINDS),
            );
            builder = builder.gateway(sandbox.clone());
            let keys = config.accounts.get(spec.slug).cloned().unwrap_or_default();
            if let Some(keys) = &keys.stripe {
                let id = spec.gateway_id(payments_gateways::stripe::GATEWAY_ID);
                let kinds = [MethodKind::Card, MethodKind::SepaDirectDebit];
                let stripe = StripeGateway::new(
                    keys.secret_key.expose_secret(),
                    keys.webhook_secret.expose_secret(),
                )?
                .with_id(id.as_str())
                .with_methods(&kinds)?;
                builder = builder.gateway(Arc::new(stripe));
                providers.push((spec, id, 40, kinds));
            }
            if let Some(keys) = &keys.nexi {
                let id = spec.gateway_id(payments_gateways::nexi::GATEWAY_ID);
                let kinds = [MethodKind::Card, MethodKind::AccountDebit];
                let nexi = NexiGateway::new(
                    keys.alias.as_str(),
                    keys.mac_key.expose_secret(),
                    format!("{}/webhooks/{id}", config.public_url),
                )?
                .with_id(id.as_str())
                .with_base_url(keys.base_url.as_str())
                .with_methods(&kinds)?;
                builder = builder.gateway(Arc::new(nexi));
                providers.push((spec, id, 50, kinds));
            }
            let modules = modules::demo_modules(spec, &config.data_dir)?;
            for module in &modules {
                builder = builder.listener(module.name, module.clone());
            }
            bodies.push((spec, sandbox, modules));
        }
        let payments = builder.build()?;
        let mut installed = Vec::new();
        for (spec, sandbox, modules) in bodies {
            // The sandbox's methods only where no real card provider is configured, unless
            // asked for (PORTAL_SANDBOX=1): its "pay" button takes no money.
            let real = config
                .accounts
                .get(spec.slug)
                .is_some_and(|a| a.stripe.is_some() || a.nexi.is_some());
            let with_sandbox = !real || config.sandbox_beside_providers;
            let creditor = seed::install(&payments, spec, &bank, &pagopa, with_sandbox).await?;
            for module in &modules {
                module.seed(accounts.as_ref())?;
            }
            if spec.positions {
                positions::seed(&payments, creditor.id, accounts.as_ref()).await?;
            }
            installed.push(Arc::new(Body {
                slug: spec.slug,
                creditor,
                sandbox,
                modules,
            }));
        }
        // The card providers' methods are enabled beside the sandbox's; the checkout
        // offers each.
        for (spec, gateway, base, kinds) in providers {
            seed::enable(&payments, spec, &gateway, base, &kinds).await?;
        }
        Ok(Portal {
            inner: Arc::new(Inner {
                config,
                payments,
                store,
                bank,
                pagopa,
                bodies: installed,
                accounts,
                sessions,
            }),
        })
    }

    /// The payments service.
    pub fn payments(&self) -> &Payments {
        &self.inner.payments
    }

    /// Whether pagoPA's reporting flows are fetched (FdR configured).
    pub fn fetches_flows(&self) -> bool {
        self.inner.config.fdr.is_some()
    }

    /// Fetches `creditor`'s new reporting flows (when FdR is configured) and closes its
    /// accounting loop (flows to receipts, flows to the statement's credits, receipts never
    /// reported): what the worker does every `reconcile_interval`, and the flows page's
    /// button on demand.
    pub async fn reconcile(&self, creditor: CreditorId) -> payments_core::Result<Reconciled> {
        // FdR unavailable does not stop the reconciliation of what is recorded.
        let synced = if self.fetches_flows() {
            Some(
                self.inner
                    .pagopa
                    .sync_flows(self.payments(), creditor)
                    .await
                    .map_err(|e| e.to_string()),
            )
        } else {
            None
        };
        let report = self
            .payments()
            .reconcile_flows(
                &payments_core::Actor::System,
                creditor,
                &payments_core::ReconcileOptions::default(),
            )
            .await?;
        Ok(Reconciled { synced, report })
    }

    /// The bodies the portal collects for, the municipality first.
    pub fn bodies(&self) -> &[Arc<Body>] {
        &self.inner.bodies
    }

    /// The body with `slug` (`comune`, `unione`).
    pub fn body(&self, slug: &str) -> Option<&Arc<Body>> {
        self.inner.bodies.iter().find(|b| b.slug == slug)
    }

    /// The body of `creditor`.
    pub fn body_of(&self, creditor: CreditorId) -> Option<&Arc<Body>> {
        self.inner.bodies.iter().find(|b| b.creditor.id == creditor)
    }

    /// The municipality, the first body: its creditor.
    pub fn creditor(&self) -> &Creditor {
        &self.inner.bodies[0].creditor
    }

    /// The municipality's sandbox account (its sessions are the demo's hosted pages).
    pub fn sandbox(&self) -> &Arc<SandboxGateway> {
        &self.inner.bodies[0].sandbox
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The demo module named `name`, of whichever body (`tributi`, `segreteria`,
    /// `edilizia`, `servizi` of the municipality; `polizia` of the union).
    pub fn module(&self, name: &str) -> Option<&Arc<DemoModule>> {
        self.inner
            .bodies
            .iter()
            .flat_map(|b| b.modules.iter())
            .find(|m| m.name == name)
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
            .route("/body/{slug}", get(auth::choose_body))
            .route(
                "/hosted/{gateway}/pay/{session}",
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
            .route("/admin/overview", get(overview::overview))
            .route("/admin/flows", get(overview::flows))
            .route("/admin/flows.csv", get(overview::flows_csv))
            .route("/admin/flows/sync", post(overview::sync))
            .route("/admin", get(admin::movements))
            .route("/admin/export.csv", get(admin::export_csv))
            .route("/admin/export.xlsx", get(admin::export_xlsx))
            .route("/admin/export.jsonl", get(admin::export_jsonl))
            .route("/admin/payments/{id}", get(admin::detail))
            .route("/admin/receipts/{key}", get(admin::receipt_document))
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
            .layer(auth::session_manager(self))
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
        // New reporting flows fetched and the accounting loop closed, every so often; the
        // search's summaries folded.
        let reconciler = self.clone();
        let every = self.inner.config.reconcile_interval;
        tokio::spawn(async move {
            loop {
                for body in reconciler.bodies() {
                    match reconciler.reconcile(body.creditor.id).await {
                        Ok(done) => {
                            if done.changed() {
                                eprintln!("portal: {}: {}", body.slug, done.summary());
                            }
                        }
                        Err(e) => eprintln!("portal: {}: reconciling: {e}", body.slug),
                    }
                }
                // The search's summary changes folded in (PostgreSQL; nothing on SQLite),
                // so a quiet day's changes do not wait for the next search.
                if let Err(e) = reconciler.inner.store.fold_summaries().await {
                    eprintln!("portal: folding the search's summaries: {e}");
                }
                tokio::time::sleep(every).await;
            }
        });
        // Sessions past their end are deleted every few minutes (a browser coming back
        // with one is a visitor again either way).
        let sessions = self.inner.sessions.clone();
        tokio::spawn(async move {
            use tower_sessions::session_store::ExpiredDeletion;
            loop {
                if let Err(e) = sessions.delete_expired().await {
                    eprintln!("portal: deleting expired sessions: {e}");
                }
                tokio::time::sleep(Duration::from_secs(300)).await;
            }
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

    /// Each body's card methods run on its own accounts: the municipality's sandbox and
    /// Stripe account, the union's sandbox and Nexi terminal; no body's method names
    /// another's account.
    #[tokio::test]
    async fn each_body_takes_cards_on_its_own_provider_accounts() {
        let dir = std::env::temp_dir().join(format!("portal-accounts-{}", uuid::Uuid::new_v4()));
        let mut config = Config::local(&dir, "127.0.0.1:3000".parse().unwrap());
        config.accounts_mut("comune").stripe = Some(StripeKeys {
            secret_key: "sk_test_comune".to_owned().into(),
            webhook_secret: "whsec_comune".to_owned().into(),
        });
        config.accounts_mut("unione").nexi = Some(NexiKeys {
            alias: "ALIAS_WEB_UNIONE".into(),
            mac_key: "mac-unione".to_owned().into(),
            base_url: payments_gateways::nexi::TEST_BASE.into(),
        });
        let portal = Portal::new(config).await.unwrap();
        let card_accounts = |slug: &str| {
            let portal = portal.clone();
            let creditor = portal.body(slug).unwrap().creditor.id;
            async move {
                let mut ids: Vec<String> = portal
                    .payments()
                    .methods(creditor)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|m| m.kind == MethodKind::Card)
                    .map(|m| m.gateway_id.to_string())
                    .collect();
                ids.sort();
                ids
            }
        };
        // With a real card provider the sandbox's methods are not offered: its "pay"
        // button takes no money.
        assert_eq!(card_accounts("comune").await, ["stripe"]);
        assert_eq!(card_accounts("unione").await, ["nexi-unione"]);
        drop(portal);
        // Unless asked for (PORTAL_SANDBOX=1), on the same database.
        let mut config = Config::local(&dir, "127.0.0.1:3000".parse().unwrap());
        config.sandbox_beside_providers = true;
        config.accounts_mut("comune").stripe = Some(StripeKeys {
            secret_key: "sk_test_comune".to_owned().into(),
            webhook_secret: "whsec_comune".to_owned().into(),
        });
        let portal = Portal::new(config).await.unwrap();
        let creditor = portal.body("comune").unwrap().creditor.id;
        let mut ids: Vec<String> = portal
            .payments()
            .methods(creditor)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == MethodKind::Card && m.enabled)
            .map(|m| m.gateway_id.to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["sandbox", "stripe"]);
        // A body without one keeps the sandbox as its card account.
        let unione = portal.body("unione").unwrap().creditor.id;
        assert!(
            portal
                .payments()
                .methods(unione)
                .await
                .unwrap()
                .iter()
                .any(|m| m.kind == MethodKind::Card
                    && m.enabled
                    && m.gateway_id.as_str() == "sandbox-unione")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn keys_come_from_the_environment_or_are_generated_once_per_data_directory() {
        let dir = std::env::temp_dir().join(format!("portal-keys-{}", uuid::Uuid::new_v4()));
        let config = Config::local(&dir, "127.0.0.1:3000".parse().unwrap());
        let portal = Portal::new(config.clone()).await.unwrap();
        let key = portal.station_key();
        assert!(key.len() >= 32, "a random key: {key}");
        let file = dir.join("secrets").join("pagopa-station-key");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "readable by its owner only");
        }
        drop(portal);
        // The same directory keeps its key; another directory gets another.
        let again = Portal::new(config).await.unwrap();
        assert_eq!(again.station_key(), key);
        let other_dir = std::env::temp_dir().join(format!("portal-keys-{}", uuid::Uuid::new_v4()));
        let other = Portal::new(Config::local(&other_dir, "127.0.0.1:3000".parse().unwrap()))
            .await
            .unwrap();
        assert_ne!(other.station_key(), key);
        // A key given is the one used.
        let mut given = Config::local(&other_dir, "127.0.0.1:3000".parse().unwrap());
        given.pagopa_station_key = Some("a station key from the vault".into());
        drop(other);
        let given = Portal::new(given).await.unwrap();
        assert_eq!(given.station_key(), "a station key from the vault");
        drop(given);
        // An empty or short key on disk (a crash mid-write elsewhere) is refused, never
        // used; so is a short one given.
        let broken = std::env::temp_dir().join(format!("portal-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(broken.join("secrets")).unwrap();
        std::fs::write(broken.join("secrets").join("sandbox-signing-key"), "").unwrap();
        assert!(
            Portal::new(Config::local(&broken, "127.0.0.1:3000".parse().unwrap()))
                .await
                .is_err()
        );
        let mut short = Config::local(&broken, "127.0.0.1:3000".parse().unwrap());
        short.sandbox_key = Some("short".into());
        assert!(short.secret("sandbox-signing-key", Some("short")).is_err());
        let _ = std::fs::remove_dir_all(&broken);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    }

    /// A request into the portal's router as a browser with `cookie` sends it.
    async fn send(
        portal: &Portal,
        method: &str,
        uri: &str,
        cookie: &str,
        content_type: Option<&str>,
        body: &str,
        csrf_header: Option<&str>,
    ) -> axum::response::Response {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("cookie", cookie);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        if let Some(token) = csrf_header {
            request = request.header("x-csrf-token", token);
        }
        portal
            .router()
            .oneshot(
                request
                    .body(axum::body::Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    /// A portal, and a session on it: its cookie and its CSRF token, read from a page.
    async fn session() -> (Portal, String, String, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("portal-csrf-{}", uuid::Uuid::new_v4()));
        let portal = Portal::new(Config::local(&dir, "127.0.0.1:3000".parse().unwrap()))
            .await
            .unwrap();
        let page = send(&portal, "GET", "/signin", "", None, "", None).await;
        let cookie = page
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = body_text(page).await;
        let csrf = csrf_in(&html);
        (portal, cookie, csrf, dir)
    }

    #[tokio::test]
    async fn every_unsafe_request_carries_the_session_token_whatever_its_content_type() {
        let (portal, cookie, csrf, dir) = session().await;
        for (content_type, body) in [
            (Some("text/plain"), "csrf=whatever"),
            (Some("multipart/form-data; boundary=x"), "--x--"),
            (Some("application/json"), "{}"),
            (None, ""),
            (Some("application/x-www-form-urlencoded"), "a=b"),
            (Some("application/x-www-form-urlencoded"), "csrf=forged"),
        ] {
            for path in [
                "/signout",
                "/cart/remove",
                "/checkout",
                "/modules/tributi/x",
            ] {
                let r = send(&portal, "POST", path, &cookie, content_type, body, None).await;
                assert_eq!(
                    r.status(),
                    axum::http::StatusCode::FORBIDDEN,
                    "{path} with {content_type:?}"
                );
            }
        }
        // An upload elsewhere than the two upload pages is refused too.
        let r = send(
            &portal,
            "POST",
            "/free",
            &cookie,
            Some("multipart/form-data; boundary=x"),
            "--x--",
            None,
        )
        .await;
        assert_eq!(r.status(), axum::http::StatusCode::FORBIDDEN);
        // A forged header is refused; the session's token passes, in the form or the header.
        let r = send(
            &portal,
            "POST",
            "/signout",
            &cookie,
            None,
            "",
            Some("forged"),
        )
        .await;
        assert_eq!(r.status(), axum::http::StatusCode::FORBIDDEN);
        let r = send(&portal, "POST", "/signout", &cookie, None, "", Some(&csrf)).await;
        assert!(r.status().is_redirection(), "{}", r.status());
        let form = format!("csrf={csrf}");
        let r = send(
            &portal,
            "POST",
            "/signout",
            &cookie,
            Some("application/x-www-form-urlencoded"),
            &form,
            None,
        )
        .await;
        assert!(r.status().is_redirection(), "{}", r.status());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The reporting flows: an operator who only reads sees them and their CSV but has no
    /// button, and is refused the sync; a manager presses it and reads what it did.
    #[tokio::test]
    async fn only_a_manager_reconciles_the_flows() {
        let (portal, cookie, csrf, dir) = session().await;
        let form = Some("application/x-www-form-urlencoded");
        let (luca, luca_csrf) = sign_in(&portal, &cookie, &csrf, "luca").await;
        let page = send(&portal, "GET", "/admin/flows", &luca, None, "", None).await;
        assert_eq!(page.status(), axum::http::StatusCode::OK);
        let html = body_text(page).await;
        assert!(html.contains("id=\"no-flows\"") && !html.contains("id=\"sync\""));
        let csv = send(&portal, "GET", "/admin/flows.csv", &luca, None, "", None).await;
        assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
        assert!(
            body_text(csv)
                .await
                .starts_with("flow_id,psp_id,psp_name,revision,")
        );
        let refused = send(
            &portal,
            "POST",
            "/admin/flows/sync",
            &luca,
            form,
            &format!("csrf={luca_csrf}"),
            None,
        )
        .await;
        assert_eq!(refused.status(), axum::http::StatusCode::FORBIDDEN);
        let (anna, anna_csrf) = sign_in(&portal, &cookie, &csrf, "anna").await;
        let html =
            body_text(send(&portal, "GET", "/admin/flows", &anna, None, "", None).await).await;
        assert!(html.contains("id=\"sync\""));
        let done = send(
            &portal,
            "POST",
            "/admin/flows/sync",
            &anna,
            form,
            &format!("csrf={anna_csrf}"),
            None,
        )
        .await;
        assert_eq!(done.status(), axum::http::StatusCode::OK);
        let html = body_text(done).await;
        assert!(html.contains("<span id=\"done-flows\">0</span>"), "{html}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Signs `account` in on `portal`; answers the new session's cookie and token.
    async fn sign_in(portal: &Portal, cookie: &str, csrf: &str, account: &str) -> (String, String) {
        let r = send(
            portal,
            "POST",
            "/signin",
            cookie,
            Some("application/x-www-form-urlencoded"),
            &format!("csrf={csrf}&account={account}"),
            None,
        )
        .await;
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let page = send(portal, "GET", "/free", &cookie, None, "", None).await;
        let html = body_text(page).await;
        let csrf = csrf_in(&html);
        (cookie, csrf)
    }

    /// `payer` checks out `items` secretarial fees of € 10 by card on the municipality's
    /// sandbox: the transaction and its hosted page's session.
    async fn fees_checkout(
        portal: &Portal,
        payer: &str,
        items: usize,
    ) -> (payments_core::TransactionId, String) {
        let creditor = portal.creditor().id;
        let payments = portal.payments();
        let actor = payments_core::Actor::payer(payer);
        let fees = payments
            .payment_types(creditor)
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.name == "Diritti di segreteria")
            .unwrap();
        let card = payments
            .methods(creditor)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.kind == MethodKind::Card && m.enabled)
            .unwrap();
        let cart = payments
            .open_cart(&actor, creditor, payments_core::Payer::new(payer, "Payer"))
            .await
            .unwrap();
        for n in 0..items {
            let item = payments_core::NewFreeItem::new(fees.id, "10,00", format!("Diritti {n}"))
                .with_extra("case_number", format!("2026/{n}"))
                .with_extra("office", "anagrafe");
            payments.add_free_item(&actor, cart.id, item).await.unwrap();
        }
        let checkout = payments
            .checkout(&actor, cart.id, card.id, "k")
            .await
            .unwrap();
        let payments_core::Instruction::Redirect { url, .. } = &checkout.instruction else {
            panic!("a hosted page")
        };
        let session = url.rsplit('/').next().unwrap().to_owned();
        (checkout.transaction.id, session)
    }

    #[tokio::test]
    async fn only_the_payer_completes_a_sandbox_payment() {
        let (portal, cookie, csrf, dir) = session().await;
        // Mario starts a card payment on the sandbox's hosted page.
        let payments = portal.payments();
        let (tx, session_id) = fees_checkout(&portal, "RSSMRA85T10A562S", 1).await;
        let page = format!("/hosted/sandbox/pay/{session_id}");
        let status = || async {
            payments
                .transaction(&payments_core::Actor::System, tx)
                .await
                .unwrap()
                .status
        };

        // Nobody signed in, and Giulia, cannot pay (or cancel) it for him.
        let r = send(
            &portal,
            "POST",
            &page,
            &cookie,
            Some("application/x-www-form-urlencoded"),
            &format!("csrf={csrf}&outcome=paid"),
            None,
        )
        .await;
        assert!(
            r.status().is_redirection() && r.headers()["location"] == "/signin",
            "{}",
            r.status()
        );
        let (giulia, giulia_csrf) = sign_in(&portal, &cookie, &csrf, "giulia").await;
        let r = send(
            &portal,
            "POST",
            &page,
            &giulia,
            Some("application/x-www-form-urlencoded"),
            &format!("csrf={giulia_csrf}&outcome=cancel"),
            None,
        )
        .await;
        assert_eq!(r.status(), axum::http::StatusCode::FORBIDDEN);
        assert_eq!(status().await, payments_core::TxStatus::Pending);
        // Mario can.
        let (mario_cookie, mario_csrf) = sign_in(&portal, &giulia, &giulia_csrf, "mario").await;
        let r = send(
            &portal,
            "POST",
            &page,
            &mario_cookie,
            Some("application/x-www-form-urlencoded"),
            &format!("csrf={mario_csrf}&outcome=paid"),
            None,
        )
        .await;
        assert!(r.status().is_redirection(), "{}", r.status());
        assert_eq!(status().await, payments_core::TxStatus::Paid);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_export_streams_as_csv_and_json_lines() {
        let (portal, cookie, csrf, dir) = session().await;
        for i in 0..3 {
            let (_, session) = fees_checkout(&portal, &format!("PAYER{i}"), 2).await;
            let cb = portal
                .sandbox()
                .complete(&session, payments_core::PaymentOutcome::Paid)
                .unwrap();
            portal
                .payments()
                .handle_callback("sandbox", &cb)
                .await
                .unwrap();
        }
        let (anna, anna_csrf) = sign_in(&portal, &cookie, &csrf, "anna").await;
        let r = send(&portal, "GET", "/admin/export.csv", &anna, None, "", None).await;
        assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
        let csv = body_text(r).await;
        assert_eq!(
            csv.lines().count(),
            1 + 6,
            "a header and one row per item:\n{csv}"
        );
        let r = send(&portal, "GET", "/admin/export.jsonl", &anna, None, "", None).await;
        assert_eq!(
            r.headers()["content-type"],
            "application/x-ndjson; charset=utf-8"
        );
        let jsonl = body_text(r).await;
        let rows: Vec<serde_json::Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|r| r["transaction_id"].is_string()));
        // A citizen gets no export.
        let (mario, _) = sign_in(&portal, &anna, &anna_csrf, "mario").await;
        let r = send(
            &portal,
            "GET",
            "/admin/export.jsonl",
            &mario,
            None,
            "",
            None,
        )
        .await;
        assert_eq!(r.status(), axum::http::StatusCode::FORBIDDEN);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_language_switch_goes_back_only_to_a_path_of_this_site() {
        let (portal, cookie, _, dir) = session().await;
        let location = |r: &axum::response::Response| {
            r.headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        for hostile in [
            "%2F%09%2Fevil.example",
            "/%09/evil.example",
            "/%0A/evil.example",
            "/%0D%0A/evil.example",
            "//evil.example",
            "/%2Fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "%5C%5Cevil.example",
            "https://evil.example/",
            "https:%2F%2Fevil.example",
            "%68ttps://evil.example",
            "/%20/evil.example",
            "javascript:alert(1)",
            "/caf%C3%A9",
        ] {
            let r = send(
                &portal,
                "GET",
                &format!("/lang/en?back={hostile}"),
                &cookie,
                None,
                "",
                None,
            )
            .await;
            assert_eq!(location(&r), "/", "{hostile}");
        }
        let r = send(
            &portal,
            "GET",
            "/lang/en?back=%2Fcart%3Fx%3D1",
            &cookie,
            None,
            "",
            None,
        )
        .await;
        assert_eq!(location(&r), "/cart?x=1", "a path of this site is kept");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The `name=value` of the cookie `name` a response sets, if it sets one.
    fn set_cookie(r: &axum::response::Response, name: &str) -> Option<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// Whether `cookie` is signed in: its history page answers, no sign-in redirect.
    async fn signed_in(portal: &Portal, cookie: &str) -> bool {
        let r = send(portal, "GET", "/history", cookie, None, "", None).await;
        r.status() == axum::http::StatusCode::OK
    }

    #[tokio::test]
    async fn sessions_are_kept_in_the_database_survive_a_restart_and_end_when_idle() {
        let (portal, cookie, csrf, dir) = session().await;
        let (mario, _) = sign_in(&portal, &cookie, &csrf, "mario").await;
        assert!(mario.starts_with("portal_session="), "{mario}");
        assert!(signed_in(&portal, &mario).await);
        // The stored session ends 30 minutes after the last request.
        let id = mario.trim_start_matches("portal_session=");
        let end = portal.inner.sessions.expires_at(id).await.unwrap().unwrap();
        let now = chrono::Utc::now().timestamp();
        assert!(
            (end - now - 1800).abs() <= 5,
            "ends {}s from now",
            end - now
        );
        // A restart on the same database keeps it.
        drop(portal);
        let config = Config::local(&dir, "127.0.0.1:3000".parse().unwrap());
        let portal = Portal::new(config.clone()).await.unwrap();
        assert!(
            signed_in(&portal, &mario).await,
            "still signed in after a restart"
        );
        // Signing out deletes it: the cookie is worth nothing after.
        let before = portal.inner.sessions.count().await.unwrap();
        let page = send(&portal, "GET", "/free", &mario, None, "", None).await;
        let html = body_text(page).await;
        let token = csrf_in(&html);
        let r = send(&portal, "POST", "/signout", &mario, None, "", Some(&token)).await;
        assert!(r.status().is_redirection());
        assert_eq!(portal.inner.sessions.count().await.unwrap(), before - 1);
        assert!(!signed_in(&portal, &mario).await);
        drop(portal);
        // Idle past its end, a session is over.
        let mut short = config;
        short.session_idle = Duration::from_secs(1);
        let portal = Portal::new(short).await.unwrap();
        let (giulia, _) = sign_in(&portal, &cookie, &csrf, "giulia").await;
        assert!(signed_in(&portal, &giulia).await);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(!signed_in(&portal, &giulia).await, "ended after 1 s idle");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The CSRF token of the first form of a page.
    fn csrf_in(html: &str) -> String {
        let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
        html[at..].split('"').next().unwrap().to_owned()
    }

    async fn body_text(r: axum::response::Response) -> String {
        use http_body_util::BodyExt;
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_request_without_cookies_creates_nothing_on_the_server() {
        let dir = std::env::temp_dir().join(format!("portal-cookieless-{}", uuid::Uuid::new_v4()));
        let portal = Portal::new(Config::local(&dir, "127.0.0.1:3000".parse().unwrap()))
            .await
            .unwrap();
        let form = Some("application/x-www-form-urlencoded");
        for (method, path, content_type, body) in [
            ("GET", "/", None, ""),
            ("GET", "/signin", None, ""),
            ("GET", "/free", None, ""),
            ("GET", "/cart", None, ""),
            ("GET", "/admin", None, ""),
            ("GET", "/lang/en?back=/free", None, ""),
            ("GET", "/body/unione", None, ""),
            ("GET", "/no/such/page", None, ""),
            ("POST", "/signout", form, "csrf=x"),
            ("POST", "/signin", form, "csrf=x&account=mario"),
            ("POST", "/free", form, "csrf=x&type=t"),
        ] {
            for _ in 0..3 {
                let r = send(&portal, method, path, "", content_type, body, None).await;
                assert_eq!(set_cookie(&r, "portal_session"), None, "{method} {path}");
            }
        }
        assert_eq!(portal.inner.sessions.count().await.unwrap(), 0);
        // A sign-in with the visitor's token is what stores a session.
        let (_, cookie, csrf, other) = session().await;
        let r = send(
            &portal,
            "POST",
            "/signin",
            &cookie,
            form,
            &format!("csrf={csrf}&account=mario"),
            None,
        )
        .await;
        assert!(set_cookie(&r, "portal_session").is_some());
        assert_eq!(portal.inner.sessions.count().await.unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }

    #[tokio::test]
    async fn under_https_the_session_and_token_cookies_are_host_only_and_secure() {
        let dir = std::env::temp_dir().join(format!("portal-https-{}", uuid::Uuid::new_v4()));
        let mut config = Config::local(&dir, "127.0.0.1:3000".parse().unwrap());
        config.public_url = "https://pagamenti.comune.example.it".into();
        let portal = Portal::new(config).await.unwrap();
        let page = send(&portal, "GET", "/signin", "", None, "", None).await;
        let set = page.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(set.starts_with("__Host-portal_csrf="), "{set}");
        assert!(set.contains("Secure") && set.contains("Path=/") && !set.contains("Domain"));
        let cookie = set.split(';').next().unwrap().to_owned();
        let html = body_text(page).await;
        let csrf = csrf_in(&html);
        // The same token in a cookie without the prefix (one a subdomain could plant) is
        // no token.
        let planted = cookie.trim_start_matches("__Host-");
        let r = send(
            &portal,
            "POST",
            "/signin",
            planted,
            Some("application/x-www-form-urlencoded"),
            &format!("csrf={csrf}&account=mario"),
            None,
        )
        .await;
        assert_eq!(r.status(), axum::http::StatusCode::FORBIDDEN);
        let r = send(
            &portal,
            "POST",
            "/signin",
            &cookie,
            Some("application/x-www-form-urlencoded"),
            &format!("csrf={csrf}&account=mario"),
            None,
        )
        .await;
        let session = set_cookie(&r, "__Host-portal_session").expect("a host-only session");
        assert!(signed_in(&portal, &session).await);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_debug_shows_no_password_or_key() {
        let mut config = Config::local("/tmp/portal", "127.0.0.1:3000".parse().unwrap());
        config.database_url = Some("postgres://portal:db-secret@db/portal".into());
        config.smtp_url = Some("smtps://mailer:smtp-secret@smtp.example.it:465".into());
        config.accounts_mut("comune").stripe = Some(StripeKeys {
            secret_key: "sk_test_stripe-secret".to_owned().into(),
            webhook_secret: "whsec_hook-secret".to_owned().into(),
        });
        config.accounts_mut("unione").nexi = Some(NexiKeys {
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
