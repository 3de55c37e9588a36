//! Judging whether a worker process still runs, from the beats a thread of it writes to a
//! socket of their own: a worker whose tasks keep its runtime busy still beats, a stopped or
//! wedged process does not.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The parent's end of a worker's heartbeat socket, and what it heard so far.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    beats: UnixStream,
    timeout: Duration,
    last_heard: Instant,
}

impl Heartbeat {
    /// Watches `beats`, declaring the worker dead after `timeout` without one. The timeout is at
    /// least two beats long.
    pub(crate) fn new(beats: UnixStream, timeout: Duration) -> std::io::Result<Self> {
        // Read only when it is time to judge, never waited on: beats must not wake the driver.
        beats.set_nonblocking(true)?;
        let timeout = timeout.max(2 * polyloop_wire::heartbeat_interval(timeout));
        Ok(Heartbeat { beats, timeout, last_heard: Instant::now() })
    }

    /// How long the worker may stay silent.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often to judge: once per beat.
    pub(crate) fn period(&self) -> Duration {
        polyloop_wire::heartbeat_interval(self.timeout)
    }

    /// Takes in the beats that arrived and says whether the worker is alive at `now`: it beat
    /// within the timeout. Beats that queued while this process could not look (its own thread
    /// was busy) still count, so a busy parent never kills a live worker.
    pub(crate) fn alive(&mut self, now: Instant) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match (&self.beats).read(&mut buf) {
                Ok(0) => break, // The worker closed it, most likely by dying: its socket tells.
                Ok(_) => self.last_heard = now,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break, // Nothing more queued.
            }
        }
        now.saturating_duration_since(self.last_heard) < self.timeout
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_beat_keeps_the_worker_alive_and_silence_ends_it() {
        let (parent, mut worker) = UnixStream::pair().unwrap();
        let mut heartbeat = Heartbeat::new(parent, Duration::from_secs(5)).unwrap();
        let start = heartbeat.last_heard;
        assert!(heartbeat.alive(start + Duration::from_secs(4)), "within the timeout");
        assert!(!heartbeat.alive(start + Duration::from_secs(5)), "silent for the timeout");
        worker.write_all(&[0; 200]).unwrap(); // queued while nobody looked
        assert!(heartbeat.alive(start + Duration::from_secs(6)), "beats revive it");
        assert!(heartbeat.alive(start + Duration::from_secs(10)));
        assert!(!heartbeat.alive(start + Duration::from_secs(11)));
        drop(worker);
        assert!(!heartbeat.alive(start + Duration::from_secs(12)), "a closed socket beats no more");
    }

    #[test]
    fn the_timeout_spans_at_least_two_beats() {
        let (parent, _worker) = UnixStream::pair().unwrap();
        let heartbeat = Heartbeat::new(parent, Duration::ZERO).unwrap();
        assert_eq!(heartbeat.timeout(), Duration::from_millis(20));
        assert_eq!(heartbeat.period(), Duration::from_millis(10));
    }
}
