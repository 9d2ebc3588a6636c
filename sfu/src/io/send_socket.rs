//! Linux: the socket a worker sends from, beside the one it receives on.

use std::io;
use std::net::SocketAddr;

use quinn_udp::UdpSocketState;
use tokio::io::Interest;

use super::udp::{new_socket, SOCKET_BUFFER};

/// The socket a worker sends from (Linux): a second UDP socket bound to the receiving socket's
/// address and port (`SO_REUSEPORT`), the pair's incoming datagrams all steered to the
/// receiving one by a one-instruction classic BPF program on the port's group.
///
/// The kernel calls a socket's write-space callback each time one of its sent buffers is freed
/// (on loopback as it is delivered, on a NIC at transmit completion), and while the socket is
/// registered with epoll that callback takes the socket's wait-queue lock with interrupts off
/// and queues a writable event for the next `epoll_wait`: once per buffer sent, for a writer
/// that almost never waits. This socket is registered only while a send waits for room in its
/// buffer, so the callback finds no one to wake.
pub(super) struct SendSocket {
    pub(super) socket: std::net::UdpSocket,
}

impl SendSocket {
    /// Steers the port's incoming datagrams to `receiver` and binds a send socket beside it.
    pub(super) fn join(receiver: &std::net::UdpSocket, local: SocketAddr) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        // `ret #0`: every datagram to the group goes to its first member, the receiver.
        let mut code = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: code.len() as u16,
            filter: code.as_mut_ptr(),
        };
        // SAFETY: a valid program of one instruction, and its size; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                receiver.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_CBPF,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = new_socket(local)?;
        sock.set_reuse_port(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&local.into())?;
        let socket: std::net::UdpSocket = sock.into();
        // The receiver's options for what leaves (path MTU discovery and the like).
        let state = UdpSocketState::new((&socket).into())?;
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
        Ok(SendSocket { socket })
    }

    /// Wait until the socket's buffer has room: registered with the runtime for as long as
    /// that takes.
    pub(super) async fn writable(&self) -> io::Result<()> {
        use std::os::fd::AsFd;
        // SAFETY: the registration borrows the socket, which stays open while it lives.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                self.socket.as_fd(),
                Interest::WRITABLE,
            )
        }?;
        // Registered after the refusal: room made since then is seen at once.
        let mut guard = fd.writable().await?;
        guard.retain_ready();
        Ok(())
    }
}
