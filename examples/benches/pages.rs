//! How fast the portal serves its pages over HTTP, beside a floor: the same bytes from a
//! static axum handler on the same kind of server, so the ratio is what the session, the
//! library's reads (SQLite) and the template cost per page.
//!
//! `cargo bench -p payments-examples --bench pages` (`BENCH_PAGES`, 2,000 by default).

use std::time::{Duration, Instant};

use axum::response::Html;
use portal::{Config, Portal};

fn pages() -> usize {
    std::env::var("BENCH_PAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// Serves `router` on a free port; returns its address.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// GETs `url` `n` times, one after another on one keep-alive connection, as a browser
/// would; returns the time and the last body.
async fn get(http: &reqwest::Client, url: &str, cookie: &str, n: usize) -> (Duration, String) {
    let start = Instant::now();
    let mut body = String::new();
    for _ in 0..n {
        let response = http.get(url).header("cookie", cookie).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        body = response.text().await.unwrap();
    }
    (start.elapsed(), body)
}

/// The session cookie a response sets, as a `Cookie` header value.
fn session(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// POSTs a form with the session's cookie.
async fn post(
    http: &reqwest::Client,
    url: String,
    cookie: &str,
    form: String,
) -> reqwest::Response {
    http.post(url)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..at + 64].to_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = pages();
    let dir = std::env::temp_dir().join(format!("portal-bench-{}", std::process::id()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let portal = Portal::new(Config::local(&dir, listener.local_addr().unwrap()))
        .await
        .unwrap();
    let base = portal.config().public_url.clone();
    tokio::spawn(portal.clone().serve(listener));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Sign in as Mario and put two items in his cart, as the pages do.
    let first = http.get(format!("{base}/signin")).send().await.unwrap();
    let cookie = session(&first);
    let token = csrf(&first.text().await.unwrap());
    let signed = post(
        &http,
        format!("{base}/signin"),
        &cookie,
        format!("csrf={token}&account=mario"),
    )
    .await;
    let cookie = session(&signed);
    let home = http
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let token = csrf(&home.text().await.unwrap());
    for key in [
        "tributi/TARI-2026-1-RSSMRA85T10A562S",
        "servizi/MENSA-2026-11-RSSMRA85T10A562S",
    ] {
        let added = post(
            &http,
            format!("{base}/modules/{key}"),
            &cookie,
            format!("csrf={token}"),
        )
        .await;
        assert_eq!(added.status(), 303);
    }

    println!("{n} pages each, one after another over one connection (2 cores):");
    for (page, path) in [
        ("home (4 modules, the cart)", "/"),
        ("cart (items, methods)", "/cart"),
    ] {
        // Warm up, then measure the portal and the same bytes served statically.
        let (_, body) = get(&http, &format!("{base}{path}"), &cookie, 50).await;
        let (took, _) = get(&http, &format!("{base}{path}"), &cookie, n).await;
        let floor_url = serve(axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let body = body.clone();
                async move { Html(body) }
            }),
        ))
        .await;
        let _ = get(&http, &floor_url, &cookie, 50).await;
        let (floor, _) = get(&http, &floor_url, &cookie, n).await;
        println!(
            "{page:<28} {:>7.0} pages/s ({:.2} ms each)   floor {:>7.0} pages/s ({:.2} ms)   ratio {:.1}x",
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / n as f64,
            n as f64 / floor.as_secs_f64(),
            floor.as_secs_f64() * 1000.0 / n as f64,
            took.as_secs_f64() / floor.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
