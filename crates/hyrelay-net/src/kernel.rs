//! Zero-copy forwarding between TCP sockets with `splice(2)` through a pipe (Linux).
//!
//! A WebSocket payload that nobody needs to look at (an unmasked or zero-masked data frame in
//! the relay's splice, the payload of a bridge's binary frames) does not have to visit user
//! space: the kernel moves its pages from one socket into a pipe and from the pipe into the
//! other socket. Only headers are read and written by us.
//!
//! Readiness goes through tokio (`readable`/`writable` + `try_io`), so these calls share the
//! sockets' registration with ordinary reads and writes. The pipe is always emptied before it
//! is filled again, so `EAGAIN` from a fill means "the socket has no data" and `EAGAIN` from a
//! drain means "the socket's send buffer is full", never "the pipe is full".

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Payload below this many bytes is cheaper to copy than to splice.
pub const MIN_SPLICE: u64 = 16 * 1024;

/// A non-blocking pipe used as the kernel-side buffer of one forwarding direction.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes in the pipe not yet moved on.
    held: usize,
    cap: usize,
}

impl Pipe {
    /// A pipe of (up to) 1 MiB: larger splices mean fewer wake-ups per gigabyte.
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Best effort: an unprivileged process is capped by /proc/sys/fs/pipe-max-size.
        // SAFETY: plain fcntl on a descriptor we own.
        let cap = unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
            libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        Ok(Pipe {
            r,
            w,
            held: 0,
            cap: if cap > 0 { cap as usize } else { 64 * 1024 },
        })
    }

    /// How many bytes one fill asks for at most.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (their owners are
    // borrowed by the callers); null offsets mean "current position" for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves up to `max` bytes that `from` has (waiting until it has some) into the empty pipe.
/// Returns how many; 0 means `from` reached end of stream.
pub async fn fill(from: &TcpStream, pipe: &mut Pipe, max: usize) -> io::Result<usize> {
    debug_assert_eq!(pipe.held, 0, "fill only an empty pipe");
    let want = max.min(pipe.cap);
    loop {
        from.readable().await?;
        match from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe.w.as_raw_fd(), want)
        }) {
            Ok(n) => {
                pipe.held = n;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Moves everything held in the pipe into `to`.
pub async fn drain(to: &TcpStream, pipe: &mut Pipe) -> io::Result<()> {
    while pipe.held > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            splice(pipe.r.as_raw_fd(), to.as_raw_fd(), pipe.held)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => pipe.held -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `bytes` (a frame header) with `MSG_MORE`, so the kernel holds them for the payload
/// spliced right after instead of sending a tiny segment of their own.
pub async fn send_more(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            // SAFETY: `bytes` is a live slice; the descriptor is borrowed from `to`.
            let n = unsafe {
                libc::send(
                    to.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves exactly `n` bytes from `from` to `to`. End of stream before that is an error
/// (`UnexpectedEof`): a frame cut short must never look like a complete one.
pub async fn exact(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &mut Pipe,
    mut n: u64,
) -> io::Result<()> {
    drain(to, pipe).await?;
    while n > 0 {
        let want = n.min(pipe.cap as u64) as usize;
        let got = fill(from, pipe, want).await?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a frame",
            ));
        }
        n -= got as u64;
        drain(to, pipe).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn exact_moves_the_bytes_and_no_more() {
        // src_w → src_r ==splice==> dst_w → dst_r
        let (mut src_w, src_r) = pair().await;
        let (dst_w, mut dst_r) = pair().await;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let tail = b"NEXT-FRAME";
        let d2 = data.clone();
        let writer = tokio::spawn(async move {
            src_w.write_all(&d2).await.unwrap();
            src_w.write_all(tail).await.unwrap();
            src_w
        });
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 3_000_000];
            dst_r.read_exact(&mut got).await.unwrap();
            got
        });
        let mut pipe = Pipe::new().unwrap();
        exact(&src_r, &dst_w, &mut pipe, data.len() as u64)
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap(), data);
        // What follows the spliced bytes is still in the source socket, untouched.
        let _w = writer.await.unwrap();
        let mut rest = [0u8; 10];
        let mut src_r = src_r;
        src_r.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, tail);
    }

    #[tokio::test]
    async fn end_of_stream_inside_the_span_is_an_error() {
        let (mut src_w, src_r) = pair().await;
        let (dst_w, _dst_r) = pair().await;
        src_w.write_all(&[1u8; 1000]).await.unwrap();
        drop(src_w);
        let mut pipe = Pipe::new().unwrap();
        let e = exact(&src_r, &dst_w, &mut pipe, 5000).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
