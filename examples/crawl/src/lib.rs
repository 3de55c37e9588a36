//! polyloop's crawler demo as a library: the pieces the `crawl` binary and its tests are made of.
//!
//! # Brief overview
//! - [`crawl`] is the parent's side: a frontier that fetches each URL at most once, follows links
//!   up to a depth and within a [`Scope`], and reports [`Event`]s as pages come back. It fetches
//!   through any [`PageSource`].
//! - [`fetch_page`] is the polyloop task that fetches one page and extracts its links in a worker
//!   process, with the worker's one HTTP client built by the [`init_worker`] initializer;
//!   [`start_pool`] starts such a pool and [`PoolSource`] lends it to [`crawl`]. A [`Fetcher`]
//!   does the same work in-process.
//! - [`Site`] serves a generated website on 127.0.0.1 and knows every link on it, so that a crawl
//!   can be checked exactly ([`Site::expected`]).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use crawl::{ClientConfig, CrawlConfig, DnsMode, Event, PoolConfig, PoolSource, Site};
//!
//! let site = Site::start(Default::default()).await?;
//! let client = ClientConfig { dns: DnsMode::LoopbackOnly, ..ClientConfig::default() };
//! let pool = crawl::start_pool(&PoolConfig { processes: 2, max_in_flight: 64, client }).await?;
//! let summary = crawl::crawl(&PoolSource(&pool), site.seeds(), &CrawlConfig::default(), |event| {
//!     if let Event::Page { url, links } = event {
//!         println!("{url}: {} links", links.len());
//!     }
//! })
//! .await;
//! pool.close().await?;
//! site.shutdown().await;
//! println!("{} pages, {:.0} pages/s", summary.fetched, summary.pages_per_sec());
//! # Ok(()) }
//! ```

mod crawl;
mod fetch;
mod links;
mod site;
mod tasks;

pub use crate::crawl::{CrawlConfig, Event, PageSource, Scope, Summary, crawl};
pub use crate::fetch::{
    ClientConfig, ClientInitError, DnsMode, ErrorKind, FetchError, Fetcher, Outcome, PageResult,
};
pub use crate::links::extract_links;
pub use crate::site::{Expectation, Expected, Site, SiteConfig};
pub use crate::tasks::{
    PoolConfig, PoolSource, WorkerInitError, fetch_page, init_worker, start_pool,
};
