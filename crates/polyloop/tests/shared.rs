//! Shared values through a real pool: `SharedAtomics` updated in place by every worker,
//! `SharedBytes` read in place, memory returned once the parent lets go, and values that name
//! memory they have no right to refused.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polyloop::{Pool, SharedAtomics, SharedBytes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Adds one to `counter[0]` `times` times, one atomic add each.
#[polyloop::task]
async fn count_up(counter: SharedAtomics, times: u64) -> u32 {
    for _ in 0..times {
        counter[0].fetch_add(1, Ordering::Relaxed);
    }
    std::process::id()
}

/// The sum of the `page`th 4 KiB of `data`, and whether the worker reads it in shared memory.
#[polyloop::task]
async fn page_sum(data: SharedBytes, page: usize) -> (u64, bool, u32) {
    let sum = data.chunks(4096).nth(page).unwrap_or_default().iter().map(|&b| u64::from(b)).sum();
    (sum, data.is_shared(), std::process::id())
}

static INIT_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[polyloop::task]
async fn init_with(data: SharedBytes) {
    INIT_LEN.store(data.len(), Ordering::Relaxed);
}

#[polyloop::task]
async fn init_len(_: u64) -> usize {
    INIT_LEN.load(Ordering::Relaxed)
}

/// Hands the value back: a value the parent created comes back as the parent's own.
#[polyloop::task]
async fn echo_shared(data: SharedBytes) -> SharedBytes {
    data
}

/// A value created in the worker travels back as its bytes.
#[polyloop::task]
async fn make_shared(text: String) -> SharedBytes {
    SharedBytes::copy_from_slice(text.as_bytes()).expect("shared memory in the worker")
}

fn pool(processes: usize) -> polyloop::PoolBuilder {
    Pool::builder().processes(processes)
}

/// The lines of `pid`'s memory map that are polyloop's shared memory.
fn shared_mappings(pid: u32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines().filter(|line| line.contains("memfd:polyloop-shared")).count()
}

/// This process's descriptors that are polyloop's shared memory.
fn shared_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("memfd:polyloop-shared"))
        .count()
}

/// Waits until `done`, for at most 10 s; returns whether it happened.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_incremented_a_million_times_across_workers_ends_at_a_million() {
    let pool = pool(2).build().await.unwrap();
    let counter = SharedAtomics::new(1).unwrap();
    let inputs = (0..10_000).map(|_| (counter.clone(), 100u64));
    let pids: Vec<u32> = pool.map(count_up, inputs).await.unwrap();
    assert_eq!(counter[0].load(Ordering::Relaxed), 1_000_000);
    let pids: HashSet<u32> = pids.into_iter().collect();
    assert_eq!(pids.len(), 2, "both workers took tasks: {pids:?}");
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_bytes_are_read_in_place_and_let_go_when_the_parent_drops_them() {
    let pool = pool(2).build().await.unwrap();
    let bytes: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let data = SharedBytes::copy_from_slice(&bytes).unwrap();
    assert!(data.is_shared());
    let pages = bytes.len() / 4096;
    let results = pool.map(page_sum, (0..pages).map(|page| (data.clone(), page))).await.unwrap();
    let mut pids = HashSet::new();
    for (page, (sum, shared, pid)) in results.into_iter().enumerate() {
        let expected: u64 = bytes[page * 4096..][..4096].iter().map(|&b| u64::from(b)).sum();
        assert_eq!(sum, expected, "page {page}");
        assert!(shared, "page {page} was copied");
        pids.insert(pid);
    }
    // Each worker maps the value once, and keeps it while the parent holds it.
    for &pid in &pids {
        assert_eq!(shared_mappings(pid), 1, "worker {pid}");
    }
    assert_eq!(shared_fds(), 1);
    drop(data);
    assert!(eventually(|| shared_fds() == 0), "the parent still holds the memory");
    for &pid in &pids {
        assert!(eventually(|| shared_mappings(pid) == 0), "worker {pid} still maps the memory");
    }
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_dropped_right_after_submitting_stays_until_its_task_ran() {
    let pool = pool(1).build().await.unwrap();
    for round in 0..50u64 {
        let data = SharedBytes::copy_from_slice(&[round as u8; 4096]).unwrap();
        let handle = pool.submit(page_sum, (data, 0));
        // `data` is gone: only the task keeps the memory.
        let (sum, shared, _) = handle.await.unwrap();
        assert_eq!((sum, shared), (4096 * round, true), "round {round}");
    }
    // The same for a map's inputs, each dropped once serialized.
    let fresh = (0..500u64).map(|i| (SharedBytes::copy_from_slice(&[i as u8; 10]).unwrap(), 0));
    let sums: Vec<u64> =
        pool.map(page_sum, fresh).await.unwrap().into_iter().map(|r| r.0).collect();
    assert_eq!(sums, (0..500u64).map(|i| (i % 256) * 10).collect::<Vec<_>>());
    assert!(eventually(|| shared_fds() == 0), "{} descriptors left", shared_fds());
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_worker_gets_the_initializers_value_after_the_caller_dropped_it() {
    let data = SharedBytes::copy_from_slice(&[0; 12345]).unwrap();
    let pool = pool(1).max_tasks_per_child(2).initializer(init_with, data).build().await.unwrap();
    // Five workers in turn, each started after the value's last clone was dropped.
    for _ in 0..10 {
        assert_eq!(pool.apply(init_len, 0).await.unwrap(), 12345);
    }
    // The fifth may still be on its way.
    assert!(pool.stats().workers[0].recycles >= 4, "{:?}", pool.stats());
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_as_the_parents_own_or_as_bytes() {
    let pool = pool(1).build().await.unwrap();
    let data = SharedBytes::copy_from_slice(b"round trip").unwrap();
    let back = pool.apply(echo_shared, data.clone()).await.unwrap();
    assert_eq!(back, data);
    assert!(std::ptr::eq(back.as_ptr(), data.as_ptr()), "came back as a copy");
    let made = pool.apply(make_shared, "from a worker".to_owned()).await.unwrap();
    assert_eq!(&made[..], b"from a worker");
    assert!(!made.is_shared());
    pool.close().await.unwrap();
}

/// A task input that serializes as a `SharedBytes` naming whatever memory the test likes, and
/// deserializes (in the worker) as a real one.
#[derive(Debug)]
struct Forged(Locator);

/// How a `SharedBytes` says where it is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Locator {
    pid: u32,
    fd: i32,
    id: u64,
    len: u64,
}

#[derive(Deserialize)]
enum Wire {
    #[allow(dead_code)]
    Inline(serde_bytes::ByteBuf),
    Mapped(Locator),
}

impl Serialize for Forged {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_variant("SharedBytes", 1, "Mapped", &self.0)
    }
}

impl<'de> Deserialize<'de> for Forged {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Forged, D::Error> {
        SharedBytes::deserialize(deserializer)?;
        unreachable!("only the test's workers decode a Forged, and they fail the task")
    }
}

#[polyloop::task]
async fn read_forged(data: Forged) -> u64 {
    format!("{data:?}").len() as u64
}

fn locator_of(data: &SharedBytes) -> Locator {
    let (wire, _pins) = polyloop_shm::collect_pins(|| postcard::to_allocvec(data).unwrap());
    match postcard::from_bytes(&wire).unwrap() {
        Wire::Mapped(at) => at,
        Wire::Inline(_) => panic!("travelled inline"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_naming_memory_it_does_not_match_fails_its_task_only() {
    let pool = pool(1).build().await.unwrap();
    let data = SharedBytes::copy_from_slice(&[1; 100]).unwrap();
    let real = locator_of(&data);
    let other = std::fs::File::open("/proc/self/exe").unwrap();
    let other_fd = std::os::fd::AsRawFd::as_raw_fd(&other);
    let forgeries = [
        ("longer than it is", Locator { len: 4096, ..real }),
        ("shorter than it is", Locator { len: 10, ..real }),
        ("another id", Locator { id: real.id + 1000, ..real }),
        ("a file that is no region", Locator { fd: other_fd, ..real }),
        ("a closed descriptor", Locator { fd: 100_000, ..real }),
        ("a negative descriptor", Locator { fd: -1, ..real }),
        ("a stranger's memory", Locator { pid: 1, ..real }),
    ];
    for (what, at) in forgeries {
        let err = pool.apply(read_forged, Forged(at)).await.unwrap_err();
        assert!(err.is_serialization(), "{what}: {err}");
    }
    // The worker that refused them is fine and reads the real value.
    assert_eq!(pool.apply(page_sum, (data, 0)).await.unwrap().0, 100);
    assert_eq!(pool.stats().workers[0].restarts, 0);
    pool.close().await.unwrap();
}
