//! The crawl's polyloop tasks (a worker's HTTP client, fetch and parse) and the pool as a
//! [`PageSource`]: the only part of the crawl that knows about polyloop.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use polyloop::{Pool, TaskError};

use crate::crawl::PageSource;
use crate::fetch::{ClientConfig, ClientInitError, ErrorKind, Fetcher, PageResult};

/// This worker process's client: one connection pool and one set of per-host limits for every
/// page it fetches. Set once, by [`init_worker`].
static FETCHER: OnceLock<Fetcher> = OnceLock::new();

/// Why a worker could not set up its HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum WorkerInitError {
    /// The client could not be built.
    #[error(transparent)]
    Client(ClientInitError),
    /// The initializer ran twice in one process.
    #[error("this worker has a client already")]
    AlreadyInitialized,
}

/// The pool's initializer: builds the worker's HTTP client from `config`.
#[polyloop::task]
pub async fn init_worker(config: ClientConfig) -> Result<(), WorkerInitError> {
    let fetcher = Fetcher::new(config).map_err(WorkerInitError::Client)?;
    FETCHER.set(fetcher).map_err(|_| WorkerInitError::AlreadyInitialized)
}

/// Fetches `url` with the worker's client and, for an HTML page, extracts its links; the parse
/// is CPU work, which is why it runs here and not in the parent.
#[polyloop::task]
pub async fn fetch_page(url: String) -> PageResult {
    match FETCHER.get() {
        Some(fetcher) => fetcher.get(&url).await,
        None => PageResult::failed(
            url,
            ErrorKind::Worker,
            "this worker has no http client: start the pool with the init_worker initializer",
        ),
    }
}

/// How to start a pool of fetching workers.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Worker processes.
    pub processes: usize,
    /// Pages being fetched at once across the pool (what [`crate::crawl::CrawlConfig`] keeps in
    /// flight); each worker takes its share.
    pub max_in_flight: usize,
    /// Each worker's client.
    pub client: ClientConfig,
}

/// Starts `config.processes` workers, each with its client built by [`init_worker`].
pub async fn start_pool(config: &PoolConfig) -> Result<Pool, polyloop::PoolError> {
    let processes = config.processes.max(1);
    let per_worker = config.max_in_flight.max(1).div_ceil(processes);
    // The fetcher's own timeouts end every request; this only catches a worker that stops
    // answering. A task may first wait for its host's permit behind up to `waves` batches of
    // requests, each bounded by the client's total timeout.
    let waves = per_worker.div_ceil(config.client.per_host.max(1)) as u32;
    let net = config.client.timeout * (waves + 1) + Duration::from_secs(10);
    Pool::builder()
        .processes(processes)
        .child_concurrency(u32::try_from(per_worker).unwrap_or(u32::MAX))
        .initializer(init_worker, config.client.clone())
        .task_timeout(net)
        .build()
        .await
}

/// A pool whose workers fetch pages with [`fetch_page`].
#[derive(Debug, Clone, Copy)]
pub struct PoolSource<'a>(pub &'a Pool);

impl PageSource for PoolSource<'_> {
    fn fetch(&self, url: String) -> impl Future<Output = PageResult> + Send {
        let handle = self.0.submit(fetch_page, url.clone());
        async move {
            handle.await.unwrap_or_else(|e| {
                let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Worker };
                PageResult::failed(url, kind, task_error_message(&e))
            })
        }
    }
}

fn task_error_message(e: &TaskError) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod error_tests {
    use super::*;

    /// `{:#}` prints the wrappers' text once, then reqwest's own chain, not the cause again at
    /// every level.
    #[test]
    fn a_client_error_names_its_cause_once() {
        let make_cause = || reqwest::Proxy::http("http://[::1").expect_err("not a url");
        let cause_chain = format!("{:#}", anyhow::Error::from(make_cause()));
        let err = WorkerInitError::Client(ClientInitError::from(make_cause()));
        let text = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(text, format!("cannot build the http client: {cause_chain}"));
    }
}
