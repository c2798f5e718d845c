//! The portal streams its exports: 200,000 transactions go out as CSV, JSON lines and
//! XLSX while the portal's resident memory stays under 64 MiB.
//!
//! The portal runs as its own process (the `portal` binary) on a SQLite file filled with
//! 200,000 transactions of three lines each, so its peak resident memory (`VmHWM` of
//! `/proc/<pid>/status`) is its own. Linux only: elsewhere the test says SKIPPED.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portal::{Config, Portal};
use sqlx::Executor;

const TRANSACTIONS: u64 = 200_000;
const LIMIT_KIB: u64 = 64 * 1024;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc")
}

/// Fills the portal's database with `TRANSACTIONS` transactions of the municipality, three
/// lines each, in one statement per table (as the store's bench does). All ended (paid,
/// failed, expired): the worker has nothing to do, and the memory measured is the
/// export's.
async fn fill(dir: &std::path::Path) {
    // The portal creates its schema and its bodies first.
    let portal = Portal::new(Config::local(dir, "127.0.0.1:3000".parse().unwrap()))
        .await
        .unwrap();
    let creditor = portal.creditor().id.to_string();
    drop(portal);
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", dir.join("portal.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let (method,): (String,) =
        sqlx::query_as("SELECT id FROM methods WHERE creditor_id = $1 ORDER BY id LIMIT 1")
            .bind(&creditor)
            .fetch_one(&pool)
            .await
            .unwrap();
    let (payment_type,): (String,) =
        sqlx::query_as("SELECT id FROM payment_types WHERE creditor_id = $1 ORDER BY id LIMIT 1")
            .bind(&creditor)
            .fetch_one(&pool)
            .await
            .unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .timestamp_micros();
    let n = TRANSACTIONS;
    let line = |i: u64, cents: &str| {
        format!(
            "printf('{{\"item_id\":\"00000000-0000-7000-9000-%012x\",\"source\":{{\"module\":\"tributi\",\"key\":\"k%d\"}},\"payment_type_id\":\"{payment_type}\",\"reason\":\"Voce %d\",\"amount\":{{\"amount\":\"%d.%02d\",\"currency\":\"EUR\"}}}}', n * 3 + {i}, n * 3 + {i}, n * 3 + {i}, {cents} / 100, {cents} % 100)"
        )
    };
    let lines = format!(
        "'[' || {} || ',' || {} || ',' || {} || ']'",
        line(0, "(1000 + n % 500)"),
        line(1, "(250 + n % 100)"),
        line(2, "5000")
    );
    let transactions = format!(
        "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < {n}) \
         INSERT INTO transactions SELECT printf('00000000-0000-7000-8000-%012x', n), '{creditor}', \
         printf('00000000-0000-7000-b000-%012x', n), printf('payer%d', n % 10000), \
         printf('{{\"id\":\"payer%d\",\"name\":\"Citizen %d\",\"email\":null,\"fiscal_code\":null,\"locale\":\"it\"}}', n % 10000, n % 10000), \
         '{method}', 'card', 'sandbox', {lines}, \
         1000 + n % 500 + 250 + n % 100 + 5000, 'EUR', CASE n % 4 WHEN 1 THEN 'expired' WHEN 2 THEN 'failed' ELSE 'paid' END, \
         printf('prv-%d', n), printf('key-%d', n), NULL, {base} + n * 1000000, {base} + n * 1000000, {base} + n * 1000000 + 1800000000 FROM seq"
    );
    let transaction_lines = format!(
        "WITH RECURSIVE seq(m) AS (SELECT 0 UNION ALL SELECT m + 1 FROM seq WHERE m + 1 < {n} * 3) \
         INSERT INTO transaction_lines SELECT printf('00000000-0000-7000-8000-%012x', m / 3), m % 3, \
         printf('00000000-0000-7000-9000-%012x', m), 'tributi', printf('k%d', m), '{payment_type}', printf('Voce %d', m), \
         CASE m % 3 WHEN 0 THEN 1000 + (m / 3) % 500 WHEN 1 THEN 250 + (m / 3) % 100 ELSE 5000 END FROM seq"
    );
    pool.execute(sqlx::AssertSqlSafe(transactions))
        .await
        .unwrap();
    pool.execute(sqlx::AssertSqlSafe(transaction_lines))
        .await
        .unwrap();
    pool.execute("ANALYZE").await.unwrap();
    pool.close().await;
}

/// The `name=value` of the cookie `name` that `response` sets.
fn cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_of_200000_transactions_stream_in_less_than_64_mib() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPED exports_of_200000_transactions_stream_in_less_than_64_mib: no /proc");
        return;
    }
    let dir = std::env::temp_dir().join(format!("portal-export-{}", uuid::Uuid::new_v4()));
    fill(&dir).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_portal"))
        .env("PORTAL_DATA", &dir)
        .env("PORTAL_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("DATABASE_URL")
        .env_remove("SMTP_URL")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _child = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut page = None;
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/signin")).send().await {
            page = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = page.expect("the portal answers");
    let visitor = cookie(&page, "portal_csrf");
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = html[at..].split('"').next().unwrap();
    let signed = http
        .post(format!("{base}/signin"))
        .header("cookie", &visitor)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&account=anna"))
        .send()
        .await
        .unwrap();
    let session = cookie(&signed, "portal_session");
    let before = peak_kib(pid);
    for (path, rows) in [
        ("/admin/export.csv", TRANSACTIONS * 3 + 1),
        ("/admin/export.jsonl", TRANSACTIONS * 3),
        ("/admin/export.xlsx", 0),
    ] {
        let mut response = http
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        // Read as it comes, as a browser saving the file does.
        let (mut bytes, mut newlines) = (0u64, 0u64);
        while let Some(chunk) = response.chunk().await.unwrap() {
            bytes += chunk.len() as u64;
            newlines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        let peak = peak_kib(pid);
        println!(
            "{path}: {bytes} bytes; portal peak resident memory {peak} KiB (before the exports {before} KiB)"
        );
        if rows > 0 {
            assert!(
                newlines >= rows,
                "{path}: {newlines} lines, {rows} expected"
            );
        } else {
            assert!(bytes > 1 << 20, "{path}: a workbook of {bytes} bytes");
        }
        assert!(
            peak < LIMIT_KIB,
            "{path}: the portal's resident memory reached {peak} KiB (limit {LIMIT_KIB} KiB)"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
