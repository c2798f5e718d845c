//! One HTTP client for the providers that speak HTTP: rustls, timeouts, no redirects
//! followed, and bounded retries on connection errors, timeouts, `429` and server errors.
//!
//! Errors never carry the request (its URL, headers or body may hold a key): a provider
//! that cannot be reached is [`GatewayErrorKind::Unavailable`].

use std::time::Duration;

use payments_core::{Error, GatewayErrorKind, Result};

/// The shared client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    retries: u32,
    backoff: Duration,
}

impl HttpClient {
    /// A client with a 5 s connect timeout, a 20 s timeout per attempt and two retries
    /// 200 ms and 400 ms apart.
    pub fn new() -> Result<Self> {
        Self::with_timeouts(Duration::from_secs(5), Duration::from_secs(20))
    }

    /// A client with these timeouts (connecting, and a whole attempt).
    pub fn with_timeouts(connect: Duration, attempt: Duration) -> Result<Self> {
        // TLS is rustls with the ring provider, as sqlx's and lettre's: installed once as the
        // process default (a host that installed its own keeps it).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(attempt)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("payments-gateways/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| Error::gateway("http", GatewayErrorKind::Unavailable))?;
        Ok(HttpClient {
            client,
            retries: 2,
            backoff: Duration::from_millis(200),
        })
    }

    /// Retries a failed attempt up to `retries` times, waiting `backoff`, then twice that,
    /// and so on.
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Sends the request `build` makes, again after a connection error, a timeout, a `429`
    /// or a 5xx answer, at most `1 + retries` times; any other answer is returned as it is. The
    /// request must be safe to repeat: idempotent by nature, or by a key the provider
    /// honours.
    pub async fn send(
        &self,
        gateway: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        self.send_retrying(gateway, build, true).await
    }

    /// Sends a request that must not be repeated once it may have reached the provider (a
    /// refund without an idempotency key): it is sent again only when the connection could
    /// not be made. A timeout or a 5xx leaves the outcome unknown and is
    /// [`GatewayErrorKind::Unavailable`], for the caller to check before trying again.
    pub async fn send_once(
        &self,
        gateway: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        self.send_retrying(gateway, build, false).await
    }

    /// Sends, retrying a connection that could not be made, and, when `repeatable`, a
    /// timeout, an interrupted exchange or a 5xx.
    async fn send_retrying(
        &self,
        gateway: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        repeatable: bool,
    ) -> Result<reqwest::Response> {
        let mut wait = self.backoff;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            let again = match build(&self.client).send().await {
                Ok(response)
                    if response.status().is_server_error()
                        || response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    repeatable
                }
                Ok(response) => return Ok(response),
                Err(e) if e.is_connect() => true,
                Err(e) => repeatable && (e.is_timeout() || e.is_request()),
            };
            if !again {
                break;
            }
        }
        Err(Error::gateway(gateway, GatewayErrorKind::Unavailable))
    }
}
