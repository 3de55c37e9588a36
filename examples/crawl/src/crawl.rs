//! The parent's side of a crawl: the frontier, deduplication, depth and scope; pages are fetched
//! by a [`PageSource`] (the process pool, or in-process).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use url::Url;

use crate::fetch::{ErrorKind, FetchError, Fetcher, Outcome, PageResult};

/// Fetches one page: the process pool in the `crawl` binary, a [`Fetcher`] in-process in tests.
pub trait PageSource {
    /// Fetch `url`; failures are [`Outcome::Failed`] results, never a panic.
    fn fetch(&self, url: String) -> impl Future<Output = PageResult> + Send;
}

impl PageSource for Fetcher {
    async fn fetch(&self, url: String) -> PageResult {
        self.get(&url).await
    }
}

/// How far a crawl goes.
#[derive(Clone, Debug)]
pub struct CrawlConfig {
    /// Link hops followed from the listed URLs: 0 fetches only them. Redirects do not count.
    pub max_depth: u32,
    /// Which links are followed.
    pub scope: Scope,
    /// Pages being fetched at once, across all workers.
    pub max_in_flight: usize,
    /// Redirects followed in a row; one more is a [`ErrorKind::TooManyRedirects`] error.
    pub max_redirects: u32,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        CrawlConfig { max_depth: 2, scope: Scope::SameHost, max_in_flight: 64, max_redirects: 10 }
    }
}

/// Which links a crawl follows (every link found is reported either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only links to the host of the page they are on (by name: the port may differ). A listed
    /// URL may redirect to another host (as `http://example.com` to `https://www.example.com`);
    /// other redirects may not.
    SameHost,
    /// Every http(s) link.
    AllHosts,
}

/// What the crawl reports as it goes, in the order it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// An HTML page was parsed; `links` are all its http(s) links, followed or not.
    Page {
        /// The page.
        url: &'a str,
        /// Its links, each once, normalized (as [`Url`] writes them).
        links: &'a [String],
    },
    /// A URL failed; the crawl goes on.
    Error {
        /// The URL (as listed, for a listed URL that does not parse).
        url: &'a str,
        /// Why.
        error: &'a FetchError,
    },
    /// Counts after each result.
    Progress {
        /// URLs answered (or failed).
        done: usize,
        /// URLs discovered and to be fetched, including those done.
        total: usize,
    },
}

/// The totals of a crawl.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// URLs requested and answered (or failed), each once.
    pub fetched: usize,
    /// HTML pages parsed.
    pub html_pages: usize,
    /// Answers that were not HTML.
    pub not_html: usize,
    /// Redirects (followed or not).
    pub redirects: usize,
    /// HTML pages longer than the body cap, parsed up to it.
    pub truncated: usize,
    /// Bytes of HTML parsed.
    pub html_bytes: u64,
    /// Links reported: each page's links, each once per page.
    pub links_found: usize,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, usize>,
    /// Wall time of the crawl.
    pub elapsed: Duration,
    /// Wall time until the last result that was not a timeout: the crawl's pace, without the
    /// wait for pages that never answer.
    pub answered_in: Duration,
}

impl Summary {
    /// All failures.
    pub fn n_errors(&self) -> usize {
        self.errors.values().sum()
    }

    /// URLs that did not time out.
    pub fn answered(&self) -> usize {
        self.fetched - self.errors.get(&ErrorKind::Timeout).copied().unwrap_or(0)
    }

    /// URLs answered per second, not counting the wait for those that timed out: the rate at
    /// which the pool fetched and parsed.
    pub fn pages_per_sec(&self) -> f64 {
        self.answered() as f64 / self.answered_in.as_secs_f64().max(1e-9)
    }

    fn count_error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

/// Crawl from `seeds`, fetching each URL at most once through `source`, and report as it goes to
/// `observe`. A seed that is not an http(s) URL is an [`ErrorKind::InvalidUrl`] error.
pub async fn crawl<S: PageSource>(
    source: &S,
    seeds: impl IntoIterator<Item = String>,
    config: &CrawlConfig,
    mut observe: impl FnMut(Event<'_>),
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut frontier = Frontier::new(config.clone());
    for seed in seeds {
        match Url::parse(seed.trim()) {
            Ok(mut url) if matches!(url.scheme(), "http" | "https") => {
                url.set_fragment(None);
                frontier.add_seed(url);
            }
            _ => {
                let error = FetchError {
                    kind: ErrorKind::InvalidUrl,
                    message: "not an http(s) url".into(),
                };
                summary.fetched += 1;
                summary.count_error(error.kind);
                observe(Event::Error { url: &seed, error: &error });
            }
        }
    }

    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < config.max_in_flight.max(1) {
            let Some(url) = frontier.queue.pop_front() else { break };
            let fetch = source.fetch(url.clone());
            in_flight.push(async move { (url, fetch.await) });
        }
        let Some((url, result)) = in_flight.next().await else { break };
        summary.fetched += 1;
        if !matches!(&result.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Timeout) {
            summary.answered_in = started.elapsed();
        }
        match result.outcome {
            Outcome::Html { links, truncated, bytes } => {
                summary.html_pages += 1;
                summary.html_bytes += bytes;
                summary.truncated += usize::from(truncated);
                summary.links_found += links.len();
                observe(Event::Page { url: &url, links: &links });
                frontier.finish(&url, State::Page(links));
            }
            Outcome::NotHtml { .. } => {
                summary.not_html += 1;
                frontier.finish(&url, State::Leaf);
            }
            Outcome::Redirect { location, status } => {
                summary.redirects += 1;
                let hops = frontier.nodes.get(&url).map_or(0, |node| node.hops);
                if hops >= config.max_redirects {
                    let error = FetchError {
                        kind: ErrorKind::TooManyRedirects,
                        message: format!("{status} to {location} after {hops} redirects in a row"),
                    };
                    summary.count_error(error.kind);
                    observe(Event::Error { url: &url, error: &error });
                    frontier.finish(&url, State::Leaf);
                } else {
                    frontier.finish(&url, State::Redirect(location));
                }
            }
            Outcome::Failed(error) => {
                summary.count_error(error.kind);
                observe(Event::Error { url: &url, error: &error });
                frontier.finish(&url, State::Leaf);
            }
        }
        observe(Event::Progress { done: summary.fetched, total: frontier.nodes.len() });
    }
    summary.elapsed = started.elapsed();
    summary
}

/// Every URL seen and in scope, with the fewest link hops it is known to be from a seed.
///
/// Pages complete out of order, so a URL may first be found by a long path and later by a shorter
/// one. It is never fetched again, but what it led to is re-examined at the smaller depth (links
/// of a finished page are kept for that), so a crawl reaches exactly the URLs within
/// `max_depth` hops of a seed, whatever the timing.
///
/// URLs are keyed by their normalized text (as [`Url`] writes them, which the worker's links
/// are), so a link to a known page costs a hash lookup, not a parse.
#[derive(Debug)]
struct Frontier {
    config: CrawlConfig,
    nodes: HashMap<String, Node>,
    queue: VecDeque<String>,
}

#[derive(Debug)]
struct Node {
    depth: u32,
    /// Redirects in a row that led here.
    hops: u32,
    host: Box<str>,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Queued or being fetched.
    Pending,
    /// An HTML page and its links.
    Page(Vec<String>),
    /// A redirect to this URL.
    Redirect(String),
    /// Not HTML, or failed: leads nowhere.
    Leaf,
}

impl Frontier {
    fn new(config: CrawlConfig) -> Self {
        Frontier { config, nodes: HashMap::new(), queue: VecDeque::new() }
    }

    fn add_seed(&mut self, url: Url) {
        let mut work = Vec::new();
        self.relax(url.as_str(), 0, 0, None, &mut work);
        self.expand(work);
    }

    fn finish(&mut self, url: &str, state: State) {
        if let Some(node) = self.nodes.get_mut(url) {
            node.state = state;
            self.expand(vec![url.to_owned()]);
        }
    }

    /// Records that `url` is `depth` link hops from a seed, if it is on `host` (any host for
    /// `None`): queues it if new, and if it was known further away, puts it on `work` to
    /// re-examine where it leads.
    fn relax(
        &mut self,
        url: &str,
        depth: u32,
        hops: u32,
        host: Option<&str>,
        work: &mut Vec<String>,
    ) {
        if let Some(node) = self.nodes.get_mut(url) {
            if depth < node.depth && host.is_none_or(|host| *node.host == *host) {
                node.depth = depth;
                if matches!(node.state, State::Page(_) | State::Redirect(_)) {
                    work.push(url.to_owned());
                }
            }
            return;
        }
        // Links and locations come normalized from the fetcher, so this parse is a check.
        let Ok(parsed) = Url::parse(url) else { return };
        let url_host = parsed.host_str().unwrap_or("");
        if host.is_some_and(|host| host != url_host) {
            return;
        }
        let node = Node { depth, hops, host: url_host.into(), state: State::Pending };
        self.nodes.insert(url.to_owned(), node);
        self.queue.push_back(url.to_owned());
    }

    /// Follows the links and redirects of the finished `work` URLs, with a worklist rather than
    /// recursion as depth improvements can cascade.
    fn expand(&mut self, mut work: Vec<String>) {
        let all_hosts = self.config.scope == Scope::AllHosts;
        while let Some(url) = work.pop() {
            let Some(node) = self.nodes.get_mut(&url) else { continue };
            let (depth, hops, host) = (node.depth, node.hops, node.host.clone());
            // Taken out while its targets are relaxed, so `nodes` can change meanwhile.
            let state = std::mem::replace(&mut node.state, State::Pending);
            match &state {
                State::Page(links) if depth < self.config.max_depth => {
                    let scope = if all_hosts { None } else { Some(&*host) };
                    for link in links {
                        self.relax(link, depth + 1, 0, scope, &mut work);
                    }
                }
                State::Redirect(to) => {
                    let scope = if all_hosts || depth == 0 { None } else { Some(&*host) };
                    self.relax(to, depth, hops + 1, scope, &mut work);
                }
                _ => {}
            }
            if let Some(node) = self.nodes.get_mut(&url) {
                node.state = state;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;

    /// A source over a fixed graph, answering in an order the test chooses.
    struct Graph {
        pages: HashMap<String, Outcome>,
        fetched: Mutex<Vec<String>>,
        /// Answer delays by URL; by default, deeper paths answer later.
        delays: HashMap<String, Duration>,
    }

    impl Graph {
        fn new(pages: &[(&str, Outcome)]) -> Self {
            let pages =
                pages.iter().map(|(url, outcome)| (url.to_string(), outcome.clone())).collect();
            Graph { pages, fetched: Mutex::new(Vec::new()), delays: HashMap::new() }
        }
    }

    impl PageSource for Graph {
        fn fetch(&self, url: String) -> impl Future<Output = PageResult> + Send {
            self.fetched.lock().unwrap().push(url.clone());
            let outcome = self.pages.get(&url).cloned().unwrap_or(Outcome::Failed(FetchError {
                kind: ErrorKind::HttpStatus,
                message: "http 404".into(),
            }));
            // Deeper paths answer later, so long paths can win the race to a page.
            let delay = self
                .delays
                .get(&url)
                .copied()
                .unwrap_or_else(|| Duration::from_millis(url.matches('/').count() as u64));
            async move {
                tokio::time::sleep(delay).await;
                PageResult { url, outcome }
            }
        }
    }

    fn html(links: &[&str]) -> Outcome {
        Outcome::Html {
            links: links.iter().map(|s| s.to_string()).collect(),
            bytes: 0,
            truncated: false,
        }
    }

    fn redirect(to: &str) -> Outcome {
        Outcome::Redirect { status: 301, location: to.into() }
    }

    async fn run(
        graph: &Graph,
        seeds: &[&str],
        config: CrawlConfig,
    ) -> (BTreeSet<String>, Summary) {
        let mut pairs = BTreeSet::new();
        let summary = crawl(graph, seeds.iter().map(|s| s.to_string()), &config, |event| {
            if let Event::Page { url, links } = event {
                pairs.extend(links.iter().map(|link| format!("{url} {link}")));
            }
        })
        .await;
        let fetched = graph.fetched.lock().unwrap().clone();
        let unique: BTreeSet<_> = fetched.iter().collect();
        assert_eq!(unique.len(), fetched.len(), "a url was fetched twice: {fetched:?}");
        (pairs, summary)
    }

    #[tokio::test(start_paused = true)]
    async fn depth_counts_link_hops_and_redirects_are_free() {
        let graph = Graph::new(&[
            ("http://h.test/", html(&["http://h.test/a", "http://h.test/r"])),
            ("http://h.test/a", html(&["http://h.test/b"])),
            ("http://h.test/b", html(&["http://h.test/c"])),
            ("http://h.test/r", redirect("http://h.test/x")),
            ("http://h.test/x", html(&["http://h.test/y"])),
        ]);
        let config = CrawlConfig { max_depth: 1, ..CrawlConfig::default() };
        let (pairs, summary) = run(&graph, &["http://h.test/"], config).await;
        assert_eq!(
            pairs,
            [
                "http://h.test/ http://h.test/a",
                "http://h.test/ http://h.test/r",
                "http://h.test/a http://h.test/b",
                "http://h.test/x http://h.test/y"
            ]
            .map(String::from)
            .into()
        );
        assert_eq!(summary.fetched, 4);
        assert_eq!(summary.redirects, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_path_found_later_reaches_further() {
        // `/p` is first found 3 hops away, through `/a` and `/b` which answer quickly, and is
        // fetched then; `late` answers after that and shows it is only 2 hops away.
        let graph = Graph::new(&[
            ("http://h.test/", html(&["http://h.test/a", "http://h.test/z/z/z/z/z/z/z/late"])),
            ("http://h.test/a", html(&["http://h.test/b"])),
            ("http://h.test/b", html(&["http://h.test/p"])),
            ("http://h.test/z/z/z/z/z/z/z/late", html(&["http://h.test/p"])),
            ("http://h.test/p", html(&["http://h.test/q"])),
            ("http://h.test/q", html(&["http://h.test/never"])),
        ]);
        let config = CrawlConfig { max_depth: 3, ..CrawlConfig::default() };
        let (pairs, summary) = run(&graph, &["http://h.test/"], config).await;
        // `/p` is 2 hops away through `late`, so `/q` (3 hops) is fetched and its link reported.
        assert!(pairs.contains("http://h.test/q http://h.test/never"), "{pairs:?}");
        assert_eq!(summary.fetched, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn same_host_scope_and_seed_redirects() {
        let graph = Graph::new(&[
            ("http://h.test/", redirect("https://www.h.test/")),
            (
                "https://www.h.test/",
                html(&["https://www.h.test/in", "http://other.test/out", "https://www.h.test/off"]),
            ),
            ("https://www.h.test/in", html(&[])),
            ("https://www.h.test/off", redirect("http://other.test/away")),
        ]);
        let (_, summary) = run(&graph, &["http://h.test/"], CrawlConfig::default()).await;
        assert_eq!(
            *graph.fetched.lock().unwrap(),
            [
                "http://h.test/",
                "https://www.h.test/",
                "https://www.h.test/in",
                "https://www.h.test/off"
            ]
        );
        assert_eq!(summary.redirects, 2);

        let graph = Graph::new(&[("http://h.test/", html(&["http://other.test/out"]))]);
        let config = CrawlConfig { scope: Scope::AllHosts, ..CrawlConfig::default() };
        let (_, summary) = run(&graph, &["http://h.test/"], config).await;
        assert_eq!(summary.fetched, 2);
        assert_eq!(summary.errors[&ErrorKind::HttpStatus], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn redirect_chains_are_cut_and_loops_end() {
        let graph = Graph::new(&[
            ("http://h.test/", html(&["http://h.test/loop", "http://h.test/c0"])),
            ("http://h.test/loop", redirect("http://h.test/loop2")),
            ("http://h.test/loop2", redirect("http://h.test/loop")),
            ("http://h.test/c0", redirect("http://h.test/c1")),
            ("http://h.test/c1", redirect("http://h.test/c2")),
            ("http://h.test/c2", redirect("http://h.test/c3")),
            ("http://h.test/c3", html(&[])),
        ]);
        let config = CrawlConfig { max_redirects: 2, ..CrawlConfig::default() };
        let (_, summary) = run(&graph, &["http://h.test/"], config).await;
        assert_eq!(summary.errors, BTreeMap::from([(ErrorKind::TooManyRedirects, 1)]));
        // /, loop, loop2, c0, c1, c2 (whose redirect would be the third in a row).
        assert_eq!(summary.fetched, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_seeds_are_errors_not_fatal() {
        let graph = Graph::new(&[("http://h.test/", html(&[]))]);
        let seeds = ["ftp://h.test/", "nonsense", "http://h.test/#frag", "http://h.test/"];
        let (_, summary) = run(&graph, &seeds, CrawlConfig::default()).await;
        assert_eq!(summary.fetched, 3);
        assert_eq!(summary.errors, BTreeMap::from([(ErrorKind::InvalidUrl, 2)]));
    }

    #[tokio::test(start_paused = true)]
    async fn any_answer_order_reaches_exactly_the_pages_within_depth() {
        let mut state = 1u64;
        let mut next = move |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for round in 0..200 {
            let n = 2 + next(30);
            let url = |i: u64| format!("http://h.test/{i}");
            let mut edges: HashMap<u64, Vec<u64>> = HashMap::new();
            let mut redirects: HashMap<u64, u64> = HashMap::new();
            let mut pages = Vec::new();
            let mut delays = HashMap::new();
            for i in 0..n {
                if next(6) == 0 {
                    let to = next(n);
                    redirects.insert(i, to);
                    pages.push((url(i), redirect(&url(to))));
                } else {
                    let links: Vec<u64> = (0..next(4)).map(|_| next(n)).collect();
                    let hrefs: Vec<String> = links.iter().map(|&j| url(j)).collect();
                    let refs: Vec<&str> = hrefs.iter().map(String::as_str).collect();
                    pages.push((url(i), html(&refs)));
                    edges.insert(i, links);
                }
                delays.insert(url(i), Duration::from_millis(next(50)));
            }
            let max_depth = next(4) as u32;

            // Plain breadth-first search; redirects cost no depth.
            let mut depth_of: HashMap<u64, u32> = HashMap::from([(0, 0)]);
            let mut queue = VecDeque::from([0u64]);
            while let Some(i) = queue.pop_front() {
                let d = depth_of[&i];
                let next_hops: Vec<(u64, u32)> = match redirects.get(&i) {
                    Some(&to) => vec![(to, d)],
                    None if d < max_depth => edges[&i].iter().map(|&j| (j, d + 1)).collect(),
                    None => Vec::new(),
                };
                for (j, dj) in next_hops {
                    if depth_of.get(&j).is_none_or(|&known| dj < known) {
                        depth_of.insert(j, dj);
                        if dj == d {
                            queue.push_front(j);
                        } else {
                            queue.push_back(j);
                        }
                    }
                }
            }

            let refs: Vec<(&str, Outcome)> =
                pages.iter().map(|(u, o)| (u.as_str(), o.clone())).collect();
            let mut graph = Graph::new(&refs);
            graph.delays = delays;
            let config = CrawlConfig { max_depth, max_redirects: 100, ..CrawlConfig::default() };
            run(&graph, &[&url(0)], config).await;
            let fetched: BTreeSet<String> = graph.fetched.lock().unwrap().iter().cloned().collect();
            let expected: BTreeSet<String> = depth_of.keys().map(|&i| url(i)).collect();
            assert_eq!(fetched, expected, "round {round}: depth {max_depth}, {pages:?}");
        }
    }
}
