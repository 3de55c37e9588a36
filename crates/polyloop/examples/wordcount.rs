//! Counting words over a large text that every worker shares instead of receiving a copy.
//!
//! The parent puts the text in a [`SharedBytes`] once. Each task gets a clone of it (a few bytes
//! on the wire) and the byte range it should count, and adds its count to a [`SharedAtomics`]
//! total that tasks in every worker update in place. The parent then checks both against a count
//! of its own.
//!
//! ```sh
//! cargo run --release --example wordcount            # a generated 64 MiB text
//! cargo run --release --example wordcount -- FILE    # your own
//! ```

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Instant;

use polyloop::{Pool, SharedAtomics, SharedBytes};

/// Counts the words of `text[range]`, and adds their number to `total[0]`.
#[polyloop::task]
async fn count_words(
    text: SharedBytes,
    range: Range<usize>,
    total: SharedAtomics,
) -> HashMap<String, u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut words = 0;
    for word in words_of(&text[range]) {
        words += 1;
        match counts.get_mut(word) {
            Some(count) => *count += 1,
            None => {
                counts.insert(word.to_owned(), 1);
            }
        }
    }
    total[0].fetch_add(words, Ordering::Relaxed);
    counts
}

/// The words of `text`: runs of ASCII letters, lowercased by the caller's choice of text.
fn words_of(text: &[u8]) -> impl Iterator<Item = &str> {
    text.split(|b| !b.is_ascii_alphabetic())
        .filter(|word| !word.is_empty())
        // Only ASCII letters are left: always UTF-8.
        .filter_map(|word| std::str::from_utf8(word).ok())
}

/// `len` bytes of text: words from a made-up vocabulary, in a fixed pseudo-random order.
fn generated_text(len: usize) -> Vec<u8> {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "da", "xu", "be", "go", "ha", "ji",
        "fo",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut text = Vec::with_capacity(len + 16);
    while text.len() < len {
        // xorshift64: a word of one to three syllables, then a space or a line break.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for at in 0..=(state % 3) {
            text.extend_from_slice(SYLLABLES[(state >> (8 + 4 * at)) as usize % 16].as_bytes());
        }
        text.push(if state.is_multiple_of(13) { b'\n' } else { b' ' });
    }
    text
}

/// Splits `text` into about `parts` ranges that end between words.
fn ranges(text: &[u8], parts: usize) -> Vec<Range<usize>> {
    let step = text.len().div_ceil(parts).max(1);
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + step).min(text.len());
        while end < text.len() && text[end].is_ascii_alphabetic() {
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let text = match std::env::args_os().nth(1) {
        Some(path) => std::fs::read(&path)?,
        None => generated_text(64 << 20),
    };
    let started = Instant::now();
    let shared = SharedBytes::copy_from_slice(&text)?;
    println!("{} MiB of text in shared memory in {:?}", text.len() >> 20, started.elapsed());

    let pool = Pool::builder().build().await?;
    let total = SharedAtomics::new(1)?;
    let parts = ranges(&shared, 256);
    let started = Instant::now();
    let inputs = parts.iter().map(|range| (shared.clone(), range.clone(), total.clone()));
    let mut counts: HashMap<String, u64> = HashMap::new();
    for part in pool.map(count_words, inputs).await? {
        for (word, count) in part {
            *counts.entry(word).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    let words = total[0].load(Ordering::Relaxed);
    println!(
        "{words} words ({} distinct) in {} tasks on {} workers: {elapsed:?}",
        counts.len(),
        parts.len(),
        pool.stats().workers.len()
    );
    pool.close().await?;

    let mut top: Vec<_> = counts.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (word, count) in top.iter().take(5) {
        println!("{count:>10} {word}");
    }

    // The same count in this process alone, as a check.
    let started = Instant::now();
    let mut expected: HashMap<&str, u64> = HashMap::new();
    for word in words_of(&text) {
        *expected.entry(word).or_default() += 1;
    }
    println!("the same count in one process: {:?}", started.elapsed());
    anyhow::ensure!(expected.values().sum::<u64>() == words, "the shared total differs");
    anyhow::ensure!(
        expected.len() == counts.len()
            && expected.iter().all(|(word, count)| counts.get(*word) == Some(count)),
        "the merged counts differ"
    );
    println!("checked: the pool's counts match");
    Ok(())
}
