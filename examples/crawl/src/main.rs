//! `crawl`: polyloop's crawler demo. Without `--urls` it crawls a generated site served on
//! 127.0.0.1 and checks what it found against what the site knows it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use crawl::{
    ClientConfig, CrawlConfig, DnsMode, ErrorKind, Event, Expectation, PoolConfig, PoolSource,
    Scope, Site, SiteConfig, Summary, crawl, start_pool,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Fetch pages concurrently in a pool of worker processes, extract the links in each, and write
/// `source_url<TAB>parsed_url` lines. Fetching and parsing run as polyloop tasks in the workers
/// (one HTTP client each); this process schedules, deduplicates and writes.
///
/// Without --urls, it serves a generated website on 127.0.0.1 (relative and absolute links, a
/// <base>, redirects, 404s, a slow page, a large page, files that are not HTML, a page that is
/// not UTF-8), crawls it, and checks the links found against the ones the site generated. No
/// network beyond loopback is used.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// File of URLs to start from, one a line (blank lines and `#` comments skipped)
    /// [default: the embedded site]
    #[arg(long, value_name = "FILE")]
    urls: Option<PathBuf>,
    /// Where to write the links found
    #[arg(long, value_name = "FILE", default_value = "foundurls.tsv")]
    out: PathBuf,
    /// Link hops to follow from the listed pages (0 = only the listed pages)
    #[arg(long, value_name = "N", default_value_t = 2)]
    depth: u32,
    /// Follow links to other hosts too (by default only links to the page's own host)
    #[arg(long)]
    all_hosts: bool,
    /// Worker processes [default: available parallelism]
    #[arg(long, value_name = "N")]
    processes: Option<usize>,
    /// Pages being fetched at once, across all workers
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: usize,
    /// Requests to one host at once, in each worker
    #[arg(long, value_name = "N", default_value_t = 8)]
    per_host: usize,
    /// Time allowed for one request, connecting to last byte, in seconds
    /// [default: 10, or 1 for the embedded site]
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Time allowed to connect, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    connect_timeout: f64,
    /// Largest response body read, in KiB; a longer HTML page is parsed up to it
    #[arg(long, value_name = "KIB", default_value_t = 1024)]
    max_body_kib: usize,
    /// Redirects followed in a row
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_redirects: u32,
    /// Content pages of the embedded site
    #[arg(long, value_name = "N", default_value_t = 2000)]
    site_pages: usize,
    /// Log no line per failed URL
    #[arg(long)]
    quiet: bool,
}

#[polyloop::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match crawl_command(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn crawl_command(args: Args) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 || args.per_host == 0 {
        bail!("--concurrency and --per-host must be at least 1");
    }
    let secs = |name: &str, secs: f64| -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--{name} must be a positive number of seconds, not {secs}"))
    };

    let (site, seeds, dns, timeout) = match &args.urls {
        Some(path) => (None, read_urls(path)?, DnsMode::System, args.timeout.unwrap_or(10.0)),
        None => {
            let config = SiteConfig { pages: args.site_pages, ..SiteConfig::default() };
            let site = Site::start(config).await.context("cannot start the embedded site")?;
            let seeds = site.seeds();
            (Some(site), seeds, DnsMode::LoopbackOnly, args.timeout.unwrap_or(1.0))
        }
    };
    let client = ClientConfig {
        connect_timeout: secs("connect-timeout", args.connect_timeout)?,
        timeout: secs("timeout", timeout)?,
        max_body: args.max_body_kib.saturating_mul(1024).max(1),
        per_host: args.per_host,
        dns,
    };
    let crawl_config = CrawlConfig {
        max_depth: args.depth,
        scope: if args.all_hosts { Scope::AllHosts } else { Scope::SameHost },
        max_in_flight: args.concurrency,
        max_redirects: args.max_redirects,
    };
    let processes = args
        .processes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);

    let pool_config =
        PoolConfig { processes, max_in_flight: args.concurrency, client: client.clone() };
    let pool = start_pool(&pool_config).await.context("cannot start the worker pool")?;
    // Only the embedded site's links are kept, to check them once the crawl is over.
    let mut found = site.as_ref().map(|_| Vec::new());
    let result = run(&args, &pool, &seeds, &crawl_config, found.as_mut()).await;
    let tasks_per_worker: Vec<u64> =
        pool.stats().workers.iter().map(|w| w.tasks_done + w.tasks_failed).collect();
    pool.close().await.context("cannot close the worker pool")?;
    let summary = result?;

    let Some(summary) = summary else {
        if let Some(site) = site {
            site.shutdown().await;
        }
        eprintln!("interrupted: the links found so far are in {}", args.out.display());
        return Ok(ExitCode::from(130));
    };
    print_summary(&args, &seeds, &tasks_per_worker, &client, &summary);
    if let Some(site) = site {
        let expected = site.expected(&Expectation {
            seeds: &seeds,
            crawl: &crawl_config,
            max_body: client.max_body,
            timeout: client.timeout,
        });
        site.shutdown().await;
        let found: BTreeSet<(String, String)> = found.unwrap_or_default().into_iter().collect();
        let timeouts =
            |errors: &BTreeMap<ErrorKind, usize>| errors.get(&ErrorKind::Timeout).copied();
        let check = expected.check_links(&found);
        if check.is_ok() {
            println!("  check           exactly the {} links the site generated", found.len());
        } else if timeouts(&summary.errors) > timeouts(&expected.errors) {
            println!(
                "  check           skipped: pages other than /slow timed out (a busy machine?); \
                 try a longer --timeout"
            );
        } else if let Err(difference) = check {
            bail!("{difference}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Crawls, writing links to `args.out` (and `(page, link)` pairs to `found`, if given) and
/// showing progress. `None` if interrupted by Ctrl-C.
async fn run(
    args: &Args,
    pool: &polyloop::Pool,
    seeds: &[String],
    config: &CrawlConfig,
    mut found: Option<&mut Vec<(String, String)>>,
) -> anyhow::Result<Option<Summary>> {
    let file =
        File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "source_url\tparsed_url")?;
    let mut write_error = None;

    let progress = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner:.green} {elapsed_precise} [{wide_bar:.cyan/blue}] {pos}/{len} urls {rate} \
             {msg}",
        )
        .expect("static template parses")
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", state.per_sec());
        })
        .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(100));
    let mut n_errors = 0;

    let source = PoolSource(pool);
    let crawling = crawl(&source, seeds.iter().cloned(), config, |event| match event {
        Event::Page { url, links } => {
            for link in links {
                if write_error.is_none() {
                    write_error = writeln!(out, "{url}\t{link}").err();
                }
                if let Some(found) = found.as_mut() {
                    found.push((url.to_owned(), link.clone()));
                }
            }
        }
        Event::Error { url, error } => {
            n_errors += 1;
            progress.set_message(format!("{n_errors} errors"));
            if !args.quiet {
                progress.suspend(|| eprintln!("error: {}: {url}: {}", error.kind, error.message));
            }
        }
        Event::Progress { done, total } => {
            progress.set_length(total as u64);
            progress.set_position(done as u64);
        }
    });
    let summary = tokio::select! {
        summary = crawling => Some(summary),
        _ = tokio::signal::ctrl_c() => None,
    };
    progress.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e).with_context(|| format!("cannot write {}", args.out.display()));
    }
    out.flush().with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(summary)
}

fn read_urls(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read urls from {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect())
}

fn print_summary(
    args: &Args,
    seeds: &[String],
    tasks_per_worker: &[u64],
    client: &ClientConfig,
    summary: &Summary,
) {
    let processes = tasks_per_worker.len();
    let origin = match &args.urls {
        Some(path) => format!("{} urls from {}", seeds.len(), path.display()),
        None => format!("the embedded site at {} ({} pages)", seeds[0], args.site_pages.max(20)),
    };
    let plural = if processes == 1 { "" } else { "es" };
    println!("crawled {origin} with {processes} worker process{plural}");
    let rate = format!("{:.0} pages/s", summary.pages_per_sec());
    let elapsed = summary.elapsed.as_secs_f64();
    if summary.answered() == summary.fetched {
        println!("  pages fetched   {} in {elapsed:.2} s: {rate}", summary.fetched);
    } else {
        println!(
            "  pages fetched   {} in {elapsed:.2} s, the {} that did not time out in {:.2} s: {rate}",
            summary.fetched,
            summary.answered(),
            summary.answered_in.as_secs_f64(),
        );
    }
    let mut kinds =
        vec![format!("{} html ({} parsed)", summary.html_pages, bytes(summary.html_bytes))];
    if summary.truncated > 0 {
        kinds.push(format!(
            "{} cut at the {} cap and parsed up to it",
            summary.truncated,
            bytes(client.max_body as u64)
        ));
    }
    kinds.push(format!("{} not html", summary.not_html));
    kinds.push(format!("{} redirects", summary.redirects));
    println!("                  {}", kinds.join(", "));
    println!("  links found     {}, written to {}", summary.links_found, args.out.display());
    let shares: Vec<String> = tasks_per_worker.iter().map(u64::to_string).collect();
    println!("  pages by worker {}", shares.join(" + "));
    let errors: Vec<String> = ErrorKind::ALL
        .iter()
        .filter_map(|kind| summary.errors.get(kind).map(|n| format!("{n} {kind}")))
        .collect();
    if errors.is_empty() {
        println!("  errors          none");
    } else {
        println!("  errors          {}: {}", summary.n_errors(), errors.join(", "));
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1048576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1048576.0),
    }
}
