//! Linux: many messages to many destinations in one `sendmmsg` call, each message a run of
//! datagrams to one destination (a GSO train when longer than one) gathered straight from the
//! datagrams' own buffers, without copying them into one.
//!
//! A forwarding server writes most packets to many subscribers, so a turn's output is mostly
//! one or two datagrams per destination: one system call per message would pay the entry, the
//! message header copy and the socket lookup once per datagram.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

use str0m::net::Transmit;

/// Messages per call.
pub const MESSAGES: usize = 32;
/// Buffers per call: one per datagram.
pub const IOVECS: usize = 256;
/// Control space per message: a segment size and an IPv6 packet info, with their headers.
const CONTROL: usize = 64;

/// A run of datagrams `start..end` to one destination, from one source address.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
}

#[repr(C, align(8))]
struct Control([u8; CONTROL]);

/// Send each span of `transmits` as one message (its first datagram's size is the GSO segment
/// size when it holds more than one; only the last may be shorter), in one call. With
/// `pin_source` each message leaves from its first datagram's source address.
///
/// Returns how many spans the kernel took, at least one; an error is the first span's (the
/// kernel stops at the first message it refuses and reports it on the next call).
///
/// `spans` holds at most [`MESSAGES`] spans and [`IOVECS`] datagrams in all.
pub fn send(
    fd: RawFd,
    transmits: &[Transmit],
    spans: &[Span],
    pin_source: bool,
) -> io::Result<usize> {
    assert!(spans.len() <= MESSAGES, "too many messages for one call");
    let datagrams: usize = spans.iter().map(Span::len).sum();
    assert!(datagrams <= IOVECS, "too many datagrams for one call");
    // SAFETY: all-zero is a valid value of these plain C structs (null pointers, zero lengths).
    let mut headers: [libc::mmsghdr; MESSAGES] = unsafe { mem::zeroed() };
    let mut iovecs: [libc::iovec; IOVECS] = unsafe { mem::zeroed() };
    let mut names: [libc::sockaddr_in6; MESSAGES] = unsafe { mem::zeroed() };
    let mut controls: [Control; MESSAGES] = [const { Control([0; CONTROL]) }; MESSAGES];

    let mut next_iovec = 0;
    for (k, span) in spans.iter().enumerate() {
        let first_iovec = next_iovec;
        for t in &transmits[span.start..span.end] {
            iovecs[next_iovec] = libc::iovec {
                // The kernel only reads through it.
                iov_base: t.contents.as_ptr() as *mut libc::c_void,
                iov_len: t.contents.len(),
            };
            next_iovec += 1;
        }
        let first = &transmits[span.start];
        let name_len = write_name(&mut names[k], first.destination);
        let mut control_len = 0;
        let control = &mut controls[k].0;
        if span.len() > 1 {
            let size = first.contents.len() as u16;
            push_cmsg(
                control,
                &mut control_len,
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                size,
            );
        }
        if pin_source {
            match first.source.ip() {
                IpAddr::V4(ip) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: u32::from_ne_bytes(ip.octets()),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    push_cmsg(
                        control,
                        &mut control_len,
                        libc::IPPROTO_IP,
                        libc::IP_PKTINFO,
                        info,
                    );
                }
                IpAddr::V6(ip) => {
                    let info = libc::in6_pktinfo {
                        ipi6_ifindex: 0,
                        ipi6_addr: libc::in6_addr {
                            s6_addr: ip.octets(),
                        },
                    };
                    let (level, kind) = (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO);
                    push_cmsg(control, &mut control_len, level, kind, info);
                }
            }
        }
        let h = &mut headers[k].msg_hdr;
        h.msg_name = (&mut names[k] as *mut libc::sockaddr_in6).cast();
        h.msg_namelen = name_len;
        h.msg_iov = iovecs[first_iovec..].as_mut_ptr();
        h.msg_iovlen = span.len() as _;
        if control_len > 0 {
            h.msg_control = control.as_mut_ptr().cast();
            h.msg_controllen = control_len as _;
        }
    }
    loop {
        // SAFETY: every header points into the arrays above, alive and unmoved for the call,
        // and at buffers of `transmits`, which the call only reads.
        let n = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), spans.len() as _, 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Write `addr` as a C socket address into `name` (large enough for either family); returns
/// its length.
fn write_name(name: &mut libc::sockaddr_in6, addr: SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a sockaddr_in is smaller than a sockaddr_in6 and needs less alignment.
            unsafe { std::ptr::write((name as *mut libc::sockaddr_in6).cast(), v4) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            *name = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Append one control message carrying `value` at `*len` in `buf`.
fn push_cmsg<T: Copy>(buf: &mut [u8; CONTROL], len: &mut usize, level: i32, kind: i32, value: T) {
    let size = mem::size_of::<T>() as libc::c_uint;
    // SAFETY: pure arithmetic on sizes.
    let (cmsg_len, space, data_at) = unsafe {
        (
            libc::CMSG_LEN(size),
            libc::CMSG_SPACE(size),
            libc::CMSG_LEN(0),
        )
    };
    assert!(*len + space as usize <= CONTROL, "control space");
    let header = libc::cmsghdr {
        cmsg_len: cmsg_len as _,
        cmsg_level: level,
        cmsg_type: kind,
    };
    // SAFETY: both writes stay inside `buf` (checked above); unaligned writes need no alignment.
    unsafe {
        let at = buf.as_mut_ptr().add(*len);
        std::ptr::write_unaligned(at.cast::<libc::cmsghdr>(), header);
        std::ptr::write_unaligned(at.add(data_at as usize).cast::<T>(), value);
    }
    *len += space as usize;
}
