//! The media socket: batched receive (recvmmsg, GRO, through `quinn-udp`) and batched send (GSO;
//! on Linux many destinations per `sendmmsg`, in `io/sendmmsg.rs`).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(not(target_os = "linux"))]
use quinn_udp::Transmit as UdpTransmit;
use quinn_udp::{RecvMeta, UdpSocketState};
use str0m::net::Transmit;
use tokio::io::Interest;
use tokio::net::UdpSocket;
#[cfg(target_os = "linux")]
use tracing::warn;

#[cfg(target_os = "linux")]
use super::send_socket::SendSocket;
#[cfg(target_os = "linux")]
use super::sendmmsg;

/// Datagrams read per receive call.
pub const RECV_BATCH: usize = 32;
/// Size of each receive buffer: room for a GRO train of full-size datagrams.
const RECV_BUF: usize = 64 * 1024;
/// Kernel socket buffers asked for; large enough to ride out a scheduling hiccup.
pub(super) const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// One send call in this many, on average, is timed with the thread's CPU clock (two system
/// calls) and counts for all of them: the estimate of [`MediaSocket::send_cpu`] costs a few
/// nanoseconds per call, not two clock reads per call.
#[cfg(target_os = "linux")]
const SEND_CPU_SAMPLE: u32 = 8;

/// A bound media socket with its batch buffers.
pub struct MediaSocket {
    socket: UdpSocket,
    /// Linux: a second socket on the same address and port that only sends (see
    /// [`SendSocket`]); `None` where it could not be made, and `socket` sends.
    #[cfg(target_os = "linux")]
    sender: Option<SendSocket>,
    state: UdpSocketState,
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    /// Where a run is copied for a GSO send (Linux gathers instead).
    #[cfg(not(target_os = "linux"))]
    send_buf: Vec<u8>,
    /// Segmentation offload failed on a send: no more GSO trains.
    #[cfg(target_os = "linux")]
    gso_failed: bool,
    /// Picks the timed send calls: at random (xorshift), since a fixed stride could keep
    /// picking the same call of a repeating pattern (the first of each turn, say).
    #[cfg(target_os = "linux")]
    send_sampler: u32,
    /// Estimated CPU time of the send calls (see [`MediaSocket::send_cpu`]).
    send_cpu: Duration,
    local_port: u16,
}

/// CPU time of the calling thread.
pub(super) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes to it.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (r == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// One received datagram, borrowed from the socket's buffers.
pub struct Datagram<'a> {
    /// Who sent it.
    pub source: SocketAddr,
    /// The local IP it was addressed to, when the platform tells.
    pub destination_ip: Option<std::net::IpAddr>,
    /// The bytes.
    pub data: &'a [u8],
    /// How long it waited in the socket's receive buffer, from the kernel's receive timestamp
    /// (`None` where the platform gives none).
    pub waited: Option<Duration>,
}

impl MediaSocket {
    /// Bind `addr`. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        // The send socket joins this one's port (`SO_REUSEPORT`, see `SendSocket`), which
        // would let a second server of the same user join it too: the port is claimed first
        // with a plain bind, which any socket on it refuses, then released and taken.
        #[cfg(target_os = "linux")]
        let (sock, shared) = {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let free = new_socket(addr)?;
                free.bind(&addr.into())?;
                let claimed = free.local_addr()?;
                drop(free);
                let sock = new_socket(addr)?;
                let shared = sock.set_reuse_port(true).is_ok();
                match sock.bind(&claimed) {
                    Ok(()) => break (sock, shared),
                    // Taken in between: for a port of the kernel's choice, another one.
                    Err(e)
                        if e.kind() == io::ErrorKind::AddrInUse
                            && addr.port() == 0
                            && attempt < 5 => {}
                    Err(e) => return Err(e),
                }
            }
        };
        #[cfg(not(target_os = "linux"))]
        let sock = {
            let sock = new_socket(addr)?;
            sock.bind(&addr.into())?;
            sock
        };
        sock.set_nonblocking(true)?;
        let std_sock: std::net::UdpSocket = sock.into();
        let state = UdpSocketState::new((&std_sock).into())?;
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = state.set_recv_buffer_size((&std_sock).into(), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size((&std_sock).into(), SOCKET_BUFFER);
        let local = std_sock.local_addr()?;
        let local_port = local.port();
        #[cfg(target_os = "linux")]
        let sender = if shared {
            SendSocket::join(&std_sock, local)
                .inspect_err(|e| {
                    warn!("no separate send socket ({e}); one socket sends and receives")
                })
                .ok()
        } else {
            None
        };
        let socket = UdpSocket::from_std(std_sock)?;
        Ok(MediaSocket {
            socket,
            #[cfg(target_os = "linux")]
            sender,
            state,
            bufs: (0..RECV_BATCH).map(|_| vec![0; RECV_BUF]).collect(),
            meta: vec![RecvMeta::default(); RECV_BATCH],
            #[cfg(not(target_os = "linux"))]
            send_buf: Vec::with_capacity(64 * 1024),
            #[cfg(target_os = "linux")]
            gso_failed: false,
            #[cfg(target_os = "linux")]
            send_sampler: 0x9e37_79b9,
            send_cpu: Duration::ZERO,
            local_port,
        })
    }

    /// The port the socket is bound to.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// The calling thread's CPU time spent in this socket's send calls so far, the kernel's
    /// work for the datagrams it sends (on loopback also their delivery to the receivers):
    /// an estimate from one call in [`SEND_CPU_SAMPLE`], picked at random, timed with the
    /// thread's CPU clock (Linux; zero elsewhere). With the thread's whole CPU time it splits a
    /// worker's load into the kernel's sending and everything else.
    pub fn send_cpu(&self) -> Duration {
        self.send_cpu
    }

    /// Wait until datagrams can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Read one batch without waiting and hand every datagram (GRO trains split) to `f`.
    /// Returns how many datagrams were read; 0 when nothing was waiting.
    pub fn recv_batch(&mut self, mut f: impl FnMut(Datagram<'_>)) -> io::Result<usize> {
        let MediaSocket {
            socket,
            state,
            bufs,
            meta,
            ..
        } = self;
        let mut slices: [IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(&mut []));
        for (s, b) in slices.iter_mut().zip(bufs.iter_mut()) {
            *s = IoSliceMut::new(b);
        }
        let n = match socket.try_io(Interest::READABLE, || {
            state.recv((&*socket).into(), &mut slices, meta)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut count = 0;
        // The kernel stamps datagrams with the wall clock.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for (m, s) in meta.iter().zip(slices.iter()).take(n) {
            let stride = m.stride.max(1);
            let waited = m.timestamp.map(|t| now.saturating_sub(t));
            for seg in s[..m.len].chunks(stride) {
                f(Datagram {
                    source: m.addr,
                    destination_ip: m.dst_ip,
                    data: seg,
                    waited,
                });
                count += 1;
            }
        }
        Ok(count)
    }

    /// Send datagrams, joining runs to the same destination into one GSO send where the sizes
    /// allow (all segments equal but the last, which may be shorter). Waits while the socket
    /// buffer is full. Errors other than a full buffer drop the datagram (as the network would).
    /// On Linux, up to 32 such runs (`sendmmsg::MESSAGES`) go to the kernel in one call, gathered
    /// from the datagrams' own buffers.
    ///
    /// With `pin_source`, each datagram leaves from the local address its path uses (the
    /// candidate the client sent to), not whatever the routing table picks: on a host with
    /// several addresses a reply from another address would not match the ICE pair. Only for
    /// candidates that are addresses of this machine (not a public address behind NAT).
    #[cfg(target_os = "linux")]
    pub async fn send_all(
        &mut self,
        transmits: &mut Vec<Transmit>,
        pin_source: bool,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = match &self.sender {
            Some(s) => s.socket.as_raw_fd(),
            None => self.socket.as_raw_fd(),
        };
        let mut sent = 0;
        let mut i = 0;
        while i < transmits.len() {
            let max_segments = if self.gso_failed {
                1
            } else {
                self.state.max_gso_segments().max(1)
            };
            let mut spans = [sendmmsg::Span::default(); sendmmsg::MESSAGES];
            let (mut n, mut datagrams, mut at) = (0, 0, i);
            while n < sendmmsg::MESSAGES && at < transmits.len() {
                let end = run_end(transmits, at, max_segments);
                if datagrams + (end - at) > sendmmsg::IOVECS {
                    break;
                }
                spans[n] = sendmmsg::Span { start: at, end };
                datagrams += end - at;
                n += 1;
                at = end;
            }
            let spans = &spans[..n];
            loop {
                let x = &mut self.send_sampler;
                *x ^= *x << 13;
                *x ^= *x >> 17;
                *x ^= *x << 5;
                let timed = x.is_multiple_of(SEND_CPU_SAMPLE);
                let before = if timed { thread_cpu_time() } else { None };
                let r = match &self.sender {
                    Some(_) => sendmmsg::send(fd, transmits, spans, pin_source),
                    None => self.socket.try_io(Interest::WRITABLE, || {
                        sendmmsg::send(fd, transmits, spans, pin_source)
                    }),
                };
                if let Some(before) = before {
                    let after = thread_cpu_time().unwrap_or(before);
                    self.send_cpu += after.saturating_sub(before) * SEND_CPU_SAMPLE;
                }
                match r {
                    // The kernel stops at the first message it refuses and counts only those
                    // before it: the refused one leads the next call, which reports its error
                    // (and drops it below) or sends it if the cause has passed.
                    Ok(k) => {
                        i = spans[k - 1].end;
                        sent += spans[..k].iter().map(sendmmsg::Span::len).sum::<usize>();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match &self.sender {
                            Some(s) => s.writable().await?,
                            None => self.socket.writable().await?,
                        }
                        continue;
                    }
                    Err(e) => {
                        let first = spans[0];
                        let dest = transmits[first.start].destination;
                        if first.len() > 1
                            && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
                        {
                            // Some drivers refuse segmentation offload only when it is used:
                            // from now on one datagram per message (this run is sent again).
                            warn!(%dest, "send with segmentation offload failed ({e}); sending without");
                            self.gso_failed = true;
                        } else {
                            tracing::debug!(%dest, "send failed: {e}");
                            i = first.end;
                            sent += first.len();
                        }
                    }
                }
                break;
            }
        }
        transmits.clear();
        Ok(sent)
    }

    /// See the Linux version: here one run per system call, copied into one buffer.
    #[cfg(not(target_os = "linux"))]
    pub async fn send_all(
        &mut self,
        transmits: &mut Vec<Transmit>,
        pin_source: bool,
    ) -> io::Result<usize> {
        let max_segments = self.state.max_gso_segments().max(1);
        let mut sent = 0;
        let mut i = 0;
        while i < transmits.len() {
            let j = run_end(transmits, i, max_segments);
            let (dest, source) = (transmits[i].destination, transmits[i].source.ip());
            self.send_buf.clear();
            for t in &transmits[i..j] {
                self.send_buf.extend_from_slice(&t.contents);
            }
            let segments = j - i;
            let tx = UdpTransmit {
                destination: dest,
                ecn: None,
                contents: &self.send_buf,
                segment_size: (segments > 1).then_some(transmits[i].contents.len()),
                src_ip: pin_source.then_some(source),
            };
            loop {
                let r = self.socket.try_io(Interest::WRITABLE, || {
                    self.state.try_send((&self.socket).into(), &tx)
                });
                match r {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.socket.writable().await?;
                    }
                    Err(e) => {
                        tracing::debug!(%dest, "send failed: {e}");
                        break;
                    }
                }
            }
            sent += segments;
            i = j;
        }
        transmits.clear();
        Ok(sent)
    }
}

/// A UDP socket for `addr`'s family; dual-stack when it is IPv6 (bound to `[::]` it takes
/// IPv4 too).
pub(super) fn new_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(false);
    }
    Ok(sock)
}

/// The end of the run that starts at `i`: the datagrams after it to the same destination from
/// the same source that can leave with it as one GSO train (at most `max_segments`, each the
/// size of the first but the last, which may be shorter, under 65,000 bytes in all).
fn run_end(transmits: &[Transmit], i: usize, max_segments: usize) -> usize {
    let dest = transmits[i].destination;
    let source = transmits[i].source.ip();
    let seg = transmits[i].contents.len();
    let mut j = i + 1;
    if max_segments > 1 {
        while j < transmits.len()
            && j - i < max_segments
            && transmits[j].destination == dest
            && transmits[j].source.ip() == source
            && transmits[j].contents.len() <= seg
            && (j - i + 1) * seg <= 65_000
        {
            let last = transmits[j].contents.len() < seg;
            j += 1;
            if last {
                break;
            }
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A turn's output as the worker hands it over: runs to one destination (GSO trains, one
    /// cut short by a smaller last datagram), single datagrams to alternating destinations,
    /// more messages and datagrams than one system call takes, and one datagram the kernel
    /// refuses. Each receiver gets exactly its datagrams, whole and in order; the refused one
    /// costs only itself.
    #[tokio::test]
    async fn a_turn_s_datagrams_arrive_whole_and_in_order() {
        use std::net::UdpSocket as StdSocket;
        let mut socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let source = SocketAddr::from(([127, 0, 0, 1], socket.local_port()));
        let receivers: Vec<StdSocket> = (0..2)
            .map(|_| {
                let r = StdSocket::bind("127.0.0.1:0").unwrap();
                r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                // Room for the whole turn without reading.
                socket2::SockRef::from(&r)
                    .set_recv_buffer_size(4 << 20)
                    .unwrap();
                r
            })
            .collect();
        let to: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
        // An IPv4 socket cannot send to an IPv6 address: refused at once by the kernel.
        let refused: SocketAddr = "[::1]:9".parse().unwrap();

        let mut transmits = Vec::new();
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
        let mut push = |dest: Option<usize>, size: usize, transmits: &mut Vec<Transmit>| {
            let n = transmits.len() as u32;
            let mut contents = vec![(n % 251) as u8; size];
            contents[..4].copy_from_slice(&n.to_be_bytes());
            if let Some(d) = dest {
                expected[d].push(contents.clone());
            }
            transmits.push(Transmit {
                proto: str0m::net::Protocol::Udp,
                source,
                destination: dest.map_or(refused, |d| to[d]),
                contents: contents.into(),
            });
        };
        for round in 0..40 {
            // A frame: equal packets and a shorter last one, to one receiver.
            for _ in 0..5 {
                push(Some(round % 2), 1200, &mut transmits);
            }
            push(Some(round % 2), 300 + round, &mut transmits);
            // Audio to both, one each.
            push(Some(0), 90, &mut transmits);
            push(Some(1), 110, &mut transmits);
            if round == 17 {
                push(None, 100, &mut transmits);
            }
        }
        let total = transmits.len();
        assert!(
            total > 256,
            "more datagrams than one call takes (sendmmsg::IOVECS)"
        );
        let sent = socket.send_all(&mut transmits, true).await.unwrap();
        assert_eq!(sent, total, "every datagram handed over or dropped");
        assert!(transmits.is_empty());

        for (r, expected) in receivers.iter().zip(&expected) {
            let mut buf = vec![0; 2048];
            for (k, want) in expected.iter().enumerate() {
                let (len, from) = r.recv_from(&mut buf).expect("datagram arrives");
                assert_eq!(from, source);
                assert_eq!(&buf[..len], &want[..], "datagram {k} whole and in order");
            }
            r.set_nonblocking(true).unwrap();
            assert!(r.recv_from(&mut buf).is_err(), "nothing more");
        }
    }

    /// Linux: the send calls' CPU time is counted, from the calls it times, as a share of the
    /// thread's time that fits the work: here the sends are nearly all of it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_send_calls_cpu_time_is_counted() {
        use std::net::UdpSocket as StdSocket;
        let mut socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(socket.send_cpu(), Duration::ZERO);
        let source = SocketAddr::from(([127, 0, 0, 1], socket.local_port()));
        let receivers: Vec<StdSocket> = (0..2)
            .map(|_| {
                let r = StdSocket::bind("127.0.0.1:0").unwrap();
                socket2::SockRef::from(&r)
                    .set_recv_buffer_size(4 << 20)
                    .unwrap();
                r
            })
            .collect();
        let to: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
        let calls = 16 * SEND_CPU_SAMPLE as usize;
        let mut batches: Vec<Vec<Transmit>> = (0..calls)
            .map(|_| {
                // 32 datagrams to alternating receivers: 32 messages, one call.
                (0..sendmmsg::MESSAGES)
                    .map(|k| Transmit {
                        proto: str0m::net::Protocol::Udp,
                        source,
                        destination: to[k % 2],
                        contents: vec![7; 100].into(),
                    })
                    .collect()
            })
            .collect();
        let before = thread_cpu_time().unwrap();
        for transmits in &mut batches {
            let n = transmits.len();
            assert_eq!(socket.send_all(transmits, false).await.unwrap(), n);
        }
        let spent = thread_cpu_time().unwrap() - before;
        let counted = socket.send_cpu();
        assert!(
            counted > spent / 5 && counted < spent * 2,
            "{counted:?} counted of {spent:?} spent sending {calls} calls"
        );
    }

    /// Linux: the port's datagrams, from many sources (which the kernel would otherwise spread
    /// over the sockets sharing the port by a hash of the source), all reach the receiving
    /// socket; the send socket sends from the same port; a send that finds the buffer full
    /// can wait for room again and again (its registration ends with each wait).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_send_socket_shares_the_port_and_receives_nothing() {
        use std::net::UdpSocket as StdSocket;
        let mut socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sender = socket.sender.take().expect("a send socket on Linux");
        assert_eq!(
            sender.socket.local_addr().unwrap(),
            SocketAddr::from(([127, 0, 0, 1], socket.local_port()))
        );
        let to = SocketAddr::from(([127, 0, 0, 1], socket.local_port()));
        let clients: Vec<StdSocket> = (0..64)
            .map(|_| StdSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[0x80, 96, 0, i as u8], to).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..200 {
            if got.len() == clients.len() {
                break;
            }
            tokio::time::timeout(Duration::from_millis(50), socket.readable())
                .await
                .ok();
            socket.recv_batch(|d| got.push(d.data[3])).unwrap();
        }
        got.sort_unstable();
        assert_eq!(
            got,
            (0..64).collect::<Vec<u8>>(),
            "all to the receiving socket"
        );
        let mut buf = [0; 16];
        sender.socket.set_nonblocking(true).unwrap();
        assert!(
            sender.socket.recv_from(&mut buf).is_err(),
            "none to the send socket"
        );

        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(2), sender.writable())
                .await
                .expect("an empty buffer has room")
                .expect("registered for the wait, then not");
        }
        socket.sender = Some(sender);
        let mut transmits = vec![Transmit {
            proto: str0m::net::Protocol::Udp,
            source: to,
            destination: clients[0].local_addr().unwrap(),
            contents: vec![1, 2, 3].into(),
        }];
        assert_eq!(socket.send_all(&mut transmits, false).await.unwrap(), 1);
        clients[0]
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let (n, from) = clients[0].recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[1, 2, 3][..], to));
    }

    /// Sharing the port with its send socket does not let another socket take it: a second
    /// server on the same port, or any other socket, is refused as before.
    #[tokio::test]
    async fn a_port_in_use_is_refused() {
        let socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = SocketAddr::from(([127, 0, 0, 1], socket.local_port()));
        let e = MediaSocket::bind(taken)
            .err()
            .expect("a second media socket refused");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let e = std::net::UdpSocket::bind(taken).expect_err("a plain socket refused");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);

        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = MediaSocket::bind(plain.local_addr().unwrap())
            .err()
            .expect("a port another socket holds refused");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    /// The overload control depends on the kernel's receive timestamp of every datagram.
    #[tokio::test]
    async fn a_received_datagram_says_how_long_it_waited() {
        let mut socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], socket.local_port()));
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let pause = Duration::from_millis(30);
        // Linux turns receive timestamps on for the whole stack a moment after the first socket
        // asks (a deferred static key); until then a datagram is stamped as it is read. So a few
        // rounds: each must carry a stamp, and once stamping is on one shows the wait.
        let mut waits = Vec::new();
        for _ in 0..10 {
            sender.send_to(&[0x80, 96, 0, 1], to).unwrap();
            std::thread::sleep(pause); // it waits in the socket, as behind a busy worker
            let mut got = None;
            for _ in 0..100 {
                tokio::time::timeout(Duration::from_millis(100), socket.readable())
                    .await
                    .ok();
                socket
                    .recv_batch(|d| {
                        assert_eq!(d.data, [0x80, 96, 0, 1]);
                        got = Some(d.waited);
                    })
                    .unwrap();
                if got.is_some() {
                    break;
                }
            }
            let waited = got
                .expect("the datagram arrived")
                .expect("Linux stamps received datagrams");
            assert!(waited < Duration::from_secs(5), "waited {waited:?}");
            waits.push(waited);
            if waited >= pause {
                return;
            }
        }
        panic!("no datagram showed its {pause:?} wait: {waits:?}");
    }
}
