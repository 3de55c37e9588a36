//! Crawls through a real pool of worker processes: the exact link set of the embedded site, one
//! test per error kind, the per-host limit, and one reused client per worker.

use std::collections::BTreeSet;
use std::time::Duration;

use crawl::{
    ClientConfig, CrawlConfig, DnsMode, ErrorKind, Event, Expectation, Outcome, PageResult,
    PoolConfig, PoolSource, Site, SiteConfig, crawl, fetch_page, start_pool,
};
use polyloop::Pool;

/// Only the slow page (30 s) may time out, however busy the machine.
fn client() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(10),
        dns: DnsMode::LoopbackOnly,
        ..ClientConfig::default()
    }
}

async fn pool(processes: usize, client: &ClientConfig) -> Pool {
    let config = PoolConfig { processes, max_in_flight: 32, client: client.clone() };
    start_pool(&config).await.expect("pool starts")
}

fn small_site() -> SiteConfig {
    SiteConfig { pages: 40, sections: 2, ..SiteConfig::default() }
}

/// Fetches one URL of a fresh site in a one-worker pool.
async fn fetch(path_of: impl FnOnce(&Site) -> String, client: ClientConfig) -> PageResult {
    let site = Site::start(small_site()).await.unwrap();
    let pool = pool(1, &client).await;
    let result = pool.apply(fetch_page, path_of(&site)).await.expect("the task runs");
    pool.close().await.unwrap();
    site.shutdown().await;
    result
}

async fn fetch_error(path_of: impl FnOnce(&Site) -> String) -> (ErrorKind, String) {
    let result = fetch(path_of, client()).await;
    match result.outcome {
        Outcome::Failed(e) => (e.kind, e.message),
        other => panic!("{}: expected a failure, got {other:?}", result.url),
    }
}

#[tokio::test]
async fn crawl_of_the_embedded_site_finds_exactly_its_links() {
    let site =
        Site::start(SiteConfig { pages: 300, sections: 6, ..SiteConfig::default() }).await.unwrap();
    let client = client();
    let pool = pool(2, &client).await;
    let config = CrawlConfig::default();
    let seeds = site.seeds();
    let mut found = BTreeSet::new();
    let summary = crawl(&PoolSource(&pool), seeds.clone(), &config, |event| {
        if let Event::Page { url, links } = event {
            found.extend(links.iter().map(|link| (url.to_string(), link.to_string())));
        }
    })
    .await;
    pool.close().await.unwrap();

    let expected = site.expected(&Expectation {
        seeds: &seeds,
        crawl: &config,
        max_body: client.max_body,
        timeout: client.timeout,
    });
    assert!(expected.links.len() > 2000, "the site is big enough to mean something");
    if let Err(difference) = expected.check_links(&found) {
        panic!("{difference}\nerrors {:?}, expected {:?}", summary.errors, expected.errors);
    }
    assert_eq!(summary.links_found, expected.links.len());
    assert_eq!(summary.errors, expected.errors);
    assert_eq!(summary.fetched, expected.fetched.len());
    assert_eq!(summary.html_pages, expected.html_pages);
    assert_eq!(summary.truncated, 1);

    site.check_each_fetched_once(&expected).unwrap();
    site.shutdown().await;
}

#[tokio::test]
async fn dns_error() {
    let (kind, message) = fetch_error(Site::unresolvable_url).await;
    assert_eq!(kind, ErrorKind::Dns, "{message}");
    assert!(message.contains("nowhere.invalid"), "{message}");
}

#[tokio::test]
async fn connect_error() {
    let (kind, message) = fetch_error(Site::closed_url).await;
    assert_eq!(kind, ErrorKind::Connect, "{message}");
}

#[tokio::test]
async fn timeout_error() {
    // The slow page takes 30 s; the client allows 0.5 s.
    let client = ClientConfig { timeout: Duration::from_millis(500), ..client() };
    let result = fetch(|site| site.url("/slow"), client).await;
    let Outcome::Failed(e) = result.outcome else { panic!("{result:?}") };
    assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.message);
}

#[tokio::test]
async fn http_status_errors() {
    let (kind, message) = fetch_error(|site| site.url("/missing/page")).await;
    assert_eq!((kind, message.as_str()), (ErrorKind::HttpStatus, "http 404 Not Found"));
    let (kind, message) = fetch_error(|site| site.url("/error/500")).await;
    assert_eq!((kind, message.as_str()), (ErrorKind::HttpStatus, "http 500 Internal Server Error"));
}

#[tokio::test]
async fn non_utf8_error() {
    let (kind, message) = fetch_error(|site| site.url("/latin1")).await;
    assert_eq!(kind, ErrorKind::NonUtf8, "{message}");
}

#[tokio::test]
async fn bad_redirect_error() {
    let (kind, message) = fetch_error(|site| site.url("/redirect/bad")).await;
    assert_eq!(kind, ErrorKind::BadRedirect, "{message}");
}

#[tokio::test]
async fn too_many_redirects_error() {
    let site = Site::start(small_site()).await.unwrap();
    let pool = pool(1, &client()).await;
    let config = CrawlConfig { max_depth: 0, max_redirects: 3, ..CrawlConfig::default() };
    let mut errors = Vec::new();
    let summary = crawl(&PoolSource(&pool), [site.url("/chain/0")], &config, |event| {
        if let Event::Error { url, error } = event {
            errors.push((url.to_owned(), error.kind));
        }
    })
    .await;
    pool.close().await.unwrap();
    assert_eq!(errors, [(site.url("/chain/3"), ErrorKind::TooManyRedirects)]);
    assert_eq!(summary.redirects, 4);
    site.shutdown().await;
}

#[tokio::test]
async fn worker_error_without_the_initializer() {
    let pool = Pool::builder().processes(1).build().await.unwrap();
    let result = pool.apply(fetch_page, "http://127.0.0.1:9/".to_owned()).await.unwrap();
    pool.close().await.unwrap();
    let Outcome::Failed(e) = result.outcome else { panic!("{result:?}") };
    assert_eq!(e.kind, ErrorKind::Worker);
}

#[tokio::test]
async fn redirects_come_back_to_the_crawler() {
    let result = fetch(|site| site.url("/redirect/relative"), client()).await;
    let Outcome::Redirect { status, location } = result.outcome else { panic!("{result:?}") };
    assert_eq!(status, 302);
    assert!(location.ends_with("/p/2"), "{location}");
}

#[tokio::test]
async fn non_html_is_not_parsed() {
    let result = fetch(|site| site.url("/files/readme.txt"), client()).await;
    assert_eq!(
        result.outcome,
        Outcome::NotHtml { content_type: "text/plain; charset=utf-8".into() }
    );
}

#[tokio::test]
async fn a_large_page_is_parsed_up_to_the_cap() {
    let client = ClientConfig { max_body: 64 << 10, ..client() };
    let result = fetch(|site| site.url("/large"), client).await;
    let Outcome::Html { links, bytes, truncated } = result.outcome else { panic!("{result:?}") };
    assert!(truncated);
    assert_eq!(bytes, 64 << 10);
    // 40 links spread over 1.5 MiB: the first 64 KiB hold one.
    assert_eq!(links.len(), 1, "{links:?}");
}

#[tokio::test]
async fn per_host_limit_holds_in_each_worker() {
    let site = Site::start(SiteConfig { slow_delay: Duration::from_millis(200), ..small_site() })
        .await
        .unwrap();
    let client = ClientConfig { per_host: 2, timeout: Duration::from_secs(20), ..client() };
    let pool = pool(1, &client).await;
    let urls: Vec<String> = (0..8).map(|i| site.url(&format!("/slow?n={i}"))).collect();
    let results = pool.map(fetch_page, urls).await.unwrap();
    pool.close().await.unwrap();
    assert!(results.iter().all(|r| matches!(r.outcome, Outcome::Html { .. })), "{results:?}");
    assert_eq!(site.max_concurrent_requests(), 2);
    site.shutdown().await;
}

#[tokio::test]
async fn each_worker_keeps_one_client_and_reuses_its_connections() {
    let site =
        Site::start(SiteConfig { pages: 300, sections: 6, ..SiteConfig::default() }).await.unwrap();
    let client = ClientConfig { per_host: 4, ..client() };
    let pool = pool(1, &client).await;
    let summary = crawl(&PoolSource(&pool), [site.root()], &CrawlConfig::default(), |_| {}).await;
    pool.close().await.unwrap();
    assert!(summary.fetched > 300);
    // Four requests at a time to the one host crawled, over kept-alive connections: a few more
    // are opened to replace those dropped (the large page cut at the cap, the slow page given up
    // on) or still on their way back to the idle pool, but nowhere near one per request.
    assert!(site.connections() <= 16, "{} connections", site.connections());
    site.shutdown().await;
}
