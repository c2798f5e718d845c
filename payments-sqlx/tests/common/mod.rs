//! Stores for the tests: a fresh SQLite file each, and, when `DATABASE_URL` points at a
//! PostgreSQL server, a fresh schema each, so tests run in parallel without seeing each
//! other.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use payments_sqlx::SqlxStore;

/// A new, empty directory under the system's temporary directory.
pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("payments-sqlx-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The URL of a new SQLite file.
pub fn sqlite_url() -> String {
    format!("sqlite://{}", temp_dir().join("payments.db").display())
}

/// A store on a new SQLite file.
pub async fn sqlite() -> SqlxStore {
    SqlxStore::connect(&sqlite_url()).await.unwrap()
}

/// The PostgreSQL server's URL, from `DATABASE_URL`; `None`, said loudly, without one.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: set DATABASE_URL=postgres://… to run the PostgreSQL tests \
                 (this machine kind runs one at postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A new schema's name.
pub fn schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// A new schema of the PostgreSQL server at `url`, migrated, and a URL that names it
/// (`search_path`), so that a child process connecting with the URL alone uses it too.
pub async fn postgres_schema_url(url: &str) -> String {
    let schema = schema();
    SqlxStore::builder(url)
        .with_schema(schema.clone())
        .build()
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A store in a new schema of the PostgreSQL server.
pub async fn postgres(url: &str) -> SqlxStore {
    SWEPT.get_or_init(|| sweep(url)).await;
    SqlxStore::builder(url)
        .with_schema(schema())
        .build()
        .await
        .unwrap()
}

static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Drops the test schemas older than an hour: their name holds a UUID v7, whose time says
/// when the test that made it ran. Younger ones may belong to tests running now.
async fn sweep(url: &str) {
    use sqlx::Executor;
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for name in names {
        let made = uuid::Uuid::parse_str(&name[2..])
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|t| t.to_unix().0);
        if made.is_some_and(|secs| now.saturating_sub(secs) > 3600) {
            let _ = pool
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .await;
        }
    }
    pool.close().await;
}

use std::sync::Arc;

use payments_core::testing::Fixture;
use payments_core::*;
use payments_gateways::sandbox::SandboxGateway;

/// A service on `store` with the sandbox gateway and a recording notifier.
pub struct Service {
    pub payments: Payments,
    pub notifier: Arc<RecordingNotifier>,
    pub tributi: Arc<RecordingListener>,
}

pub fn service(store: Arc<dyn Store>, sandbox: Arc<SandboxGateway>) -> Service {
    let notifier = Arc::new(RecordingNotifier::new());
    let tributi = Arc::new(RecordingListener::new());
    let payments = Payments::builder()
        .store(store)
        .gateway(sandbox)
        .notifier(notifier.clone())
        .listener("tributi", tributi.clone())
        .dispatch_batch(10)
        .build()
        .unwrap();
    Service {
        payments,
        notifier,
        tributi,
    }
}

/// A service on `store` with the municipality fixture installed (card payments).
pub async fn shop(store: Arc<dyn Store>, sandbox: Arc<SandboxGateway>) -> (Service, Fixture) {
    let s = service(store, sandbox);
    let fx = Fixture::install(&s.payments, "sandbox", &[MethodKind::Card])
        .await
        .unwrap();
    (s, fx)
}

impl Service {
    /// Opens `payer`'s cart and adds a TARI item for each `(key, amount)`.
    pub async fn cart(&self, fx: &Fixture, payer: &str, items: &[(&str, &str)]) -> (Actor, Cart) {
        let actor = Actor::payer(payer);
        let cart = self
            .payments
            .open_cart(&actor, fx.creditor.id, Fixture::payer(payer))
            .await
            .unwrap();
        for (key, amount) in items {
            self.payments
                .add_item(&actor, cart.id, tari(fx, key, amount))
                .await
                .unwrap();
        }
        (actor, cart)
    }
}

/// The sandbox gateway the tests share.
pub fn sandbox() -> Arc<SandboxGateway> {
    Arc::new(SandboxGateway::new("sqlx-test-key"))
}

/// A TARI item.
pub fn tari(fx: &Fixture, key: &str, amount: &str) -> NewItem {
    NewItem::new(
        Source::new("tributi", key),
        fx.tari.id,
        format!("TARI {key}"),
        Money::parse_eur(amount).unwrap(),
    )
    .with_extra("year", "2026")
}

/// The sandbox session in a checkout's redirect.
pub fn session(checkout: &Checkout) -> String {
    match &checkout.instruction {
        Instruction::Redirect { url, .. } => url.rsplit('/').next().unwrap().to_owned(),
        other => panic!("expected a redirect, got {other:?}"),
    }
}
