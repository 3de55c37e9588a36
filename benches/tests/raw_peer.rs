//! The raw socketpair peer works: it echoes, streams what it is asked for, and exits when closed.
//!
//! Correctness only: how fast it is, is the benchmark's business, never a test's.

use std::path::Path;

use polyloop_benches::raw::{ECHO_BYTES, Peer, PeerMode, Placement, Wait};

fn suite() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_suite"))
}

#[test]
fn echo_peer_answers_every_round_trip_and_exits_cleanly() {
    for placement in Placement::ALL {
        let mut peer =
            Peer::spawn_program(suite(), PeerMode::Echo, None, placement).expect("spawn the peer");
        assert!(peer.pid() > 0);
        let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        if cfg!(target_os = "linux") && two_cpus {
            // A pinned peer pins itself to CPU 1 before it answers, so its figures are taken
            // across cores; an unpinned one keeps the CPUs its parent may use.
            let allowed = |pid: &str| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
                line.split_whitespace().nth(1).unwrap().to_owned()
            };
            let expected = match placement {
                Placement::Pinned => "1".to_owned(),
                Placement::Unpinned => allowed("self"),
            };
            assert_eq!(allowed(&peer.pid().to_string()), expected, "{placement:?}");
        }
        let samples = peer.round_trips(3, 20).expect("round trips");
        assert_eq!(samples.len(), 20);
        let status = peer.finish().expect("reap the peer");
        assert!(status.success(), "peer exited with {status}");
    }
}

#[test]
fn a_polling_caller_gets_every_echo_back_in_step() {
    let mut peer = Peer::spawn_program(suite(), PeerMode::Echo, None, Placement::Unpinned)
        .expect("spawn the peer");
    let samples = peer.round_trips_waiting(Wait::Polling, 3, 20).expect("polling round trips");
    assert_eq!(samples.len(), 20);
    // Each echo was read whole: a blocking round trip after the polling ones still lines up.
    assert_eq!(peer.round_trips(0, 5).expect("blocking round trips").len(), 5);
    let status = peer.finish().expect("reap the peer");
    assert!(status.success(), "peer exited with {status}");
}

#[test]
fn a_polling_caller_fails_instead_of_spinning_when_the_peer_dies() {
    let mut peer = Peer::spawn_program(suite(), PeerMode::Echo, None, Placement::Unpinned)
        .expect("spawn the peer");
    // SAFETY: kill with the pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(peer.pid() as i32, libc::SIGKILL) }, 0);
    assert!(peer.round_trips_waiting(Wait::Polling, 0, 10).is_err());
    // Dropped here: killed already, and reaped.
}

#[test]
fn source_peer_sends_what_was_asked_with_large_buffers() {
    let buffer = Some(4 << 20);
    let mut peer = Peer::spawn_program(suite(), PeerMode::Source, buffer, Placement::Pinned)
        .expect("spawn the peer");
    for (count, size) in [(1, ECHO_BYTES as u32), (3, 1 << 20), (2, 12_345)] {
        peer.receive(count, size).expect("every byte arrives");
    }
    let status = peer.finish().expect("reap the peer");
    assert!(status.success(), "peer exited with {status}");
}

#[test]
fn a_dropped_peer_is_killed_and_reaped() {
    let peer = Peer::spawn_program(suite(), PeerMode::Echo, None, Placement::Unpinned)
        .expect("spawn the peer");
    let pid = peer.pid();
    drop(peer);
    // Reaped means gone from the process table, not a zombie.
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || !cfg!(target_os = "linux"));
}
