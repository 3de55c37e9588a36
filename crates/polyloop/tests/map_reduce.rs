//! `Pool::map_reduce` with real workers: outputs folded in the workers, in input order, one
//! partial result per batch coming back, and every failure named by its input.

use polyloop::Pool;

#[polyloop::task]
async fn square(x: u64) -> u64 {
    x * x
}

#[polyloop::task]
async fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[polyloop::task]
async fn text_of(x: u64) -> String {
    x.to_string()
}

/// Associative, not commutative: the order of the outputs shows in the result.
#[polyloop::task]
async fn join(a: String, b: String) -> String {
    format!("{a},{b}")
}

#[polyloop::task]
async fn fails_at_3001(x: u64) -> Result<u64, String> {
    if x == 3001 { Err("3001 is cursed".into()) } else { Ok(x) }
}

#[polyloop::task]
async fn add_below_a_million(a: u64, b: u64) -> Result<u64, String> {
    if a + b >= 1_000_000 { Err(format!("{a} + {b} is too much")) } else { Ok(a + b) }
}

/// An input that refuses to serialize when it is 7.
#[derive(Debug, serde::Deserialize)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 7 {
            return Err(serde::ser::Error::custom("seven is not serializable"));
        }
        serializer.serialize_u64(self.0)
    }
}

#[polyloop::task]
async fn picky(value: Picky) -> u64 {
    value.0
}

/// Ends its worker's process at 7777.
#[polyloop::task]
async fn exits_at_7777(x: u64) -> u64 {
    if x == 7777 {
        std::process::exit(3);
    }
    x
}

fn pool(processes: usize) -> polyloop::PoolBuilder {
    Pool::builder().processes(processes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_folded_in_the_workers_and_one_partial_per_batch_comes_back() {
    let pool = pool(2).build().await.unwrap();
    let n = 100_000u64;
    let sum = pool.map_reduce(square, 0..n, add).await.unwrap();
    assert_eq!(sum, Some((0..n).map(|x| x * x).sum()));
    // A batch is at most 4096 inputs and a quarter of each worker's share: 100,000 inputs
    // over 2 workers make 25 folds, the only tasks the workers ran.
    let folds = || pool.stats().workers.iter().map(|worker| worker.tasks_done).sum::<u64>();
    assert_eq!(folds(), 25);
    // Without a size hint: batches of 16, 32, ... 4096 inputs, then 4096 each: 12 folds for
    // 20,000 inputs.
    let unsized_inputs = (0..20_000u64).filter(|_| true);
    let sum = pool.map_reduce(square, unsized_inputs, add).await.unwrap();
    assert_eq!(sum, Some((0..20_000u64).map(|x| x * x).sum()));
    assert_eq!(folds(), 25 + 12);
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fold_keeps_input_order_within_and_across_batches() {
    let pool = pool(2).child_concurrency(64).build().await.unwrap();
    let joined = pool.map_reduce(text_of, 0..20_000u64, join).await.unwrap();
    let expected = (0..20_000u64).map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(joined.as_deref(), Some(expected.as_str()));
    let one = pool.map_reduce(text_of, [42], join).await.unwrap();
    assert_eq!(one.as_deref(), Some("42"));
    assert_eq!(pool.map_reduce(text_of, Vec::new(), join).await.unwrap(), None);
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_input_or_reducer_ends_the_map_reduce_named_by_its_input() {
    let pool = pool(2).build().await.unwrap();
    let err = pool.map_reduce(fails_at_3001, 0..10_000u64, add).await.unwrap_err();
    assert!(err.is_failed() && err.message() == "3001 is cursed", "{err:?}");
    assert_eq!(err.input_index(), Some(3001));
    // In batches that grow (no size hint), too.
    let unsized_inputs = (0..10_000u64).filter(|_| true);
    let err = pool.map_reduce(fails_at_3001, unsized_inputs, add).await.unwrap_err();
    assert_eq!(err.input_index(), Some(3001), "{err:?}");

    // The squares of 0 to 255 add up to 5,559,680: some combination in the first batch's
    // worker (inputs 0 to 249) goes past a million, before input 250.
    let err = pool.map_reduce(square, 0..2000u64, add_below_a_million).await;
    let err = err.unwrap_err();
    assert!(err.is_failed() && err.message().ends_with("is too much"), "{err:?}");
    assert!(err.to_string().contains("add_below_a_million"), "{err}");
    assert!(err.input_index().is_some_and(|index| index < 250), "{err:?}");

    let err = pool.map_reduce(picky, (0..100).map(Picky), add).await.unwrap_err();
    assert!(err.is_serialization() && err.message().contains("seven"), "{err:?}");
    assert_eq!(err.input_index(), Some(7));
    // The pool serves on.
    assert_eq!(pool.map_reduce(square, 0..4u64, add).await.unwrap(), Some(14));
    pool.close().await.unwrap();

    // A fold lost with its worker is named by its batch's first input: 10,000 inputs over 2
    // workers go in batches of 1250, and 7777 is in the one from 7500. Each worker holds one
    // batch at a time, so that no other batch is lost with it.
    let pool = Pool::builder().processes(2).child_concurrency(1).prefetch(0).build().await;
    let pool = pool.unwrap();
    let err = pool.map_reduce(exits_at_7777, 0..10_000u64, add).await.unwrap_err();
    assert!(err.is_worker_lost(), "{err:?}");
    assert_eq!(err.input_index(), Some(7500));
    pool.close().await.unwrap();
}
