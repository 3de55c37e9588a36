//! Fetch and parse one page: the work a worker process does for each URL, and what it sends back.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use url::Url;

use crate::links::{extract_links, resolve, utf8_prefix};

/// How a worker's HTTP client is set up; sent once to every worker by the pool's initializer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Limit on establishing a connection (DNS excluded).
    pub connect_timeout: Duration,
    /// Limit on a whole request, from connecting to the end of the body.
    pub timeout: Duration,
    /// Bytes of a body read at most; a longer HTML page is parsed up to this many bytes.
    pub max_body: usize,
    /// Requests to one host (name and port) in flight at once in one worker process.
    pub per_host: usize,
    /// Name resolution.
    pub dns: DnsMode,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_body: 1 << 20,
            per_host: 8,
            dns: DnsMode::System,
        }
    }
}

/// Which names a worker can resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsMode {
    /// The operating system's resolver.
    System,
    /// Only `localhost` and `*.localhost` (to 127.0.0.1); every other name fails as a DNS error
    /// without a packet sent. For the embedded site and tests, which must not leave the machine.
    LoopbackOnly,
}

/// What became of one URL; the result of the `fetch_page` task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageResult {
    /// The URL requested.
    pub url: String,
    /// What the server answered.
    pub outcome: Outcome,
}

/// The kinds of answer a URL gets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// An HTML page, parsed.
    Html {
        /// Its http(s) links, resolved, without fragments, each once, in document order.
        links: Vec<String>,
        /// Body bytes read.
        bytes: u64,
        /// The body was longer than the cap and only its first `max_body` bytes were parsed.
        truncated: bool,
    },
    /// A response that is not `text/html`: counted, not parsed.
    NotHtml {
        /// Its `Content-Type`, empty when it had none.
        content_type: String,
    },
    /// A 3xx answer; the crawler decides whether to follow it, so that no URL is fetched twice.
    Redirect {
        /// The HTTP status.
        status: u16,
        /// The `Location`, resolved against the URL.
        location: String,
    },
    /// A failure; never fatal to the crawl.
    Failed(FetchError),
}

/// Why a URL failed, by kind, with the detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The detail, lowercase.
    pub message: String,
}

/// The kinds of failure the summary counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The URL does not parse or is not http(s).
    InvalidUrl,
    /// The host name did not resolve.
    Dns,
    /// No connection could be made (refused, unreachable, TLS handshake failed).
    Connect,
    /// The connect or total timeout ran out.
    Timeout,
    /// The server answered with a status of 400 or more.
    HttpStatus,
    /// An HTML body that is not valid UTF-8.
    NonUtf8,
    /// A redirect without a usable `Location`.
    BadRedirect,
    /// More redirects in a row than the crawler follows.
    TooManyRedirects,
    /// The connection failed while reading the response.
    Body,
    /// The worker process could not run the task (it died, or the task failed or timed out in
    /// the pool).
    Worker,
    /// Anything else the HTTP client reported.
    Other,
}

impl ErrorKind {
    /// Every kind, in the order the summary lists them.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidUrl,
        ErrorKind::Dns,
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::HttpStatus,
        ErrorKind::NonUtf8,
        ErrorKind::BadRedirect,
        ErrorKind::TooManyRedirects,
        ErrorKind::Body,
        ErrorKind::Worker,
        ErrorKind::Other,
    ];

    /// A short lowercase name, for logs and the summary.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidUrl => "invalid url",
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HttpStatus => "http status",
            ErrorKind::NonUtf8 => "non-utf-8",
            ErrorKind::BadRedirect => "bad redirect",
            ErrorKind::TooManyRedirects => "too many redirects",
            ErrorKind::Body => "body",
            ErrorKind::Worker => "worker",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PageResult {
    /// A failed result for `url`.
    pub fn failed(url: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        PageResult {
            url: url.into(),
            outcome: Outcome::Failed(FetchError { kind, message: message.into() }),
        }
    }
}

/// A worker's HTTP client (one connection pool, reused for every page it fetches) and its
/// per-host limits.
#[derive(Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    config: ClientConfig,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the http client")]
pub struct ClientInitError(#[from] reqwest::Error);

impl Fetcher {
    /// A client set up by `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ClientInitError> {
        // reqwest is built without a default crypto provider (to stay off aws-lc and its C
        // build); an Err only means some provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("polyloop-crawl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            // The crawler follows redirects itself so that each URL is fetched at most once.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(config.per_host.max(1));
        if config.dns == DnsMode::LoopbackOnly {
            builder = builder.dns_resolver(LoopbackOnly);
        }
        let client = builder.build().map_err(ClientInitError)?;
        Ok(Fetcher { client, config, hosts: Mutex::new(HashMap::new()) })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// GET `url` and, if it is an HTML page, extract its links. Never fails: a failure is an
    /// [`Outcome::Failed`].
    pub async fn get(&self, url: &str) -> PageResult {
        let parsed = match Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => parsed,
            Ok(parsed) => {
                let message = format!("unsupported scheme {:?}", parsed.scheme());
                return PageResult::failed(url, ErrorKind::InvalidUrl, message);
            }
            Err(e) => return PageResult::failed(url, ErrorKind::InvalidUrl, e.to_string()),
        };
        let semaphore = self.host_semaphore(&parsed);
        let downloaded = {
            // Held for the request only, not the parse. Host semaphores are never closed, so
            // this always holds a permit.
            let _permit = semaphore.acquire().await;
            self.download(&parsed).await
        };
        let outcome = match downloaded {
            Ok(Html { body, truncated }) => parse(&parsed, &body, truncated),
            Err(outcome) => outcome,
        };
        PageResult { url: url.to_owned(), outcome }
    }

    fn host_semaphore(&self, url: &Url) -> Arc<Semaphore> {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_host.max(1))))
            .clone()
    }

    /// The body of an HTML page, or what else the URL answered.
    async fn download(&self, url: &Url) -> Result<Html, Outcome> {
        let mut response = match self.client.get(url.clone()).send().await {
            Ok(response) => response,
            Err(e) => return Err(failed(classify(&e), chain(&e))),
        };
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok());
            return Err(match location.and_then(|location| resolve(url, location)) {
                Some(location) => {
                    Outcome::Redirect { status: status.as_u16(), location: location.into() }
                }
                None => failed(
                    ErrorKind::BadRedirect,
                    match location {
                        Some(location) => format!("{status} to {location:?}, not an http(s) url"),
                        None => format!("{status} without a usable Location"),
                    },
                ),
            });
        }
        if status.as_u16() >= 400 {
            return Err(failed(ErrorKind::HttpStatus, format!("http {status}")));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !is_html(&content_type) {
            return Err(Outcome::NotHtml { content_type });
        }

        let cap = self.config.max_body;
        let mut body =
            Vec::with_capacity(response.content_length().map_or(8192, |n| n as usize).min(cap));
        let mut truncated = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = cap - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        // Dropping the response closes the connection: the rest is never read.
                        truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(failed(classify(&e), chain(&e))),
            }
        }
        Ok(Html { body, truncated })
    }
}

/// A downloaded HTML body, cut at the cap if `truncated`.
struct Html {
    body: Vec<u8>,
    truncated: bool,
}

/// The links of an HTML body, which must be UTF-8 (but for a character cut at the cap).
fn parse(url: &Url, body: &[u8], truncated: bool) -> Outcome {
    let text = if truncated { utf8_prefix(body) } else { std::str::from_utf8(body).ok() };
    let Some(text) = text else {
        let at = std::str::from_utf8(body).err().map_or(0, |e| e.valid_up_to());
        return failed(ErrorKind::NonUtf8, format!("body is not utf-8 (invalid byte at {at})"));
    };
    let links = extract_links(text, url).into_iter().map(String::from).collect();
    Outcome::Html { links, bytes: body.len() as u64, truncated }
}

fn failed(kind: ErrorKind, message: impl Into<String>) -> Outcome {
    Outcome::Failed(FetchError { kind, message: message.into() })
}

/// `text/html`, whatever its parameters and case.
fn is_html(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("text/html")
}

fn classify(e: &reqwest::Error) -> ErrorKind {
    // Order matters: a DNS failure is also a connect error, and a connect timeout both.
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_dns() {
        ErrorKind::Dns
    } else if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        ErrorKind::Body
    } else {
        ErrorKind::Other
    }
}

/// The causes of a client error on one line. The error itself only says "error sending request
/// for url (...)", which the log line has already said.
fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() { e.to_string() } else { parts.join(": ") }
}

/// The resolver of [`DnsMode::LoopbackOnly`].
#[derive(Debug, Clone, Copy)]
struct LoopbackOnly;

impl Resolve for LoopbackOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let addrs: Addrs =
                    Box::new(std::iter::once(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)));
                Ok(addrs)
            } else {
                Err(format!("no such host {host:?} (only localhost names resolve here)").into())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_content_types() {
        assert!(is_html("text/html"));
        assert!(is_html("Text/HTML; charset=utf-8"));
        assert!(!is_html("text/plain"));
        assert!(!is_html("application/xhtml+xml"));
        assert!(!is_html(""));
    }

    #[tokio::test]
    async fn invalid_urls_fail_without_a_request() {
        let fetcher = Fetcher::new(ClientConfig::default()).unwrap();
        for url in ["not a url", "ftp://h.test/f", "mailto:me@h.test"] {
            let result = fetcher.get(url).await;
            let Outcome::Failed(e) = result.outcome else { panic!("{url}: {result:?}") };
            assert_eq!(e.kind, ErrorKind::InvalidUrl, "{url}");
        }
    }
}
