//! The portal's sessions, kept in its own database (SQLite or PostgreSQL) through
//! `tower-sessions`: they survive a restart and are shared by every instance on the same
//! database.
//!
//! `tower-sessions-sqlx-store` is built on sqlx 0.8 and the portal on sqlx 0.9 (two sqlx in
//! one build, and two connection pools to one file); this is the same store, four
//! statements, on the portal's own pool.
//!
//! A session row exists only once something is put in it (the portal puts the account at
//! sign-in): a visitor without a cookie creates nothing here.

use async_trait::async_trait;
use sqlx::AnyPool;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

/// Sessions in the `portal_sessions` table of the portal's database.
#[derive(Debug, Clone)]
pub struct SqlSessionStore {
    pool: AnyPool,
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn now() -> i64 {
    tower_sessions::cookie::time::OffsetDateTime::now_utc().unix_timestamp()
}

impl SqlSessionStore {
    /// The store on `pool`; [`SqlSessionStore::migrate`] creates its table.
    pub fn new(pool: AnyPool) -> Self {
        SqlSessionStore { pool }
    }

    /// Creates the sessions' table when it is missing.
    pub async fn migrate(&self) -> sqlx::Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS portal_sessions (\
             id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many sessions are stored, expired ones included (for tests and monitoring).
    pub async fn count(&self) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM portal_sessions")
            .fetch_one(&self.pool)
            .await
    }

    /// When the session `id` expires (unix seconds), if it is stored.
    pub async fn expires_at(&self, id: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar("SELECT expires_at FROM portal_sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }
}

fn encode(record: &Record) -> session_store::Result<String> {
    serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = encode(record)?;
        // A new id until one is free (a collision of 128 random bits is theoretical).
        loop {
            let inserted = sqlx::query(
                "INSERT INTO portal_sessions (id, data, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(record.id.to_string())
            .bind(&data)
            .bind(record.expiry_date.unix_timestamp())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    /// Updates a stored session; never inserts one. A request that loaded the session
    /// before a sign-out (or a sign-in that changed its id) deleted it must not bring it
    /// back when it ends: a new session goes through [`SessionStore::create`].
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        sqlx::query("UPDATE portal_sessions SET data = $1, expires_at = $2 WHERE id = $3")
            .bind(encode(record)?)
            .bind(record.expiry_date.unix_timestamp())
            .bind(record.id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT data, expires_at FROM portal_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id.to_string())
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        Ok(Some(Record {
            id: *id,
            data: serde_json::from_str(&data)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?,
            expiry_date: tower_sessions::cookie::time::OffsetDateTime::from_unix_timestamp(
                expires_at,
            )
            .map_err(|e| session_store::Error::Decode(e.to_string()))?,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM portal_sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for SqlSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        sqlx::query("DELETE FROM portal_sessions WHERE expires_at <= $1")
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_deleted_is_not_brought_back_by_a_request_that_loaded_it() {
        sqlx::any::install_default_drivers();
        let file = std::env::temp_dir().join(format!("sessions-{}.db", uuid::Uuid::new_v4()));
        let pool = AnyPool::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        let store = SqlSessionStore::new(pool);
        store.migrate().await.unwrap();
        let end = tower_sessions::cookie::time::OffsetDateTime::now_utc()
            + tower_sessions::cookie::time::Duration::minutes(30);
        let mut record = Record {
            id: Id::default(),
            data: [("account".to_owned(), serde_json::json!("mario"))].into(),
            expiry_date: end,
        };
        store.create(&mut record).await.unwrap();
        assert!(store.load(&record.id).await.unwrap().is_some());
        // Signed out meanwhile; the slower request ends and saves what it loaded.
        store.delete(&record.id).await.unwrap();
        store.save(&record).await.unwrap();
        assert!(store.load(&record.id).await.unwrap().is_none());
        assert_eq!(store.count().await.unwrap(), 0);
        // An expired session is none, and is deleted with the others.
        let mut old = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: tower_sessions::cookie::time::OffsetDateTime::now_utc()
                - tower_sessions::cookie::time::Duration::seconds(1),
        };
        store.create(&mut old).await.unwrap();
        assert!(store.load(&old.id).await.unwrap().is_none());
        store.delete_expired().await.unwrap();
        assert_eq!(store.count().await.unwrap(), 0);
        let _ = std::fs::remove_file(&file);
    }
}
