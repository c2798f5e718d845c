//! The example portal in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) with fantoccini, against the portal served on localhost with a SQLite file,
//! the sandbox gateway and mail written to files.
//!
//! They need Chromium and ChromeDriver (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them every test here says SKIPPED. `CHROMIUM` and
//! `CHROMEDRIVER` name other binaries. A screenshot of each main page goes to
//! `target/screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::BodyExt;
use payments_core::{Actor, TransactionId, TxStatus};
use portal::{Config, Portal};

const MARIO: &str = "RSSMRA85T10A562S";
const GIULIA: &str = "BNCGLI90A41H501E";

/// One browser at a time: two cores do not run several Chromiums well.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Run {
    portal: Portal,
    base: String,
    dir: PathBuf,
    client: Client,
    driver: Child,
    profile: PathBuf,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Drop for Run {
    fn drop(&mut self) {
        // Ending the WebDriver session makes chromedriver close Chromium; killing
        // chromedriver alone would leave Chromium running.
        let client = self.client.clone();
        let _ = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            })
        });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Whatever of this test's Chromium is left (a test that failed mid-command) goes too.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.profile.as_os_str())
            .status();
    }
}

fn binary(var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(var) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a portal on a fresh directory and a headless Chromium; `None` (and SKIPPED,
/// loudly) when there is no browser on this machine.
async fn start(test: &str) -> Option<Run> {
    start_with(test, true, |_| {}).await
}

/// As [`start`], with the portal's configuration changed by `configure`, and JavaScript
/// on or off in the browser.
async fn start_with(
    test: &str,
    javascript: bool,
    configure: impl FnOnce(&mut Config),
) -> Option<Run> {
    let (Some(chromium), Some(chromedriver)) = (
        binary(
            "CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        ),
        binary("CHROMEDRIVER", &["/usr/bin/chromedriver"]),
    ) else {
        eprintln!(
            "SKIPPED {test}: no Chromium and ChromeDriver here (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let turn = ONE_AT_A_TIME.lock().await;
    let dir = std::env::temp_dir().join(format!("portal-e2e-{test}-{}", uuid::Uuid::new_v4()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::local(&dir, listener.local_addr().unwrap());
    config.worker_interval = Duration::from_millis(200);
    configure(&mut config);
    let base = config.public_url.clone();
    let portal = Portal::new(config).await.unwrap();
    tokio::spawn(portal.clone().serve(listener));

    let port = free_port();
    let driver = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = dir.join("chromium-profile");
    // With JavaScript off (a content setting) pages must still work: WebDriver's own
    // scripts, which the tests use to wait for a new page, still run.
    let prefs = serde_json::json!({
        "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 }
    });
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "prefs": prefs,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1024",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let mut client = None;
    for _ in 0..100 {
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        let connected = ClientBuilder::new(http)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match connected {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let client = client.expect("chromedriver answers within 10 s");
    Some(Run {
        portal,
        base,
        dir,
        client,
        driver,
        profile,
        _turn: turn,
    })
}

impl Run {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The element `css` selects, waiting up to 10 s for it; the panic shows the page.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let page = self.client.find(Locator::Css("main")).await;
                let text = match page {
                    Ok(main) => main.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("no {css} on {url} ({e}):\n{text}");
            }
        }
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Clicks what submits a form or follows a link, and waits for the next page.
    async fn press(&self, css: &str) {
        self.client
            .execute("window.__stale = true", vec![])
            .await
            .unwrap();
        self.click(css).await;
        for _ in 0..200 {
            let fresh = self
                .client
                .execute(
                    "return window.__stale === undefined && document.readyState === 'complete'",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_bool());
            if fresh == Some(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pressing {css} led to no new page");
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Chooses the option with `label` in the select `css`.
    async fn select(&self, css: &str, label: &str) {
        self.find(css).await.select_by_label(label).await.unwrap();
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .attr(name)
            .await
            .unwrap()
    }

    async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    async fn sign_in(&self, account: &str) {
        self.goto("/signin").await;
        self.click(&format!("#account-{account}")).await;
        self.click("#signin").await;
        // The sign-in page has a heading too: wait until the browser has left it.
        for _ in 0..100 {
            let url = self.client.current_url().await.unwrap();
            if url.path() != "/signin" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.client
            .wait()
            .for_element(Locator::Css("main h1"))
            .await
            .unwrap();
    }

    /// Checks what a machine can check of the page's accessibility: a language, one `main`
    /// and one `h1`, every control labelled, every button and link with a name, no id twice.
    async fn check_accessible(&self, name: &str) {
        let problems = self
            .client
            .execute(
                r#"const p = [];
                if (!document.documentElement.lang) p.push('no lang');
                if (document.querySelectorAll('main').length !== 1) p.push('main');
                if (document.querySelectorAll('h1').length !== 1) p.push('h1');
                for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
                  const label = el.id && document.querySelector('label[for="' + el.id + '"]');
                  if (!label && !el.getAttribute('aria-label')) p.push('unlabelled ' + (el.name || el.id));
                }
                for (const el of document.querySelectorAll('button, a')) {
                  if (!(el.textContent.trim() || el.getAttribute('aria-label'))) p.push('nameless ' + el.outerHTML.slice(0, 80));
                }
                const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
                for (const id of ids) if (ids.indexOf(id) !== ids.lastIndexOf(id)) p.push('id twice ' + id);
                return [...new Set(p)];"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(problems, serde_json::json!([]), "accessibility of {name}");
    }

    async fn screenshot(&self, name: &str) {
        self.check_accessible(name).await;
        let png = self.client.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// GETs `path` with the browser's cookies (its session), as a download would.
    async fn download(&self, path: &str) -> (u16, String, Vec<u8>) {
        let response = self
            .client
            .raw_client_for(axum::http::Method::GET, &format!("{}{path}", self.base))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, kind, body)
    }

    /// The transaction `id` as the library has it now.
    async fn transaction(&self, id: TransactionId) -> payments_core::Transaction {
        self.portal
            .payments()
            .transaction(&Actor::System, id)
            .await
            .unwrap()
    }

    /// The id of the transaction on the payment page the browser shows.
    async fn payment_id(&self) -> TransactionId {
        self.text("#payment-id").await.trim().parse().unwrap()
    }

    /// Waits until the home page shows "Pagato" for the due `key`.
    async fn wait_paid_on_home(&self, key: &str) {
        for _ in 0..100 {
            self.goto("/").await;
            if self
                .text(&format!("[id='due-{key}']"))
                .await
                .contains("Pagato")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the module never showed {key} as paid");
    }

    /// Writes `content` to the file `name` and imports it with the upload form of `page`
    /// (the statements' or the notices'), as an operator picks a file and presses import.
    async fn import_file(&self, page: &str, name: &str, content: &str) {
        let file = self.dir.join(name);
        std::fs::write(&file, content).unwrap();
        self.goto(page).await;
        self.find("#file")
            .await
            .send_keys(&file.display().to_string())
            .await
            .unwrap();
        self.press("#import").await;
    }

    /// Posts `body` to the portal's webhook for `gateway` with the headers of `callback`, as
    /// the provider would.
    async fn post_webhook(
        &self,
        gateway: &str,
        callback: &payments_core::CallbackRequest,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("{}/webhooks/{gateway}", self.base))
            .body(body);
        for (name, value) in &callback.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request.send().await.unwrap()
    }

    fn mails(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("mail"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn wait_mails(&self, n: usize) -> Vec<String> {
        for _ in 0..150 {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("expected {n} mails, found {}", self.mails().len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_pays_two_module_items_and_a_free_payment_by_card() {
    let Some(run) = start("card").await else {
        return;
    };
    run.sign_in("mario").await;
    run.screenshot("home").await;
    // Two modules' items: the first TARI instalment and the school canteen invoice.
    run.press(&format!("[id='due-TARI-2026-1-{MARIO}'] button"))
        .await;
    run.goto("/").await;
    run.press(&format!("[id='due-MENSA-2026-11-{MARIO}'] button"))
        .await;
    // A third, taken out again.
    run.goto("/").await;
    run.press(&format!("[id='due-TARI-2026-2-{MARIO}'] button"))
        .await;
    assert_eq!(run.count("tbody tr").await, 3);
    run.press("button[aria-label='Rimuovi: TARI 2026, rata 2 di 3']")
        .await;
    assert_eq!(run.count("tbody tr").await, 2);
    assert_eq!(run.text("#total").await, "€ 228,00");
    // A free payment: secretarial fees, from the form its fields make.
    run.goto("/free").await;
    run.select("#type", "Diritti di segreteria").await;
    run.press("#choose").await;
    run.fill("#f-amount", "16,00").await;
    run.fill("#f-reason", "Diritti di segreteria, pratica 2026/12")
        .await;
    run.fill("#f-extra-case_number", "2026/12").await;
    run.select("#f-extra-office", "anagrafe").await;
    run.screenshot("free-payment").await;
    run.press("#add").await;

    assert_eq!(
        run.text("#total").await,
        "€ 244,00",
        "182,40 + 45,60 + 16,00"
    );
    assert_eq!(run.count("tbody tr").await, 3);
    run.screenshot("cart").await;
    run.click("#method-card").await;
    run.press("#pay").await;
    // The sandbox's hosted page.
    assert_eq!(run.text("#amount").await, "€ 244,00");
    assert!(
        run.client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/hosted/sandbox/pay/")
    );
    run.screenshot("sandbox").await;
    run.press("#sandbox-pay").await;

    // The receipt, with the payment identifier.
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("paid")
    );
    assert!(run.source().await.contains("Ricevuta"));
    let id = run.payment_id().await;
    let tx = run
        .portal
        .payments()
        .transaction(&Actor::payer(MARIO), id)
        .await
        .unwrap();
    assert_eq!((tx.status, tx.lines.len()), (TxStatus::Paid, 3));
    run.screenshot("receipt").await;

    // The history: the payment, its three items and its timeline.
    run.goto("/history").await;
    let history = run.text("main").await;
    assert!(history.contains(&id.to_string()), "{history}");
    for item in [
        "TARI 2026, rata 1 di 3",
        "Mensa scolastica, novembre 2026",
        "pratica 2026/12",
    ] {
        assert!(history.contains(item), "{item} missing from {history}");
    }
    assert!(
        history.contains("In attesa") && history.contains("Pagato"),
        "the timeline"
    );
    run.screenshot("history").await;

    // The receipt to the citizen and the notice to the body, as files.
    let mails = run.wait_mails(2).await;
    assert_eq!(mails.len(), 2, "exactly the two mails");
    assert!(
        mails
            .iter()
            .any(|m| m.contains("To: mario.rossi@example.it")
                || m.contains("To: \"Mario Rossi\" <mario.rossi@example.it>")),
        "a receipt to Mario"
    );
    assert!(
        mails
            .iter()
            .any(|m| m.contains("ragioneria@comune.example.it")),
        "a notice to the body"
    );
    // Both modules heard: their items show "Pagato".
    run.wait_paid_on_home(&format!("TARI-2026-1-{MARIO}")).await;
    run.wait_paid_on_home(&format!("MENSA-2026-11-{MARIO}"))
        .await;
    assert!(
        run.text(&format!("[id='due-TARI-2026-2-{MARIO}']"))
            .await
            .contains("Paga")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_bank_transfer_confirmed_by_an_operator_marks_the_module_item_paid() {
    let Some(run) = start("transfer").await else {
        return;
    };
    run.sign_in("mario").await;
    let key = format!("PE-2026-031-{MARIO}");
    run.press(&format!("[id='due-{key}'] button")).await;
    // Building charges accept bank transfer and pagoPA only: no card on offer.
    assert!(
        run.client
            .find(Locator::Css("#method-bank_transfer"))
            .await
            .is_ok()
    );
    assert!(
        run.client
            .find(Locator::Css("#method-pago_pa"))
            .await
            .is_ok()
    );
    assert!(run.client.find(Locator::Css("#method-card")).await.is_err());
    run.click("#method-bank_transfer").await;
    run.press("#pay").await;

    assert_eq!(run.text("#iban").await, "IT60X0542811101000000123456");
    let reference = run.text("#reference").await;
    assert!(reference.starts_with("RF"), "{reference}");
    assert!(
        run.client.find(Locator::Css("#qr svg")).await.is_ok(),
        "the EPC QR code"
    );
    run.screenshot("bank-transfer").await;
    let id = run.payment_id().await;

    // A report with a mistake shows it beside the field and keeps what was typed.
    run.fill("#r-amount", "1250,00").await;
    run.fill("#r-bank_reference", "0306909606510").await;
    run.press("#report").await;
    assert!(
        run.client
            .find(Locator::Css("#r-executed_on-error"))
            .await
            .is_ok()
    );
    let kept = run.attr("#r-amount", "value").await;
    assert_eq!(kept.as_deref(), Some("1250,00"));
    let today = chrono::Utc::now().date_naive().to_string();
    run.client
        .execute(
            "document.getElementById('r-executed_on').value = arguments[0]",
            vec![today.into()],
        )
        .await
        .unwrap();
    run.press("#report").await;
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("reported")
    );

    // The operator finds it among the reported movements and confirms it.
    run.sign_in("anna").await;
    run.goto("/admin?status=reported").await;
    assert_eq!(run.text("#count").await, "1");
    run.screenshot("admin-movements").await;
    run.press(&format!("tr[data-id='{id}'] a")).await;
    run.screenshot("admin-detail").await;
    run.fill("#confirm-note", "accredito verificato").await;
    run.press("#confirm").await;
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("paid")
    );
    let events = run.text("#events").await;
    assert!(
        events.contains("accredito verificato") && events.contains("operator:"),
        "{events}"
    );

    // The module hears of it through its settlement.
    run.sign_in("mario").await;
    run.wait_paid_on_home(&key).await;
    let tx = run.transaction(id).await;
    assert_eq!(tx.status, TxStatus::Paid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_exports_the_selection_as_csv() {
    let Some(run) = start("export").await else {
        return;
    };
    // Three payments: two paid, one cancelled, by two citizens, through the sandbox's page.
    let mut paid = Vec::new();
    for (account, dues, outcome) in [
        (
            "mario",
            vec![("tributi", "TARI-2026-1"), ("servizi", "MENSA-2026-11")],
            "paid",
        ),
        ("giulia", vec![("tributi", "TARI-2026-1")], "cancelled"),
        ("giulia", vec![("segreteria", "SUAP-2026-77")], "paid"),
    ] {
        run.sign_in(account).await;
        let payer = if account == "mario" { MARIO } else { GIULIA };
        for (_, key) in &dues {
            run.press(&format!("[id='due-{key}-{payer}'] button")).await;
            run.goto("/").await;
        }
        run.goto("/cart").await;
        run.click("#method-card").await;
        run.press("#pay").await;
        run.press(&format!(
            "#sandbox-{}",
            if outcome == "paid" { "pay" } else { "cancel" }
        ))
        .await;
        let id = run.payment_id().await;
        if outcome == "paid" {
            paid.push(id);
        }
        // A cancelled payment frees its items: take them out of the cart.
        if outcome != "paid" {
            let p = run.portal.payments();
            let actor = Actor::payer(payer);
            let tx = p.transaction(&actor, id).await.unwrap();
            assert_eq!(tx.status, TxStatus::Cancelled);
            for line in &tx.lines {
                p.remove_item(&actor, tx.cart_id, line.item_id)
                    .await
                    .unwrap();
            }
        }
    }

    run.sign_in("anna").await;
    run.goto("/admin").await;
    run.select("#status", "Pagato").await;
    run.press("#search").await;
    assert_eq!(run.text("#count").await, "2");
    assert_eq!(run.text("#sum").await, "€ 244,00", "228,00 + 16,00");
    run.screenshot("admin-export").await;
    let href = run.attr("#export-csv", "href").await.unwrap();
    assert!(href.contains("status=paid"), "{href}");
    let path = href.strip_prefix(&run.base).unwrap_or(&href).to_owned();
    let (status, kind, body) = run.download(&path).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(body.as_slice());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        3,
        "one row per item of the two paid transactions"
    );
    let mut ids: Vec<&str> = rows.iter().map(|r| &r[col("transaction_id")]).collect();
    ids.dedup();
    let mut expected: Vec<String> = paid.iter().map(ToString::to_string).collect();
    expected.sort();
    let mut got: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, expected);
    assert!(rows.iter().all(|r| &r[col("status")] == "paid"));
    let mut reasons: Vec<&str> = rows.iter().map(|r| &r[col("reason")]).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "Diritti di segreteria, pratica SUAP 2026/77",
            "Mensa scolastica, novembre 2026",
            "TARI 2026, rata 1 di 3"
        ]
    );

    // The same selection narrowed to one module, and as a workbook.
    run.goto("/admin?status=paid&module=servizi").await;
    assert_eq!(run.text("#count").await, "1");
    let href = run.attr("#export-xlsx", "href").await.unwrap();
    let (status, kind, body) = run
        .download(href.strip_prefix(&run.base).unwrap_or(&href))
        .await;
    assert_eq!(status, 200);
    assert!(kind.contains("spreadsheetml"), "{kind}");
    assert!(body.starts_with(b"PK"), "an XLSX is a zip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_is_refused_the_administration_and_a_forged_form() {
    let Some(run) = start("refused").await else {
        return;
    };
    // Nobody signed in: to the sign-in page.
    for path in ["/", "/admin", "/cart"] {
        run.goto(path).await;
        assert_eq!(
            run.client.current_url().await.unwrap().path(),
            "/signin",
            "{path}"
        );
    }
    run.screenshot("signin").await;
    run.sign_in("giulia").await;
    for path in ["/admin", "/admin/statements", "/admin/outbox"] {
        run.goto(path).await;
        let error = run.text("#error").await;
        assert!(
            error.contains("riservata agli operatori"),
            "{path}: {error}"
        );
    }
    run.screenshot("refused").await;
    let (status, _, _) = run.download("/admin/export.csv").await;
    assert_eq!(status, 403, "no export either");
    // In English too.
    run.goto("/lang/en?back=/admin").await;
    assert!(
        run.text("#error")
            .await
            .contains("for the body's operators only")
    );

    // A form whose CSRF token is not the session's is refused, and changes nothing.
    run.goto("/lang/it?back=/").await;
    let key = format!("TARI-2026-1-{GIULIA}");
    run.client
        .execute(
            "document.querySelector(arguments[0]).value = 'forged'",
            vec![format!("[id='due-{key}'] input[name='csrf']").into()],
        )
        .await
        .unwrap();
    run.press(&format!("[id='due-{key}'] button")).await;
    assert!(
        run.text("#error")
            .await
            .contains("non viene da questo sito")
    );
    run.goto("/cart").await;
    assert!(run.text("main").await.contains("Il carrello è vuoto."));
    // The same form with its token goes through.
    run.goto("/").await;
    run.press(&format!("[id='due-{key}'] button")).await;
    assert_eq!(run.count("tbody tr").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_payment_missing_a_required_field_shows_the_error_beside_it() {
    let Some(run) = start("free").await else {
        return;
    };
    run.sign_in("giulia").await;
    run.goto("/free").await;
    run.select("#type", "Sanzioni amministrative").await;
    run.press("#choose").await;
    let required = run.attr("#f-extra-report", "aria-required").await;
    assert_eq!(
        required.as_deref(),
        Some("true"),
        "the required field is marked"
    );
    run.fill("#f-amount", "50,00").await;
    run.fill("#f-reason", "Verbale di via Roma").await;
    run.fill("#f-extra-plate", "AB123CD").await;
    run.press("#add").await;

    assert_eq!(
        run.text("#f-extra-report-error").await,
        "Campo obbligatorio."
    );
    assert_eq!(
        run.attr("#f-extra-report", "aria-invalid").await.as_deref(),
        Some("true")
    );
    assert!(run.client.find(Locator::Css("#form-errors")).await.is_ok());
    // What was typed is kept.
    assert_eq!(
        run.attr("#f-amount", "value").await.as_deref(),
        Some("50,00")
    );
    assert_eq!(
        run.attr("#f-reason", "value").await.as_deref(),
        Some("Verbale di via Roma")
    );
    assert_eq!(
        run.attr("#f-extra-plate", "value").await.as_deref(),
        Some("AB123CD")
    );
    assert!(
        run.client
            .find(Locator::Css("#f-amount-error"))
            .await
            .is_err(),
        "no error where there is none"
    );
    run.screenshot("free-payment-error").await;
    // Nothing went in the cart.
    run.goto("/cart").await;
    assert!(run.text("main").await.contains("Il carrello è vuoto."));
    let cart = run
        .portal
        .payments()
        .open_cart(
            &Actor::payer(GIULIA),
            run.portal.creditor().id,
            payments_core::Payer::new(GIULIA, "Giulia Bianchi"),
        )
        .await
        .unwrap();
    let contents = run
        .portal
        .payments()
        .cart(&Actor::payer(GIULIA), cart.id)
        .await
        .unwrap();
    assert!(contents.items.is_empty());

    // The form completed and sent twice at once (a double click): one payment.
    run.goto("/free").await;
    run.select("#type", "Sanzioni amministrative").await;
    run.press("#choose").await;
    run.fill("#f-amount", "50,00").await;
    run.fill("#f-reason", "Verbale di via Roma").await;
    run.fill("#f-extra-plate", "AB123CD").await;
    run.fill("#f-extra-report", "2026/441").await;
    let sent = run
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const form = document.querySelector(\"form[method='post'][action='/free']\");
             const body = () => new URLSearchParams(new FormData(form));
             Promise.all([fetch('/free', {method: 'POST', body: body()}),
                          fetch('/free', {method: 'POST', body: body()})])
               .then(rs => done(rs.map(r => r.status)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        sent,
        serde_json::json!([200, 200]),
        "both sent (and followed to the cart)"
    );
    let contents = run
        .portal
        .payments()
        .cart(&Actor::payer(GIULIA), cart.id)
        .await
        .unwrap();
    assert_eq!(contents.items.len(), 1, "sent twice, added once");
}

/// The texts of the refused fields on the page, by field id (`f-amount`, …).
async fn field_errors(run: &Run) -> std::collections::BTreeMap<String, String> {
    let found = run
        .client
        .execute(
            "return Array.from(document.querySelectorAll('div.error[id$=\"-error\"]'))
                 .map(e => [e.id.slice(0, -6), e.textContent.trim()]);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value::<Vec<(String, String)>>(found)
        .unwrap()
        .into_iter()
        .collect()
}

/// Messages by field id, as [`field_errors`] reads them.
fn by_field<const N: usize>(
    pairs: [(&str, String); N],
) -> std::collections::BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Sets the free-payment form's fields to `values` (by field id) as a script can, past the
/// browser's own limits (`maxlength`, date pickers, the options of a list).
async fn set_fields(run: &Run, values: &[(&str, &str)]) {
    let values: Vec<serde_json::Value> = values
        .iter()
        .map(|(id, v)| serde_json::json!([id, v]))
        .collect();
    run.client
        .execute(
            "for (const [id, value] of arguments[0]) {
               const e = document.getElementById(id);
               if (e.tagName === 'SELECT') {
                 const o = document.createElement('option');
                 o.value = value; o.text = value; e.add(o);
               } else {
                 e.removeAttribute('maxlength');
                 e.type = 'text';
               }
               e.value = value;
             }",
            vec![serde_json::Value::Array(values)],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_filled_wrongly_is_told_in_italian_from_the_catalogue() {
    use payments_core::{Locale, Money, Problem};
    let Some(run) = start("catalogue").await else {
        return;
    };
    run.sign_in("giulia").await;
    let it = |p: Problem| p.message(Locale::It);
    let eur = |s: &str| Money::parse_eur(s).unwrap();

    // Administrative fines: amount, reason, report, plate and email, each wrong.
    run.goto("/free").await;
    run.select("#type", "Sanzioni amministrative").await;
    run.press("#choose").await;
    let long_reason = "Verbale ".repeat(20);
    set_fields(
        &run,
        &[
            // Three decimals in Italian: twelve thousand or twelve euro? Refused, with how to
            // write it.
            ("f-amount", "12,345"),
            ("f-reason", &long_reason),
            ("f-extra-report", "2026/0000000000000441"),
            ("f-extra-plate", "AB123CDEFGHI"),
            ("f-extra-email", "giulia@"),
        ],
    )
    .await;
    run.press("#add").await;
    let expected = by_field([
        ("f-amount", it(Problem::AmountAmbiguous)),
        ("f-reason", it(Problem::TooLong { max: 140 })),
        ("f-extra-report", it(Problem::TooLong { max: 20 })),
        ("f-extra-plate", it(Problem::TooLong { max: 10 })),
        ("f-extra-email", it(Problem::NotAnEmail)),
    ]);
    assert_eq!(field_errors(&run).await, expected);
    assert!(run.text("#form-errors").await.contains("Alcuni campi"));
    run.screenshot("free-payment-every-error-it").await;

    // Secretarial fees: an amount over the range ("1.000" is a thousand euro to an
    // Italian), nothing where something is required, an office not offered, a date that
    // does not exist.
    run.goto("/free").await;
    run.select("#type", "Diritti di segreteria").await;
    run.press("#choose").await;
    set_fields(
        &run,
        &[
            ("f-amount", "1.000"),
            ("f-reason", "   "),
            ("f-extra-case_number", ""),
            ("f-extra-office", "altro"),
            ("f-extra-filed_on", "31/02/2026"),
        ],
    )
    .await;
    run.press("#add").await;
    let expected = by_field([
        (
            "f-amount",
            it(Problem::AmountBetween {
                min: eur("1"),
                max: eur("500"),
            }),
        ),
        ("f-reason", it(Problem::Required)),
        ("f-extra-case_number", it(Problem::Required)),
        (
            "f-extra-office",
            it(Problem::OneOf {
                options: vec!["edilizia".into(), "anagrafe".into(), "commercio".into()],
            }),
        ),
        ("f-extra-filed_on", it(Problem::NotADate)),
    ]);
    let shown = field_errors(&run).await;
    assert_eq!(shown, expected);
    assert!(
        shown.values().any(|m| m.contains("€ 500,00")),
        "amounts written the Italian way: {shown:?}"
    );
    // No developer English anywhere on the page.
    let main = run.text("main").await;
    for english in [
        "must",
        "characters",
        "not a",
        "required",
        "invalid",
        "between",
    ] {
        assert!(
            !main.to_lowercase().contains(english),
            "{english:?} on the Italian page: {main}"
        );
    }
    // In English, the same catalogue's other language.
    run.goto("/lang/en?back=/free").await;
    run.select("#type", "Sanzioni amministrative").await;
    run.press("#choose").await;
    set_fields(&run, &[("f-reason", ""), ("f-extra-email", "giulia@")]).await;
    run.press("#add").await;
    let shown = field_errors(&run).await;
    assert_eq!(shown["f-reason"], Problem::Required.message(Locale::En));
    assert_eq!(
        shown["f-extra-email"],
        Problem::NotAnEmail.message(Locale::En)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_imports_a_statement_that_pays_a_transfer_and_flags_the_rest() {
    let Some(run) = start("statement").await else {
        return;
    };
    run.sign_in("mario").await;
    let key = format!("SUAP-2026-77-{MARIO}");
    run.press(&format!("[id='due-{key}'] button")).await;
    run.click("#method-bank_transfer").await;
    run.press("#pay").await;
    let reference = run.text("#reference").await;
    let id = run.payment_id().await;

    // The treasury's statement: the citizen's transfer, and a credit nobody can place.
    let today = chrono::Utc::now().date_naive();
    let entry = |n: u32, amount: &str, debtor: &str, text: &str| {
        format!(
            r#"<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>{today}</Dt></BookgDt><AcctSvcrRef>E2E-{n}</AcctSvcrRef><NtryDtls><TxDtls>
<RltdPties><Dbtr><Pty><Nm>{debtor}</Nm></Pty></Dbtr></RltdPties><RmtInf><Ustrd>{text}</Ustrd></RmtInf>
</TxDtls></NtryDtls></Ntry>"#
        )
    };
    let statement = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>E2E-STATEMENT-1</MsgId><CreDtTm>{today}T22:00:00</CreDtTm></GrpHdr>
<Stmt><Id>1</Id><Acct><Id><IBAN>IT60X0542811101000000123456</IBAN></Id></Acct>
{}{}</Stmt></BkToCstmrStmt></Document>"#,
        entry(1, "16.00", "MARIO ROSSI", &format!("DIRITTI {reference}")),
        entry(2, "99.00", "ANONIMO", "VERSAMENTO")
    );
    run.sign_in("anna").await;
    run.import_file("/admin/statements", "statement.xml", &statement)
        .await;
    let matched = run.text("#matched").await;
    assert!(matched.contains(&id.to_string()), "{matched}");
    let exceptions = run.text("#exceptions").await;
    assert!(
        exceptions.contains("99,00") && exceptions.contains("VERSAMENTO"),
        "{exceptions}"
    );
    assert_eq!(run.count("#matched tbody tr").await, 1);
    run.screenshot("admin-statements").await;
    let tx = run.transaction(id).await;
    assert_eq!(tx.status, TxStatus::Paid);

    // The outbox shows the receipt, the notice and the module's settlement.
    run.goto("/admin/outbox").await;
    let outbox = run.text("#outbox").await;
    assert!(
        outbox.contains("mario.rossi@example.it") && outbox.contains("segreteria"),
        "{outbox}"
    );
    run.screenshot("admin-outbox").await;
    run.sign_in("mario").await;
    run.wait_paid_on_home(&key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_a_citizen_still_pays_in_english() {
    let Some(run) = start_with("nojs", false, |_| {}).await else {
        return;
    };
    run.goto("/signin").await;
    let scripts = run
        .client
        .execute("return document.querySelectorAll('script').length", vec![])
        .await
        .unwrap();
    assert_eq!(
        scripts,
        serde_json::json!(0),
        "the portal sends no script at all"
    );
    // And this browser really runs none: a page's own script leaves no trace.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe_url = format!("http://{}/", probe.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = probe.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let page = "<!doctype html><title>off</title><script>document.title='on'</script>";
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                page.len()
            );
            let _ = socket.write_all(format!("{head}{page}").as_bytes()).await;
        }
    });
    run.client.goto(&probe_url).await.unwrap();
    assert_eq!(
        run.client.title().await.unwrap(),
        "off",
        "JavaScript is off"
    );
    run.sign_in("giulia").await;
    run.press("a[href^='/lang/en']").await;
    assert_eq!(run.text("main h1").await, "What you owe");
    run.press(&format!("[id='due-MENSA-2026-11-{GIULIA}'] button"))
        .await;
    assert_eq!(run.text("main h1").await, "Cart");
    // The bank refuses the first attempt: the item is back in the cart, to pay again.
    run.click("#method-account_debit").await;
    run.press("#pay").await;
    run.press("#sandbox-fail").await;
    assert_eq!(run.text("#status").await, "Failed");
    assert!(run.text("main").await.contains("did not go through"));
    run.goto("/cart").await;
    run.click("#method-account_debit").await;
    run.press("#pay").await;
    run.press("#sandbox-pay").await;
    assert_eq!(run.text("#status").await, "Paid");
    run.screenshot("receipt-en").await;
    let id = run.payment_id().await;
    let tx = run.transaction(id).await;
    assert_eq!(tx.method_kind, payments_core::MethodKind::AccountDebit);
    // The receipt mail follows the language the citizen chose.
    let mails = run.wait_mails(2).await;
    let subject = format!("Subject: Payment receipt {id}");
    assert!(
        mails.iter().any(|m| m.contains(&subject)),
        "an English receipt: {mails:?}"
    );
}

/// An SMTP server that keeps what it receives.
#[derive(Clone, Default)]
struct Mailbox(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>, Vec<u8>);

impl mailin_embedded::Handler for Mailbox {
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.1.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        self.0.lock().unwrap().push(std::mem::take(&mut self.1));
        mailin_embedded::response::OK
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_failed_is_retried_by_an_operator_once_the_server_is_back() {
    let port = free_port();
    let Some(run) = start_with("outbox", true, |config| {
        config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        config.retry.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    run.sign_in("mario").await;
    run.press(&format!("[id='due-SUAP-2026-77-{MARIO}'] button"))
        .await;
    run.click("#method-card").await;
    run.press("#pay").await;
    run.press("#sandbox-pay").await;
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("paid")
    );

    // No mail server: both mails give up after their one attempt.
    run.sign_in("anna").await;
    let mut dead = 0;
    for _ in 0..100 {
        run.goto("/admin/outbox?failed=1").await;
        dead = run
            .client
            .find_all(Locator::Css("#outbox tbody tr"))
            .await
            .map(|r| r.len())
            .unwrap_or(0);
        if dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(dead, 2, "the receipt and the notice failed");
    assert!(run.text("#outbox").await.contains("Fallito"));
    run.screenshot("admin-outbox-failed").await;

    // The server is back; the operator retries the receipt.
    let mailbox = Mailbox::default();
    let received = mailbox.0.clone();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        let mut server = mailin_embedded::Server::new(mailbox);
        server.with_name("mail.test").with_tcp_listener(listener);
        let _ = server.serve();
    });
    let receipt_row = run
        .find("#outbox tbody tr:first-child")
        .await
        .text()
        .await
        .unwrap();
    run.press("#outbox tbody tr:first-child button").await;
    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = received.lock().unwrap().clone();
    assert_eq!(
        mails.len(),
        1,
        "only the message retried is sent: {receipt_row}"
    );
    run.goto("/admin/outbox").await;
    let outbox = run.text("#outbox").await;
    assert!(
        outbox.contains("Inviato") && outbox.contains("Fallito"),
        "{outbox}"
    );
}

const NEXI_ALIAS: &str = "ALIAS_WEB_00000001";
const NEXI_KEY: &str = "portal-e2e-mac-key";

/// The fields XPay sends back, signed as it documents (see the gateway's own tests).
fn xpay_outcome(code: &str, esito: &str, cents: i64, key: &str) -> Vec<(String, String)> {
    let importo = cents.to_string();
    let mac = payments_gateways::nexi::result_mac(
        code, esito, &importo, "EUR", "20261127", "101500", "TESTOK", key,
    );
    [
        ("codTrans", code),
        ("esito", esito),
        ("importo", importo.as_str()),
        ("divisa", "EUR"),
        ("data", "20261127"),
        ("orario", "101500"),
        ("codAut", "TESTOK"),
        ("alias", NEXI_ALIAS),
        ("brand", "VISA"),
        ("mac", mac.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_payment_through_nexi_posts_the_signed_form_and_takes_the_notification() {
    use wiremock::matchers::{method, path};
    // XPay's hosted page, played by a local server that shows a page for the form posted.
    let xpay = wiremock::MockServer::start().await;
    let xpay_url = xpay.uri();
    let Some(run) = start_with("nexi", true, |config| {
        config.accounts_mut("comune").nexi = Some(portal::NexiKeys {
            alias: NEXI_ALIAS.into(),
            mac_key: NEXI_KEY.to_owned().into(),
            base_url: xpay_url,
        });
    })
    .await
    else {
        return;
    };
    // Mounted once the browser is known to be here: without it the test is SKIPPED, and
    // an expectation left unmet would fail it.
    wiremock::Mock::given(method("POST"))
        .and(path(payments_gateways::nexi::PAYMENT_PATH))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(
            "<!doctype html><title>XPay</title><h1>XPay</h1>",
            "text/html",
        ))
        .expect(1)
        .mount(&xpay)
        .await;
    run.sign_in("mario").await;
    run.press(&format!("[id='due-MENSA-2026-11-{MARIO}'] button"))
        .await;
    assert!(run.text("main").await.contains("(Nexi XPay)"));
    run.click("#method-card-nexi").await;
    run.press("#pay").await;

    // The page with XPay's form: no JavaScript, a button.
    let field = |name: &str| format!("form input[name='{name}']");
    let code = run.attr(&field("codTrans"), "value").await.unwrap();
    assert_eq!(
        run.attr(&field("importo"), "value").await.as_deref(),
        Some("4560")
    );
    assert_eq!(
        run.attr(&field("mac"), "value").await.unwrap(),
        payments_gateways::nexi::request_mac(&code, "EUR", 4560, NEXI_KEY)
    );
    assert_eq!(
        run.attr(&field("urlpost"), "value").await.unwrap(),
        format!("{}/webhooks/nexi", run.base)
    );
    run.screenshot("redirect-nexi").await;
    run.press("#continue").await;
    assert_eq!(run.client.title().await.unwrap(), "XPay");
    let posted = xpay.received_requests().await.unwrap();
    let form: Vec<(String, String)> = form_urlencoded::parse(&posted[0].body)
        .into_owned()
        .collect();
    assert!(
        form.contains(&("codTrans".into(), code.clone())),
        "{form:?}"
    );
    assert!(form.contains(&("alias".into(), NEXI_ALIAS.into())));

    // XPay notifies the portal's webhook: a forged notification is refused, the real one
    // pays, and the payer's return shows the receipt (a replay by then).
    let id = payments_gateways::nexi::transaction_of(&code).unwrap();
    let http = reqwest::Client::new();
    let webhook = format!("{}/webhooks/nexi", run.base);
    let notify = |fields: Vec<(String, String)>| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&fields)
            .finish();
        http.post(&webhook)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let forged = xpay_outcome(&code, "OK", 4560, "another-key");
    assert_eq!(notify(forged).await.unwrap().status(), 400);
    let tx = run.transaction(id).await;
    assert_eq!(
        tx.status,
        TxStatus::Pending,
        "a forged notification changes nothing"
    );
    let fields = xpay_outcome(&code, "OK", 4560, NEXI_KEY);
    assert_eq!(notify(fields.clone()).await.unwrap().status(), 200);
    let tx = run.transaction(id).await;
    assert_eq!(tx.status, TxStatus::Paid);
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    run.goto(&format!("/return?{query}")).await;
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("paid")
    );
    assert_eq!(run.payment_id().await, id);
    run.wait_paid_on_home(&format!("MENSA-2026-11-{MARIO}"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_webhook_answers_over_http_as_providers_expect() {
    let Some(run) = start("webhook").await else {
        return;
    };
    run.sign_in("giulia").await;
    run.press(&format!("[id='due-MENSA-2026-11-{GIULIA}'] button"))
        .await;
    run.click("#method-card").await;
    run.press("#pay").await;
    // The payer leaves the sandbox's page open; its callback arrives over HTTP instead.
    let url = run.client.current_url().await.unwrap();
    let session = url.path().rsplit('/').next().unwrap().to_owned();
    let callback = run
        .portal
        .sandbox()
        .complete(&session, payments_core::PaymentOutcome::Paid)
        .unwrap();
    let tx = run
        .portal
        .sandbox()
        .session(&session)
        .unwrap()
        .transaction_id;
    let post = |gateway: &'static str, body: Vec<u8>| run.post_webhook(gateway, &callback, body);
    // A body changed after signing is refused, and changes nothing.
    let mut changed = callback.body.clone();
    let at = changed.iter().position(|b| b.is_ascii_digit()).unwrap();
    changed[at] = if changed[at] == b'9' {
        b'8'
    } else {
        changed[at] + 1
    };
    assert_eq!(post("sandbox", changed).await.status(), 400);
    assert_eq!(run.transaction(tx).await.status, TxStatus::Pending);
    assert_eq!(
        post("nowhere", callback.body.clone()).await.status(),
        404,
        "no such gateway"
    );
    // The callback as signed pays; sent again, it is a replay and still answers 200.
    assert_eq!(post("sandbox", callback.body.clone()).await.status(), 200);
    assert_eq!(run.transaction(tx).await.status, TxStatus::Paid);
    assert_eq!(post("sandbox", callback.body.clone()).await.status(), 200);
    let events = run
        .portal
        .payments()
        .events(&Actor::System, tx)
        .await
        .unwrap();
    assert_eq!(
        events.iter().filter(|e| e.to == TxStatus::Paid).count(),
        1,
        "paid once"
    );
}

/// `payer` pays a secretarial fee of `amount` (case `case`) through the library, by the
/// method of `kind`, as the pages would; a card payment is completed by the sandbox.
async fn pay_fee(
    portal: &Portal,
    payer: &str,
    name: &str,
    amount: &str,
    case: &str,
    kind: payments_core::MethodKind,
) -> TransactionId {
    use payments_core::{MethodKind, NewFreeItem, Payer, PaymentOutcome};
    let p = portal.payments();
    let actor = Actor::payer(payer);
    let cart = p
        .open_cart(
            &actor,
            portal.creditor().id,
            Payer::new(payer, name).with_email("x@example.it"),
        )
        .await
        .unwrap();
    let fees = p
        .payment_types(portal.creditor().id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.code == "diritti")
        .unwrap();
    let item = NewFreeItem::new(
        fees.id,
        amount,
        format!("Diritti di segreteria, pratica {case}"),
    )
    .with_extra("case_number", case)
    .with_extra("office", "anagrafe");
    p.add_free_item(&actor, cart.id, item).await.unwrap();
    let method = p
        .cart_methods(&actor, cart.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.kind == kind)
        .unwrap();
    let checkout = p.checkout(&actor, cart.id, method.id, case).await.unwrap();
    if kind == MethodKind::Card {
        let payments_core::Instruction::Redirect { url, .. } = &checkout.instruction else {
            panic!("the sandbox's page")
        };
        let session = url.rsplit('/').next().unwrap();
        let callback = portal
            .sandbox()
            .complete(session, PaymentOutcome::Paid)
            .unwrap();
        p.handle_callback("sandbox", &callback).await.unwrap();
    }
    checkout.transaction.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pages_filters_and_rejects_a_report_with_no_transfer() {
    use payments_core::MethodKind;
    let Some(run) = start("filters").await else {
        return;
    };
    // 22 card payments by Mario of 10.00 to 31.00, one transfer reported by Giulia.
    for n in 0..22 {
        let amount = format!("{},00", 10 + n);
        pay_fee(
            &run.portal,
            MARIO,
            "Mario Rossi",
            &amount,
            &format!("2026/{n}"),
            MethodKind::Card,
        )
        .await;
    }
    let transfer = pay_fee(
        &run.portal,
        GIULIA,
        "Giulia Bianchi",
        "99,00",
        "2026/99",
        MethodKind::BankTransfer,
    )
    .await;
    let report = payments_core::TransferReport::parse(
        &chrono::Utc::now().date_naive().to_string(),
        "99,00",
        "0306909606510",
        "",
        "",
    )
    .unwrap();
    run.portal
        .payments()
        .report_transfer(&Actor::payer(GIULIA), transfer, &report)
        .await
        .unwrap();

    run.sign_in("anna").await;
    // The overview first; then the movements: every one, 23, shown 20 to a page.
    assert_eq!(
        run.client.current_url().await.unwrap().path(),
        "/admin/overview"
    );
    run.goto("/admin").await;
    assert_eq!(run.text("#count").await, "23");
    assert_eq!(
        run.text("#sum").await,
        "€ 550,00",
        "10 + … + 31 = 451, and 99"
    );
    assert_eq!(run.count("#movements tbody tr").await, 20);
    run.press("#next").await;
    assert_eq!(run.count("#movements tbody tr").await, 3);
    assert!(
        run.client.find(Locator::Css("#next")).await.is_err(),
        "the last page"
    );
    // Each filter narrows the selection. The portal reads a date as a day in Europe/Rome
    // (the body's), so "today" is Rome's: from 23:00 UTC (22:00 in summer) it is already
    // tomorrow there.
    let today = payments_core::rome_day(chrono::Utc::now());
    let tomorrow = today.succ_opt().unwrap();
    for (query, count) in [
        (format!("payer={GIULIA}"), "1"),
        ("method=bank_transfer".to_owned(), "1"),
        ("method=card&min=30,00".to_owned(), "2"),
        ("max=10,00".to_owned(), "1"),
        ("min=20&max=29".to_owned(), "10"),
        (format!("from={today}&to={today}"), "23"),
        (format!("from={tomorrow}"), "0"),
        ("module=tributi".to_owned(), "0"),
        (
            format!("module={}", payments_core::FREE_PAYMENT_MODULE),
            "23",
        ),
        ("status=reported".to_owned(), "1"),
    ] {
        run.goto(&format!("/admin?{query}")).await;
        assert_eq!(run.text("#count").await, count, "{query}");
    }
    // The type filter, chosen in the form.
    run.goto("/admin").await;
    run.select("#type", "Diritti di segreteria").await;
    run.press("#search").await;
    assert_eq!(run.text("#count").await, "23");
    run.goto("/admin?min=dieci").await;
    assert!(
        run.text("main").await.contains("min"),
        "a filter that does not read is named"
    );

    // No transfer arrived for Giulia's report: the operator rejects it.
    run.goto(&format!("/admin/payments/{transfer}")).await;
    run.fill("#reject-note", "nessun accredito").await;
    run.press("#reject").await;
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("rejected")
    );
    let tx = run.transaction(transfer).await;
    assert_eq!(tx.status, TxStatus::Rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pagopa_notice_is_shown_and_its_station_answers_the_node() {
    let Some(run) = start("pagopa").await else {
        return;
    };
    run.sign_in("mario").await;
    run.press(&format!("[id='due-TARI-2026-3-{MARIO}'] button"))
        .await;
    run.click("#method-pago_pa").await;
    run.press("#pay").await;
    // The notice: its code, pretty, and its QR code.
    let number: String = run
        .text("code.notice")
        .await
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(number.len(), 18, "{number}");
    assert!(
        run.client
            .find(Locator::Css("#pagopa-title ~ div svg"))
            .await
            .is_ok()
    );
    run.screenshot("pagopa-notice").await;

    // pagoPA's node asks the station about it, with the station's credential.
    let fiscal_code = run.portal.creditor().fiscal_code.clone();
    let verify = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:nod="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><nod:paVerifyPaymentNoticeReq>
<idPA>{fiscal_code}</idPA><idBrokerPA>{fiscal_code}</idBrokerPA><idStation>{fiscal_code}_01</idStation>
<qrCode><fiscalCode>{fiscal_code}</fiscalCode><noticeNumber>{number}</noticeNumber></qrCode>
</nod:paVerifyPaymentNoticeReq></soapenv:Body></soapenv:Envelope>"#
    );
    let http = reqwest::Client::new();
    let station = format!("{}/webhooks/pagopa/station", run.base);
    let ask = |key: Option<&str>| {
        let mut request = http
            .post(&station)
            .header("content-type", "text/xml")
            .body(verify.clone());
        if let Some(key) = key {
            request = request.header(payments_gateways::pagopa::DEFAULT_CALLBACK_HEADER, key);
        }
        request.send()
    };
    let key = run.portal.station_key();
    let answer = ask(Some(&key)).await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer = answer.text().await.unwrap();
    assert!(answer.contains("<outcome>OK</outcome>"), "{answer}");
    assert!(answer.contains("182.40"), "the amount: {answer}");
    // Without the credential the station tells nothing.
    let refused = ask(None).await.unwrap().text().await.unwrap();
    assert!(
        refused.contains("<outcome>KO</outcome>") && !refused.contains("182.40"),
        "{refused}"
    );

    // The receipt comes to the same station, at the one URL pagoPA is given.
    let iuv = &number[1..];
    let receipt = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:nod="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><nod:paSendRTV2Request>
<idPA>{fiscal_code}</idPA><idBrokerPA>{fiscal_code}</idBrokerPA><idStation>{fiscal_code}_01</idStation>
<receipt><receiptId>c3f1a9e2b7d64f0f</receiptId><noticeNumber>{number}</noticeNumber><fiscalCode>{fiscal_code}</fiscalCode>
<outcome>OK</outcome><creditorReferenceId>{iuv}</creditorReferenceId><paymentAmount>182.40</paymentAmount>
<description>TARI 2026</description><companyName>Comune di Esempio</companyName>
<debtor><uniqueIdentifier><entityUniqueIdentifierType>F</entityUniqueIdentifierType><entityUniqueIdentifierValue>RSSMRA80A01H501U</entityUniqueIdentifierValue></uniqueIdentifier><fullName>Mario Rossi</fullName></debtor>
<transferList><transfer><idTransfer>1</idTransfer><transferAmount>182.40</transferAmount><fiscalCodePA>{fiscal_code}</fiscalCodePA><IBAN>IT60X0542811101000000123456</IBAN><remittanceInformation>TARI 2026</remittanceInformation><transferCategory>9/0101101IM/</transferCategory></transfer></transferList>
<idPSP>BCITITMM</idPSP><PSPCompanyName>Intesa Sanpaolo</PSPCompanyName><idChannel>00799960158_01</idChannel><channelDescription>app</channelDescription>
<paymentMethod>creditCard</paymentMethod><fee>1.50</fee><paymentDateTime>2026-11-20T17:48:22</paymentDateTime><transferDate>2026-11-21</transferDate>
</receipt></nod:paSendRTV2Request></soapenv:Body></soapenv:Envelope>"#
    );
    let answer = http
        .post(format!("{}/webhooks/pagopa", run.base))
        .header("content-type", "text/xml")
        .header(
            payments_gateways::pagopa::DEFAULT_CALLBACK_HEADER,
            key.as_str(),
        )
        .body(receipt.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        answer.contains("paSendRTV2Response><outcome>OK</outcome>"),
        "{answer}"
    );
    // The citizen's page names the PSP and its receipt.
    run.client.refresh().await.unwrap();
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("paid")
    );
    assert_eq!(run.text(".psp-receipt .psp").await, "Intesa Sanpaolo");
    assert_eq!(
        run.text(".psp-receipt .receipt-id").await,
        "c3f1a9e2b7d64f0f"
    );
    let url = run.client.current_url().await.unwrap();
    let payment = url.path().rsplit('/').next().unwrap().to_owned();

    // The body's operator reads it on the payment's page and downloads it whole.
    run.sign_in("anna").await;
    run.goto(&format!("/admin/payments/{payment}")).await;
    let row = run.text("tr.receipt").await;
    assert!(row.contains("Intesa Sanpaolo (BCITITMM)"), "{row}");
    assert!(
        row.contains("00799960158_01") && row.contains("21/11/2026"),
        "{row}"
    );
    let href = run
        .attr("tr.receipt a", "href")
        .await
        .expect("a download link");
    let cookies = run.client.get_all_cookies().await.unwrap();
    let cookie = cookies
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ");
    let document = http
        .get(format!("{}{href}", run.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(document.status(), 200);
    assert!(
        document.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );
    assert_eq!(
        document.text().await.unwrap(),
        receipt,
        "kept as it arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_payment_is_an_exception_a_manager_gives_back_in_one_click() {
    use payments_core::{ExceptionKind, ExceptionQuery, PaymentOutcome, RefundStatus};
    let Some(run) = start("double").await else {
        return;
    };
    // Giulia starts paying the canteen invoice by card and leaves the page; the payment is
    // cancelled, which closes the sandbox's page.
    run.sign_in("giulia").await;
    run.press(&format!("[id='due-MENSA-2026-11-{GIULIA}'] button"))
        .await;
    run.click("#method-card").await;
    run.press("#pay").await;
    let url = run.client.current_url().await.unwrap();
    let first_session = url.path().rsplit('/').next().unwrap().to_owned();
    let first = run
        .portal
        .sandbox()
        .session(&first_session)
        .unwrap()
        .transaction_id;
    run.portal
        .payments()
        .cancel(&Actor::payer(GIULIA), first)
        .await
        .unwrap();
    assert_eq!(run.count("#sandbox-pay").await, 1, "the page as loaded");
    run.goto(url.path()).await;
    assert_eq!(
        run.count("#sandbox-pay").await,
        0,
        "closed: it takes no money"
    );

    // The invoice is back in her cart; she pays it again, and that payment goes through.
    run.goto("/cart").await;
    run.click("#method-card").await;
    run.press("#pay").await;
    run.press("#sandbox-pay").await;
    let second = run.payment_id().await;
    assert_eq!(run.transaction(second).await.status, TxStatus::Paid);

    // Then the first provider's success arrives after all (it took the money a moment
    // before its page closed): recorded, answered 200, never refused.
    let late = run
        .portal
        .sandbox()
        .signed_callback(&payments_gateways::sandbox::CallbackBody {
            event_id: "late".into(),
            session: first_session.clone(),
            transaction_id: first.to_string(),
            status: PaymentOutcome::Paid,
            amount: "45.60".into(),
            currency: "EUR".into(),
        });
    let answer = run.post_webhook("sandbox", &late, late.body.clone()).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(run.transaction(first).await.status, TxStatus::Paid);
    // The payer is told the duplicate will be given back.
    let mails = run.wait_mails(5).await;
    assert!(
        mails.iter().any(|m| m.contains("Pagamento doppio")),
        "{mails:#?}"
    );

    // The manager sees it among the exceptions, and gives it back in one click.
    run.sign_in("anna").await;
    run.goto("/admin/exceptions").await;
    assert_eq!(run.count("#exceptions tbody tr").await, 1);
    let kind = run.attr("#exceptions tbody tr", "data-kind").await;
    assert_eq!(kind.as_deref(), Some(ExceptionKind::DoublePayment.as_str()));
    assert!(run.text("#exceptions").await.contains("Pagamento doppio"));
    run.check_accessible("exceptions").await;
    run.screenshot("exceptions").await;
    let ledger = run
        .portal
        .payments()
        .exceptions(
            &Actor::System,
            &ExceptionQuery::new(run.portal.creditor().id),
        )
        .await
        .unwrap();
    assert_eq!(
        ledger[0].amount.map(|a| a.to_string()).as_deref(),
        Some("45.60 EUR")
    );
    let refund_button = run.find("#exceptions form button[id^='refund-']").await;
    refund_button.click().await.unwrap();
    run.find("main").await;
    assert!(run.text("#exceptions").await.contains("Risolta"));
    assert_eq!(run.count("#exceptions form button[id^='refund-']").await, 0);
    let refunds = run
        .portal
        .payments()
        .refunds(&Actor::payer(GIULIA), first)
        .await
        .unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].status, RefundStatus::Succeeded);
    assert_eq!(run.transaction(first).await.status, TxStatus::Refunded);
    assert_eq!(
        run.transaction(second).await.status,
        TxStatus::Paid,
        "stands"
    );
    // The detail page shows the refund done.
    run.goto(&format!("/admin/payments/{first}")).await;
    assert_eq!(
        run.attr("#refunds td[data-status]", "data-status")
            .await
            .as_deref(),
        Some("succeeded")
    );
    assert!(
        run.text("#tx-exceptions")
            .await
            .contains("Pagamento doppio")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_pays_one_instalment_of_a_notice_and_an_operator_imports_filters_and_invalidates()
{
    let Some(run) = start("positions").await else {
        return;
    };
    run.sign_in("mario").await;
    let key = format!("TARI-2027-{MARIO}");
    let position = format!("[id='position-{key}']");
    // The notice issued ahead: the single option and three instalments, each with its
    // notice code.
    assert_eq!(run.count(&format!("{position} tbody tr")).await, 4);
    let notice_code = run.text(&format!("[id='option-{key}-1'] code")).await;
    assert_eq!(
        notice_code.chars().filter(char::is_ascii_digit).count(),
        18,
        "{notice_code}"
    );
    let href = run
        .attr(&format!("{position} a.notice"), "href")
        .await
        .unwrap();
    let (status, kind, body) = run.download(&href).await;
    assert_eq!((status, kind.as_str()), (200, "application/pdf"));
    assert!(body.starts_with(b"%PDF-"));
    run.screenshot("positions-home").await;

    // The first instalment, by card.
    run.press(&format!("[id='option-{key}-1'] button")).await;
    assert_eq!(run.text("#total").await, "€ 80,00");
    run.click("#method-card").await;
    run.press("#pay").await;
    run.press("#sandbox-pay").await;
    assert_eq!(
        run.attr("#status", "data-status").await.as_deref(),
        Some("paid")
    );
    let id = run.payment_id().await;
    // The instalment is paid, the single option no longer payable, the rest payable.
    run.goto("/").await;
    for (n, expected) in [(1, "paid"), (0, "closed"), (2, "payable")] {
        let state = run
            .attr(&format!("[id='option-{key}-{n}']"), "data-state")
            .await;
        assert_eq!(state.as_deref(), Some(expected), "option {n}");
    }
    assert!(
        run.text(&format!("{position} h3"))
            .await
            .contains("Pagata in parte")
    );

    // The receipt as PDF, from the history.
    run.goto("/history").await;
    let href = run
        .attr(&format!("a.receipt[href*='{id}']"), "href")
        .await
        .unwrap();
    let (status, kind, body) = run.download(&href).await;
    assert_eq!((status, kind.as_str()), (200, "application/pdf"));
    assert!(body.starts_with(b"%PDF-"));
    // Another citizen's receipt is refused.
    run.sign_in("giulia").await;
    let (status, _, _) = run.download(&href).await;
    assert_eq!(status, 403);

    // The office imports notices from a CSV file: one good, one refused.
    let due = (chrono::Utc::now() + chrono::Duration::days(60)).date_naive();
    let csv = format!(
        "{}\nMENSA-2027-1,{GIULIA},Giulia Bianchi,,giulia.bianchi@example.it,it,tari,Mensa scolastica 2027,,U,45.00,{due},,,,,,\n\
         MENSA-2027-2,{GIULIA},Giulia Bianchi,,,,tari,Mensa scolastica 2027,,U,quarantacinque,{due},,,,,,\n",
        payments_core::POSITIONS_CSV_HEADER
    );
    run.sign_in("anna").await;
    run.import_file("/admin/positions", "positions.csv", &csv)
        .await;
    assert_eq!(run.text("#registered").await, "1");
    let refused = run.text("#refused").await;
    assert!(
        refused.contains("MENSA-2027-2") && refused.contains("amount"),
        "{refused}"
    );
    run.screenshot("admin-positions").await;

    // Filters: Giulia's notices; those partly paid.
    run.goto(&format!("/admin/positions?payer={GIULIA}")).await;
    assert_eq!(
        run.count("#positions tbody tr").await,
        2,
        "her TARI and her canteen"
    );
    run.goto("/admin/positions?status=partially_paid").await;
    assert_eq!(run.count("#positions tbody tr").await, 1);
    assert!(run.text("#positions").await.contains(&key));

    // The canteen notice is invalidated; its notice still downloads.
    run.goto(&format!("/admin/positions?payer={GIULIA}")).await;
    run.fill("[id='why-MENSA-2027-1']", "Iscrizione ritirata")
        .await;
    run.press("button[aria-label='Annulla: MENSA-2027-1']")
        .await;
    run.goto("/admin/positions?status=invalid").await;
    assert!(run.text("#positions").await.contains("MENSA-2027-1"));
    let href = run
        .attr("[id='position-MENSA-2027-1'] a.notice", "href")
        .await
        .unwrap();
    let (status, kind, _) = run.download(&href).await;
    assert_eq!((status, kind.as_str()), (200, "application/pdf"));
    // Giulia sees it invalidated, with nothing to pay.
    run.sign_in("giulia").await;
    assert!(
        run.text("[id='position-MENSA-2027-1'] h3")
            .await
            .contains("Annullata")
    );
    assert_eq!(run.count("[id='position-MENSA-2027-1'] button").await, 0);
}

/// The portal serves two bodies, a municipality and a union of municipalities, each with
/// its own sandbox account, payment types, modules and operators (issue: per-body provider
/// accounts). A citizen pays each side by side; each payment runs on its body's account and
/// its callback is verified only at that account's webhook; an operator of one body never
/// sees the other's payments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bodies_are_paid_side_by_side_and_each_operator_sees_only_their_own() {
    let Some(run) = start("bodies").await else {
        return;
    };
    let comune = run.portal.body("comune").unwrap().clone();
    let unione = run.portal.body("unione").unwrap().clone();
    run.sign_in("mario").await;
    assert!(run.text("#body").await.contains("Comune di Esempio"));

    // The municipality's TARI instalment, by card on the municipality's account.
    run.press(&format!("[id='due-TARI-2026-1-{MARIO}'] button"))
        .await;
    run.click("#method-card").await;
    run.press("#pay").await;
    let hosted = run.client.current_url().await.unwrap();
    assert!(
        hosted.path().starts_with("/hosted/sandbox/pay/"),
        "{hosted}"
    );
    run.press("#sandbox-pay").await;
    let first = run.transaction(run.payment_id().await).await;
    assert_eq!(first.status, TxStatus::Paid);
    assert_eq!(first.creditor_id, comune.creditor.id);
    assert_eq!(first.gateway_id.as_str(), "sandbox");

    // The union: its own modules, its own free payment types, its own cart.
    run.goto("/").await;
    run.press("a.body-switch").await;
    assert!(
        run.text("#body")
            .await
            .contains("Unione dei Comuni della Valle Esempio")
    );
    let home = run.text("main").await;
    assert!(
        home.contains("Verbale 2026/4411") && !home.contains("TARI"),
        "{home}"
    );
    run.screenshot("union-home").await;
    run.goto("/free").await;
    let free = run.text("#type").await;
    assert!(
        free.contains("Sanzioni codice della strada") && !free.contains("Diritti di segreteria"),
        "{free}"
    );
    run.goto("/").await;
    run.press(&format!("[id='due-VERBALE-2026-4411-{MARIO}'] button"))
        .await;
    assert_eq!(
        run.count("tbody tr").await,
        1,
        "the union's cart is its own"
    );
    assert_eq!(run.text("#total").await, "€ 42,00");
    run.click("#method-card").await;
    run.press("#pay").await;
    let hosted = run.client.current_url().await.unwrap();
    let session = hosted
        .path()
        .strip_prefix("/hosted/sandbox-unione/pay/")
        .unwrap_or_else(|| panic!("the union's own account: {hosted}"))
        .to_owned();

    // The union's account signs its callback with its own key: the municipality's webhook
    // refuses it, the union's takes it.
    let callback = unione
        .sandbox()
        .complete(&session, payments_core::PaymentOutcome::Paid)
        .unwrap();
    let at_comune = run
        .post_webhook("sandbox", &callback, callback.body.clone())
        .await;
    assert_eq!(
        at_comune.status(),
        400,
        "another body's account does not verify it"
    );
    let at_unione = run
        .post_webhook("sandbox-unione", &callback, callback.body.clone())
        .await;
    assert_eq!(at_unione.status(), 200);
    run.wait_paid_on_home(&format!("VERBALE-2026-4411-{MARIO}"))
        .await;
    let second = run
        .portal
        .payments()
        .history(
            &Actor::payer(MARIO),
            &payments_core::HistoryQuery::new(MARIO),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.transaction)
        .find(|t| t.creditor_id == unione.creditor.id)
        .expect("the union's payment in Mario's history");
    assert_eq!(second.status, TxStatus::Paid);
    assert_eq!(second.gateway_id.as_str(), "sandbox-unione");
    // Each body is told of its own payment, at its own address.
    let mails = run.wait_mails(4).await;
    for address in [
        "ragioneria@comune.example.it",
        "polizialocale@unione.example.it",
    ] {
        assert_eq!(
            mails.iter().filter(|m| m.contains(address)).count(),
            1,
            "one notice to {address}"
        );
    }

    // Each operator sees their own body's payment, never the other's.
    for (operator, own, other, body) in [
        ("sara", &second, &first, "Unione dei Comuni"),
        ("anna", &first, &second, "Comune di Esempio"),
    ] {
        run.sign_in(operator).await;
        assert!(run.text("#body").await.contains(body));
        assert_eq!(
            run.count("a.body-switch").await,
            0,
            "an operator's body is fixed"
        );
        run.goto("/admin").await;
        let list = run.source().await;
        assert!(
            list.contains(&own.id.to_string()) && !list.contains(&other.id.to_string()),
            "{operator}'s movements"
        );
        let (status, _, _) = run.download(&format!("/admin/payments/{}", other.id)).await;
        assert!(
            status == 403 || status == 404,
            "{operator} opened another body's payment: {status}"
        );
        let (status, _, csv) = run.download("/admin/export.csv").await;
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(status, 200);
        assert!(
            csv.contains(&own.id.to_string()) && !csv.contains(&other.id.to_string()),
            "{operator}'s export: {csv}"
        );
    }
    assert_ne!(comune.creditor.id, unione.creditor.id);
}

/// The operator's first page: today's collections by method in the chart and its table,
/// paid against open, and the exceptions waiting, each figure checked against the
/// library's own reading of the data; then the reporting flows page, reconciled on demand,
/// and its CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_what_the_data_holds() {
    use payments_core::{
        ExceptionKind, FlowPayment, FlowPaymentStatus, MethodKind, Money, PaymentCheck,
        ReportingFlow,
    };
    let Some(run) = start("overview").await else {
        return;
    };
    let creditor = run.portal.creditor().id;
    // Two card payments today (16,00 and 30,50) and a transfer still open (99,00).
    for (amount, case) in [("16,00", "OV/1"), ("30,50", "OV/2")] {
        pay_fee(
            &run.portal,
            MARIO,
            "Mario Rossi",
            amount,
            case,
            MethodKind::Card,
        )
        .await;
    }
    pay_fee(
        &run.portal,
        GIULIA,
        "Giulia Bianchi",
        "99,00",
        "OV/3",
        MethodKind::BankTransfer,
    )
    .await;
    // A PSP's flow reporting a payment this body never received a receipt for.
    let now = chrono::Utc::now();
    let eur = |s: &str| Money::parse_eur(s).unwrap();
    let flow = ReportingFlow {
        creditor_id: creditor,
        flow_id: format!("{}CIPBITMM-S000000001", now.format("%Y-%m-%d")),
        psp_id: "CIPBITMM".into(),
        revision: 1,
        psp_name: Some("Nexi".into()),
        flow_date: now,
        published_at: now,
        regulation: Some("SCT0001".into()),
        regulation_date: Some(now.date_naive()),
        bic: Some("BCITITMM".into()),
        total: eur("25,00"),
        count: 1,
        payments: vec![FlowPayment {
            index: 1,
            iuv: "01000000000000099".into(),
            iur: "IUR-OV-1".into(),
            transfer: 1,
            amount: eur("25,00"),
            status: FlowPaymentStatus::Executed,
            paid_at: now,
            check: PaymentCheck::Unchecked,
        }],
        credit: payments_core::CreditCheck::Awaited,
        replaces: None,
        replaced: false,
        received_at: now,
        checked_at: None,
        version: 1,
        events: Vec::new(),
    };
    run.portal
        .payments()
        .record_flow(&Actor::System, &flow)
        .await
        .unwrap();

    // An unmatched credit, from a statement the operator imports.
    let today = now.date_naive();
    let statement = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>OV-1</MsgId></GrpHdr><Stmt><Id>1</Id><Acct><Id><IBAN>IT60X0542811101000000123456</IBAN></Id></Acct>
<Ntry><Amt Ccy="EUR">42.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{today}</Dt></BookgDt>
<AcctSvcrRef>OV-CREDIT-1</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>VERSAMENTO</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>"#
    );
    run.sign_in("anna").await;
    assert_eq!(
        run.client.current_url().await.unwrap().path(),
        "/admin/overview",
        "an operator lands on the overview"
    );
    run.import_file("/admin/statements", "statement.xml", &statement)
        .await;

    // The flows page: received; reconciled on demand, the missing receipt is a discrepancy.
    run.goto("/admin/flows").await;
    assert_eq!(
        run.attr("#flows tbody tr", "data-state").await.as_deref(),
        Some("received")
    );
    run.press("#sync").await;
    assert_eq!(
        run.attr("#flows tbody tr", "data-state").await.as_deref(),
        Some("discrepancies")
    );
    assert_eq!(run.text("#done-flows").await, "1");
    assert_eq!(
        run.text("#done-exceptions").await,
        "1",
        "the receipt missing"
    );
    run.screenshot("admin-flows").await;
    let csv = reqwest_get(&run, "/admin/flows.csv").await;
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("flow_id,psp_id,psp_name,revision")
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!("{},CIPBITMM,Nexi,1,", flow.flow_id))
            && row.contains(",1,25.00,EUR,discrepancies,"),
        "{row}"
    );

    // What the library reads from the data, and what the test put there.
    let anna = Actor::operator(creditor, payments_core::Role::Manager, "anna");
    let o = run
        .portal
        .payments()
        .overview(&anna, creditor, 30)
        .await
        .unwrap();
    let card_today = o.collected(o.last_day, MethodKind::Card);
    assert_eq!(card_today, eur("46,50"));
    assert_eq!(o.paid, (2, eur("46,50")));
    assert_eq!(o.open, (1, eur("99,00")));
    assert_eq!(o.waiting[&ExceptionKind::UnmatchedCredit], 1);
    assert!(o.waiting[&ExceptionKind::ReportingMismatch] >= 1);
    assert_eq!(o.waiting[&ExceptionKind::DoublePayment], 0);
    assert_eq!(o.failed_messages, 0);

    // The page says the same.
    run.goto("/admin/overview").await;
    run.check_accessible("overview").await;
    let tile = |id: &'static str| {
        let run = &run;
        async move {
            run.attr(&format!("#waiting-{id} .count"), "data-count")
                .await
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap()
        }
    };
    assert_eq!(tile("unmatched").await, 1);
    assert_eq!(
        tile("fdr").await,
        o.waiting[&ExceptionKind::ReportingMismatch]
    );
    assert_eq!(tile("double").await, 0);
    assert_eq!(tile("failed").await, 0);
    assert_eq!(
        run.attr("#paid-total", "data-count").await.as_deref(),
        Some("2")
    );
    assert!(run.text("#paid-total").await.contains("46,50"));
    assert_eq!(
        run.attr("#open-total", "data-count").await.as_deref(),
        Some("1")
    );
    assert!(run.text("#open-total").await.contains("99,00"));
    // The table: 30 days, today's row with the card's 46,50; the chart draws that bar.
    assert_eq!(run.count("#collections tbody tr").await, 30);
    let today_row = run
        .text(&format!("#collections tbody tr[data-day='{}']", o.last_day))
        .await;
    assert!(today_row.contains("46,50"), "{today_row}");
    assert_eq!(
        run.count(&format!(
            "#collections-chart rect[data-day='{}'][data-method='card']",
            o.last_day
        ))
        .await,
        1
    );
    assert_eq!(
        run.count("#collections-chart rect").await,
        1,
        "one day, one method"
    );
    run.screenshot("admin-overview").await;
    // Each count links to its list.
    run.press("#waiting-unmatched a").await;
    assert_eq!(run.count("#exceptions tbody tr").await, 1);
}

/// A page's body fetched with the browser's session cookie.
async fn reqwest_get(run: &Run, path: &str) -> String {
    let cookies = run.client.get_all_cookies().await.unwrap();
    let header: Vec<String> = cookies
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    reqwest::Client::new()
        .get(format!("{}{path}", run.base))
        .header("cookie", header.join("; "))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap()
}
