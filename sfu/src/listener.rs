//! The HTTP listener's defences against clients that hold connections open.
//!
//! - Every accepted TCP connection takes a slot of an [`IpLimiter`]: at most
//!   `http_limits.max_connections` in all and `http_limits.max_connections_per_ip` per client
//!   address. A connection over a cap is closed at once, before TLS or HTTP, counted in
//!   `sfu_http_connections_refused_total{reason}` and logged at most once per 10 s. The slot is
//!   held for the connection's whole life, a WebSocket upgraded from it included.
//! - HTTP/1.1 only (the TLS listener offers only `http/1.1` in ALPN anyway), with a timer, so that
//!   hyper's header read timeout applies: a request head must be complete within
//!   `http_limits.header_read_timeout` of the connection opening or of the previous response, which
//!   also ends idle keep-alive connections. Request heads are at most [`MAX_HEAD_BYTES`].
//!
//! - Before hyper's timer can run, the server reads the first bytes of a connection to tell
//!   HTTP/1 from HTTP/2, without a time limit. [`FirstBytesAcceptor`] gives those bytes the same
//!   `header_read_timeout`, counted from the end of the TLS handshake (or from the accept), and
//!   refuses the HTTP/2 connection preface: hyper serves HTTP/2 to a client that starts with it
//!   even when HTTP/1 only is configured, and an HTTP/2 connection has no header timeout. No
//!   browser speaks HTTP/2 without TLS, and the TLS listener offers only `http/1.1`.
//!
//! [`LimitAcceptor`] goes first in the acceptor chain, so the TLS handshake (which axum-server
//! gives 10 s) also runs on a counted connection; [`FirstBytesAcceptor`] goes last.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use signal::limits::{IpLimiter, IpPermit, LogThrottle};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep, Sleep};
use tracing::warn;

/// How many bytes the server reads to tell HTTP/1 from HTTP/2 (the length of the HTTP/2
/// connection preface).
const VERSION_BYTES: usize = 24;

/// The largest request head (request line and headers) hyper buffers. Browsers send a few KiB;
/// hyper's default lets each connection hold about 400 KiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Refused connections, for the log.
static REFUSALS: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// Sets up `builder` as the listener needs it: HTTP/1.1 only, a timer, the header read timeout
/// and the head size cap.
pub fn configure(builder: &mut Builder<TokioExecutor>, header_read_timeout: Duration) {
    let owned = std::mem::replace(builder, Builder::new(TokioExecutor::new()));
    *builder = owned.http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
}

/// Counts connections against an [`IpLimiter`] and closes those over its caps.
#[derive(Debug, Clone)]
pub struct LimitAcceptor {
    limiter: IpLimiter,
}

impl LimitAcceptor {
    /// An acceptor holding `limiter`'s slots for its connections.
    pub fn new(limiter: IpLimiter) -> Self {
        LimitAcceptor { limiter }
    }

    fn admit(&self, stream: &TcpStream) -> io::Result<IpPermit> {
        let ip: IpAddr = stream.peer_addr()?.ip();
        match self.limiter.try_acquire(ip) {
            Ok(permit) => Ok(permit),
            Err(refused) => {
                metrics::counter!("sfu_http_connections_refused_total", "reason" => refused.as_str())
                    .increment(1);
                if let Some(n) = REFUSALS.hit(std::time::Instant::now()) {
                    warn!(
                        refused = n,
                        cap = refused.as_str(),
                        open = self.limiter.open(),
                        "HTTP connections refused: over the connection cap"
                    );
                }
                Err(io::Error::other("over the connection cap"))
            }
        }
    }
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Limited<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        // Refused: the stream is dropped here, which closes it.
        std::future::ready(self.admit(&stream).map(|permit| {
            metrics::gauge!("sfu_http_connections").increment(1.0);
            (
                Limited {
                    inner: stream,
                    _permit: Counted { _permit: permit },
                },
                service,
            )
        }))
    }
}

/// The permit, and the `sfu_http_connections` gauge, of one connection.
#[derive(Debug)]
struct Counted {
    _permit: IpPermit,
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("sfu_http_connections").decrement(1.0);
    }
}

/// A connection holding its slot until it is dropped.
#[derive(Debug)]
pub struct Limited<T> {
    inner: T,
    _permit: Counted,
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Gives the first [`VERSION_BYTES`] of every connection `timeout` to arrive, counted from the
/// end of the inner acceptor's work (the TLS handshake, if any).
#[derive(Debug, Clone)]
pub struct FirstBytesAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A> FirstBytesAcceptor<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, timeout: Duration) -> Self {
        FirstBytesAcceptor { inner, timeout }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<A, S> Accept<TcpStream, S> for FirstBytesAcceptor<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = FirstBytes<A::Stream>;
    type Service = A::Service;
    type Future = BoxFuture<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let inner = self.inner.accept(stream, service);
        let timeout = self.timeout;
        Box::pin(async move {
            let (stream, service) = inner.await?;
            let first = FirstBytes {
                inner: stream,
                deadline: Some(Box::pin(sleep(timeout))),
                missing: VERSION_BYTES,
                start: [0; H2_START.len()],
            };
            Ok((first, service))
        })
    }
}

/// A connection whose first [`VERSION_BYTES`] must arrive before a deadline.
pub struct FirstBytes<T> {
    inner: T,
    /// `None` once the bytes are in.
    deadline: Option<Pin<Box<Sleep>>>,
    missing: usize,
    /// The first bytes, to spot [`H2_START`].
    start: [u8; H2_START.len()],
}

/// How the HTTP/2 connection preface (`PRI * HTTP/2.0...`) starts; no HTTP/1 method does.
const H2_START: &[u8; 4] = b"PRI ";

impl<T: AsyncRead + Unpin> AsyncRead for FirstBytes<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                let seen = VERSION_BYTES - this.missing;
                if seen < H2_START.len() {
                    let new = &buf.filled()[before..];
                    let take = new.len().min(H2_START.len() - seen);
                    this.start[seen..seen + take].copy_from_slice(&new[..take]);
                    if seen + take == H2_START.len() && &this.start == H2_START {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "HTTP/2 is not served",
                        )));
                    }
                }
                this.missing = this.missing.saturating_sub(n);
                if this.missing == 0 {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request in time",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstBytes<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft limit of open files to the hard limit, as far as the system allows, so that
/// the connection cap and not the file limit is what refuses clients. Returns the soft limit in
/// force afterwards, or `None` where it cannot be read.
#[cfg(unix)]
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass; on failure nothing changes.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // rlim_t is u64 on Linux but not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    Some(limit.rlim_cur as u64)
}

/// Without `getrlimit` there is nothing to raise.
#[cfg(not(unix))]
pub fn raise_open_files_limit() -> Option<u64> {
    None
}
