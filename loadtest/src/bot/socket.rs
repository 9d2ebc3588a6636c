//! A bot's UDP socket: batched receive through `quinn-udp` (`recvmmsg`, and UDP GRO where the
//! kernel has it), plain `sendto` for the little a bot sends.
//!
//! GRO matters for what the load tester measures, not for the bot: a server that sends a run of
//! datagrams to one bot as one GSO buffer has, on loopback, the delivery to the bot's socket done
//! in its own system call. Without GRO on the receiving socket the kernel cuts the buffer into
//! datagrams there, on the server's CPU time; with GRO the buffer is queued whole and split here,
//! as a real network card (which segments in hardware) and a receiver across the network would
//! leave it. `--gro off` keeps the old behaviour to measure the difference.
//!
//! The receive buffers (a GRO train can be 64 KiB) are per runtime thread, not per bot: a bot
//! handles what it read before it awaits anything again.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams (or GRO trains) read per call.
const RECV_BATCH: usize = 8;
/// One receive buffer: room for a GRO train of full-size datagrams.
const RECV_BUF: usize = 64 * 1024;
/// Receive buffer without GRO: one datagram.
const RECV_BUF_NO_GRO: usize = 2048;

thread_local! {
    /// This thread's receive buffers and their metadata.
    static BUFFERS: RefCell<(Vec<Vec<u8>>, Vec<RecvMeta>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A bot's socket.
pub struct BotSocket {
    udp: UdpSocket,
    state: UdpSocketState,
    gro: bool,
}

impl BotSocket {
    /// Binds `addr`; with `gro`, asks the kernel to keep GSO trains whole for this socket.
    /// Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, gro: bool) -> io::Result<Self> {
        let std_sock = std::net::UdpSocket::bind(addr)?;
        std_sock.set_nonblocking(true)?;
        // quinn-udp turns GRO on where it can (and reports how many segments it takes).
        let state = UdpSocketState::new((&std_sock).into())?;
        let gro = gro && state.gro_segments() > 1;
        if !gro {
            set_gro(&std_sock, false);
        }
        Ok(BotSocket {
            udp: UdpSocket::from_std(std_sock)?,
            state,
            gro,
        })
    }

    /// The socket, to send on.
    pub fn udp(&self) -> &UdpSocket {
        &self.udp
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Waits until something can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.udp.readable().await
    }

    /// Reads what is waiting (one batch, without waiting) and hands each datagram, GRO trains
    /// split, to `f`. Returns the datagrams read (0 when nothing was waiting) and the messages
    /// they came in (fewer when GRO joined some).
    pub fn recv_with<E>(
        &self,
        mut f: impl FnMut(SocketAddr, &[u8]) -> Result<(), E>,
    ) -> Result<io::Result<(usize, usize)>, E> {
        let size = if self.gro { RECV_BUF } else { RECV_BUF_NO_GRO };
        BUFFERS.with(|cell| {
            // Not re-entered: `f` never reads a socket.
            let mut guard = cell.borrow_mut();
            let (bufs, meta) = &mut *guard;
            if bufs.len() < RECV_BATCH || bufs[0].len() < size {
                *bufs = (0..RECV_BATCH).map(|_| vec![0; size]).collect();
                *meta = vec![RecvMeta::default(); RECV_BATCH];
            }
            let mut slices: [IoSliceMut<'_>; RECV_BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(&mut []));
            for (s, b) in slices.iter_mut().zip(bufs.iter_mut()) {
                *s = IoSliceMut::new(&mut b[..size]);
            }
            let n = match self.udp.try_io(Interest::READABLE, || {
                self.state.recv((&self.udp).into(), &mut slices, meta)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Ok((0, 0))),
                Err(e) => return Ok(Err(e)),
            };
            let mut count = 0;
            for (m, s) in meta.iter().zip(slices.iter()).take(n) {
                let stride = m.stride.max(1);
                for seg in s[..m.len].chunks(stride) {
                    f(m.addr, seg)?;
                    count += 1;
                }
            }
            Ok(Ok((count, n)))
        })
    }
}

/// Sets `UDP_GRO` on a socket (Linux); best effort.
fn set_gro(sock: &std::net::UdpSocket, on: bool) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value: libc::c_int = i32::from(on);
        // SAFETY: a valid socket descriptor and an int option of the right size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                std::ptr::addr_of!(value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (sock, on);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` datagrams of `len` bytes from a quinn-udp socket as one GSO buffer where the
    /// kernel can (else one by one); returns whether it could.
    fn send_train(to: SocketAddr, n: usize, len: usize) -> bool {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let state = UdpSocketState::new((&sock).into()).unwrap();
        let payload: Vec<u8> = (0..n * len).map(|i| (i / len) as u8).collect();
        let segment = (state.max_gso_segments() > 1).then_some(len);
        let chunks: Vec<&[u8]> = match segment {
            Some(_) => vec![&payload[..]],
            None => payload.chunks(len).collect(),
        };
        for c in chunks {
            let t = quinn_udp::Transmit {
                destination: to,
                ecn: None,
                contents: c,
                segment_size: segment,
                src_ip: None,
            };
            state.try_send((&sock).into(), &t).unwrap();
        }
        segment.is_some()
    }

    /// The datagrams, and the messages they came in.
    async fn receive_all(sock: &BotSocket, want: usize) -> (Vec<Vec<u8>>, usize) {
        let mut got = Vec::new();
        let mut messages = 0;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < want {
            tokio::time::timeout_at(deadline, sock.readable())
                .await
                .expect("datagrams within 5 s")
                .unwrap();
            let (_, m) = sock
                .recv_with(|_, d| {
                    got.push(d.to_vec());
                    Ok::<_, ()>(())
                })
                .unwrap()
                .unwrap();
            messages += m;
        }
        (got, messages)
    }

    #[tokio::test]
    async fn a_gso_train_arrives_as_its_datagrams_with_and_without_gro() {
        for gro in [true, false] {
            let sock = BotSocket::bind("127.0.0.1:0".parse().unwrap(), gro).unwrap();
            let gso = send_train(sock.local_addr().unwrap(), 10, 1200);
            let (got, messages) = receive_all(&sock, 10).await;
            assert_eq!(got.len(), 10, "gro {gro}");
            if gso && sock.gro {
                // The train stayed whole on its way: fewer messages than datagrams.
                assert!(messages < 10, "{messages} messages with GRO");
            } else {
                assert_eq!(messages, 10, "one message per datagram without GRO");
            }
            for (i, d) in got.iter().enumerate() {
                assert_eq!(d.len(), 1200, "gro {gro}");
                assert!(
                    d.iter().all(|b| *b == i as u8),
                    "datagram {i} in order, gro {gro}"
                );
            }
        }
    }
}
