//! One region of shared memory mapped into this process: where it came from, how to find it
//! again, and when to let it go.
//!
//! A region is a sealed `memfd` holding a 64-byte header and the data. The process that created
//! it keeps the descriptor and a table from ids to its live regions; another process opens the
//! descriptor through `/proc/<pid>/fd/<n>`, checks everything it can before mapping, and keeps
//! the mapping while that descriptor stays open in the creator (a sweeper thread looks).

use std::collections::HashMap;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The first bytes of every region.
const MAGIC: [u8; 8] = *b"PLYSHM01";
/// The header's size: the data starts here, aligned for any primitive.
const HEADER: usize = 64;
/// How often a process that opened regions of another looks whether they are still open there.
const SWEEP_EVERY: Duration = Duration::from_millis(200);

/// What a region holds, which decides how it is sealed and mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Read-only bytes: sealed against writes, mapped read-only everywhere.
    Bytes = 1,
    /// `AtomicU64`s: sealed against resizing only, mapped writable everywhere.
    Atomics = 2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bytes => "SharedBytes",
            Kind::Atomics => "SharedAtomics",
        }
    }

    /// The bytes `len` elements take.
    fn data_len(self, len: u64) -> Option<usize> {
        let len = usize::try_from(len).ok()?;
        match self {
            Kind::Bytes => Some(len),
            Kind::Atomics => len.checked_mul(size_of::<AtomicU64>()),
        }
    }
}

/// Where a region is, as a value that refers to it travels: the creating process, its
/// descriptor there, the region's id in that process and its length in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Locator {
    pub(crate) pid: u32,
    pub(crate) fd: i32,
    pub(crate) id: u64,
    pub(crate) len: u64,
}

/// A mapped region.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    map_len: usize,
    kind: Kind,
    locator: Locator,
    /// The descriptor, held by the process that created the region only: other processes find
    /// the region through it.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    owner: Option<std::os::fd::OwnedFd>,
}

// SAFETY: the mapping is shared memory that lives as long as the region; it is read as bytes
// only when sealed against writes (`Kind::Bytes`), and otherwise only through atomics.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: nothing in the region is accessed except immutably or atomically.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("kind", &self.kind).field("locator", &self.locator).finish()
    }
}

impl Region {
    pub(crate) fn locator(&self) -> Locator {
        self.locator
    }

    /// Whether this process created the region.
    pub(crate) fn is_own(&self) -> bool {
        self.owner.is_some()
    }

    fn data_ptr(&self) -> *mut u8 {
        // In bounds: every mapping is at least the header long.
        self.ptr.as_ptr().wrapping_add(HEADER)
    }

    fn data_len(&self) -> usize {
        self.map_len - HEADER
    }

    /// The data of a [`Kind::Bytes`] region.
    pub(crate) fn bytes(&self) -> &[u8] {
        assert_eq!(self.kind, Kind::Bytes, "bytes() of a writable region");
        // SAFETY: the data lies inside the mapping, which lives as long as `self`; the memfd is
        // sealed against writes and shrinking, so the bytes never change and never go away.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.data_len()) }
    }

    /// The data of a [`Kind::Atomics`] region.
    pub(crate) fn atomics(&self) -> &[AtomicU64] {
        assert_eq!(self.kind, Kind::Atomics, "atomics() of a read-only region");
        // SAFETY: the data lies inside the mapping (sealed against shrinking), starts 64 bytes
        // into a page-aligned mapping, and is only ever accessed atomically, in every process.
        unsafe {
            std::slice::from_raw_parts(
                self.data_ptr().cast::<AtomicU64>(),
                self.data_len() / size_of::<AtomicU64>(),
            )
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `map_len` are a mapping this region made and nobody else unmaps;
        // no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
        if self.is_own() {
            lock(&CREATED).remove(&self.locator.id);
        }
    }
}

/// Regions this process created and still holds, by id: a value coming back from a worker
/// refers to one of them.
static CREATED: LazyLock<Mutex<HashMap<u64, Weak<Region>>>> = LazyLock::new(Mutex::default);
/// Ids for this process's regions.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Regions of another process this process opened, kept mapped while that process has them
/// open, so that each is mapped once however many values refer to it.
static OPENED: LazyLock<Mutex<Opened>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct Opened {
    regions: HashMap<(u32, u64), OpenedRegion>,
    /// Whether the sweeper thread runs.
    sweeping: bool,
}

struct OpenedRegion {
    region: Arc<Region>,
    /// The file as the creator's descriptor showed it when it was opened: a descriptor number
    /// reused for another file is told apart by its inode.
    dev: u64,
    ino: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The tables stay consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Maps `len` bytes of `fd` shared, readable and, if `writable`, writable.
fn map(fd: &impl std::os::fd::AsRawFd, len: usize, writable: bool) -> io::Result<NonNull<u8>> {
    let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
    // SAFETY: a fresh mapping of a descriptor we hold; the kernel picks the address.
    let ptr =
        unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// The header as written at the start of a region.
fn header(pid: u32, id: u64, kind: Kind, len: u64) -> [u8; 40] {
    let mut header = [0; 40];
    header[..8].copy_from_slice(&MAGIC);
    for (at, field) in [u64::from(pid), id, kind as u64, len].into_iter().enumerate() {
        header[8 + 8 * at..16 + 8 * at].copy_from_slice(&field.to_le_bytes());
    }
    header
}

/// Creates a region of `len` elements of `kind`: `data` for bytes (`len` of them), zeroes for
/// atomics (`data` empty).
#[cfg(target_os = "linux")]
pub(crate) fn create(kind: Kind, len: usize, data: &[u8]) -> io::Result<Arc<Region>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;

    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "shared value too long");
    let data_len = kind.data_len(len as u64).ok_or_else(too_long)?;
    let map_len = data_len.checked_add(HEADER).ok_or_else(too_long)?;
    // SAFETY: a C string literal and flags; the result is checked.
    let raw = unsafe {
        libc::memfd_create(c"polyloop-shared".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let locator = Locator { pid, fd: file.as_raw_fd(), id, len: len as u64 };
    // Written, not copied through a fresh mapping: the kernel fills its pages without a fault
    // for each. The size is set first so that atomics start zeroed.
    file.set_len(map_len as u64)?;
    file.write_all_at(&header(pid, id, kind, len as u64), 0)?;
    debug_assert_eq!(data.len(), if kind == Kind::Bytes { len } else { 0 });
    file.write_all_at(data, HEADER as u64)?;
    let seals = match kind {
        // No writable mapping exists, so the write seal can be set.
        Kind::Bytes => {
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL
        }
        Kind::Atomics => libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
    };
    // SAFETY: plain syscall on our descriptor.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let ptr = map(&file, map_len, kind == Kind::Atomics)?;
    let region = Arc::new(Region { ptr, map_len, kind, locator, owner: Some(file.into()) });
    lock(&CREATED).insert(id, Arc::downgrade(&region));
    Ok(region)
}

/// Shared memory needs `memfd_create` and `/proc`, which only Linux has.
#[cfg(not(target_os = "linux"))]
pub(crate) fn create(_: Kind, _: usize, _: &[u8]) -> io::Result<Arc<Region>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "shared memory needs Linux (memfd_create)"))
}

/// The region a value that arrived refers to: one of this process's own, or one its parent
/// created (the only other process a pool's values come from). Everything about it is checked
/// before it is mapped; a value that does not match is an error, never a bad read.
pub(crate) fn find(kind: Kind, at: Locator) -> Result<Arc<Region>, String> {
    let what = kind.name();
    // A region opened before: no system call (a worker decodes the same value for every task).
    let known = lock(&OPENED).regions.get(&(at.pid, at.id)).map(|known| Arc::clone(&known.region));
    let region = if let Some(region) = known {
        region
    } else if at.pid == std::process::id() {
        lock(&CREATED)
            .get(&at.id)
            .and_then(Weak::upgrade)
            .ok_or_else(|| format!("{what} {} was dropped before the value came back", at.id))?
    } else if Some(at.pid) == parent_pid() {
        open_parents(kind, at)?
    } else {
        return Err(format!(
            "{what} refers to process {}, which is neither this process nor its parent",
            at.pid
        ));
    };
    if region.kind != kind || region.locator.len != at.len {
        return Err(format!(
            "{what} of {} elements does not match the region it names ({:?} of {})",
            at.len, region.kind, region.locator.len
        ));
    }
    Ok(region)
}

fn parent_pid() -> Option<u32> {
    // SAFETY: getppid cannot fail.
    u32::try_from(unsafe { libc::getppid() }).ok()
}

#[cfg(target_os = "linux")]
fn open_parents(kind: Kind, at: Locator) -> Result<Arc<Region>, String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    let what = kind.name();
    let mut opened = lock(&OPENED);
    // Another thread may have opened it since `find` looked.
    if let Some(known) = opened.regions.get(&(at.pid, at.id)) {
        return Ok(Arc::clone(&known.region));
    }
    if at.fd < 0 {
        return Err(format!("{what} names descriptor {}", at.fd));
    }
    let path = format!("/proc/{}/fd/{}", at.pid, at.fd);
    let fail = |why: &dyn std::fmt::Display| format!("{what} at {path}: {why}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(kind == Kind::Atomics)
        // Never wait on whatever the number names now (a pipe, say): it is checked below.
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|err| fail(&format_args!("cannot open it ({err}); was it dropped?")))?;
    let meta = file.metadata().map_err(|err| fail(&err))?;
    let data_len = kind.data_len(at.len).ok_or_else(|| fail(&"length too large"))?;
    let map_len = data_len.checked_add(HEADER).ok_or_else(|| fail(&"length too large"))?;
    if !meta.file_type().is_file() || meta.len() != map_len as u64 {
        return Err(fail(&format_args!(
            "not a region of {} elements ({} bytes, {:?})",
            at.len,
            meta.len(),
            meta.file_type()
        )));
    }
    // SAFETY: plain syscall on a descriptor we hold.
    let seals = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GET_SEALS) };
    let needed = match kind {
        Kind::Bytes => libc::F_SEAL_SHRINK | libc::F_SEAL_WRITE,
        Kind::Atomics => libc::F_SEAL_SHRINK,
    };
    // Unsealed memory could shrink under the mapping (a fault on read) or change under `&[u8]`.
    if seals < 0 || seals & needed != needed {
        return Err(fail(&"not sealed as polyloop seals its regions"));
    }
    let ptr = map(&file, map_len, kind == Kind::Atomics).map_err(|err| fail(&err))?;
    let region = Region { ptr, map_len, kind, locator: at, owner: None };
    let mut found = [0; 40];
    // SAFETY: the mapping is at least `HEADER` long.
    unsafe { std::ptr::copy_nonoverlapping(region.ptr.as_ptr(), found.as_mut_ptr(), 40) };
    if found != header(at.pid, at.id, kind, at.len) {
        // Dropping `region` unmaps it.
        return Err(fail(&"its header does not match the value"));
    }
    let region = Arc::new(region);
    let entry = OpenedRegion { region: Arc::clone(&region), dev: meta.dev(), ino: meta.ino() };
    opened.regions.insert((at.pid, at.id), entry);
    if !opened.sweeping {
        opened.sweeping =
            std::thread::Builder::new().name("polyloop-shm-sweep".into()).spawn(sweep).is_ok();
    }
    Ok(region)
}

#[cfg(not(target_os = "linux"))]
fn open_parents(kind: Kind, _: Locator) -> Result<Arc<Region>, String> {
    Err(format!("{} needs Linux (memfd_create and /proc)", kind.name()))
}

/// Lets go of opened regions once their creator no longer has them open, until none is left.
#[cfg(target_os = "linux")]
fn sweep() {
    use std::os::unix::fs::MetadataExt;

    loop {
        std::thread::sleep(SWEEP_EVERY);
        let mut gone = Vec::new();
        let mut opened = lock(&OPENED);
        opened.regions.retain(|&(pid, _), entry| {
            let path = format!("/proc/{pid}/fd/{}", entry.region.locator.fd);
            let open = std::fs::metadata(path)
                .is_ok_and(|meta| meta.dev() == entry.dev && meta.ino() == entry.ino);
            if !open {
                gone.push(Arc::clone(&entry.region));
            }
            open
        });
        let done = opened.regions.is_empty();
        opened.sweeping = !done;
        drop(opened);
        // Unmapped outside the lock (unless a task still holds a value in the region).
        drop(gone);
        if done {
            return;
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_created_region_is_found_by_its_locator_until_it_is_dropped() {
        let region = create(Kind::Bytes, 5, b"hello").unwrap();
        assert_eq!(region.bytes(), b"hello");
        let at = region.locator();
        assert!(Arc::ptr_eq(&find(Kind::Bytes, at).unwrap(), &region));
        let wrong_len = Locator { len: 4, ..at };
        assert!(find(Kind::Bytes, wrong_len).unwrap_err().contains("does not match"));
        assert!(find(Kind::Atomics, at).unwrap_err().contains("does not match"));
        drop(region);
        assert!(find(Kind::Bytes, at).unwrap_err().contains("was dropped"));
    }

    #[test]
    fn a_bytes_region_is_sealed_against_writes_and_resizing() {
        use std::os::fd::AsRawFd;
        let region = create(Kind::Bytes, 3, b"abc").unwrap();
        let fd = region.owner.as_ref().unwrap().as_raw_fd();
        // SAFETY: plain syscalls on the region's descriptor.
        unsafe {
            assert!(libc::ftruncate(fd, 1) < 0, "shrinks");
            assert!(libc::write(fd, b"x".as_ptr().cast(), 1) < 0, "writes");
            let writable = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_eq!(writable, libc::MAP_FAILED, "maps writable");
        }
        assert_eq!(region.bytes(), b"abc");
    }

    #[test]
    fn a_region_of_another_process_is_refused() {
        let stranger = Locator { pid: u32::MAX, fd: 0, id: 1, len: 0 };
        let err = find(Kind::Bytes, stranger).unwrap_err();
        assert!(err.contains("neither this process nor its parent"), "{err}");
    }

    #[test]
    fn atomics_start_zeroed_and_are_found_again_by_their_locator() {
        let region = create(Kind::Atomics, 3, &[]).unwrap();
        assert!(region.atomics().iter().all(|a| a.load(Ordering::Relaxed) == 0));
        region.atomics()[2].fetch_add(7, Ordering::Relaxed);
        let again = find(Kind::Atomics, region.locator()).unwrap();
        assert_eq!(again.atomics()[2].load(Ordering::Relaxed), 7);
    }
}
