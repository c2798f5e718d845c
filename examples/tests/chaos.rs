//! Chaos: citizens pay over HTTP while the portal (the `portal` binary, on SQLite, mail
//! written to files) is killed with SIGKILL and restarted at random. Afterwards:
//!
//! - every payment a citizen saw paid is paid in the database;
//! - no item is paid twice;
//! - every outbox message is delivered (receipts, the body's notices);
//! - mails sent twice (the same Message-ID) are at most the sends in flight at each crash
//!   (the outbox delivers 8 at a time and marks each as soon as it is sent).
//!
//! Unix only (SIGKILL); elsewhere the test says SKIPPED.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How many times the portal is killed.
const CRASHES: u64 = 12;
/// The most messages the outbox sends at once (`payments_core`'s delivery concurrency).
const IN_FLIGHT: u64 = 8;

/// The portal's process, restarted on the same data directory and address.
struct Server {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("portal.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_portal"))
            .env("PORTAL_DATA", &self.dir)
            .env("PORTAL_ADDR", format!("127.0.0.1:{}", self.port))
            // The sandbox keeps its pages in memory: a payment whose page a crash lost
            // holds its items until it expires, here after seconds rather than 30 minutes.
            .env("PORTAL_TRANSACTION_TTL_SECS", "8")
            // What a killed instance had claimed is sent again after its lease: seconds
            // here (its mails are files, written at once), 5 minutes by default.
            .env("PORTAL_OUTBOX_LEASE_SECS", "5")
            .env_remove("DATABASE_URL")
            .env_remove("SMTP_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush, whatever was in flight is lost.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A citizen's browser: its session cookie, and the portal's address.
struct Citizen {
    http: reqwest::Client,
    base: String,
    account: &'static str,
    cookie: String,
    /// How many times it signed in.
    sign_ins: u32,
}

type Step<T> = std::result::Result<T, String>;

fn between<'a>(html: &'a str, before: &str, after: char) -> Option<&'a str> {
    let at = html.find(before)? + before.len();
    html[at..].split(after).next()
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
}

impl Citizen {
    async fn get(&self, path: &str) -> Step<reqwest::Response> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if !self.cookie.is_empty() {
            request = request.header("cookie", &self.cookie);
        }
        request.send().await.map_err(|e| e.to_string())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Step<reqwest::Response> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self.http.post(format!("{}{path}", self.base));
        if !self.cookie.is_empty() {
            request = request.header("cookie", &self.cookie);
        }
        request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())
    }

    async fn text(r: reqwest::Response) -> Step<String> {
        if !r.status().is_success() {
            return Err(format!("status {}", r.status()));
        }
        r.text().await.map_err(|e| e.to_string())
    }

    fn location(r: &reqwest::Response) -> Step<String> {
        r.headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("no redirect: {}", r.status()))
    }

    /// Signs in (again, when the session was lost: it should not be).
    async fn sign_in(&mut self) -> Step<()> {
        self.sign_ins += 1;
        self.cookie.clear();
        let page = self.get("/signin").await?;
        self.cookie = set_cookie(&page, "portal_csrf").ok_or("no CSRF cookie")?;
        let html = Self::text(page).await?;
        let csrf = between(&html, "name=\"csrf\" value=\"", '"').ok_or("no token")?;
        let r = self
            .post("/signin", &[("csrf", csrf), ("account", self.account)])
            .await?;
        self.cookie = set_cookie(&r, "portal_session").ok_or("no session")?;
        Ok(())
    }

    /// One free payment of € 10 by card, from the form to the sandbox's page: the
    /// transaction the portal then shows paid, or why the payment went no further.
    async fn pay(&mut self, n: u64) -> Step<String> {
        if self.cookie.is_empty() {
            self.sign_in().await?;
        }
        let page = self.get("/free").await?;
        if Self::location(&page).is_ok_and(|l| l == "/signin") {
            self.sign_in().await?;
            return Err("signed out".into());
        }
        let html = Self::text(page).await?;
        // The secretarial fees' form, with its token.
        let fees = html
            .split("<option value=\"")
            .skip(1)
            .find(|o| o.contains("Diritti di segreteria"))
            .and_then(|o| o.split('"').next())
            .ok_or("no payment types")?
            .to_owned();
        let form = Self::text(self.get(&format!("/free?type={fees}")).await?).await?;
        let csrf = between(&form, "name=\"csrf\" value=\"", '"').ok_or("no token")?;
        let token = between(&form, "name=\"token\" value=\"", '"').ok_or("no form token")?;
        let case = format!("2026/{n}");
        let r = self
            .post(
                "/free",
                &[
                    ("csrf", csrf),
                    ("type", &fees),
                    ("token", token),
                    ("amount", "10,00"),
                    ("reason", &format!("Diritti pratica {case}")),
                    ("extra.case_number", &case),
                    ("extra.office", "anagrafe"),
                ],
            )
            .await?;
        if !r.status().is_redirection() {
            return Err(format!("free payment: {}", r.status()));
        }
        let cart = Self::text(self.get("/cart").await?).await?;
        let attempt = between(&cart, "name=\"attempt\" value=\"", '"').ok_or("empty cart")?;
        let method = between(&cart, "id=\"method-card\" value=\"", '"').ok_or("no card")?;
        let csrf = between(&cart, "name=\"csrf\" value=\"", '"').ok_or("no token")?;
        let r = self
            .post(
                "/checkout",
                &[("csrf", csrf), ("method", method), ("attempt", attempt)],
            )
            .await?;
        if !r.status().is_redirection() {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let why = between(&text, "id=\"error\">", '<').unwrap_or_default();
            let detail = between(&text, "class=\"hint\">", '<').unwrap_or_default();
            return Err(format!("checkout: {status} {why} {detail}"));
        }
        let hosted = Self::location(&r)?;
        let hosted = hosted.trim_start_matches(&self.base).to_owned();
        let page = Self::text(self.get(&hosted).await?).await?;
        let csrf = between(&page, "name=\"csrf\" value=\"", '"').ok_or("no token")?;
        let r = self
            .post(&hosted, &[("csrf", csrf), ("outcome", "paid")])
            .await?;
        let payment = Self::location(&r)?;
        let shown = Self::text(self.get(&payment).await?).await?;
        match between(&shown, "data-status=\"", '"') {
            Some("paid") => Ok(payment.trim_start_matches("/payments/").to_owned()),
            other => Err(format!("shown {other:?}")),
        }
    }
}

/// The Message-IDs of the mail files, with how many files carry each.
fn message_ids(dir: &Path) -> BTreeMap<String, u64> {
    let mut ids = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return ids;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .map(str::trim)
        {
            *ids.entry(id.to_owned()).or_default() += 1;
        }
    }
    ids
}

async fn scalar(pool: &sqlx::AnyPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizens_pay_while_the_portal_is_killed_and_restarted() {
    if !cfg!(unix) {
        eprintln!("SKIPPED citizens_pay_while_the_portal_is_killed_and_restarted: not Unix");
        return;
    }
    let dir = std::env::temp_dir().join(format!("portal-chaos-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Arc::new(Mutex::new(Server {
        dir: dir.clone(),
        port,
        child: None,
    }));
    server.lock().await.start();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    while http.get(format!("{base}/signin")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the portal starts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let done = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let seen_paid = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut citizens = Vec::new();
    for account in ["mario", "giulia"] {
        let (done, attempts, seen_paid) = (done.clone(), attempts.clone(), seen_paid.clone());
        let mut citizen = Citizen {
            http: http.clone(),
            base: base.clone(),
            account,
            cookie: String::new(),
            sign_ins: 0,
        };
        citizens.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let n = attempts.fetch_add(1, Ordering::Relaxed);
                match citizen.pay(n).await {
                    Ok(tx) => seen_paid.lock().unwrap().push(tx),
                    // The portal is down or restarting: try again shortly.
                    Err(why) => {
                        if n < 20 {
                            println!("payment {n} of {account}: {why}");
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
                }
            }
            citizen.sign_ins
        }));
    }
    // Kill at random moments, restart at once.
    let mut seed = 0x5eed_u64 ^ u64::from(port);
    for _ in 0..CRASHES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(1500 + seed % 3000)).await;
        let mut server = server.lock().await;
        server.kill();
        server.start();
    }
    // A last stretch without crashes, then the citizens stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.store(true, Ordering::Relaxed);
    for c in citizens {
        // Sessions are in the database: a restart signs no one out. (A sign-in cut by a
        // crash before its answer may be tried again.)
        let sign_ins = c.await.unwrap();
        assert!(
            sign_ins <= 2,
            "signed in {sign_ins} times: sessions lost at restarts"
        );
    }
    let paid = seen_paid.lock().unwrap().clone();
    println!(
        "{} payments attempted, {} seen paid, {CRASHES} crashes",
        attempts.load(Ordering::Relaxed),
        paid.len()
    );
    assert!(
        paid.len() >= 5,
        "citizens could pay between crashes: {} paid",
        paid.len()
    );

    // The portal, left running, delivers what is left of the outbox.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("portal.db").display()
    ))
    .await
    .unwrap();
    let waiting = Instant::now();
    loop {
        let pending = scalar(
            &pool,
            "SELECT COUNT(*) FROM outbox WHERE status <> 'delivered'",
        )
        .await;
        if pending == 0 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "{pending} outbox messages still undelivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.lock().await.kill();

    // Every payment a citizen saw paid is paid.
    for tx in &paid {
        let status: String = sqlx::query_scalar("SELECT status FROM transactions WHERE id = $1")
            .bind(tx)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(status, "paid", "transaction {tx}, seen paid");
    }
    // No item paid twice.
    let twice = scalar(
        &pool,
        "SELECT COUNT(*) FROM (SELECT l.item_id FROM transaction_lines l \
         JOIN transactions t ON t.id = l.transaction_id WHERE t.status = 'paid' \
         GROUP BY l.item_id HAVING COUNT(*) > 1) AS x",
    )
    .await;
    assert_eq!(twice, 0, "items paid twice");
    let messages = scalar(&pool, "SELECT COUNT(*) FROM outbox").await;
    let paid_in_db = scalar(
        &pool,
        "SELECT COUNT(*) FROM transactions WHERE status = 'paid'",
    )
    .await;
    assert!(paid_in_db >= paid.len() as i64);
    // Duplicate mails: at most the sends in flight at each crash.
    let ids = message_ids(&dir.join("mail"));
    let sent: u64 = ids.values().sum();
    let duplicates: u64 = ids.values().map(|n| n - 1).sum();
    let distinct: BTreeSet<_> = ids.keys().collect();
    println!(
        "{paid_in_db} paid in the database, {messages} outbox messages, {} distinct mails, \
         {sent} mail files, {duplicates} duplicates",
        distinct.len()
    );
    assert!(
        duplicates <= CRASHES * IN_FLIGHT,
        "{duplicates} duplicate mails for {CRASHES} crashes of at most {IN_FLIGHT} in flight"
    );
    assert!(
        distinct.len() as i64 >= 2 * paid_in_db,
        "a receipt and a notice for each payment: {} mails, {paid_in_db} paid",
        distinct.len()
    );
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
