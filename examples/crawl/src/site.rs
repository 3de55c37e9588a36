//! The embedded website: generated, deterministic pages served on 127.0.0.1, and the truth about
//! them (every link each page holds), so a crawl of it can be checked exactly.
//!
//! Two hosts are served on one port: `127.0.0.1` (the main site) and `other.localhost` (a small
//! second site, for the same-host rule; crawls of it need [`DnsMode::LoopbackOnly`]). The main
//! site has `pages` pages under `/p/N`, `sections` index pages under `/s/K/` that list them, and a
//! root `/` that links to the sections and to every special case:
//!
//! | URL | answer |
//! | --- | --- |
//! | `/redirect/301`, `/redirect/302`, `/redirect/relative` | redirects to pages |
//! | `/redirect/loop-a` | redirects to `/redirect/loop-b`, which redirects back |
//! | `/chain/0` | a chain of 12 redirects, more than a crawl follows by default (10) |
//! | `/redirect/offsite` | redirects to `other.localhost` |
//! | `/redirect/bad` | redirects to a `mailto:` URL |
//! | `/base/`, `/base-other/` | pages with a `<base href>`, the second on the other host |
//! | `/slow` | answers after `slow_delay` |
//! | `/large` | `large_page_bytes` of HTML with links all the way through |
//! | `/files/readme.txt`, `/img/logo.png` | not HTML |
//! | `/latin1` | HTML that is not UTF-8 |
//! | `/error/500`, `/missing/...` | 500 and 404 |
//! | `http://127.0.0.1:<closed port>/` | a port nobody listens on |
//!
//! Pages link with relative, absolute-path, absolute, dot-segment, fragment, query,
//! entity-escaped, upper-case and space-padded hrefs, plus `mailto:` and `javascript:` ones, and
//! some hold `<a href>` text in scripts and comments that is not a link.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use crate::crawl::{CrawlConfig, Scope};
#[cfg(doc)]
use crate::fetch::DnsMode;
use crate::fetch::ErrorKind;

/// The shape of the generated site.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// Content pages (at least 20).
    pub pages: usize,
    /// Index pages that list the content pages (at least 1).
    pub sections: usize,
    /// How long `/slow` takes to answer.
    pub slow_delay: Duration,
    /// Size of `/large`.
    pub large_page_bytes: usize,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            pages: 2000,
            sections: 20,
            slow_delay: Duration::from_secs(30),
            large_page_bytes: 3 << 19,
        }
    }
}

/// The server, running on the current tokio runtime until [`Site::shutdown`] or drop.
#[derive(Debug)]
pub struct Site {
    content: Arc<Content>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

/// What a crawl of the site should find, by the site's own account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// `(page, link)` for every link on every page a crawl parses.
    pub links: BTreeSet<(String, String)>,
    /// Every URL a crawl requests (or fails to), each once.
    pub fetched: BTreeSet<String>,
    /// HTML pages parsed.
    pub html_pages: usize,
    /// Answers that are not HTML.
    pub not_html: usize,
    /// Redirect answers.
    pub redirects: usize,
    /// Pages over the body cap.
    pub truncated: usize,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, usize>,
}

impl Expected {
    /// `Ok` if `found` holds exactly the expected links; else an error that counts the missing
    /// and unexpected ones and lists the first few of each.
    pub fn check_links(&self, found: &BTreeSet<(String, String)>) -> Result<(), String> {
        if *found == self.links {
            return Ok(());
        }
        let missing: Vec<_> = self.links.difference(found).collect();
        let extra: Vec<_> = found.difference(&self.links).collect();
        Err(format!(
            "the links found differ from the site's: {} missing, {} unexpected\n\
             first missing {:#?}\nfirst unexpected {:#?}",
            missing.len(),
            extra.len(),
            &missing[..missing.len().min(10)],
            &extra[..extra.len().min(10)],
        ))
    }
}

/// The crawl settings that decide what [`Site::expected`] is.
#[derive(Clone, Debug)]
pub struct Expectation<'a> {
    /// The listed URLs.
    pub seeds: &'a [String],
    /// Depth, scope and redirect limit.
    pub crawl: &'a CrawlConfig,
    /// The fetcher's body cap.
    pub max_body: usize,
    /// The fetcher's total timeout.
    pub timeout: Duration,
}

#[derive(Debug)]
struct Content {
    config: SiteConfig,
    main: String,
    other: String,
    closed: String,
    resources: HashMap<String, Resource>,
    hits: Mutex<HashMap<String, u32>>,
    connections: AtomicUsize,
    requests_now: AtomicUsize,
    requests_max: AtomicUsize,
}

#[derive(Debug)]
struct Resource {
    status: StatusCode,
    content_type: &'static str,
    location: Option<String>,
    delay: Option<Duration>,
    body: Bytes,
    truth: Truth,
}

/// What a correct crawler makes of a resource.
#[derive(Debug)]
enum Truth {
    /// An HTML page with these links (resolved), each with the byte offset just past its tag.
    Html(Vec<(String, usize)>),
    NotHtml,
    Redirect(String),
    /// Served, but a failure of this kind.
    Fails(ErrorKind),
}

impl Site {
    /// Binds 127.0.0.1 on a free port, generates the pages and starts serving them.
    pub async fn start(config: SiteConfig) -> io::Result<Site> {
        let config =
            SiteConfig { pages: config.pages.max(20), sections: config.sections.max(1), ..config };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        // A port that was free a moment ago and that nobody listens on now.
        let closed_port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?.local_addr()?.port();
        let content = Arc::new(Content::generate(config, port, closed_port));
        let (shutdown, stop) = oneshot::channel();
        let server = tokio::spawn(serve(listener, content.clone(), stop));
        Ok(Site { content, shutdown: Some(shutdown), server })
    }

    /// Stops accepting, drops every open connection, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.server).await;
    }

    /// The main site's root, `http://127.0.0.1:PORT/`.
    pub fn root(&self) -> String {
        self.url("/")
    }

    /// A main-site URL for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.content.main)
    }

    /// A URL on the second host, `other.localhost`, for `path`.
    pub fn other_url(&self, path: &str) -> String {
        format!("{}{path}", self.content.other)
    }

    /// A URL on 127.0.0.1 where nothing listens.
    pub fn closed_url(&self) -> String {
        format!("{}/", self.content.closed)
    }

    /// A URL whose host never resolves (under [`DnsMode::LoopbackOnly`]).
    pub fn unresolvable_url(&self) -> String {
        "http://nowhere.invalid/".to_owned()
    }

    /// The URLs a demo crawl starts from: both roots, and one that cannot resolve.
    pub fn seeds(&self) -> Vec<String> {
        vec![self.root(), self.other_url("/"), self.unresolvable_url()]
    }

    /// The site's shape.
    pub fn config(&self) -> &SiteConfig {
        &self.content.config
    }

    /// Requests served so far, by URL (`http://host:port/path?query`).
    pub fn hits(&self) -> BTreeMap<String, u32> {
        let hits = self.content.hits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hits.iter().map(|(url, &n)| (url.clone(), n)).collect()
    }

    /// `Ok` if this site served each of `expected.fetched` that it serves exactly once, and
    /// nothing else; else an error naming what it served.
    pub fn check_each_fetched_once(&self, expected: &Expected) -> Result<(), String> {
        let hits = self.hits();
        let served: BTreeSet<&String> =
            expected.fetched.iter().filter(|url| self.serves(url)).collect();
        if hits.keys().collect::<BTreeSet<_>>() != served {
            return Err(format!("served {hits:?}, expected each of {served:?} once"));
        }
        match hits.iter().find(|(_, n)| **n != 1) {
            Some((url, n)) => Err(format!("{url} was fetched {n} times")),
            None => Ok(()),
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.content.connections.load(Ordering::Relaxed)
    }

    /// The most requests the site was answering at one time.
    pub fn max_concurrent_requests(&self) -> usize {
        self.content.requests_max.load(Ordering::Relaxed)
    }

    /// Whether `url` is served by this site (rather than failing to resolve or connect).
    pub fn serves(&self, url: &str) -> bool {
        url.starts_with(&format!("{}/", self.content.main))
            || url.starts_with(&format!("{}/", self.content.other))
    }

    /// What a crawl with these settings must find, worked out from the generated link graph
    /// (breadth first, so each URL at its fewest link hops from a seed), for a fetcher that
    /// resolves names with [`DnsMode::LoopbackOnly`].
    pub fn expected(&self, expectation: &Expectation<'_>) -> Expected {
        let content = &self.content;
        let crawl = expectation.crawl;
        let mut expected = Expected::default();
        // URL -> (depth, redirects in a row), in the order a breadth-first walk reaches them.
        let mut reached: HashMap<String, (u32, u32)> = HashMap::new();
        let mut queue = VecDeque::new();
        for seed in expectation.seeds {
            let Ok(mut url) = Url::parse(seed.trim()) else {
                *expected.errors.entry(ErrorKind::InvalidUrl).or_default() += 1;
                continue;
            };
            url.set_fragment(None);
            if reached.insert(url.to_string(), (0, 0)).is_none() {
                queue.push_back(url.to_string());
            }
        }
        // Zero-one breadth-first search: redirects cost no depth, so they go to the front.
        let mut done = BTreeSet::new();
        while let Some(url) = queue.pop_front() {
            if !done.insert(url.clone()) {
                continue;
            }
            let (depth, hops) = reached[&url];
            expected.fetched.insert(url.clone());
            let mut error = None;
            let resource = content.lookup(&url);
            let too_slow =
                resource.and_then(|r| r.delay).is_some_and(|delay| expectation.timeout < delay);
            match resource.map(|r| &r.truth) {
                _ if too_slow => error = Some(ErrorKind::Timeout),
                Some(Truth::Html(links)) => {
                    expected.html_pages += 1;
                    let body_len = resource.map_or(0, |r| r.body.len());
                    if body_len > expectation.max_body {
                        expected.truncated += 1;
                    }
                    let page = Url::parse(&url).expect("generated urls parse");
                    for (link, end) in links {
                        if body_len > expectation.max_body && *end > expectation.max_body {
                            continue;
                        }
                        expected.links.insert((url.clone(), link.clone()));
                        let link = Url::parse(link).expect("generated urls parse");
                        let followed = crawl.scope == Scope::AllHosts || same_host(&page, &link);
                        if followed && depth < crawl.max_depth {
                            let better =
                                reached.get(link.as_str()).is_none_or(|&(d, _)| depth + 1 < d);
                            if better && !done.contains(link.as_str()) {
                                reached.insert(link.to_string(), (depth + 1, 0));
                                queue.push_back(link.to_string());
                            }
                        }
                    }
                }
                Some(Truth::NotHtml) => expected.not_html += 1,
                Some(Truth::Redirect(to)) => {
                    expected.redirects += 1;
                    if hops >= crawl.max_redirects {
                        error = Some(ErrorKind::TooManyRedirects);
                    } else {
                        let from = Url::parse(&url).expect("generated urls parse");
                        let to_url = Url::parse(to).expect("generated urls parse");
                        let followed = depth == 0
                            || crawl.scope == Scope::AllHosts
                            || same_host(&from, &to_url);
                        let better = reached.get(to.as_str()).is_none_or(|&(d, _)| depth < d);
                        if followed && better && !done.contains(to.as_str()) {
                            reached.insert(to.clone(), (depth, hops + 1));
                            queue.push_front(to.clone());
                        }
                    }
                }
                Some(Truth::Fails(kind)) => error = Some(*kind),
                None => error = Some(content.failure_of(&url)),
            }
            if let Some(kind) = error {
                *expected.errors.entry(kind).or_default() += 1;
            }
        }
        expected
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn same_host(a: &Url, b: &Url) -> bool {
    a.host_str() == b.host_str()
}

async fn serve(listener: TcpListener, content: Arc<Content>, mut stop: oneshot::Receiver<()>) {
    // Dropping the set when the loop ends aborts every connection, the slow page's included.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                content.connections.fetch_add(1, Ordering::Relaxed);
                while connections.try_join_next().is_some() {}
                let content = content.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| respond(content.clone(), request));
                    // A client that goes away mid-response is no concern of the site's.
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        }
    }
}

async fn respond(
    content: Arc<Content>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = request.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("http://{}{path}", host.to_ascii_lowercase());
    let _busy = Busy::new(&content);
    *content
        .hits
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(url.clone())
        .or_default() += 1;

    let Some(resource) = content.lookup(&url) else {
        let body =
            format!("<!doctype html><title>not found</title><p>no page at {}</p>", escape(&url));
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, "text/html; charset=utf-8".parse().expect("static header"));
        return Ok(response);
    };
    if let Some(delay) = resource.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(resource.body.clone()));
    *response.status_mut() = resource.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, resource.content_type.parse().expect("static header"));
    if let Some(location) = resource.location.as_ref().and_then(|l| l.parse().ok()) {
        headers.insert(LOCATION, location);
    }
    Ok(response)
}

/// Counts a request in progress while it lives.
struct Busy<'a>(&'a Content);

impl<'a> Busy<'a> {
    fn new(content: &'a Content) -> Self {
        let now = content.requests_now.fetch_add(1, Ordering::SeqCst) + 1;
        content.requests_max.fetch_max(now, Ordering::SeqCst);
        Busy(content)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.requests_now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Content {
    fn lookup(&self, url: &str) -> Option<&Resource> {
        // Queries do not change a page: `/p/9?q=x` is `/p/9`.
        self.resources.get(url).or_else(|| self.resources.get(url.split('?').next()?))
    }

    /// How a URL the site has no resource for fails.
    fn failure_of(&self, url: &str) -> ErrorKind {
        if url.starts_with(&format!("{}/", self.closed)) {
            ErrorKind::Connect
        } else if url.starts_with(&format!("{}/", self.main))
            || url.starts_with(&format!("{}/", self.other))
        {
            ErrorKind::HttpStatus
        } else {
            // Under loopback-only resolution only localhost names resolve, and the generated
            // links name no other loopback host.
            ErrorKind::Dns
        }
    }

    fn generate(config: SiteConfig, port: u16, closed_port: u16) -> Content {
        let main = format!("http://127.0.0.1:{port}");
        let other = format!("http://other.localhost:{port}");
        let closed = format!("http://127.0.0.1:{closed_port}");
        let mut content = Content {
            config,
            main,
            other,
            closed,
            resources: HashMap::new(),
            hits: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            requests_now: AtomicUsize::new(0),
            requests_max: AtomicUsize::new(0),
        };
        content.generate_main();
        content.generate_specials();
        content.generate_other();
        content
    }

    fn add_html(&mut self, url: String, page: Page) {
        let (body, links) = page.finish();
        self.resources.insert(
            url,
            Resource {
                status: StatusCode::OK,
                content_type: "text/html; charset=utf-8",
                location: None,
                delay: None,
                body: Bytes::from(body),
                truth: Truth::Html(links),
            },
        );
    }

    fn add(
        &mut self,
        url: String,
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<Bytes>,
        truth: Truth,
    ) {
        let resource = Resource {
            status,
            content_type,
            location: None,
            delay: None,
            body: body.into(),
            truth,
        };
        self.resources.insert(url, resource);
    }

    fn add_redirect(
        &mut self,
        url: String,
        status: StatusCode,
        location: &str,
        to: Option<String>,
    ) {
        let truth = match to {
            Some(to) => Truth::Redirect(to),
            None => Truth::Fails(ErrorKind::BadRedirect),
        };
        let body = Bytes::from_static(b"moved");
        let resource = Resource {
            status,
            content_type: "text/plain",
            location: Some(location.to_owned()),
            delay: None,
            body,
            truth,
        };
        self.resources.insert(url, resource);
    }

    fn generate_main(&mut self) {
        let (n_pages, n_sections) = (self.config.pages, self.config.sections);
        let main = self.main.clone();
        let m = |path: &str| format!("{main}{path}");

        let mut root = Page::new("polyloop crawl demo");
        root.text(
            "<h1>polyloop crawl demo</h1><p>A generated site to crawl without a network.</p><ul>",
        );
        for k in 0..n_sections {
            root.text("<li>");
            root.link(&format!("s/{k}/"), Some(m(&format!("/s/{k}/"))), &format!("section {k}"));
            root.text("</li>");
        }
        root.text("</ul><h2>special cases</h2><ul>");
        let specials = [
            "/redirect/301",
            "/redirect/302",
            "redirect/relative",
            "/redirect/loop-a",
            "/chain/0",
            "/redirect/offsite",
            "/redirect/bad",
            "/base/",
            "/base-other/",
            "/slow",
            "/large",
            "/files/readme.txt",
            "/img/logo.png",
            "/latin1",
            "/error/500",
            "/missing/page",
        ];
        for href in specials {
            let path = if href.starts_with('/') { href.to_owned() } else { format!("/{href}") };
            root.text("<li>");
            root.link(href, Some(m(&path)), href);
            root.text("</li>");
        }
        root.text("</ul><p>");
        root.link(&format!("{}/", self.closed), Some(format!("{}/", self.closed)), "a closed port");
        root.link(&format!("{}/", self.other), Some(format!("{}/", self.other)), "the other host");
        root.link("mailto:webmaster@example.com", None, "mail");
        root.link("javascript:void(0)", None, "script");
        root.link("#top", Some(m("/")), "top");
        root.link(&format!("HTTP://127.0.0.1:{}/p/7", self.port()), Some(m("/p/7")), "upper case");
        root.link("  /p/8\n", Some(m("/p/8")), "padded");
        root.link("/p/9?q=café", Some(m("/p/9?q=caf%C3%A9")), "non-ascii query");
        root.link("/p/10?a=1&amp;b=2", Some(m("/p/10?a=1&b=2")), "escaped ampersand");
        root.link("/p/5/../6", Some(m("/p/6")), "dot segments");
        root.text("</p>");
        self.add_html(m("/"), root);

        for k in 0..n_sections {
            let mut section = Page::new(&format!("section {k}"));
            section.link("../../", Some(m("/")), "home");
            section.link(
                &format!("../{}/", (k + 1) % n_sections),
                Some(m(&format!("/s/{}/", (k + 1) % n_sections))),
                "next",
            );
            section.text("<ol>");
            for i in (k..n_pages).step_by(n_sections) {
                let target = Some(m(&format!("/p/{i}")));
                let href = match (i / n_sections) % 4 {
                    0 => format!("../../p/{i}"),
                    1 => format!("/p/{i}"),
                    2 => format!("{main}/p/{i}"),
                    _ => format!("/p/{i}#section-{k}"),
                };
                section.text("<li>");
                section.link(&href, target, &format!("page {i}"));
                section.text("</li>");
            }
            section.text("</ol>");
            self.add_html(m(&format!("/s/{k}/")), section);
        }

        for i in 0..n_pages {
            let page = self.content_page(i);
            self.add_html(m(&format!("/p/{i}")), page);
        }
    }

    fn content_page(&self, i: usize) -> Page {
        let (n_pages, n_sections) = (self.config.pages, self.config.sections);
        let main = &self.main;
        let m = |path: &str| format!("{main}{path}");
        let mut page = Page::new(&format!("page {i}"));
        page.text("<nav>");
        page.link(
            &format!("/s/{}/", i % n_sections),
            Some(m(&format!("/s/{}/", i % n_sections))),
            "section",
        );
        page.text("</nav><main>");
        for t in 0..5u64 {
            // About 12 KB a page, near the median HTML page on the web, so parsing is real work.
            for k in 0..3 {
                page.paragraph(mix(i as u64, t * 10 + k), 70);
            }
            let j = (mix(i as u64, 100 + t) % n_pages as u64) as usize;
            let href = match t {
                0 => format!("{j}"),
                1 => format!("./{j}#part"),
                2 => format!("../p/{j}"),
                3 => format!("/p/{j}"),
                _ => format!("/p/{i}/../{j}"),
            };
            page.link(&href, Some(m(&format!("/p/{j}"))), &format!("see page {j}"));
        }
        if i.is_multiple_of(7) {
            page.text(r#"<script>var s = '<a href="/script-link">'; if (1 < 2) {}</script>"#);
            page.text(r#"<!-- <a href="/commented-out">old</a> -->"#);
        }
        if i.is_multiple_of(50) {
            page.link(&format!("/missing/{i}"), Some(m(&format!("/missing/{i}"))), "gone");
        }
        if i.is_multiple_of(100) {
            page.link("mailto:author@example.com", None, "write");
            page.link("javascript:alert(1)", None, "alert");
        }
        if i.is_multiple_of(250) {
            let url = format!("https://example.com/ref/{i}");
            page.link(&url, Some(url.clone()), "elsewhere");
        }
        if i.is_multiple_of(300) {
            let url = format!("{}/docs/a", self.other);
            page.link(&url, Some(url.clone()), "docs");
        }
        page.text("</main>");
        page
    }

    fn generate_specials(&mut self) {
        let main = self.main.clone();
        let other = self.other.clone();
        let m = |path: &str| format!("{main}{path}");

        self.add_redirect(
            m("/redirect/301"),
            StatusCode::MOVED_PERMANENTLY,
            "/p/1",
            Some(m("/p/1")),
        );
        self.add_redirect(m("/redirect/302"), StatusCode::FOUND, &m("/s/0/"), Some(m("/s/0/")));
        self.add_redirect(m("/redirect/relative"), StatusCode::FOUND, "../p/2", Some(m("/p/2")));
        self.add_redirect(
            m("/redirect/loop-a"),
            StatusCode::FOUND,
            "/redirect/loop-b",
            Some(m("/redirect/loop-b")),
        );
        self.add_redirect(
            m("/redirect/loop-b"),
            StatusCode::FOUND,
            "/redirect/loop-a",
            Some(m("/redirect/loop-a")),
        );
        const CHAIN: usize = 12;
        for k in 0..CHAIN {
            let next = format!("/chain/{}", k + 1);
            self.add_redirect(
                m(&format!("/chain/{k}")),
                StatusCode::TEMPORARY_REDIRECT,
                &next,
                Some(m(&next)),
            );
        }
        let mut end = Page::new("end of the chain");
        end.link("/p/3", Some(m("/p/3")), "back");
        self.add_html(m(&format!("/chain/{CHAIN}")), end);
        let offsite = format!("{other}/docs/b");
        self.add_redirect(
            m("/redirect/offsite"),
            StatusCode::FOUND,
            &offsite,
            Some(offsite.clone()),
        );
        self.add_redirect(m("/redirect/bad"), StatusCode::FOUND, "mailto:nobody@example.com", None);

        let mut base = Page::with_head("base", r#"<base href="/p/">"#);
        base.link("10", Some(m("/p/10")), "ten");
        base.link("11#frag", Some(m("/p/11")), "eleven");
        base.link("../s/1/", Some(m("/s/1/")), "section 1");
        self.add_html(m("/base/"), base);
        let mut base_other =
            Page::with_head("base on the other host", &format!(r#"<base href="{other}/docs/">"#));
        base_other.link("a", Some(format!("{other}/docs/a")), "a");
        base_other.link("c", Some(format!("{other}/docs/c")), "c");
        self.add_html(m("/base-other/"), base_other);

        let mut slow = Page::new("slow");
        slow.link("/p/4", Some(m("/p/4")), "four");
        self.add_html(m("/slow"), slow);
        if let Some(slow) = self.resources.get_mut(&m("/slow")) {
            slow.delay = Some(self.config.slow_delay);
        }

        let mut large = Page::new("large");
        let n_links = self.config.pages.min(200);
        let block = self.config.large_page_bytes / n_links;
        for k in 0..n_links {
            let target = block * (k + 1);
            let mut seed = k as u64;
            while large.html.len() + 100 < target {
                large.paragraph(mix(seed, 7), 40);
                seed += 1_000_003;
            }
            large.link(
                &format!("/p/{k}#large-{k}"),
                Some(m(&format!("/p/{k}"))),
                &format!("page {k}"),
            );
        }
        self.add_html(m("/large"), large);

        let readme = "This is not HTML: <a href=\"/not-a-link\">not a link</a>\n";
        self.add(
            m("/files/readme.txt"),
            StatusCode::OK,
            "text/plain; charset=utf-8",
            readme,
            Truth::NotHtml,
        );
        let png: &[u8] =
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
        self.add(m("/img/logo.png"), StatusCode::OK, "image/png", png, Truth::NotHtml);
        let latin1: &[u8] =
            b"<!doctype html><title>caf\xe9</title><p>Caf\xe9 cr\xe8me</p><a href=\"/p/5\">5</a>";
        self.add(
            m("/latin1"),
            StatusCode::OK,
            "text/html; charset=iso-8859-1",
            latin1,
            Truth::Fails(ErrorKind::NonUtf8),
        );
        let oops = "<!doctype html><title>oops</title><p>server error</p><a href=\"/p/6\">6</a>";
        self.add(
            m("/error/500"),
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/html",
            oops,
            Truth::Fails(ErrorKind::HttpStatus),
        );
    }

    fn generate_other(&mut self) {
        let other = self.other.clone();
        let o = |path: &str| format!("{other}{path}");
        let mut root = Page::new("the other host");
        root.link("/docs/a", Some(o("/docs/a")), "a");
        root.link("docs/b", Some(o("/docs/b")), "b");
        root.link(&format!("{}/", self.main), Some(format!("{}/", self.main)), "main site");
        self.add_html(o("/"), root);
        let mut a = Page::new("doc a");
        a.link("b", Some(o("/docs/b")), "b");
        a.link("../", Some(o("/")), "up");
        a.link("/docs/c", Some(o("/docs/c")), "c");
        self.add_html(o("/docs/a"), a);
        let mut b = Page::new("doc b");
        b.link("a#x", Some(o("/docs/a")), "a");
        b.link("https://example.com/", Some("https://example.com/".to_owned()), "example");
        self.add_html(o("/docs/b"), b);
    }

    fn port(&self) -> u16 {
        Url::parse(&self.main).ok().and_then(|url| url.port()).unwrap_or(0)
    }
}

/// An HTML page being written, with the links a parser must find in it.
struct Page {
    html: String,
    links: Vec<(String, usize)>,
}

impl Page {
    fn new(title: &str) -> Self {
        Page::with_head(title, "")
    }

    fn with_head(title: &str, head: &str) -> Self {
        let html = format!(
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{}</title>{head}</head>\n<body>\n",
            escape(title)
        );
        Page { html, links: Vec::new() }
    }

    fn text(&mut self, html: &str) {
        self.html.push_str(html);
    }

    /// `<a href>` with `href` written as is (it may hold entities); `resolved` is what a parser
    /// must make of it, `None` for a link it must skip.
    fn link(&mut self, href: &str, resolved: Option<String>, text: &str) {
        let _ = write!(self.html, "<a href=\"{}\">", href.replace('"', "&quot;"));
        if let Some(resolved) = resolved {
            self.links.push((resolved, self.html.len()));
        }
        let _ = writeln!(self.html, "{}</a>", escape(text));
    }

    fn paragraph(&mut self, seed: u64, n_words: usize) {
        const WORDS: [&str; 24] = [
            "async", "process", "worker", "loop", "task", "queue", "batch", "socket", "frame",
            "credit", "child", "parent", "stream", "future", "timeout", "handle", "serde", "tokio",
            "pool", "map", "crawl", "link", "page", "fetch",
        ];
        self.html.push_str("<p>");
        let mut state = seed;
        for w in 0..n_words {
            state = mix(state, w as u64);
            if w > 0 {
                self.html.push(' ');
            }
            let word = WORDS[(state % WORDS.len() as u64) as usize];
            match (state >> 32) % 12 {
                0 => self.html.push_str(&format!("<em>{word}</em>")),
                1 => self.html.push_str(&format!("<code class=\"kw\">{word}</code>")),
                _ => self.html.push_str(word),
            }
        }
        self.html.push_str(".</p>\n");
    }

    fn finish(mut self) -> (String, Vec<(String, usize)>) {
        self.html.push_str("</body></html>\n");
        (self.html, self.links)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A deterministic hash of two numbers (splitmix64's finalizer).
fn mix(a: u64, b: u64) -> u64 {
    let mut z =
        a.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(b).wrapping_add(0x6a09_e667_f3bc_c909);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::extract_links;

    #[tokio::test]
    async fn every_generated_page_parses_to_its_known_links() {
        let site = Site::start(SiteConfig { pages: 120, sections: 4, ..SiteConfig::default() })
            .await
            .unwrap();
        let mut pages = 0;
        for (url, resource) in &site.content.resources {
            let Truth::Html(links) = &resource.truth else { continue };
            let text = std::str::from_utf8(&resource.body).unwrap();
            let found: BTreeSet<String> = extract_links(text, &Url::parse(url).unwrap())
                .into_iter()
                .map(String::from)
                .collect();
            let known: BTreeSet<String> = links.iter().map(|(link, _)| link.clone()).collect();
            assert_eq!(found, known, "{url}");
            pages += 1;
        }
        assert!(pages > 120);
        site.shutdown().await;
    }

    #[tokio::test]
    async fn link_offsets_mark_the_end_of_each_tag() {
        let site = Site::start(SiteConfig { pages: 20, sections: 2, ..SiteConfig::default() })
            .await
            .unwrap();
        let large = site.content.lookup(&site.url("/large")).unwrap();
        let Truth::Html(links) = &large.truth else { panic!("large is a page") };
        assert_eq!(links.len(), 20);
        for (_, end) in links {
            assert_eq!(&large.body[end - 2..*end], b"\">");
        }
        assert!(large.body.len() >= site.config().large_page_bytes - 200);
        site.shutdown().await;
    }

    #[test]
    fn mix_is_deterministic_and_spread() {
        assert_eq!(mix(1, 2), mix(1, 2));
        assert_ne!(mix(1, 2), mix(2, 1));
        let buckets: BTreeSet<u64> = (0..100).map(|i| mix(i, 0) % 10).collect();
        assert_eq!(buckets.len(), 10);
    }
}
