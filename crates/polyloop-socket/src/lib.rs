//! The socket between a polyloop pool and one of its workers, on tokio, watched by the reactor
//! for readability only. Both ends use it: `polyloop-pool` for each worker it drives,
//! `polyloop-child` for its connection to the parent.
//!
//! `tokio::net::UnixStream` registers for reading and writing at once, and epoll reports write
//! readiness edge-triggered: each time the peer reads what was written, the thread waiting on the
//! reactor wakes up for nothing. On a round trip that doubles the wake-ups on each side, and each
//! one costs as much as the useful one. Here writes go straight to the socket, and only a write
//! that finds it full registers for write readiness, on a duplicate descriptor kept until the
//! write goes through.
//!
//! # Example
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let (left, right) = std::os::unix::net::UnixStream::pair()?;
//! let (mut left_reader, mut left_writer) = polyloop_socket::split(left)?;
//! let (mut right_reader, mut right_writer) = polyloop_socket::split(right)?;
//! left_writer.write_all(b"ping").await?;
//! let mut buf = [0u8; 4];
//! right_reader.read_exact(&mut buf).await?;
//! right_writer.write_all(&buf).await?;
//! left_reader.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"ping");
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```

use std::io::{self, Read as _};
use std::os::fd::{AsFd as _, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Makes `stream` non-blocking and splits it into halves registered with the current runtime's
/// reactor.
///
/// # Panics
/// Outside a tokio runtime with IO enabled.
pub fn split(stream: UnixStream) -> io::Result<(ReadHalf, WriteHalf)> {
    stream.set_nonblocking(true)?;
    let stream = Arc::new(register(stream, Interest::READABLE)?);
    Ok((ReadHalf(Arc::clone(&stream)), WriteHalf { stream, full: None }))
}

/// Registers `fd` with the current runtime's reactor for `interest`.
fn register<T: AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` (a `UnixStream` or an `OwnedFd`) owns its descriptor: it stays open, and is the
    // one `as_raw_fd` returns, for as long as the `AsyncFd` holds it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

/// The reading half: waits on the reactor for readability.
#[derive(Debug)]
pub struct ReadHalf(Arc<AsyncFd<UnixStream>>);

impl AsRawFd for ReadHalf {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let len = unfilled.len();
            match ready.try_io(|stream| stream.get_ref().read(unfilled)) {
                Ok(read) => {
                    let n = read?;
                    // A short read emptied the socket: the next read waits for the next edge
                    // instead of finding that out with a call that fails.
                    if n > 0 && n < len {
                        ready.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was cleared: wait for the next edge.
                Err(_would_block) => {}
            }
        }
    }
}

/// The writing half: writes straight to the socket, and waits for room only when it is full.
#[derive(Debug)]
pub struct WriteHalf {
    stream: Arc<AsyncFd<UnixStream>>,
    /// While a write waits for room: a duplicate of the descriptor registered for writability.
    full: Option<AsyncFd<OwnedFd>>,
}

impl WriteHalf {
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.stream.as_raw_fd();
        // Linux: MSG_NOSIGNAL, so a worker that is gone is an EPIPE, not a SIGPIPE, whatever the
        // program does with that signal. macOS has no such flag; Rust programs ignore SIGPIPE
        // from the start, so a plain send reports EPIPE there too.
        #[cfg(target_os = "linux")]
        let flags = libc::MSG_NOSIGNAL;
        #[cfg(not(target_os = "linux"))]
        let flags = 0;
        // SAFETY: `buf` is readable for its length; the socket is non-blocking.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
        match n {
            -1 => Err(io::Error::last_os_error()),
            n => Ok(n as usize),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.send(buf) {
                Ok(n) => {
                    // Room again: stop watching for it.
                    self.full = None;
                    return Poll::Ready(Ok(n));
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() != io::ErrorKind::WouldBlock => {
                    return Poll::Ready(Err(err));
                }
                Err(_) => {}
            }
            if self.full.is_none() {
                // A descriptor registered while the socket already has room is reported ready
                // at once, so no room made since the failed send is missed.
                let duplicate = self.stream.get_ref().as_fd().try_clone_to_owned()?;
                self.full = Some(register(duplicate, Interest::WRITABLE)?);
            }
            let full = self.full.as_ref().expect("registered above");
            ready!(full.poll_write_ready(cx))?.clear_ready();
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn pair() -> ((ReadHalf, WriteHalf), (ReadHalf, WriteHalf)) {
        let (left, right) = UnixStream::pair().expect("a socketpair");
        (split(left).expect("registered"), split(right).expect("registered"))
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_waits_for_room_and_arrives_whole() {
        let ((_, mut writer), (mut reader, _)) = pair();
        let sent: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writing = tokio::spawn(async move {
            writer.write_all(&sent).await.expect("the peer reads it all");
            writer
        });
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while received.len() < expected.len() {
            // A slow reader, so that the writer finds the socket full many times.
            tokio::time::sleep(Duration::from_micros(200)).await;
            let n = reader.read(&mut buf).await.expect("a read");
            assert_ne!(n, 0, "the writer is still there");
            received.extend_from_slice(&buf[..n]);
        }
        assert!(received == expected, "the bytes arrive in order, none lost");
        // A writer that missed the room made for it would never finish.
        let writer = tokio::time::timeout(Duration::from_secs(60), writing)
            .await
            .expect("the writer finished")
            .expect("the writer did not panic");
        assert!(writer.full.is_none(), "the registration for room is dropped once it is found");
    }

    #[tokio::test]
    async fn a_write_to_a_closed_peer_is_an_error_and_a_read_of_one_is_the_end() {
        let ((mut reader, mut writer), peer) = pair();
        drop(peer);
        let mut buf = [0u8; 16];
        assert_eq!(reader.read(&mut buf).await.expect("end of stream"), 0);
        let err = writer.write_all(b"anyone?").await.expect_err("nobody reads");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    }

    #[tokio::test]
    async fn shutdown_ends_the_peer_s_stream_and_reads_go_on() {
        let ((mut left_reader, mut left_writer), (mut right_reader, mut right_writer)) = pair();
        left_writer.write_all(b"last").await.expect("a write");
        left_writer.shutdown().await.expect("a shutdown");
        let mut got = Vec::new();
        right_reader.read_to_end(&mut got).await.expect("read to the end");
        assert_eq!(got, b"last");
        right_writer.write_all(b"reply").await.expect("the other way is open");
        let mut buf = [0u8; 5];
        left_reader.read_exact(&mut buf).await.expect("a read after shutting down writes");
        assert_eq!(&buf, b"reply");
    }
}
