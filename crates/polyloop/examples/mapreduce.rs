//! A word count over many documents, reduced where the documents are counted: each worker
//! merges the tables of the documents it counted, and only those partial tables come back.
//! The same count with `map` (every document's table comes back) and a merge in the parent is
//! timed beside it, and the two results are checked to agree.
//!
//! ```sh
//! cargo run --release --example mapreduce
//! ```

use std::collections::HashMap;
use std::time::Instant;

use polyloop::Pool;

/// The words of one document and how often each occurs.
#[polyloop::task]
async fn count_words(document: String) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for word in document.split_whitespace() {
        *counts.entry(word.to_owned()).or_default() += 1;
    }
    counts
}

/// Two tables merged into one: associative, as `map_reduce` needs.
#[polyloop::task]
async fn merge(mut a: HashMap<String, u64>, b: HashMap<String, u64>) -> HashMap<String, u64> {
    for (word, count) in b {
        *a.entry(word).or_default() += count;
    }
    a
}

/// `n` documents of about 200 words from a vocabulary of 5,000, in a fixed pseudo-random order.
fn documents(n: usize) -> Vec<String> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            (0..200)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("w{}", state % 5000)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let docs = documents(20_000);
    let pool = Pool::builder().build().await?;

    let started = Instant::now();
    let reduced =
        pool.map_reduce(count_words, docs.iter().cloned(), merge).await?.unwrap_or_default();
    let reduce_time = started.elapsed();
    let folds: u64 = pool.stats().workers.iter().map(|worker| worker.tasks_done).sum();

    let started = Instant::now();
    let tables = pool.map(count_words, docs.iter().cloned()).await?;
    let mut merged: HashMap<String, u64> = HashMap::new();
    for table in tables {
        for (word, count) in table {
            *merged.entry(word).or_default() += count;
        }
    }
    let map_time = started.elapsed();

    let words: u64 = reduced.values().sum();
    println!("{} documents, {words} words, {} distinct", docs.len(), reduced.len());
    println!("map_reduce: {reduce_time:?}, {folds} partial tables came back");
    println!("map, then a merge here: {map_time:?}, {} tables came back", docs.len());
    anyhow::ensure!(reduced == merged, "the two counts differ");
    println!("checked: both counts agree");
    pool.close().await?;
    Ok(())
}
