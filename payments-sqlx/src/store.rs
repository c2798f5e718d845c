//! [`SqlxStore`]: the [`Store`] on SQLite or PostgreSQL.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payments_core::{
    Cart, CartId, Conflict, Creditor, CreditorId, Error, GatewayId, HistoryQuery, ItemAdded,
    ItemId, MethodId, MethodKind, Money, MovementPage, MovementQuery, OutboxId, OutboxMessage,
    OutboxQuery, Page, PayableItem, PayerId, PaymentMethod, PaymentType, PaymentTypeId, Result,
    Store, Transaction, TransactionCreated, TransactionEvent, TransactionId, Transition, TxStatus,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor};

use crate::rows::{
    self, Arg, CART_COLUMNS, EVENT_COLUMNS, ITEM_COLUMNS, OUTBOX_COLUMNS, Sql, TX_COLUMNS, db_err,
    micros, to_json,
};

/// Which database a [`SqlxStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite, in WAL mode: the embedded default.
    Sqlite,
    /// PostgreSQL: for several application instances on one database.
    Postgres,
}

impl Dialect {
    /// The dialect of a connection URL (`sqlite:…`, `postgres://…`).
    /// A URL of a database this build has no driver for (feature `sqlite` or `postgres`
    /// off) is refused.
    pub fn of_url(url: &str) -> Result<Self> {
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(Error::invalid(
                "url",
                "must start with sqlite: or postgres://",
            ));
        };
        let (built, feature) = match dialect {
            Dialect::Sqlite => (cfg!(feature = "sqlite"), "sqlite"),
            Dialect::Postgres => (cfg!(feature = "postgres"), "postgres"),
        };
        if !built {
            return Err(Error::invalid(
                "url",
                format!("payments-sqlx was built without its `{feature}` feature"),
            ));
        }
        Ok(dialect)
    }
}

/// How SQLite makes a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SqliteSync {
    /// `FULL`, the default: a commit is on disk before it returns, so a payment the
    /// provider was answered for survives a power loss.
    #[default]
    Full,
    /// `NORMAL`: faster in WAL mode, but the last commits before a power loss (not a
    /// crash of the process) can be lost — a payment already acknowledged to its
    /// provider among them. For tests and throwaway data.
    Normal,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        }
    }
}

/// Builds a [`SqlxStore`].
#[derive(Debug, Clone)]
pub struct SqlxStoreBuilder {
    url: String,
    max_connections: u32,
    schema: Option<String>,
    busy_timeout: Duration,
    sync: SqliteSync,
}

impl SqlxStoreBuilder {
    /// A store at `url`: `sqlite://payments.db` (created if missing) or
    /// `postgres://user@host/db`.
    pub fn new(url: impl Into<String>) -> Self {
        SqlxStoreBuilder {
            url: url.into(),
            max_connections: 8,
            schema: None,
            busy_timeout: Duration::from_secs(10),
            sync: SqliteSync::Full,
        }
    }

    /// A store from the `DATABASE_URL` environment variable, or `sqlite://payments.db`.
    pub fn from_env() -> Self {
        SqlxStoreBuilder::new(
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://payments.db".into()),
        )
    }

    /// The most connections the pool opens (8 by default).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// PostgreSQL only: keep the tables in this schema (created if missing), so several
    /// stores — tests, tenants — share one database without seeing each other.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// SQLite only: how long a writer waits for the lock (10 s by default).
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// SQLite only: how a commit is made durable ([`SqliteSync::Full`] by default).
    pub fn with_sqlite_sync(mut self, sync: SqliteSync) -> Self {
        self.sync = sync;
        self
    }

    /// Connects, configures and migrates.
    pub async fn build(self) -> Result<SqlxStore> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(&self.url)?;
        let mut url = self.url.clone();
        if dialect == Dialect::Sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| Error::storage("reading the database URL", e))?;
        if let Some(schema) = &self.schema {
            if dialect != Dialect::Postgres {
                return Err(Error::invalid("schema", "only PostgreSQL has schemas"));
            }
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(Error::invalid("schema", "must be letters, digits and _"));
            }
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(db_err("connecting"))?;
            pool.execute(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .await
            .map_err(db_err("creating the schema"))?;
            pool.close().await;
        }
        let schema = self.schema.clone();
        let busy_ms = self.busy_timeout.as_millis();
        let sync = self.sync.pragma();
        // Each connection to an in-memory SQLite database has a database of its own.
        let max_connections = if url.contains(":memory:") {
            1
        } else {
            self.max_connections
        };
        let pool = check_idle_connections(AnyPoolOptions::new())
            .max_connections(max_connections)
            .after_connect(move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    match dialect {
                        Dialect::Sqlite => {
                            conn.execute(sqlx::AssertSqlSafe(format!(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
                                 PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON;"
                            )))
                            .await?;
                        }
                        Dialect::Postgres => {
                            if let Some(schema) = schema {
                                conn.execute(sqlx::AssertSqlSafe(format!(
                                    "SET search_path TO \"{schema}\""
                                )))
                                .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db_err("connecting"))?;
        let store = SqlxStore { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }
}

/// The [`Store`] on SQLite or PostgreSQL. Cheap to clone (the pool is shared).
///
/// Every write runs in one database transaction (on SQLite `BEGIN IMMEDIATE`, so that
/// concurrent writers queue instead of failing); state changes are `UPDATE … WHERE status =
/// from`, so a stale one changes no row; item locks are `UPDATE … WHERE state = 'open'`;
/// on PostgreSQL the outbox is claimed with `FOR UPDATE SKIP LOCKED`.
#[derive(Debug, Clone)]
pub struct SqlxStore {
    pool: AnyPool,
    dialect: Dialect,
}

/// Rows per statement of a bulk write (or a bulk read's keys), sent as one JSON parameter
/// ([`Sql::json_rows`]): a chunk of a statement's import is one statement per table.
const BULK_ROWS: usize = 1000;
/// The most text one bulk statement carries, so that a caller's huge chunk does not
/// become one huge parameter.
const BULK_BYTES: usize = 4 * 1024 * 1024;

/// `rows` cut into the parts a bulk statement takes: at most [`BULK_ROWS`] each and at
/// most [`BULK_BYTES`] of `size` (at least one row a part).
fn bulk_parts<T>(rows: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, row) in rows.iter().enumerate() {
        let n = size(row);
        if i > start && (i - start >= BULK_ROWS || bytes + n > BULK_BYTES) {
            parts.push(&rows[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += n;
    }
    if start < rows.len() {
        parts.push(&rows[start..]);
    }
    parts
}

type Tx = sqlx::Transaction<'static, Any>;

impl SqlxStore {
    /// Starts building a store at `url`.
    pub fn builder(url: impl Into<String>) -> SqlxStoreBuilder {
        SqlxStoreBuilder::new(url)
    }

    /// Connects to `url` with the default settings and migrates.
    pub async fn connect(url: &str) -> Result<SqlxStore> {
        SqlxStoreBuilder::new(url).build().await
    }

    /// The connection pool, for the host's own queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Folds the summary changes that PostgreSQL's triggers appended
    /// (`transaction_summary_changes`) into the search's per-hour summaries, in one
    /// statement; answers how many changes it folded. Searches call it once they have read
    /// more than a few hundred changes; a worker may call it on a schedule. Nothing to do on
    /// SQLite, whose triggers update the summaries in place.
    pub async fn fold_summaries(&self) -> Result<u64> {
        if self.dialect == Dialect::Sqlite {
            return Ok(0);
        }
        let folded: i64 = sqlx::query_scalar(
            "WITH moved AS (DELETE FROM transaction_summary_changes \
             RETURNING creditor_id, status, method_kind, hour, n, total_cents), \
             folded AS (INSERT INTO transaction_summaries AS s \
             (creditor_id, status, method_kind, hour, n, total_cents) \
             SELECT creditor_id, status, method_kind, hour, SUM(n), SUM(total_cents) FROM moved \
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 \
             ON CONFLICT (creditor_id, status, method_kind, hour) DO UPDATE \
             SET n = s.n + EXCLUDED.n, total_cents = s.total_cents + EXCLUDED.total_cents) \
             SELECT COUNT(*) FROM moved",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("folding the search's summaries"))?;
        Ok(u64::try_from(folded).unwrap_or_default())
    }

    /// Applies the embedded migrations (`migrations/<db>/`) not yet applied. `build` runs it.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| Error::storage("migrating", e))
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `FOR UPDATE` on PostgreSQL, where row locks serialise writers; nothing on SQLite,
    /// where the immediate transaction already holds the database's write lock.
    fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    /// The transaction `id`, its row locked until the end of `tx` (PostgreSQL).
    async fn locked_tx(&self, tx: &mut Tx, id: TransactionId) -> Result<Option<Transaction>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = $1{}",
            self.for_update()
        )))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err("reading a transaction"))?;
        row.as_ref().map(rows::transaction).transpose()
    }

    /// The state and paying transaction of each item, their rows locked until the end of
    /// `tx` (PostgreSQL, in id order so that writers never wait on each other in a cycle).
    async fn locked_items(
        &self,
        tx: &mut Tx,
        items: &[ItemId],
    ) -> Result<std::collections::HashMap<ItemId, payments_core::ItemState>> {
        let mut sql = Sql::new(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id IN ("));
        sql.list(items.iter().map(|item| Arg::Text(item.to_string())));
        sql.push(") ORDER BY id").push(self.for_update());
        let rows = sql
            .query()
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err("reading items"))?;
        rows.iter()
            .map(|r| rows::item(r).map(|i| (i.id, i.state)))
            .collect()
    }

    /// The debt positions whose options `lines` of `paying` are (by their items' sources),
    /// each read with its row locked until the end of `tx` (PostgreSQL): (line, position,
    /// option).
    async fn positions_of_lines(
        &self,
        tx: &mut Tx,
        paying: &Transaction,
        lines: &[usize],
    ) -> Result<Vec<(usize, payments_core::DebtPosition, usize)>> {
        let wanted: Vec<(usize, &payments_core::Source)> = lines
            .iter()
            .filter_map(|&n| paying.lines.get(n).map(|l| (n, &l.source)))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            "SELECT module, source_key, position_id, idx FROM position_sources WHERE creditor_id = ",
        );
        sql.arg(Arg::Text(paying.creditor_id.to_string()))
            .push(" AND (");
        for (i, (_, source)) in wanted.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("(module = ")
                .arg(Arg::Text(source.module.clone()))
                .push(" AND source_key = ")
                .arg(Arg::Text(source.key.clone()))
                .push(")");
        }
        sql.push(") ORDER BY position_id");
        let found = sql
            .query()
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err("finding debt positions"))?;
        let mut out = Vec::new();
        for row in &found {
            let module: String = rows::get(row, "module")?;
            let key: String = rows::get(row, "source_key")?;
            let position: String = rows::get(row, "position_id")?;
            let index: i64 = rows::get(row, "idx")?;
            let Some((line, _)) = wanted
                .iter()
                .find(|(_, s)| s.module == module && s.key == key)
            else {
                continue;
            };
            let data: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT data FROM debt_positions WHERE id = $1{}",
                self.for_update()
            )))
            .bind(position)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err("reading a debt position"))?;
            if let Some(data) = data {
                let p: payments_core::DebtPosition = rows::from_json(&data)?;
                out.push((*line, p, usize::try_from(index).unwrap_or(usize::MAX)));
            }
        }
        Ok(out)
    }

    /// Applies a transition in `tx`, not committed. On an error the caller rolls back
    /// (drops `tx`, or goes back to a savepoint).
    async fn transition_in(&self, tx: &mut Tx, t: &Transition) -> Result<Transaction> {
        // The compare-and-set first: it takes the transaction's row lock (PostgreSQL) before
        // any item's, as `pay_line` does. A move that frees items ends `PartiallyPaid` when
        // some lines were paid on their own: decided in the same statement.
        if t.to.frees_items() && self.dialect == Dialect::Postgres {
            // The row lock first, so that the statement below reads the items as a
            // concurrent line payment that held it left them (its own snapshot comes after).
            sqlx::query("SELECT id FROM transactions WHERE id = $1 FOR UPDATE")
                .bind(t.transaction.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err("locking a transaction"))?;
        }
        let status = if t.to.frees_items() {
            "CASE WHEN EXISTS (SELECT 1 FROM items WHERE transaction_id = $6 AND state = 'paid') \
             THEN 'partially_paid' ELSE $1 END"
        } else {
            "$1"
        };
        // A payment says, in the same statement, whether any of its lines is a debt
        // position's option, so that a payment of none (the usual case) does not look
        // positions up at all. (Lines by the parameter: on PostgreSQL the ids are
        // `COLLATE "C"` and `transaction_lines.transaction_id` is not.)
        let options = if t.to == TxStatus::Paid {
            ", (SELECT COUNT(*) FROM transaction_lines l JOIN position_sources ps \
             ON ps.creditor_id = transactions.creditor_id AND ps.module = l.module \
             AND ps.source_key = l.source_key WHERE l.transaction_id = $6) AS options"
        } else {
            ""
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE transactions SET status = {status}, updated_at = $2, provider_ref = COALESCE($3, provider_ref), \
             instruction = COALESCE($4, instruction), expires_at = COALESCE($5, expires_at) \
             WHERE id = $6 AND status = $7 RETURNING {TX_COLUMNS}{options}"
        )))
        .bind(t.to.as_str())
        .bind(micros(t.at))
        .bind(t.provider_ref.clone())
        .bind(t.instruction.as_ref().map(to_json).transpose()?)
        .bind(t.expires_at.map(micros))
        .bind(t.transaction.to_string())
        .bind(t.from.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err("moving a transaction"))?;
        let Some(row) = row else {
            let current = Self::tx_in(tx, t.transaction).await?;
            return Err(match current {
                Some(c) => stale(&c, t.from),
                None => Error::not_found("transaction", t.transaction),
            });
        };
        let moved = rows::transaction(&row)?;
        let to = moved.status;
        let item_ids: Vec<ItemId> = moved.lines.iter().map(|l| l.item_id).collect();
        if to == TxStatus::Paid {
            // Whether an item is already paid is decided here, by the statements that
            // settle them: every item not said to be paid becomes this transaction's (one
            // paid meanwhile is left alone, and then fewer rows than expected change), and
            // those said to be paid must be.
            let ours: Vec<&ItemId> = item_ids
                .iter()
                .filter(|i| !t.already_paid.contains(i))
                .collect();
            let mut settle = Sql::new("UPDATE items SET state = 'paid', transaction_id = ");
            settle
                .arg(Arg::Text(moved.id.to_string()))
                .push(" WHERE state <> 'paid' AND id IN (");
            settle.list(ours.iter().map(|item| Arg::Text(item.to_string())));
            settle.push(")");
            let settled = if ours.is_empty() {
                0
            } else {
                settle
                    .query()
                    .execute(&mut **tx)
                    .await
                    .map_err(db_err("settling items"))?
                    .rows_affected()
            };
            let positional = rows::get::<i64>(&row, "options")? > 0;
            let already_ok = if t.already_paid.is_empty() {
                true
            } else {
                let mut count =
                    Sql::new("SELECT COUNT(*) AS n FROM items WHERE state = 'paid' AND id IN (");
                count.list(
                    t.already_paid
                        .iter()
                        .map(|item| Arg::Text(item.to_string())),
                );
                count.push(")");
                let row = count
                    .query()
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(db_err("reading items"))?;
                let n: i64 = rows::get(&row, "n")?;
                usize::try_from(n).ok() == Some(t.already_paid.len())
                    && t.already_paid.iter().all(|i| item_ids.contains(i))
            };
            if settled != ours.len() as u64 || !already_ok {
                return Err(Error::Conflict(Conflict::ItemsChanged {
                    transaction: moved.id.to_string(),
                }));
            }
            let lines: Vec<usize> = moved
                .lines
                .iter()
                .enumerate()
                .filter(|(_, l)| !t.already_paid.contains(&l.item_id))
                .map(|(n, _)| n)
                .collect();
            if positional {
                self.positions_paid_in(tx, &moved, &lines, t.at).await?;
            }
        } else if to.frees_items() {
            sqlx::query(
                "UPDATE items SET state = 'open', transaction_id = NULL WHERE transaction_id = $1 AND state = 'locked'",
            )
            .bind(moved.id.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_err("freeing items"))?;
        }
        let note = t.note_for(to);
        let event = TransactionEvent {
            id: payments_core::EventId::new(),
            transaction_id: moved.id,
            actor: t.actor.clone(),
            at: t.at,
            from: Some(t.from),
            to,
            provider_ref: moved.provider_ref.clone(),
            note,
        };
        insert_event(tx, &event).await?;
        enqueue(tx, moved.creditor_id, t.at, &t.outbox).await?;
        for e in &t.exceptions {
            insert_exception_in(tx, e).await?;
        }
        Ok(moved)
    }

    /// [`Store::record_bank_entries`] one step after another, each paying step behind a
    /// savepoint: every case, a few statements per step.
    async fn bank_entries_step_by_step(
        &self,
        steps: &[payments_core::BankStep],
    ) -> Result<Vec<payments_core::BankStepDone>> {
        use payments_core::BankStepDone;
        let mut tx = self.write().await?;
        let mut done = Vec::with_capacity(steps.len());
        for step in steps {
            // Only a step that pays can be undone on its own (its compare-and-set may
            // fail); an entry alone is inserted or already there.
            let Some(payment) = &step.payment else {
                done.push(if insert_bank_entry_in(&mut tx, &step.entry).await? {
                    BankStepDone::Recorded(None)
                } else {
                    BankStepDone::AlreadyRecorded
                });
                continue;
            };
            sqlx::query("SAVEPOINT bank_step")
                .execute(&mut *tx)
                .await
                .map_err(db_err("beginning a step"))?;
            let outcome = if insert_bank_entry_in(&mut tx, &step.entry).await? {
                match self.transition_in(&mut tx, payment).await {
                    Ok(moved) => BankStepDone::Recorded(Some(Box::new(moved))),
                    Err(Error::Conflict(c)) => BankStepDone::Conflict(c),
                    Err(e) => return Err(e),
                }
            } else {
                BankStepDone::AlreadyRecorded
            };
            let end = if matches!(outcome, BankStepDone::Recorded(_)) {
                "RELEASE SAVEPOINT bank_step"
            } else {
                "ROLLBACK TO SAVEPOINT bank_step"
            };
            sqlx::query(end)
                .execute(&mut *tx)
                .await
                .map_err(db_err("ending a step"))?;
            if !matches!(outcome, BankStepDone::Recorded(_)) {
                // PostgreSQL keeps a savepoint rolled back to: release it too.
                sqlx::query("RELEASE SAVEPOINT bank_step")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("ending a step"))?;
            }
            done.push(outcome);
        }
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(done)
    }

    /// [`Store::record_bank_entries`] for a plain chunk, in a handful of statements
    /// whatever its size: entries that are no exceptions, each new, each paying (or not) a
    /// transaction still in the state it was read in, whose items are as read and pay no
    /// debt position. `None`, with nothing written, when the chunk is not plain: the caller
    /// then goes step by step.
    async fn bank_entries_at_once(
        &self,
        steps: &[payments_core::BankStep],
    ) -> Result<Option<Vec<payments_core::BankStepDone>>> {
        use payments_core::BankStepDone;
        let plain = |s: &payments_core::BankStep| {
            payments_core::Exception::for_bank_entry(&s.entry).is_none()
                && s.payment.as_ref().is_none_or(|t| {
                    t.to == TxStatus::Paid
                        && t.transaction == s.entry.transaction_id().unwrap_or(t.transaction)
                        && t.already_paid.is_empty()
                        && t.exceptions.is_empty()
                        && t.instruction.is_none()
                        && t.expires_at.is_none()
                })
        };
        if steps.is_empty() || !steps.iter().all(plain) {
            return Ok(None);
        }
        let payments: Vec<&Transition> = steps.iter().filter_map(|s| s.payment.as_ref()).collect();
        let mut ids = std::collections::HashSet::new();
        if !payments.iter().all(|t| ids.insert(t.transaction)) {
            return Ok(None);
        }
        let sqlite = self.dialect == Dialect::Sqlite;
        let mut tx = self.write().await?;

        // The entries, each new.
        let mut inserted = 0;
        let entries: Vec<_> = steps
            .iter()
            .map(|s| {
                let e = &s.entry;
                Ok((
                    e.creditor_id.to_string(),
                    &e.key,
                    micros(e.imported_at),
                    &e.reference,
                    e.transaction_id().map(|t| t.to_string()),
                    to_json(e)?,
                ))
            })
            .collect::<Result<_>>()?;
        for part in bulk_parts(&entries, |e| 64 + e.1.len() + e.5.len()) {
            let mut sql = Sql::new(
                "INSERT INTO bank_entries \
                 (creditor_id, entry_key, imported_at, reference, transaction_id, is_exception, data) \
                 SELECT j.value->>0, j.value->>1, CAST(j.value->>2 AS BIGINT), j.value->>3, \
                 j.value->>4, 0, j.value->>5 FROM ",
            );
            // `WHERE true`: SQLite reads `ON CONFLICT` after a bare `FROM` as a join's.
            sql.json_rows(to_json(&part)?, sqlite)
                .push(" WHERE true ON CONFLICT (creditor_id, entry_key) DO NOTHING");
            inserted += sql
                .query()
                .execute(&mut *tx)
                .await
                .map_err(db_err("recording bank entries"))?
                .rows_affected();
        }
        if inserted != steps.len() as u64 {
            return Ok(None); // `tx` rolls back as it drops.
        }

        // The payments: each transaction moved from the state it was read in.
        // What the rest needs of each transaction moved (its whole row is not read back).
        struct Moved {
            id: TransactionId,
            creditor_id: CreditorId,
            provider_ref: Option<String>,
            lines: Vec<payments_core::TransactionLine>,
        }
        let mut moved: HashMap<TransactionId, Moved> = HashMap::new();
        for part in bulk_parts(&payments, |t| {
            100 + t.provider_ref.as_ref().map_or(0, String::len)
        }) {
            let rows: Vec<_> = part
                .iter()
                .map(|t| {
                    (
                        t.transaction.to_string(),
                        t.from.as_str(),
                        &t.provider_ref,
                        micros(t.at),
                    )
                })
                .collect();
            let mut sql = Sql::new("UPDATE transactions SET status = ");
            sql.arg(Arg::Text(TxStatus::Paid.as_str().to_owned()))
                .push(
                    ", updated_at = v.v_at, provider_ref = COALESCE(v.v_ref, transactions.provider_ref) \
                     FROM (SELECT j.value->>0 AS v_id, j.value->>1 AS v_from, j.value->>2 AS v_ref, \
                     CAST(j.value->>3 AS BIGINT) AS v_at FROM ",
                )
                .json_rows(to_json(&rows)?, sqlite)
                .push(
                    ") AS v WHERE transactions.id = v.v_id AND transactions.status = v.v_from \
                     RETURNING id, creditor_id, provider_ref, lines",
                );
            let rows = sql
                .query()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("paying transactions"))?;
            for row in &rows {
                let t = Moved {
                    id: rows::parse_id(row, "id")?,
                    creditor_id: rows::parse_id(row, "creditor_id")?,
                    provider_ref: rows::get(row, "provider_ref")?,
                    lines: rows::from_json(&rows::get::<String>(row, "lines")?)?,
                };
                moved.insert(t.id, t);
            }
        }
        if moved.len() != payments.len() {
            return Ok(None);
        }

        // Their items: each becomes its transaction's, none paid meanwhile.
        let items: Vec<(String, String)> = moved
            .values()
            .flat_map(|t| {
                t.lines
                    .iter()
                    .map(|l| (l.item_id.to_string(), t.id.to_string()))
            })
            .collect();
        let mut settled = 0;
        for part in bulk_parts(&items, |_| 80) {
            let mut sql = Sql::new(
                "UPDATE items SET state = 'paid', transaction_id = v.v_tx \
                 FROM (SELECT j.value->>0 AS v_item, j.value->>1 AS v_tx FROM ",
            );
            sql.json_rows(to_json(&part)?, sqlite)
                .push(") AS v WHERE items.id = v.v_item AND items.state <> 'paid'");
            settled += sql
                .query()
                .execute(&mut *tx)
                .await
                .map_err(db_err("settling items"))?
                .rows_affected();
        }
        if settled != items.len() as u64 {
            return Ok(None);
        }

        // No line pays a debt position (those go step by step).
        let sources: Vec<(String, &str, &str)> = moved
            .values()
            .flat_map(|t| {
                t.lines.iter().map(|l| {
                    (
                        t.creditor_id.to_string(),
                        l.source.module.as_str(),
                        l.source.key.as_str(),
                    )
                })
            })
            .collect();
        for part in bulk_parts(&sources, |(_, m, k)| 48 + m.len() + k.len()) {
            let mut sql = Sql::new(
                "SELECT COUNT(*) AS n FROM position_sources AS p \
                 JOIN (SELECT j.value->>0 AS v_creditor, j.value->>1 AS v_module, \
                 j.value->>2 AS v_key FROM ",
            );
            sql.json_rows(to_json(&part)?, sqlite).push(
                ") AS v ON p.creditor_id = v.v_creditor AND p.module = v.v_module \
                 AND p.source_key = v.v_key",
            );
            let row = sql
                .query()
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("finding debt positions"))?;
            if rows::get::<i64>(&row, "n")? > 0 {
                return Ok(None);
            }
        }

        // An event each, and their messages.
        let paid = TxStatus::Paid.as_str();
        let events: Vec<_> = payments
            .iter()
            .map(|t| {
                let m = &moved[&t.transaction];
                Ok((
                    payments_core::EventId::new().to_string(),
                    m.id.to_string(),
                    micros(t.at),
                    to_json(&t.actor)?,
                    t.from.as_str(),
                    paid,
                    &m.provider_ref,
                    t.note_for(TxStatus::Paid),
                ))
            })
            .collect::<Result<_>>()?;
        for part in bulk_parts(&events, |e| {
            200 + e.3.len()
                + e.6.as_ref().map_or(0, String::len)
                + e.7.as_ref().map_or(0, String::len)
        }) {
            let mut sql = Sql::new(
                "INSERT INTO transaction_events \
                 (id, transaction_id, at, actor, from_status, to_status, provider_ref, note) \
                 SELECT j.value->>0, j.value->>1, CAST(j.value->>2 AS BIGINT), j.value->>3, \
                 j.value->>4, j.value->>5, j.value->>6, j.value->>7 FROM ",
            );
            sql.json_rows(to_json(&part)?, sqlite);
            sql.query()
                .execute(&mut *tx)
                .await
                .map_err(db_err("recording events"))?;
        }
        let messages: Vec<_> = payments
            .iter()
            .flat_map(|t| {
                let creditor = moved[&t.transaction].creditor_id;
                t.outbox.iter().map(move |m| (creditor, t.at, m))
            })
            .map(|(creditor, at, m)| {
                Ok((
                    m.id.to_string(),
                    m.transaction_id.to_string(),
                    creditor.to_string(),
                    to_json(&m.payload)?,
                    micros(at),
                ))
            })
            .collect::<Result<_>>()?;
        for part in bulk_parts(&messages, |m| 150 + m.3.len()) {
            let mut sql = Sql::new(
                "INSERT INTO outbox (id, transaction_id, creditor_id, payload, status, attempts, \
                 next_attempt_at, last_error, created_at, delivered_at) \
                 SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, 'pending', 0, \
                 CAST(j.value->>4 AS BIGINT), CAST(NULL AS TEXT), CAST(j.value->>4 AS BIGINT), \
                 CAST(NULL AS BIGINT) FROM ",
            );
            sql.json_rows(to_json(&part)?, sqlite);
            sql.query()
                .execute(&mut *tx)
                .await
                .map_err(db_err("enqueuing messages"))?;
        }
        tx.commit().await.map_err(db_err("committing"))?;
        // The transactions are not read back whole: `Recorded(None)` for each step.
        Ok(Some(
            steps.iter().map(|_| BankStepDone::Recorded(None)).collect(),
        ))
    }

    /// The store contract's rule for debt positions: the options that `lines` of `paying`
    /// pay are recorded paid, in `tx`, with the position's event; the items of the options
    /// that payment closes leave the carts; money for an option that cannot take it
    /// (excess) is recorded as its exception and changes nothing else.
    async fn positions_paid_in(
        &self,
        tx: &mut Tx,
        paying: &Transaction,
        lines: &[usize],
        at: DateTime<Utc>,
    ) -> Result<()> {
        for (line, mut p, index) in self.positions_of_lines(tx, paying, lines).await? {
            let Some((event, excess)) = p.record_payment(index, paying.id, at) else {
                continue;
            };
            save_position(tx, &p).await?;
            insert_position_event(tx, &event, p.version).await?;
            if excess {
                insert_exception_in(tx, &p.double_payment(index, paying.id, line, at)).await?;
                continue;
            }
            sqlx::query("UPDATE position_options SET paid = 1 WHERE position_id = $1 AND idx = $2")
                .bind(p.id.to_string())
                .bind(index as i64)
                .execute(&mut **tx)
                .await
                .map_err(db_err("recording an option paid"))?;
            let closed = p.closed_by(index);
            if !closed.is_empty() {
                let mut sql = Sql::new(
                    "UPDATE items SET state = 'removed', transaction_id = NULL WHERE state = 'open' \
                     AND creditor_id = ",
                );
                sql.arg(Arg::Text(p.creditor_id.to_string()))
                    .push(" AND module = ")
                    .arg(Arg::Text(p.module.clone()))
                    .push(" AND source_key IN (SELECT source_key FROM position_sources WHERE position_id = ")
                    .arg(Arg::Text(p.id.to_string()))
                    .push(" AND idx IN (");
                sql.list(closed.iter().map(|i| Arg::Int(*i as i64)));
                sql.push("))");
                sql.query()
                    .execute(&mut **tx)
                    .await
                    .map_err(db_err("taking closed options out of carts"))?;
            }
        }
        Ok(())
    }

    /// The options whose payment by `paid` (its `lines`) was given back in full are payable
    /// again, in `tx`, with the position's event.
    async fn positions_refunded_in(
        &self,
        tx: &mut Tx,
        paid: &Transaction,
        lines: &[usize],
        at: DateTime<Utc>,
    ) -> Result<()> {
        for (_, mut p, index) in self.positions_of_lines(tx, paid, lines).await? {
            let Some(event) = p.record_refund(index, paid.id, at) else {
                continue;
            };
            save_position(tx, &p).await?;
            insert_position_event(tx, &event, p.version).await?;
            sqlx::query("UPDATE position_options SET paid = 0 WHERE position_id = $1 AND idx = $2")
                .bind(p.id.to_string())
                .bind(index as i64)
                .execute(&mut **tx)
                .await
                .map_err(db_err("recording an option given back"))?;
        }
        Ok(())
    }

    /// A page of rows kept as JSON in `data`: `sql` (its filters) newest first by id, older
    /// than `before`, at most `limit`.
    async fn json_page<T: serde::de::DeserializeOwned>(
        &self,
        mut sql: Sql,
        before: Option<String>,
        limit: u32,
        what: &'static str,
    ) -> Result<Vec<T>> {
        if let Some(b) = before {
            sql.push(" AND id < ").arg(Arg::Text(b));
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .arg(Arg::Int(i64::from(limit)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err(what))?;
        rows.iter()
            .map(|r| rows::from_json(&rows::get::<String>(r, "data")?))
            .collect()
    }

    async fn write(&self) -> Result<Tx> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
        .map_err(db_err("beginning a transaction"))
    }

    async fn put_config(
        &self,
        table: &'static str,
        id: String,
        creditor: Option<String>,
        data: String,
    ) -> Result<()> {
        let sql = match (table, creditor.is_some()) {
            ("creditors", _) => {
                "INSERT INTO creditors (id, data) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data"
            }
            ("payment_types", true) => {
                "INSERT INTO payment_types (id, data, creditor_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, creditor_id = excluded.creditor_id"
            }
            ("methods", true) => {
                "INSERT INTO methods (id, data, creditor_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, creditor_id = excluded.creditor_id"
            }
            _ => unreachable!("a configuration table"),
        };
        let mut q = sqlx::query(sql).bind(id).bind(data);
        if let Some(c) = creditor {
            q = q.bind(c);
        }
        q.execute(&self.pool)
            .await
            .map_err(db_err("saving configuration"))?;
        Ok(())
    }

    async fn get_config<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        id: String,
    ) -> Result<Option<T>> {
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading configuration"))?;
        row.map(|r| rows::from_json(&rows::get::<String>(&r, "data")?))
            .transpose()
    }

    async fn list_config<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        creditor: CreditorId,
    ) -> Result<Vec<T>> {
        let rows = sqlx::query(sql)
            .bind(creditor.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing configuration"))?;
        rows.iter()
            .map(|r| rows::from_json(&rows::get::<String>(r, "data")?))
            .collect()
    }

    async fn fetch_transactions(&self, sql: &Sql) -> Result<Vec<Transaction>> {
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("reading transactions"))?;
        rows.iter().map(rows::transaction).collect()
    }

    async fn tx_in(tx: &mut Tx, id: TransactionId) -> Result<Option<Transaction>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err("reading a transaction"))?;
        row.as_ref().map(rows::transaction).transpose()
    }

    async fn item_in(tx: &mut Tx, id: ItemId) -> Result<Option<PayableItem>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err("reading an item"))?;
        row.as_ref().map(rows::item).transpose()
    }
}

/// Appends the WHERE clause of a movement search (without the cursor).
pub(crate) fn movement_filters(sql: &mut Sql, q: &MovementQuery) {
    sql.push(" WHERE t.creditor_id = ")
        .arg(Arg::Text(q.creditor_id.to_string()));
    if let Some(from) = q.from {
        sql.push(" AND t.created_at >= ")
            .arg(Arg::Int(micros(from)));
    }
    if let Some(to) = q.to {
        sql.push(" AND t.created_at < ").arg(Arg::Int(micros(to)));
    }
    if !q.statuses.is_empty() {
        sql.push(" AND t.status IN (");
        sql.list(q.statuses.iter().map(|s| Arg::Text(s.as_str().into())));
        sql.push(")");
    }
    if let Some(kind) = q.method_kind {
        sql.push(" AND t.method_kind = ")
            .arg(Arg::Text(kind.as_str().into()));
    }
    if let Some(payer) = &q.payer_id {
        sql.push(" AND t.payer_id = ")
            .arg(Arg::Text(payer.0.clone()));
    }
    if let Some(min) = &q.min_total {
        sql.push(" AND t.total_cents >= ")
            .arg(Arg::Int(min.minor_units()));
    }
    if let Some(max) = &q.max_total {
        sql.push(" AND t.total_cents <= ")
            .arg(Arg::Int(max.minor_units()));
    }
    if let Some(t) = q.payment_type_id {
        sql.push(" AND EXISTS (SELECT 1 FROM transaction_lines l WHERE l.transaction_id = t.id AND l.payment_type_id = ")
            .arg(Arg::Text(t.to_string()))
            .push(")");
    }
    if let Some(m) = &q.module {
        sql.push(" AND EXISTS (SELECT 1 FROM transaction_lines l WHERE l.transaction_id = t.id AND l.module = ")
            .arg(Arg::Text(m.clone()))
            .push(")");
    }
}

/// The order of searches and exports over `transactions t`: newest first by creation
/// time, then by id.
pub(crate) const NEWEST_FIRST: &str = "t.created_at DESC, t.id DESC";

/// Keeps, of `transactions t`, the rows that come after the transaction `after` in
/// [`NEWEST_FIRST`] order. The first bound is what the index seeks to; the second keeps,
/// of the rows created in the cursor's microsecond, those with a smaller id (its own row
/// is left out). An unknown `after` keeps nothing.
pub(crate) fn after_in_order(sql: &mut Sql, after: &str) {
    let at = "(SELECT c.created_at FROM transactions c WHERE c.id = ";
    let after = Arg::Text(after.to_owned());
    sql.push(" AND t.created_at <= ")
        .push(at)
        .arg(after.clone())
        .push(") AND (t.created_at < ")
        .push(at)
        .arg(after.clone())
        .push(") OR t.id < ")
        .arg(after)
        .push(")");
}

/// One hour in microseconds: the width of a `transaction_summaries` row.
const HOUR_MICROS: i64 = 3_600_000_000;

/// The statement giving the count (`n`) and total (`total`, in cents) of the movements `q`
/// selects, whatever its cursor, and how many unfolded summary changes it read
/// (`changes`, PostgreSQL).
///
/// When `q` filters only by state, method and period, the whole hours of the period come
/// from `transaction_summaries` (on PostgreSQL with `transaction_summary_changes`, what
/// the triggers appended since the last fold), kept by triggers in the same database
/// transaction as every change of the rows, and only the rows of its first and last
/// partial hours are counted. Other filters (payer, amounts, type, module) count the rows
/// they select.
fn count_movements(q: &MovementQuery, dialect: Dialect) -> Sql {
    let mut sql = Sql::new(
        "SELECT CAST(COALESCE(SUM(p.n), 0) AS BIGINT) AS n, \
         CAST(COALESCE(SUM(p.total), 0) AS BIGINT) AS total, \
         CAST(COALESCE(SUM(p.k), 0) AS BIGINT) AS changes FROM (",
    );
    let rows_of = |sql: &mut Sql, q: &MovementQuery| {
        sql.push("SELECT COUNT(*) AS n, SUM(t.total_cents) AS total, 0 AS k FROM transactions t");
        movement_filters(sql, q);
    };
    let by_rows = q.payer_id.is_some()
        || q.min_total.is_some()
        || q.max_total.is_some()
        || q.payment_type_id.is_some()
        || q.module.is_some();
    // The whole hours inside [from, to): [first, last).
    let first = q.from.map(|f| {
        let f = micros(f);
        f.div_euclid(HOUR_MICROS) + i64::from(f.rem_euclid(HOUR_MICROS) != 0)
    });
    let last = q.to.map(|t| micros(t).div_euclid(HOUR_MICROS));
    let whole_hours = match (first, last) {
        (Some(first), Some(last)) => first < last,
        _ => true,
    };
    if by_rows || !whole_hours {
        rows_of(&mut sql, q);
    } else {
        let statuses: &[TxStatus] = if q.statuses.is_empty() {
            &TxStatus::ALL
        } else {
            &q.statuses
        };
        let kinds: &[MethodKind] = match &q.method_kind {
            Some(kind) => std::slice::from_ref(kind),
            None => &MethodKind::ALL,
        };
        let tables: &[(&str, &str)] = match dialect {
            Dialect::Sqlite => &[("transaction_summaries", "0")],
            Dialect::Postgres => &[
                ("transaction_summaries", "0"),
                ("transaction_summary_changes", "1"),
            ],
        };
        for (i, (table, k)) in tables.iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql.push(&format!(
                "SELECT s.n, s.total_cents AS total, {k} AS k FROM {table} s WHERE s.creditor_id = "
            ))
            .arg(Arg::Text(q.creditor_id.to_string()))
            .push(" AND s.status IN (");
            sql.list(statuses.iter().map(|s| Arg::Text(s.as_str().into())));
            sql.push(") AND s.method_kind IN (");
            sql.list(kinds.iter().map(|k| Arg::Text(k.as_str().into())));
            sql.push(")");
            if let Some(first) = first {
                sql.push(" AND s.hour >= ").arg(Arg::Int(first));
            }
            if let Some(last) = last {
                sql.push(" AND s.hour < ").arg(Arg::Int(last));
            }
        }
        let at = |hour: i64| DateTime::<Utc>::from_timestamp_micros(hour * HOUR_MICROS);
        // The rows before the first whole hour, and from the end of the last one.
        if let (Some(from), Some(first)) = (q.from, first.and_then(at))
            && from < first
        {
            sql.push(" UNION ALL ");
            rows_of(
                &mut sql,
                &MovementQuery {
                    to: Some(first),
                    ..q.clone()
                },
            );
        }
        if let (Some(to), Some(last)) = (q.to, last.and_then(at))
            && last < to
        {
            sql.push(" UNION ALL ");
            rows_of(
                &mut sql,
                &MovementQuery {
                    from: Some(last),
                    ..q.clone()
                },
            );
        }
    }
    sql.push(") AS p");
    sql
}

/// How many unfolded summary changes a search may read before it folds them.
const FOLD_AFTER: i64 = 500;

fn stale(tx: &Transaction, expected: TxStatus) -> Error {
    Error::Conflict(Conflict::StaleState {
        transaction: tx.id.to_string(),
        expected: expected.to_string(),
        actual: tx.status.to_string(),
    })
}

/// How long a connection may have been idle before the pool checks it is alive.
///
/// sqlx checks every connection it hands out (a round trip to the server, or to SQLite's
/// worker thread): a tenth of a flow's time on SQLite. A connection that was in use a
/// moment ago is alive; one idle longer, which a server restart or an idle timeout may
/// have closed, is checked, as PgBouncer's `server_check_delay` does. A connection that
/// fails anyway fails its statement with a storage error (retryable), and the pool drops
/// it.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

/// `options` that check a connection before handing it out only when it was idle for
/// [`IDLE_CHECK_AFTER`] or more (a failed check drops it, and the pool takes another).
pub fn check_idle_connections(options: AnyPoolOptions) -> AnyPoolOptions {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_CHECK_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

#[async_trait]
impl Store for SqlxStore {
    async fn put_creditor(&self, c: &Creditor) -> Result<()> {
        self.put_config("creditors", c.id.to_string(), None, to_json(c)?)
            .await
    }

    async fn creditor(&self, id: CreditorId) -> Result<Option<Creditor>> {
        self.get_config("SELECT data FROM creditors WHERE id = $1", id.to_string())
            .await
    }

    async fn put_payment_type(&self, t: &PaymentType) -> Result<()> {
        self.put_config(
            "payment_types",
            t.id.to_string(),
            Some(t.creditor_id.to_string()),
            to_json(t)?,
        )
        .await
    }

    async fn payment_type(&self, id: PaymentTypeId) -> Result<Option<PaymentType>> {
        self.get_config(
            "SELECT data FROM payment_types WHERE id = $1",
            id.to_string(),
        )
        .await
    }

    async fn payment_types(&self, creditor: CreditorId) -> Result<Vec<PaymentType>> {
        self.list_config(
            "SELECT data FROM payment_types WHERE creditor_id = $1 ORDER BY id",
            creditor,
        )
        .await
    }

    async fn put_method(&self, m: &PaymentMethod) -> Result<()> {
        self.put_config(
            "methods",
            m.id.to_string(),
            Some(m.creditor_id.to_string()),
            to_json(m)?,
        )
        .await
    }

    async fn method(&self, id: MethodId) -> Result<Option<PaymentMethod>> {
        self.get_config("SELECT data FROM methods WHERE id = $1", id.to_string())
            .await
    }

    async fn methods(&self, creditor: CreditorId) -> Result<Vec<PaymentMethod>> {
        self.list_config(
            "SELECT data FROM methods WHERE creditor_id = $1 ORDER BY id",
            creditor,
        )
        .await
    }

    async fn open_cart(&self, cart: &Cart) -> Result<Cart> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO carts (id, creditor_id, payer_id, payer, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (creditor_id, payer_id) DO UPDATE SET payer = excluded.payer RETURNING {CART_COLUMNS}"
        )))
        .bind(cart.id.to_string())
        .bind(cart.creditor_id.to_string())
        .bind(cart.payer.id.0.clone())
        .bind(to_json(&cart.payer)?)
        .bind(micros(cart.created_at))
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("opening a cart"))?;
        rows::cart(&row)
    }

    async fn cart(&self, id: CartId) -> Result<Option<Cart>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CART_COLUMNS} FROM carts WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading a cart"))?;
        row.as_ref().map(rows::cart).transpose()
    }

    async fn add_item(&self, item: &PayableItem) -> Result<ItemAdded> {
        // The usual case, a new source, is one statement. Each statement below is atomic on
        // its own, so no transaction is needed around them.
        let (state, tx_id) = rows::item_state(&item.state);
        let inserted = sqlx::query(
            "INSERT INTO items (id, creditor_id, cart_id, payer_id, module, source_key, payment_type_id, reason, \
             amount_cents, currency, due_date, extra, state, transaction_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (creditor_id, module, source_key) DO NOTHING",
        )
        .bind(item.id.to_string())
        .bind(item.creditor_id.to_string())
        .bind(item.cart_id.to_string())
        .bind(item.payer_id.0.clone())
        .bind(item.source.module.clone())
        .bind(item.source.key.clone())
        .bind(item.payment_type_id.to_string())
        .bind(item.reason.clone())
        .bind(item.amount.minor_units())
        .bind(item.amount.currency().code())
        .bind(item.due_date.map(|d| d.to_string()))
        .bind(to_json(&item.extra)?)
        .bind(state)
        .bind(tx_id)
        .bind(micros(item.created_at))
        .execute(&self.pool)
        .await
        .map_err(db_err("adding an item"))?
        .rows_affected()
            == 1;
        if inserted {
            // What was written, as a read would answer it (time to the microsecond): no
            // row to send back.
            let mut stored = item.clone();
            stored.created_at = rows::from_micros(micros(item.created_at))?;
            stored.amount = rows::money(item.amount.minor_units(), item.amount.currency().code())?;
            return Ok(ItemAdded {
                item: stored,
                created: true,
            });
        }
        // The source exists: bring it back if its payer removed it (or it was refunded),
        // then read it.
        let reopened = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE items SET state = 'open', cart_id = $1 WHERE creditor_id = $2 AND module = $3 \
             AND source_key = $4 AND state IN ('removed', 'refunded') AND payer_id = $5 RETURNING {ITEM_COLUMNS}"
        )))
        .bind(item.cart_id.to_string())
        .bind(item.creditor_id.to_string())
        .bind(item.source.module.clone())
        .bind(item.source.key.clone())
        .bind(item.payer_id.0.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("bringing an item back"))?;
        let row = match reopened {
            Some(row) => row,
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE creditor_id = $1 AND module = $2 AND source_key = $3"
            )))
            .bind(item.creditor_id.to_string())
            .bind(item.source.module.clone())
            .bind(item.source.key.clone())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("reading an item"))?,
        };
        Ok(ItemAdded {
            item: rows::item(&row)?,
            created: false,
        })
    }

    async fn item(&self, id: ItemId) -> Result<Option<PayableItem>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading an item"))?;
        row.as_ref().map(rows::item).transpose()
    }

    async fn cart_items(&self, cart: CartId) -> Result<Vec<PayableItem>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE cart_id = $1 AND state IN ('open', 'locked') ORDER BY id"
        )))
        .bind(cart.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("reading a cart's items"))?;
        rows.iter().map(rows::item).collect()
    }

    async fn cart_with_items(&self, cart: CartId) -> Result<Option<(Cart, Vec<PayableItem>)>> {
        // One statement: the cart on every row, its items (none: one row of NULLs) beside.
        // The items are joined on the parameter, not on `c.id`: on PostgreSQL the ids are
        // `COLLATE "C"` and `items.cart_id` is not, and a join across collations cannot use
        // `items_cart` (it scanned every item).
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let items: Vec<String> = ITEM_COLUMNS
                .split(',')
                .map(|c| format!("i.{0} AS {0}", c.trim()))
                .collect();
            format!(
                "SELECT c.creditor_id AS cart_creditor_id, c.payer AS cart_payer, \
                 c.created_at AS cart_created_at, {} FROM carts c LEFT JOIN items i \
                 ON i.cart_id = $1 AND i.state IN ('open', 'locked') WHERE c.id = $1 ORDER BY i.id",
                items.join(", ")
            )
        });
        let rows = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
            .bind(cart.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("reading a cart and its items"))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let found = Cart {
            id: cart,
            creditor_id: rows::parse_id(first, "cart_creditor_id")?,
            payer: rows::from_json(&rows::get::<String>(first, "cart_payer")?)?,
            created_at: rows::from_micros(rows::get(first, "cart_created_at")?)?,
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            if rows::get::<Option<String>>(row, "id")?.is_some() {
                items.push(rows::item(row)?);
            }
        }
        Ok(Some((found, items)))
    }

    async fn update_item(&self, item: &PayableItem) -> Result<PayableItem> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE items SET reason = $1, amount_cents = $2, currency = $3, due_date = $4 \
             WHERE id = $5 AND state = 'open' RETURNING {ITEM_COLUMNS}"
        )))
        .bind(item.reason.clone())
        .bind(item.amount.minor_units())
        .bind(item.amount.currency().code())
        .bind(item.due_date.map(|d| d.to_string()))
        .bind(item.id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("changing an item"))?;
        match row {
            Some(row) => {
                let changed = rows::item(&row)?;
                tx.commit().await.map_err(db_err("committing"))?;
                Ok(changed)
            }
            None => match Self::item_in(&mut tx, item.id).await? {
                Some(i) => Err(Error::Conflict(Conflict::ItemUnavailable {
                    item: item.id.to_string(),
                    state: i.state.name().into(),
                })),
                None => Err(Error::not_found("item", item.id)),
            },
        }
    }

    async fn remove_item(&self, item: ItemId) -> Result<PayableItem> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE items SET state = 'removed' WHERE id = $1 AND state = 'open' RETURNING {ITEM_COLUMNS}"
        )))
        .bind(item.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("removing an item"))?;
        match row {
            Some(row) => {
                let removed = rows::item(&row)?;
                tx.commit().await.map_err(db_err("committing"))?;
                Ok(removed)
            }
            None => match Self::item_in(&mut tx, item).await? {
                Some(i) => Err(Error::Conflict(Conflict::ItemUnavailable {
                    item: item.to_string(),
                    state: i.state.name().into(),
                })),
                None => Err(Error::not_found("item", item)),
            },
        }
    }

    async fn create_transaction(
        &self,
        t: &Transaction,
        event: &TransactionEvent,
    ) -> Result<TransactionCreated> {
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO transactions (id, creditor_id, cart_id, payer_id, payer, method_id, method_kind, gateway_id, \
             lines, total_cents, currency, status, provider_ref, idempotency_key, instruction, created_at, updated_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (payer_id, idempotency_key) DO NOTHING",
        )
        .bind(t.id.to_string())
        .bind(t.creditor_id.to_string())
        .bind(t.cart_id.to_string())
        .bind(t.payer.id.0.clone())
        .bind(to_json(&t.payer)?)
        .bind(t.method_id.to_string())
        .bind(t.method_kind.as_str())
        .bind(t.gateway_id.0.clone())
        .bind(to_json(&t.lines)?)
        .bind(t.total.minor_units())
        .bind(t.total.currency().code())
        .bind(t.status.as_str())
        .bind(t.provider_ref.clone())
        .bind(t.idempotency_key.clone())
        .bind(t.instruction.as_ref().map(to_json).transpose()?)
        .bind(micros(t.created_at))
        .bind(micros(t.updated_at))
        .bind(micros(t.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db_err("creating a transaction"))?
        .rows_affected()
            == 1;
        if !inserted {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE payer_id = $1 AND idempotency_key = $2"
            )))
            .bind(t.payer.id.0.clone())
            .bind(t.idempotency_key.clone())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err("reading a transaction"))?;
            return Ok(TransactionCreated {
                transaction: rows::transaction(&row)?,
                created: false,
            });
        }
        // Lock every item in one statement: it changes only the items still open in the
        // cart, so fewer rows than lines means another transaction or a payment has one.
        let mut lock = Sql::new("UPDATE items SET state = 'locked', transaction_id = ");
        lock.arg(Arg::Text(t.id.to_string()))
            .push(" WHERE cart_id = ")
            .arg(Arg::Text(t.cart_id.to_string()))
            .push(" AND state = 'open' AND (");
        // Each at the amount its line charges: an item changed since the cart was read is
        // not locked, so an old amount is never what gets paid.
        for (i, line) in t.lines.iter().enumerate() {
            if i > 0 {
                lock.push(" OR ");
            }
            lock.push("(id = ")
                .arg(Arg::Text(line.item_id.to_string()))
                .push(" AND amount_cents = ")
                .arg(Arg::Int(line.amount.minor_units()))
                .push(")");
        }
        lock.push(")");
        let locked = lock
            .query()
            .execute(&mut *tx)
            .await
            .map_err(db_err("locking items"))?
            .rows_affected();
        if locked != t.lines.len() as u64 {
            let mut unavailable = Error::not_found("item", t.lines[0].item_id);
            for line in &t.lines {
                match Self::item_in(&mut tx, line.item_id).await? {
                    Some(i) if i.state == payments_core::ItemState::Locked(t.id) => continue,
                    Some(i) if i.amount != line.amount => {
                        unavailable = Error::Conflict(Conflict::Other(format!(
                            "item {} is now of {}, not {}: check out again",
                            i.id, i.amount, line.amount
                        )));
                        break;
                    }
                    Some(i) => {
                        unavailable = Error::Conflict(Conflict::ItemUnavailable {
                            item: i.id.to_string(),
                            state: i.state.name().into(),
                        });
                        break;
                    }
                    None => {
                        unavailable = Error::not_found("item", line.item_id);
                        break;
                    }
                }
            }
            tx.rollback().await.map_err(db_err("rolling back"))?;
            return Err(unavailable);
        }
        let mut lines = Sql::new(
            "INSERT INTO transaction_lines (transaction_id, position, item_id, module, source_key, payment_type_id, \
             reason, amount_cents) VALUES ",
        );
        for (position, line) in t.lines.iter().enumerate() {
            lines.push(if position == 0 { "(" } else { ", (" });
            lines.list([
                Arg::Text(t.id.to_string()),
                Arg::Int(position as i64),
                Arg::Text(line.item_id.to_string()),
                Arg::Text(line.source.module.clone()),
                Arg::Text(line.source.key.clone()),
                Arg::Text(line.payment_type_id.to_string()),
                Arg::Text(line.reason.clone()),
                Arg::Int(line.amount.minor_units()),
            ]);
            lines.push(")");
        }
        lines
            .query()
            .execute(&mut *tx)
            .await
            .map_err(db_err("writing transaction lines"))?;
        insert_event(&mut tx, event).await?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(TransactionCreated {
            transaction: t.clone(),
            created: true,
        })
    }

    async fn transaction(&self, id: TransactionId) -> Result<Option<Transaction>> {
        let mut sql = Sql::new(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = "
        ));
        sql.arg(Arg::Text(id.to_string()));
        Ok(self.fetch_transactions(&sql).await?.pop())
    }

    async fn transaction_by_key(&self, payer: &PayerId, key: &str) -> Result<Option<Transaction>> {
        let mut sql = Sql::new(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE payer_id = "
        ));
        sql.arg(Arg::Text(payer.0.clone()))
            .push(" AND idempotency_key = ")
            .arg(Arg::Text(key.into()));
        Ok(self.fetch_transactions(&sql).await?.pop())
    }

    async fn transaction_by_provider_ref(
        &self,
        gateway: &GatewayId,
        provider_ref: &str,
    ) -> Result<Option<Transaction>> {
        let mut sql = Sql::new(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE gateway_id = "
        ));
        sql.arg(Arg::Text(gateway.0.clone()))
            .push(" AND provider_ref = ")
            .arg(Arg::Text(provider_ref.into()))
            .push(" ORDER BY id DESC LIMIT 1");
        Ok(self.fetch_transactions(&sql).await?.pop())
    }

    async fn transactions_of(&self, ids: &[TransactionId]) -> Result<Vec<Transaction>> {
        let sqlite = self.dialect == Dialect::Sqlite;
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut found = Vec::with_capacity(ids.len());
        for chunk in bulk_parts(&ids, |id| 4 + id.len()) {
            let mut sql = Sql::new(&format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE id IN "
            ));
            sql.json_list(chunk.iter().map(String::as_str), sqlite)?;
            found.extend(self.fetch_transactions(&sql).await?);
        }
        Ok(found)
    }

    async fn transactions_by_provider_refs(
        &self,
        gateway: &GatewayId,
        provider_refs: &[String],
    ) -> Result<Vec<Transaction>> {
        // The newest of those sharing a reference, as `transaction_by_provider_ref` picks.
        let mut newest: HashMap<String, Transaction> = HashMap::new();
        let sqlite = self.dialect == Dialect::Sqlite;
        for chunk in bulk_parts(provider_refs, |r| 4 + r.len()) {
            let mut sql = Sql::new(&format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE gateway_id = "
            ));
            sql.arg(Arg::Text(gateway.0.clone()))
                .push(" AND provider_ref IN ")
                .json_list(chunk.iter().map(String::as_str), sqlite)?;
            for t in self.fetch_transactions(&sql).await? {
                let Some(r) = t.provider_ref.clone() else {
                    continue;
                };
                match newest.get(&r) {
                    Some(n) if n.id.to_string() >= t.id.to_string() => {}
                    _ => {
                        newest.insert(r, t);
                    }
                }
            }
        }
        Ok(newest.into_values().collect())
    }

    async fn transition(&self, t: &Transition) -> Result<Transaction> {
        let mut tx = self.write().await?;
        let moved = self.transition_in(&mut tx, t).await?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(moved)
    }

    async fn pay_line(&self, p: &payments_core::LinePayment) -> Result<payments_core::LinePaid> {
        use payments_core::{ItemState, LinePaymentOutcome, LinePaymentRecord};
        let mut tx = self.write().await?;
        let Some(mut current) = self.locked_tx(&mut tx, p.transaction).await? else {
            return Err(Error::not_found("transaction", p.transaction));
        };
        let Some(line) = current.lines.get(p.line).cloned() else {
            return Err(Error::invalid("line", "the transaction has no such line"));
        };
        let earlier: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM line_payments WHERE creditor_id = $1 AND payment_key = $2",
        )
        .bind(current.creditor_id.to_string())
        .bind(p.key.clone())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("reading a line payment"))?;
        if let Some(outcome) = earlier {
            return Ok(payments_core::LinePaid {
                transaction: current,
                outcome: if outcome == "duplicate" {
                    LinePaymentOutcome::Duplicate
                } else {
                    LinePaymentOutcome::Settled
                },
                recorded: false,
                exceptions: Vec::new(),
            });
        }
        let items = self.locked_items(&mut tx, &[line.item_id]).await?;
        // Paid, or paid and given back: either way this money is a second payment.
        let already_paid = matches!(
            items.get(&line.item_id),
            Some(ItemState::Paid(_) | ItemState::Refunded(_))
        );
        let from = current.status;
        let mut exceptions = Vec::new();
        let mut events = Vec::new();
        let outcome = if already_paid {
            if insert_exception_in(&mut tx, &p.duplicate).await? {
                exceptions.push(p.duplicate.clone());
            }
            enqueue(&mut tx, current.creditor_id, p.at, &p.on_duplicate).await?;
            events.push((
                from,
                format!(
                    "line {} ({}) paid a second time, by {}: recorded as a double payment",
                    p.line + 1,
                    p.reference,
                    p.key
                ),
            ));
            LinePaymentOutcome::Duplicate
        } else {
            sqlx::query("UPDATE items SET state = 'paid', transaction_id = $1 WHERE id = $2")
                .bind(current.id.to_string())
                .bind(line.item_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err("settling an item"))?;
            current.lines[p.line].paid_at = Some(p.at);
            self.positions_paid_in(&mut tx, &current, &[p.line], p.at)
                .await?;
            if from.is_late() && insert_exception_in(&mut tx, &p.late).await? {
                exceptions.push(p.late.clone());
            }
            enqueue(&mut tx, current.creditor_id, p.at, &p.outbox).await?;
            events.push((
                from,
                format!("line {} ({}) paid by {}", p.line + 1, p.reference, p.key),
            ));
            if current.lines.iter().all(|l| l.paid_at.is_some()) && !from.is_paid() {
                current.status = TxStatus::Paid;
                events.push((from, "every line paid".into()));
            } else if from.is_late() && from != TxStatus::PartiallyPaid {
                current.status = TxStatus::PartiallyPaid;
                events.push((from, "a line paid after the end: partially paid".into()));
            }
            current.updated_at = p.at;
            sqlx::query(
                "UPDATE transactions SET lines = $1, status = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(to_json(&current.lines)?)
            .bind(current.status.as_str())
            .bind(micros(p.at))
            .bind(current.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err("recording a line paid"))?;
            LinePaymentOutcome::Settled
        };
        for (i, (from, note)) in events.into_iter().enumerate() {
            // The line's own event stays in its state; the move, if any, comes last.
            let to = if i == 0 && outcome == LinePaymentOutcome::Settled {
                from
            } else {
                current.status
            };
            let event = TransactionEvent {
                id: payments_core::EventId::new(),
                transaction_id: current.id,
                actor: p.actor.clone(),
                at: p.at,
                from: Some(from),
                to,
                provider_ref: current.provider_ref.clone(),
                note: Some(note.chars().take(500).collect()),
            };
            insert_event(&mut tx, &event).await?;
        }
        let record = LinePaymentRecord::of(p, current.creditor_id, outcome);
        sqlx::query(
            "INSERT INTO line_payments (creditor_id, payment_key, transaction_id, position, outcome, recorded_at, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(current.creditor_id.to_string())
        .bind(p.key.clone())
        .bind(current.id.to_string())
        .bind(i64::try_from(p.line).map_err(|_| Error::invalid("line", "too large"))?)
        .bind(match outcome {
            LinePaymentOutcome::Duplicate => "duplicate",
            _ => "settled",
        })
        .bind(micros(p.at))
        .bind(to_json(&record)?)
        .execute(&mut *tx)
        .await
        .map_err(db_err("recording a line payment"))?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(payments_core::LinePaid {
            transaction: current,
            outcome,
            recorded: true,
            exceptions,
        })
    }

    async fn line_payment(
        &self,
        creditor: CreditorId,
        key: &str,
    ) -> Result<Option<payments_core::LinePaymentRecord>> {
        let data: Option<String> = sqlx::query_scalar(
            "SELECT data FROM line_payments WHERE creditor_id = $1 AND payment_key = $2",
        )
        .bind(creditor.to_string())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading a line payment"))?;
        data.map(|d| rows::from_json(&d)).transpose()
    }

    async fn line_payments(
        &self,
        transaction: TransactionId,
    ) -> Result<Vec<payments_core::LinePaymentRecord>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM line_payments WHERE transaction_id = $1 ORDER BY recorded_at, payment_key",
        )
        .bind(transaction.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing line payments"))?;
        rows.iter().map(|d| rows::from_json(d)).collect()
    }

    async fn insert_exception(&self, e: &payments_core::Exception) -> Result<bool> {
        let mut tx = self.write().await?;
        let inserted = insert_exception_in(&mut tx, e).await?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(inserted)
    }

    async fn exception(
        &self,
        id: payments_core::ExceptionId,
    ) -> Result<Option<payments_core::Exception>> {
        let data: Option<String> = sqlx::query_scalar("SELECT data FROM exceptions WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading an exception"))?;
        data.map(|d| rows::from_json(&d)).transpose()
    }

    async fn exceptions(
        &self,
        q: &payments_core::ExceptionQuery,
    ) -> Result<Vec<payments_core::Exception>> {
        let mut sql = Sql::new("SELECT data FROM exceptions WHERE creditor_id = ");
        sql.arg(Arg::Text(q.creditor_id.to_string()));
        if let Some(k) = q.kind {
            sql.push(" AND kind = ").arg(Arg::Text(k.as_str().into()));
        }
        if let Some(st) = q.status {
            sql.push(" AND status = ")
                .arg(Arg::Text(st.as_str().into()));
        }
        if let Some(t) = q.transaction_id {
            sql.push(" AND transaction_id = ")
                .arg(Arg::Text(t.to_string()));
        }
        if let Some(k) = &q.key {
            sql.push(" AND exception_key = ").arg(Arg::Text(k.clone()));
        }
        self.json_page(
            sql,
            q.before.map(|b| b.to_string()),
            q.limit,
            "listing exceptions",
        )
        .await
    }

    async fn resolve_exception(
        &self,
        u: &payments_core::ExceptionUpdate,
    ) -> Result<payments_core::Exception> {
        let mut tx = self.write().await?;
        let data: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT data FROM exceptions WHERE id = $1{}",
            self.for_update()
        )))
        .bind(u.exception.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("reading an exception"))?;
        let Some(data) = data else {
            return Err(Error::not_found("exception", u.exception));
        };
        let mut e: payments_core::Exception = rows::from_json(&data)?;
        if !e.is_open() {
            return Err(Error::Conflict(Conflict::Other(format!(
                "exception {} is already resolved",
                e.id
            ))));
        }
        e.status = payments_core::ExceptionStatus::Resolved;
        e.resolution = Some(u.resolution.clone());
        if u.refund_id.is_some() {
            e.refund_id = u.refund_id;
        }
        let done = sqlx::query(
            "UPDATE exceptions SET status = $1, data = $2 WHERE id = $3 AND status = 'open'",
        )
        .bind(e.status.as_str())
        .bind(to_json(&e)?)
        .bind(e.id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err("resolving an exception"))?;
        if done.rows_affected() != 1 {
            return Err(Error::Conflict(Conflict::Other(format!(
                "exception {} is already resolved",
                e.id
            ))));
        }
        if let Some(event) = &u.event {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(e)
    }

    async fn extend_expiry(&self, x: &payments_core::ExpiryExtension) -> Result<Transaction> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE transactions SET expires_at = $1 WHERE id = $2 AND status = $3 RETURNING {TX_COLUMNS}"
        )))
        .bind(micros(x.until))
        .bind(x.transaction.to_string())
        .bind(x.status.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("postponing an expiry"))?;
        let Some(row) = row else {
            let current = Self::tx_in(&mut tx, x.transaction).await?;
            return Err(match current {
                Some(c) => stale(&c, x.status),
                None => Error::not_found("transaction", x.transaction),
            });
        };
        let moved = rows::transaction(&row)?;
        let event = TransactionEvent {
            id: payments_core::EventId::new(),
            transaction_id: moved.id,
            actor: x.actor.clone(),
            at: x.at,
            from: Some(x.status),
            to: x.status,
            provider_ref: moved.provider_ref.clone(),
            note: Some(x.note.clone()),
        };
        insert_event(&mut tx, &event).await?;
        for e in &x.exceptions {
            insert_exception_in(&mut tx, e).await?;
        }
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(moved)
    }

    async fn events(&self, transaction: TransactionId) -> Result<Vec<TransactionEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM transaction_events WHERE transaction_id = $1 ORDER BY id"
        )))
        .bind(transaction.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("reading events"))?;
        rows.iter().map(rows::event).collect()
    }

    async fn events_of(&self, transactions: &[TransactionId]) -> Result<Vec<TransactionEvent>> {
        if transactions.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(&format!(
            "SELECT {EVENT_COLUMNS} FROM transaction_events WHERE transaction_id IN ("
        ));
        sql.list(transactions.iter().map(|t| Arg::Text(t.to_string())));
        sql.push(") ORDER BY transaction_id, id");
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("reading events"))?;
        rows.iter().map(rows::event).collect()
    }

    async fn due_for_expiry(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Transaction>> {
        let mut sql = Sql::new(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE status IN ('created', 'pending') AND expires_at <= "
        ));
        sql.arg(Arg::Int(micros(now)))
            .push(" ORDER BY expires_at, id LIMIT ")
            .arg(Arg::Int(i64::from(limit)));
        self.fetch_transactions(&sql).await
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>> {
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let mut tx = self.write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE id IN (\
             SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2 ORDER BY id LIMIT $3{lock}) \
             RETURNING {OUTBOX_COLUMNS}"
        )))
        .bind(micros(lease_until))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("claiming the outbox"))?;
        // Each row on its own: one that does not read (a payload written by a newer
        // version, a row edited by hand) is dead alone, with why, and never holds back the
        // others.
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            match rows::outbox(row) {
                Ok(message) => claimed.push(message),
                Err(e) => {
                    let id: String = rows::get(row, "id")?;
                    let why: String = format!("this message cannot be read: {e}")
                        .chars()
                        .take(1000)
                        .collect();
                    sqlx::query("UPDATE outbox SET status = 'dead', last_error = $1 WHERE id = $2")
                        .bind(why)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("setting aside an unreadable message"))?;
                }
            }
        }
        tx.commit().await.map_err(db_err("committing"))?;
        claimed.sort_by_key(|m| m.id);
        Ok(claimed)
    }

    async fn outbox_delivered(&self, id: OutboxId, at: DateTime<Utc>) -> Result<()> {
        let done =
            sqlx::query("UPDATE outbox SET status = 'delivered', delivered_at = $1 WHERE id = $2")
                .bind(micros(at))
                .bind(id.to_string())
                .execute(&self.pool)
                .await
                .map_err(db_err("marking a message delivered"))?
                .rows_affected();
        if done == 0 {
            return Err(Error::not_found("outbox message", id));
        }
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let error: String = error.chars().take(1000).collect();
        let q = match retry_at {
            Some(at) => sqlx::query(
                "UPDATE outbox SET last_error = $1, next_attempt_at = $2 WHERE id = $3 AND status <> 'delivered'",
            )
            .bind(error)
            .bind(micros(at)),
            None => sqlx::query("UPDATE outbox SET last_error = $1, status = 'dead' WHERE id = $2 AND status <> 'delivered'")
                .bind(error),
        };
        q.bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_err("recording a failure"))?;
        Ok(())
    }

    async fn outbox_retry(&self, id: OutboxId, at: DateTime<Utc>) -> Result<OutboxMessage> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1 WHERE id = $2 AND status = 'dead' \
             RETURNING {OUTBOX_COLUMNS}"
        )))
        .bind(micros(at))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("retrying a message"))?;
        match row {
            Some(r) => rows::outbox(&r),
            None => match self.outbox_message(id).await? {
                Some(m) => Err(Error::Conflict(Conflict::Other(format!(
                    "outbox message {id} is {}, not dead",
                    m.status.as_str()
                )))),
                None => Err(Error::not_found("outbox message", id)),
            },
        }
    }

    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading a message"))?;
        row.as_ref().map(rows::outbox).transpose()
    }

    async fn outbox(&self, q: &OutboxQuery) -> Result<Vec<OutboxMessage>> {
        let mut sql = Sql::new(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE 1 = 1"));
        if let Some(c) = q.creditor_id {
            sql.push(" AND creditor_id = ")
                .arg(Arg::Text(c.to_string()));
        }
        if let Some(t) = q.transaction_id {
            sql.push(" AND transaction_id = ")
                .arg(Arg::Text(t.to_string()));
        }
        if let Some(s) = q.status {
            sql.push(" AND status = ").arg(Arg::Text(s.as_str().into()));
        }
        sql.push(" ORDER BY id");
        if q.limit > 0 {
            sql.push(" LIMIT ").arg(Arg::Int(i64::from(q.limit)));
        }
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing the outbox"))?;
        rows.iter().map(rows::outbox).collect()
    }

    async fn insert_bank_entry(&self, entry: &payments_core::BankEntry) -> Result<bool> {
        let mut tx = self.write().await?;
        let inserted = insert_bank_entry_in(&mut tx, entry).await?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(inserted)
    }

    async fn record_bank_entries(
        &self,
        steps: &[payments_core::BankStep],
    ) -> Result<Vec<payments_core::BankStepDone>> {
        if let Some(done) = self.bank_entries_at_once(steps).await? {
            return Ok(done);
        }
        self.bank_entries_step_by_step(steps).await
    }

    async fn bank_entry_keys(&self, creditor: CreditorId, keys: &[String]) -> Result<Vec<String>> {
        let mut known = Vec::new();
        let sqlite = self.dialect == Dialect::Sqlite;
        for chunk in bulk_parts(keys, |k| 4 + k.len()) {
            let mut sql = Sql::new("SELECT entry_key FROM bank_entries WHERE creditor_id = ");
            sql.arg(Arg::Text(creditor.to_string()))
                .push(" AND entry_key IN ")
                .json_list(chunk.iter().map(String::as_str), sqlite)?;
            for row in sql
                .query()
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("reading bank entries"))?
            {
                known.push(rows::get::<String>(&row, "entry_key")?);
            }
        }
        Ok(known)
    }

    async fn bank_entries(
        &self,
        q: &payments_core::BankEntryQuery,
    ) -> Result<Vec<payments_core::BankEntry>> {
        let mut sql = Sql::new("SELECT data FROM bank_entries WHERE creditor_id = ");
        sql.arg(Arg::Text(q.creditor_id.to_string()));
        if q.exceptions_only {
            sql.push(" AND is_exception = 1");
        }
        if let Some(r) = &q.reference {
            sql.push(" AND reference = ").arg(Arg::Text(r.clone()));
        }
        if let Some(k) = &q.key {
            sql.push(" AND entry_key = ").arg(Arg::Text(k.clone()));
        }
        if let Some(t) = &q.transaction_id {
            sql.push(" AND transaction_id = ")
                .arg(Arg::Text(t.to_string()));
        }
        sql.push(" ORDER BY imported_at DESC, entry_key DESC LIMIT ")
            .arg(Arg::Int(i64::from(q.limit)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing bank entries"))?;
        rows.iter()
            .map(|r| rows::from_json(&rows::get::<String>(r, "data")?))
            .collect()
    }

    async fn insert_provider_receipt(
        &self,
        receipt: &payments_core::ProviderReceipt,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO provider_receipts \
             (creditor_id, receipt_key, reference, recorded_at, gateway_id, data) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (creditor_id, receipt_key) DO NOTHING",
        )
        .bind(receipt.creditor_id.to_string())
        .bind(receipt.key.clone())
        .bind(receipt.reference.clone())
        .bind(rows::micros(receipt.recorded_at))
        .bind(receipt.gateway_id.0.clone())
        .bind(to_json(receipt)?)
        .execute(&self.pool)
        .await
        .map_err(db_err("recording a provider's receipt"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn provider_receipts(
        &self,
        q: &payments_core::ProviderReceiptQuery,
    ) -> Result<Vec<payments_core::ProviderReceipt>> {
        let mut sql = Sql::new("SELECT data FROM provider_receipts WHERE creditor_id = ");
        sql.arg(Arg::Text(q.creditor_id.to_string()));
        if let Some(r) = &q.reference {
            sql.push(" AND reference = ").arg(Arg::Text(r.clone()));
        }
        if let Some(k) = &q.key {
            sql.push(" AND receipt_key = ").arg(Arg::Text(k.clone()));
        }
        sql.push(" ORDER BY recorded_at DESC, receipt_key DESC LIMIT ")
            .arg(Arg::Int(i64::from(q.limit)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing providers' receipts"))?;
        rows.iter()
            .map(|r| rows::from_json(&rows::get::<String>(r, "data")?))
            .collect()
    }

    async fn put_flow(
        &self,
        flow: &payments_core::ReportingFlow,
    ) -> Result<payments_core::FlowStored> {
        let mut tx = self.write().await?;
        let creditor = flow.creditor_id.to_string();
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(revision) FROM reporting_flows \
             WHERE creditor_id = $1 AND flow_id = $2 AND psp_id = $3",
        )
        .bind(creditor.clone())
        .bind(flow.flow_id.clone())
        .bind(flow.psp_id.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err("reading a reporting flow's revision"))?;
        let revision = i64::from(flow.revision);
        let stored = match current {
            Some(r) if r == revision => return Ok(payments_core::FlowStored::Known),
            Some(r) if r > revision => {
                return Ok(payments_core::FlowStored::Outdated {
                    current: u32::try_from(r).unwrap_or(u32::MAX),
                });
            }
            Some(previous) => {
                // The replaced revision's JSON says so too.
                let row = sqlx::query(
                    "SELECT data FROM reporting_flows WHERE creditor_id = $1 AND flow_id = $2 \
                     AND psp_id = $3 AND revision = $4",
                )
                .bind(creditor.clone())
                .bind(flow.flow_id.clone())
                .bind(flow.psp_id.clone())
                .bind(previous)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("reading a reporting flow"))?;
                let mut old: payments_core::ReportingFlow =
                    rows::from_json(&rows::get::<String>(&row, "data")?)?;
                old.replaced = true;
                sqlx::query(
                    "UPDATE reporting_flows SET replaced = 1, data = $5 WHERE creditor_id = $1 \
                     AND flow_id = $2 AND psp_id = $3 AND revision = $4",
                )
                .bind(creditor.clone())
                .bind(flow.flow_id.clone())
                .bind(flow.psp_id.clone())
                .bind(previous)
                .bind(to_json(&old)?)
                .execute(&mut *tx)
                .await
                .map_err(db_err("replacing a reporting flow"))?;
                payments_core::FlowStored::Replaced {
                    previous: u32::try_from(previous).unwrap_or(0),
                }
            }
            None => payments_core::FlowStored::Inserted,
        };
        sqlx::query(
            "INSERT INTO reporting_flows \
             (creditor_id, flow_id, psp_id, revision, published_at, replaced, version, state, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(creditor)
        .bind(flow.flow_id.clone())
        .bind(flow.psp_id.clone())
        .bind(revision)
        .bind(rows::micros(flow.published_at))
        .bind(i64::from(flow.replaced))
        .bind(i64::from(flow.version))
        .bind(flow.state().as_str())
        .bind(to_json(flow)?)
        .execute(&mut *tx)
        .await
        .map_err(db_err("storing a reporting flow"))?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(stored)
    }

    async fn flows(
        &self,
        q: &payments_core::FlowQuery,
    ) -> Result<Vec<payments_core::ReportingFlow>> {
        let mut sql = Sql::new("SELECT data FROM reporting_flows WHERE creditor_id = ");
        sql.arg(Arg::Text(q.creditor_id.to_string()));
        if let Some(f) = &q.flow_id {
            sql.push(" AND flow_id = ").arg(Arg::Text(f.clone()));
        }
        if let Some(p) = &q.psp_id {
            sql.push(" AND psp_id = ").arg(Arg::Text(p.clone()));
        }
        if !q.include_replaced {
            sql.push(" AND replaced = 0");
        }
        if let Some((at, flow, psp)) = &q.before {
            let at = rows::micros(*at);
            sql.push(" AND (published_at < ")
                .arg(Arg::Int(at))
                .push(" OR (published_at = ")
                .arg(Arg::Int(at))
                .push(" AND (flow_id < ")
                .arg(Arg::Text(flow.clone()))
                .push(" OR (flow_id = ")
                .arg(Arg::Text(flow.clone()))
                .push(" AND psp_id < ")
                .arg(Arg::Text(psp.clone()))
                .push("))))");
        }
        sql.push(" ORDER BY published_at DESC, flow_id DESC, psp_id DESC, revision DESC LIMIT ")
            .arg(Arg::Int(i64::from(q.limit)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing reporting flows"))?;
        rows.iter()
            .map(|r| rows::from_json(&rows::get::<String>(r, "data")?))
            .collect()
    }

    async fn update_flow(
        &self,
        flow: &payments_core::ReportingFlow,
        exceptions: &[payments_core::Exception],
        reported: &[String],
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let creditor = flow.creditor_id.to_string();
        let done = sqlx::query(
            "UPDATE reporting_flows SET version = $5, state = $6, data = $7 \
             WHERE creditor_id = $1 AND flow_id = $2 AND psp_id = $3 AND revision = $4 \
             AND replaced = 0 AND version = $8",
        )
        .bind(creditor.clone())
        .bind(flow.flow_id.clone())
        .bind(flow.psp_id.clone())
        .bind(i64::from(flow.revision))
        .bind(i64::from(flow.version))
        .bind(flow.state().as_str())
        .bind(to_json(flow)?)
        .bind(i64::from(flow.version) - 1)
        .execute(&mut *tx)
        .await
        .map_err(db_err("updating a reporting flow"))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for e in exceptions {
            insert_exception_in(&mut tx, e).await?;
        }
        let by = format!("{}/{}/{}", flow.flow_id, flow.psp_id, flow.revision);
        for key in reported {
            sqlx::query(
                "UPDATE provider_receipts SET reported_by = $3 \
                 WHERE creditor_id = $1 AND receipt_key = $2 AND reported_by IS NULL",
            )
            .bind(creditor.clone())
            .bind(key.clone())
            .bind(by.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err("marking a receipt reported"))?;
        }
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(true)
    }

    async fn unreported_receipts(
        &self,
        creditor: CreditorId,
        gateway: &GatewayId,
        before: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<payments_core::ProviderReceipt>> {
        let mut sql = Sql::new(
            "SELECT data FROM provider_receipts WHERE reported_by IS NULL AND creditor_id = ",
        );
        sql.arg(Arg::Text(creditor.to_string()))
            .push(" AND recorded_at < ")
            .arg(Arg::Int(rows::micros(before)))
            .push(" AND gateway_id = ")
            .arg(Arg::Text(gateway.0.clone()));
        if let Some((at, key)) = after {
            let at = rows::micros(at);
            sql.push(" AND (recorded_at > ")
                .arg(Arg::Int(at))
                .push(" OR (recorded_at = ")
                .arg(Arg::Int(at))
                .push(" AND receipt_key > ")
                .arg(Arg::Text(key))
                .push("))");
        }
        sql.push(" ORDER BY recorded_at, receipt_key LIMIT ")
            .arg(Arg::Int(i64::from(limit)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing receipts no flow reported"))?;
        rows.iter()
            .map(|r| rows::from_json(&rows::get::<String>(r, "data")?))
            .collect()
    }

    async fn allocate_sequence(&self, name: &str, count: u32) -> Result<u64> {
        payments_core::check_sequence(name, count)?;
        let count = i64::from(count);
        let next: i64 = sqlx::query_scalar(
            "INSERT INTO sequences (name, next_value) VALUES ($1, 1 + $2) \
             ON CONFLICT (name) DO UPDATE SET next_value = sequences.next_value + $2 \
             RETURNING next_value",
        )
        .bind(name.to_owned())
        .bind(count)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("allocating from a sequence"))?;
        u64::try_from(next - count)
            .map_err(|_| Error::invalid("name", "the counter holds a negative value"))
    }

    async fn create_refund(
        &self,
        refund: &payments_core::Refund,
        event: &TransactionEvent,
    ) -> Result<payments_core::RefundCreated> {
        let mut tx = self.write().await?;
        // PostgreSQL: the transaction's row lock serialises its refunds; SQLite: the
        // immediate transaction already holds the database's write lock.
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = $1{lock}"
        )))
        .bind(refund.transaction_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("reading a transaction"))?;
        let Some(row) = row else {
            return Err(Error::not_found("transaction", refund.transaction_id));
        };
        let paid = rows::transaction(&row)?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT data FROM refunds WHERE transaction_id = $1 AND refund_key = $2",
        )
        .bind(refund.transaction_id.to_string())
        .bind(refund.key.clone())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("reading a refund"))?;
        if let Some(data) = existing {
            return Ok(payments_core::RefundCreated {
                refund: rows::from_json(&data)?,
                created: false,
            });
        }
        if paid.status != TxStatus::Paid && !refund.excess {
            return Err(stale(&paid, TxStatus::Paid));
        }
        let earlier: Vec<String> =
            sqlx::query_scalar("SELECT data FROM refunds WHERE transaction_id = $1")
                .bind(refund.transaction_id.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("reading refunds"))?;
        let earlier = earlier
            .iter()
            .map(|d| rows::from_json(d))
            .collect::<Result<Vec<payments_core::Refund>>>()?;
        payments_core::check_refund_fits(&paid, &earlier, refund)?;
        sqlx::query(
            "INSERT INTO refunds (id, transaction_id, refund_key, amount_cents, status, data) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(refund.id.to_string())
        .bind(refund.transaction_id.to_string())
        .bind(refund.key.clone())
        .bind(refund.amount.minor_units())
        .bind(refund.status.as_str())
        .bind(to_json(refund)?)
        .execute(&mut *tx)
        .await
        .map_err(db_err("recording a refund"))?;
        insert_event(&mut tx, event).await?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(payments_core::RefundCreated {
            refund: refund.clone(),
            created: true,
        })
    }

    async fn finish_refund(
        &self,
        update: &payments_core::RefundUpdate,
    ) -> Result<payments_core::Refund> {
        let mut tx = self.write().await?;
        let owner: Option<String> =
            sqlx::query_scalar("SELECT transaction_id FROM refunds WHERE id = $1")
                .bind(update.refund.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("reading a refund"))?;
        let Some(owner) = owner else {
            return Err(Error::not_found("refund", update.refund));
        };
        let owner: TransactionId = owner.parse().map_err(|_| rows::corrupt("refund"))?;
        // The transaction's row lock first, as `create_refund` takes it: two refunds of it
        // finishing at once see each other's end.
        let paid = self.locked_tx(&mut tx, owner).await?;
        let data: Option<String> = sqlx::query_scalar("SELECT data FROM refunds WHERE id = $1")
            .bind(update.refund.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("reading a refund"))?;
        let Some(data) = data else {
            return Err(Error::not_found("refund", update.refund));
        };
        let mut refund: payments_core::Refund = rows::from_json(&data)?;
        let stale_refund = |r: &payments_core::Refund| {
            Error::Conflict(payments_core::Conflict::Other(format!(
                "refund {} is {}, not {}",
                r.id, r.status, update.from
            )))
        };
        if refund.status != update.from {
            return Err(stale_refund(&refund));
        }
        refund.status = update.to;
        refund.provider_ref = update.provider_ref.clone().or(refund.provider_ref.take());
        refund.note = update.note.clone();
        refund.updated_at = update.at;
        let done =
            sqlx::query("UPDATE refunds SET status = $1, data = $2 WHERE id = $3 AND status = $4")
                .bind(refund.status.as_str())
                .bind(to_json(&refund)?)
                .bind(refund.id.to_string())
                .bind(update.from.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err("updating a refund"))?;
        if done.rows_affected() != 1 {
            return Err(stale_refund(&refund));
        }
        insert_event(&mut tx, &update.event).await?;
        let mut outbox = update.outbox.clone();
        if update.to == payments_core::RefundStatus::Succeeded
            && let Some(paid) = &paid
        {
            let all: Vec<String> =
                sqlx::query_scalar("SELECT data FROM refunds WHERE transaction_id = $1")
                    .bind(paid.id.to_string())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err("listing refunds"))?;
            let all = all
                .iter()
                .map(|d| rows::from_json(d))
                .collect::<Result<Vec<payments_core::Refund>>>()?;
            let full = payments_core::lines_refunded_in_full(paid, &all);
            outbox = payments_core::with_lines_in_full(paid, refund.id, &full, &outbox);
            let mut given_back = Vec::new();
            for position in full {
                let done = sqlx::query(
                    "UPDATE items SET state = 'refunded' WHERE id = $1 AND state = 'paid' AND transaction_id = $2",
                )
                .bind(paid.lines[position].item_id.to_string())
                .bind(paid.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err("marking an item refunded"))?;
                if done.rows_affected() == 1 {
                    given_back.push(position);
                }
            }
            self.positions_refunded_in(&mut tx, paid, &given_back, update.at)
                .await?;
        }
        enqueue(&mut tx, refund.creditor_id, update.at, &outbox).await?;
        if let Some(e) = &update.exception {
            insert_exception_in(&mut tx, e).await?;
        }
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(refund)
    }

    async fn refunds(&self, transaction: TransactionId) -> Result<Vec<payments_core::Refund>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT data FROM refunds WHERE transaction_id = $1 ORDER BY id")
                .bind(transaction.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("listing refunds"))?;
        rows.iter().map(|d| rows::from_json(d)).collect()
    }

    async fn unfinished_refunds(
        &self,
        after: Option<payments_core::RefundId>,
        limit: u32,
    ) -> Result<Vec<payments_core::Refund>> {
        let mut sql = Sql::new("SELECT data FROM refunds WHERE status IN ('requested', 'pending')");
        if let Some(a) = after {
            sql.push(" AND id > ").arg(Arg::Text(a.to_string()));
        }
        sql.push(" ORDER BY id LIMIT ")
            .arg(Arg::Int(i64::from(limit)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing unfinished refunds"))?;
        rows.iter()
            .map(|r| rows::from_json(&rows::get::<String>(r, "data")?))
            .collect()
    }

    async fn unfinished(
        &self,
        before: DateTime<Utc>,
        gateways: &[GatewayId],
        after: Option<TransactionId>,
        limit: u32,
    ) -> Result<Vec<Transaction>> {
        if gateways.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE status IN ('created', 'pending') AND updated_at <= "
        ));
        sql.arg(Arg::Int(micros(before)));
        sql.push(" AND gateway_id IN (");
        sql.list(gateways.iter().map(|g| Arg::Text(g.to_string())));
        sql.push(")");
        if let Some(after) = after {
            sql.push(" AND id > ").arg(Arg::Text(after.to_string()));
        }
        sql.push(" ORDER BY id LIMIT ")
            .arg(Arg::Int(i64::from(limit)));
        self.fetch_transactions(&sql).await
    }

    async fn insert_positions(
        &self,
        positions: &[payments_core::DebtPosition],
        events: &[payments_core::PositionEvent],
        messages: &[payments_core::NewOutboxMessage],
    ) -> Result<Vec<bool>> {
        let mut inserted = std::collections::HashSet::new();
        let mut tx = self.write().await?;
        for batch in positions.chunks(500) {
            let mut sql = Sql::new(
                "INSERT INTO debt_positions (id, creditor_id, module, position_key, payer, payment_type_id, \
                 status, valid_until, version, data) VALUES ",
            );
            for (n, p) in batch.iter().enumerate() {
                sql.push(if n == 0 { "(" } else { ", (" });
                position_values(&mut sql, p)?;
                sql.push(")");
            }
            sql.push(" ON CONFLICT DO NOTHING RETURNING id");
            let rows = sql
                .query()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("registering debt positions"))?;
            for r in &rows {
                inserted.insert(rows::get::<String>(r, "id")?);
            }
        }
        let fresh: Vec<(usize, &payments_core::DebtPosition)> = positions
            .iter()
            .enumerate()
            .filter(|(_, p)| inserted.contains(&p.id.to_string()))
            .collect();
        let options: Vec<(&payments_core::DebtPosition, usize)> = fresh
            .iter()
            .flat_map(|(_, p)| (0..p.options.len()).map(move |i| (*p, i)))
            .collect();
        insert_options(&mut tx, &options).await?;
        let mut batch_events = Vec::new();
        for (i, p) in &fresh {
            if let Some(m) = messages.get(*i) {
                let at = events.get(*i).map_or(p.created_at, |e| e.at);
                enqueue(&mut tx, p.creditor_id, at, std::slice::from_ref(m)).await?;
            }
            if let Some(e) = events.get(*i) {
                batch_events.push((e, p.version));
            }
        }
        for chunk in batch_events.chunks(1000) {
            let mut sql =
                Sql::new("INSERT INTO position_events (position_id, seq, at, data) VALUES ");
            for (n, (e, seq)) in chunk.iter().enumerate() {
                sql.push(if n == 0 { "(" } else { ", (" })
                    .arg(Arg::Text(e.position_id.to_string()))
                    .push(", ")
                    .arg(Arg::Int(i64::from(*seq)))
                    .push(", ")
                    .arg(Arg::Int(micros(e.at)))
                    .push(", ")
                    .arg(Arg::Text(to_json(e)?))
                    .push(")");
            }
            sql.query()
                .execute(&mut *tx)
                .await
                .map_err(db_err("recording debt position events"))?;
        }
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(positions
            .iter()
            .map(|p| inserted.contains(&p.id.to_string()))
            .collect())
    }

    async fn position(
        &self,
        id: payments_core::DebtPositionId,
    ) -> Result<Option<payments_core::DebtPosition>> {
        let data: Option<String> =
            sqlx::query_scalar("SELECT data FROM debt_positions WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading a debt position"))?;
        data.map(|d| rows::from_json(&d)).transpose()
    }

    async fn position_by_key(
        &self,
        creditor: CreditorId,
        module: &str,
        key: &str,
    ) -> Result<Option<payments_core::DebtPosition>> {
        let data: Option<String> = sqlx::query_scalar(
            "SELECT data FROM debt_positions WHERE creditor_id = $1 AND module = $2 AND position_key = $3",
        )
        .bind(creditor.to_string())
        .bind(module.to_owned())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading a debt position"))?;
        data.map(|d| rows::from_json(&d)).transpose()
    }

    async fn position_by_notice(
        &self,
        creditor: CreditorId,
        notice_number: &str,
    ) -> Result<Option<payments_core::DebtPosition>> {
        let data: Option<String> = sqlx::query_scalar(
            "SELECT p.data FROM position_options o JOIN debt_positions p ON p.id = o.position_id \
             WHERE o.creditor_id = $1 AND o.notice_number = $2",
        )
        .bind(creditor.to_string())
        .bind(notice_number.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading a debt position"))?;
        data.map(|d| rows::from_json(&d)).transpose()
    }

    async fn positions(
        &self,
        q: &payments_core::PositionQuery,
    ) -> Result<Vec<payments_core::DebtPosition>> {
        let mut sql = Sql::new("SELECT data FROM debt_positions WHERE 1 = 1");
        if let Some(c) = q.creditor_id {
            sql.push(" AND creditor_id = ")
                .arg(Arg::Text(c.to_string()));
        }
        if let Some(st) = q.status {
            sql.push(" AND status = ")
                .arg(Arg::Text(st.as_str().into()));
        }
        if q.payable_only {
            sql.push(" AND status IN ('valid', 'partially_paid')");
        }
        if let Some(t) = q.payment_type_id {
            sql.push(" AND payment_type_id = ")
                .arg(Arg::Text(t.to_string()));
        }
        if let Some(payer) = &q.payer {
            sql.push(" AND payer = ").arg(Arg::Text(payer.clone()));
        }
        if let Some(d) = q.valid_before {
            sql.push(" AND valid_until < ")
                .arg(Arg::Text(d.to_string()));
        }
        if q.due_from.is_some() || q.due_to.is_some() {
            sql.push(" AND id IN (SELECT position_id FROM position_options WHERE paid = 0");
            if let Some(d) = q.due_from {
                sql.push(" AND due_date >= ").arg(Arg::Text(d.to_string()));
            }
            if let Some(d) = q.due_to {
                sql.push(" AND due_date <= ").arg(Arg::Text(d.to_string()));
            }
            sql.push(")");
        }
        self.json_page(
            sql,
            q.before.map(|b| b.to_string()),
            q.limit,
            "listing debt positions",
        )
        .await
    }

    async fn update_position(
        &self,
        p: &payments_core::DebtPosition,
        event: &payments_core::PositionEvent,
        messages: &[payments_core::NewOutboxMessage],
    ) -> Result<payments_core::DebtPosition> {
        let mut tx = self.write().await?;
        // The items of its options (every revision's source), locked first, in id order as
        // a payment locks them: refused while one is in a payment in progress, the open ones
        // taken out of their carts, so an old amount is never paid.
        let items = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, state FROM items WHERE creditor_id = $1 AND module = $2 AND source_key IN \
             (SELECT source_key FROM position_sources WHERE position_id = $3) ORDER BY id{}",
            self.for_update()
        )))
        .bind(p.creditor_id.to_string())
        .bind(p.module.clone())
        .bind(p.id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("reading a debt position's items"))?;
        for row in &items {
            if rows::get::<String>(row, "state")? == "locked" {
                let item: String = rows::get(row, "id")?;
                tx.rollback().await.map_err(db_err("rolling back"))?;
                return Err(Error::Conflict(Conflict::ItemUnavailable {
                    item,
                    state: "in a payment in progress".into(),
                }));
            }
        }
        sqlx::query(
            "UPDATE items SET state = 'removed', transaction_id = NULL WHERE state = 'open' \
             AND creditor_id = $1 AND module = $2 AND source_key IN \
             (SELECT source_key FROM position_sources WHERE position_id = $3)",
        )
        .bind(p.creditor_id.to_string())
        .bind(p.module.clone())
        .bind(p.id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err("taking a debt position's items out of carts"))?;
        let done = sqlx::query(
            "UPDATE debt_positions SET status = $1, valid_until = $2, version = $3, data = $4 \
             WHERE id = $5 AND version = $6",
        )
        .bind(p.status.as_str())
        .bind(p.valid_until.map(|d| d.to_string()))
        .bind(i64::from(p.version))
        .bind(to_json(p)?)
        .bind(p.id.to_string())
        .bind(i64::from(p.version) - 1)
        .execute(&mut *tx)
        .await
        .map_err(db_err("changing a debt position"))?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err("rolling back"))?;
            return Err(Error::Conflict(Conflict::PositionChanged {
                position: p.id.to_string(),
                why: format!("it is no longer at version {}", p.version - 1),
            }));
        }
        sqlx::query("DELETE FROM position_options WHERE position_id = $1")
            .bind(p.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err("changing a debt position"))?;
        let options: Vec<(&payments_core::DebtPosition, usize)> =
            (0..p.options.len()).map(|i| (p, i)).collect();
        insert_options(&mut tx, &options).await?;
        insert_position_event(&mut tx, event, p.version).await?;
        enqueue(&mut tx, p.creditor_id, event.at, messages).await?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(p.clone())
    }

    async fn position_events(
        &self,
        position: payments_core::DebtPositionId,
    ) -> Result<Vec<payments_core::PositionEvent>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM position_events WHERE position_id = $1 ORDER BY seq",
        )
        .bind(position.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("reading debt position events"))?;
        rows.iter().map(|d| rows::from_json(d)).collect()
    }

    async fn enqueue_once(
        &self,
        key: &str,
        creditor: CreditorId,
        message: &payments_core::NewOutboxMessage,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO outbox_keys (message_key, outbox_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(key.to_owned())
        .bind(message.id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err("enqueuing a message once"))?;
        if done.rows_affected() == 1 {
            enqueue(&mut tx, creditor, at, std::slice::from_ref(message)).await?;
        }
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn search(&self, q: &MovementQuery) -> Result<MovementPage> {
        let row = count_movements(q, self.dialect)
            .query()
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("counting movements"))?;
        let count: i64 = rows::get(&row, "n")?;
        let total: i64 = rows::get(&row, "total")?;
        if rows::get::<i64>(&row, "changes")? > FOLD_AFTER {
            // The count above is right either way; the fold keeps the next ones short. One
            // that fails leaves the changes for the next search to fold.
            let _ = self.fold_summaries().await;
        }

        let mut sql = Sql::new(&format!(
            "SELECT {} FROM transactions t",
            TX_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        movement_filters(&mut sql, q);
        if let Some(after) = q.after {
            after_in_order(&mut sql, &after.to_string());
        }
        sql.push(" ORDER BY ")
            .push(NEWEST_FIRST)
            .push(" LIMIT ")
            .arg(Arg::Int(i64::from(q.limit) + 1));
        let items = self.fetch_transactions(&sql).await?;
        Ok(MovementPage {
            page: Page::from_overfetch(items, q.limit),
            count: u64::try_from(count).unwrap_or_default(),
            total: Money::from_minor(total, payments_core::Currency::Eur)
                .map_err(|_| rows::corrupt("total"))?,
        })
    }

    async fn history(&self, q: &HistoryQuery) -> Result<Page<Transaction>> {
        let mut sql = Sql::new(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE payer_id = "
        ));
        sql.arg(Arg::Text(q.payer_id.0.clone()));
        if let Some(c) = q.creditor_id {
            sql.push(" AND creditor_id = ")
                .arg(Arg::Text(c.to_string()));
        }
        if let Some(after) = q.after {
            sql.push(" AND id < ").arg(Arg::Text(after.to_string()));
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .arg(Arg::Int(i64::from(q.limit) + 1));
        Ok(Page::from_overfetch(
            self.fetch_transactions(&sql).await?,
            q.limit,
        ))
    }
}

/// Enqueues `messages` of `creditor`, due at `at`, in `tx`.
async fn enqueue(
    tx: &mut Tx,
    creditor: CreditorId,
    at: DateTime<Utc>,
    messages: &[payments_core::NewOutboxMessage],
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut outbox = Sql::new(
        "INSERT INTO outbox (id, transaction_id, creditor_id, payload, status, attempts, next_attempt_at, \
         last_error, created_at, delivered_at) VALUES ",
    );
    for (n, m) in messages.iter().enumerate() {
        outbox.push(if n == 0 { "(" } else { ", (" });
        outbox
            .arg(Arg::Text(m.id.to_string()))
            .push(", ")
            .arg(Arg::Text(m.transaction_id.to_string()))
            .push(", ")
            .arg(Arg::Text(creditor.to_string()))
            .push(", ")
            .arg(Arg::Text(to_json(&m.payload)?))
            .push(", 'pending', 0, ")
            .arg(Arg::Int(micros(at)))
            .push(", NULL, ")
            .arg(Arg::Int(micros(at)))
            .push(", NULL)");
    }
    outbox
        .query()
        .execute(&mut **tx)
        .await
        .map_err(db_err("enqueuing messages"))?;
    Ok(())
}

/// Inserts a bank entry in `tx` unless its creditor has one with its key, with the
/// exception it carries; answers whether it was inserted.
async fn insert_bank_entry_in(tx: &mut Tx, entry: &payments_core::BankEntry) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO bank_entries \
         (creditor_id, entry_key, imported_at, reference, transaction_id, is_exception, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (creditor_id, entry_key) DO NOTHING",
    )
    .bind(entry.creditor_id.to_string())
    .bind(entry.key.clone())
    .bind(rows::micros(entry.imported_at))
    .bind(entry.reference.clone())
    .bind(entry.transaction_id().map(|t| t.to_string()))
    .bind(i64::from(entry.is_exception()))
    .bind(to_json(entry)?)
    .execute(&mut **tx)
    .await
    .map_err(db_err("recording a bank entry"))?;
    let inserted = done.rows_affected() == 1;
    if inserted && let Some(e) = payments_core::Exception::for_bank_entry(entry) {
        insert_exception_in(tx, &e).await?;
    }
    Ok(inserted)
}

/// Records an exception in `tx` unless its creditor has one with its key (or it is there
/// already: the same exception recorded twice at once conflicts on its id instead).
async fn insert_exception_in(tx: &mut Tx, e: &payments_core::Exception) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO exceptions (id, creditor_id, exception_key, kind, status, transaction_id, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(e.id.to_string())
    .bind(e.creditor_id.to_string())
    .bind(e.key.clone())
    .bind(e.kind.as_str())
    .bind(e.status.as_str())
    .bind(e.transaction_id.map(|t| t.to_string()))
    .bind(to_json(e)?)
    .execute(&mut **tx)
    .await
    .map_err(db_err("recording an exception"))?;
    Ok(done.rows_affected() == 1)
}

async fn insert_event(tx: &mut Tx, e: &TransactionEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO transaction_events (id, transaction_id, at, actor, from_status, to_status, provider_ref, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.id.to_string())
    .bind(e.transaction_id.to_string())
    .bind(micros(e.at))
    .bind(to_json(&e.actor)?)
    .bind(e.from.map(|s| s.as_str()))
    .bind(e.to.as_str())
    .bind(e.provider_ref.clone())
    .bind(e.note.clone())
    .execute(&mut **tx)
    .await
    .map_err(db_err("recording an event"))?;
    Ok(())
}

/// Binds a debt position's columns, in the order of `debt_positions`' insert.
fn position_values(sql: &mut Sql, p: &payments_core::DebtPosition) -> Result<()> {
    sql.arg(Arg::Text(p.id.to_string()))
        .push(", ")
        .arg(Arg::Text(p.creditor_id.to_string()))
        .push(", ")
        .arg(Arg::Text(p.module.clone()))
        .push(", ")
        .arg(Arg::Text(p.key.clone()))
        .push(", ")
        .arg(Arg::Text(p.payer.fiscal_code.clone()))
        .push(", ")
        .arg(Arg::Text(p.payment_type_id.to_string()))
        .push(", ")
        .arg(Arg::Text(p.status.as_str().into()));
    match p.valid_until {
        Some(d) => {
            sql.push(", ").arg(Arg::Text(d.to_string()));
        }
        None => {
            sql.push(", NULL");
        }
    }
    sql.push(", ")
        .arg(Arg::Int(i64::from(p.version)))
        .push(", ")
        .arg(Arg::Text(to_json(p)?));
    Ok(())
}

/// Saves a debt position's status, version and data (its row is locked by the caller).
async fn save_position(tx: &mut Tx, p: &payments_core::DebtPosition) -> Result<()> {
    sqlx::query("UPDATE debt_positions SET status = $1, version = $2, data = $3 WHERE id = $4")
        .bind(p.status.as_str())
        .bind(i64::from(p.version))
        .bind(to_json(p)?)
        .bind(p.id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_err("saving a debt position"))?;
    Ok(())
}

/// Inserts the rows of options (their notice numbers, due dates) and the sources of their
/// items (kept from earlier revisions).
async fn insert_options(
    tx: &mut Tx,
    options: &[(&payments_core::DebtPosition, usize)],
) -> Result<()> {
    for chunk in options.chunks(1000) {
        let mut sql = Sql::new(
            "INSERT INTO position_options (position_id, idx, creditor_id, notice_number, due_date, paid) VALUES ",
        );
        let mut sources = Sql::new(
            "INSERT INTO position_sources (creditor_id, module, source_key, position_id, idx) VALUES ",
        );
        for (n, (p, i)) in chunk.iter().enumerate() {
            let o = &p.options[*i];
            let source = p
                .source(*i)
                .unwrap_or_else(|| payments_core::Source::new("", ""));
            sql.push(if n == 0 { "(" } else { ", (" })
                .arg(Arg::Text(p.id.to_string()))
                .push(", ")
                .arg(Arg::Int(*i as i64))
                .push(", ")
                .arg(Arg::Text(p.creditor_id.to_string()))
                .push(", ")
                .arg(Arg::Text(o.notice_number.clone()))
                .push(", ")
                .arg(Arg::Text(o.due_date.to_string()))
                .push(", ")
                .arg(Arg::Int(i64::from(o.paid_by.is_some())))
                .push(")");
            sources
                .push(if n == 0 { "(" } else { ", (" })
                .arg(Arg::Text(p.creditor_id.to_string()))
                .push(", ")
                .arg(Arg::Text(source.module))
                .push(", ")
                .arg(Arg::Text(source.key))
                .push(", ")
                .arg(Arg::Text(p.id.to_string()))
                .push(", ")
                .arg(Arg::Int(*i as i64))
                .push(")");
        }
        sources.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(&mut **tx).await.map_err(|e| {
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation())
            {
                Error::Conflict(Conflict::Other(
                    "a notice number of these debt positions is taken".into(),
                ))
            } else {
                Error::storage("registering payment options", e)
            }
        })?;
        sources
            .query()
            .execute(&mut **tx)
            .await
            .map_err(db_err("registering payment options"))?;
    }
    Ok(())
}

async fn insert_position_event(
    tx: &mut Tx,
    e: &payments_core::PositionEvent,
    seq: u32,
) -> Result<()> {
    sqlx::query("INSERT INTO position_events (position_id, seq, at, data) VALUES ($1, $2, $3, $4)")
        .bind(e.position_id.to_string())
        .bind(i64::from(seq))
        .bind(micros(e.at))
        .bind(to_json(e)?)
        .execute(&mut **tx)
        .await
        .map_err(db_err("recording a debt position event"))?;
    Ok(())
}
