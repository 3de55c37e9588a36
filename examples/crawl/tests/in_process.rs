//! Crawls of the embedded site with the fetcher in this process: the scheduler, fetcher, parser
//! and site checked against each other without worker processes.

use std::collections::BTreeSet;
use std::time::Duration;

use crawl::{
    ClientConfig, CrawlConfig, DnsMode, Event, Expectation, Fetcher, Scope, Site, SiteConfig, crawl,
};

async fn check(site_config: SiteConfig, crawl_config: CrawlConfig, client: ClientConfig) {
    let site = Site::start(site_config).await.unwrap();
    let fetcher = Fetcher::new(client.clone()).unwrap();
    let seeds = site.seeds();
    let mut found = BTreeSet::new();
    let summary = crawl(&fetcher, seeds.clone(), &crawl_config, |event| {
        if let Event::Page { url, links } = event {
            found.extend(links.iter().map(|link| (url.to_string(), link.to_string())));
        }
    })
    .await;
    let expected = site.expected(&Expectation {
        seeds: &seeds,
        crawl: &crawl_config,
        max_body: client.max_body,
        timeout: client.timeout,
    });
    if let Err(difference) = expected.check_links(&found) {
        panic!("{difference}\nerrors {:?}, expected {:?}", summary.errors, expected.errors);
    }
    assert_eq!(summary.errors, expected.errors);
    assert_eq!(summary.fetched, expected.fetched.len());
    assert_eq!(summary.html_pages, expected.html_pages);
    assert_eq!(summary.redirects, expected.redirects);
    assert_eq!(summary.truncated, expected.truncated);
    assert_eq!(summary.not_html, expected.not_html);
    site.check_each_fetched_once(&expected).unwrap();
    site.shutdown().await;
}

/// Only the slow page (30 s) may time out, however busy the machine (a 1.5 MiB page parsed beside
/// seven other crawls on two loaded cores took over 3 s): every crawl waits this long.
fn client() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(10),
        dns: DnsMode::LoopbackOnly,
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn default_crawl_finds_exactly_the_true_links() {
    check(
        SiteConfig { pages: 300, sections: 6, ..SiteConfig::default() },
        CrawlConfig::default(),
        client(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_depth_and_scope() {
    // At once, so that the slow page's timeouts overlap.
    let mut crawls = Vec::new();
    for max_depth in 0..4 {
        for scope in [Scope::SameHost, Scope::AllHosts] {
            let crawl = CrawlConfig { max_depth, scope, ..CrawlConfig::default() };
            let site = SiteConfig { pages: 60, sections: 3, ..SiteConfig::default() };
            crawls.push(check(site, crawl, client()));
        }
    }
    futures_util::future::join_all(crawls).await;
}
