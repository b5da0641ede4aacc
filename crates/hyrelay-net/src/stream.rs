//! One stream type for plain TCP and TLS (server or client side), so that the HTTP layer,
//! the WebSocket layer and the splice see the same concrete type, and so that an abort can
//! reset the underlying TCP connection.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP connection, optionally wrapped in TLS.
#[allow(clippy::large_enum_variant)]
pub enum Stream {
    /// Clear TCP.
    Plain(TcpStream),
    /// TLS, we are the server.
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS, we are the client.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket below.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::ServerTls(s) => s.get_ref().0,
            Stream::ClientTls(s) => s.get_ref().0,
        }
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// For a connection dialled ahead and not used yet: whether it is still open and quiet
    /// (the peer has not closed it or sent anything a client in this state cannot take;
    /// TLS may carry post-handshake messages such as session tickets).
    pub fn idle_and_open(&self) -> bool {
        let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(self.tcp()).peek(&mut b) {
            Ok(0) => false,
            Ok(_) => self.is_tls(),
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        }
    }

    /// The raw descriptor, for [`abort_fd`].
    pub fn raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

/// Makes the next close of this socket send a TCP RST instead of a FIN, which the peer sees as
/// an abort (a read error), not as an orderly end.
///
/// # Safety
/// `fd` must be an open socket owned by a live object for the duration of the call.
pub fn abort_fd(fd: RawFd) {
    // SAFETY: callers pass the descriptor of a stream they still hold.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    let s = socket2::SockRef::from(&b);
    // No shutdown(): it would send a FIN first and the peer would see an orderly end. With
    // linger 0 the close that follows when the owner drops the socket sends a RST.
    let _ = s.set_linger(Some(Duration::ZERO));
}

/// Sets TCP_NODELAY and returns the stream (errors are ignored: the option is an optimisation).
pub fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            Stream::ClientTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
