//! `sendfloor`: the least a forwarding server's output can cost on this machine.
//!
//! It sends what a forwarding scenario sends and does nothing else. Each `--pattern` is a burst,
//! repeated at its rate, of datagrams of one size to each of a number of receiving sockets; each
//! datagram is sealed with AES-256-GCM over an RTP header as SRTP seals it and handed to the
//! kernel with `sendmmsg` (at most 32 messages a call, a burst's datagrams to one destination as
//! one GSO message, as the server sends them). Between bursts the sender sleeps, as a server does
//! between its inputs. The receivers are sockets of this process, read on another core.
//!
//! It prints the sending thread's CPU time per datagram: what the kernel (on loopback including
//! the delivery to the receivers, as for the server) and the cipher charge for that output, with
//! no WebRTC stack, pacer, estimator, receive path or fan-out. `loadtest/scripts/floor.sh` runs it
//! for the patterns of the benchmark's scenarios; docs/benchmarks.md compares the two.

use std::io;
use std::mem;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use clap::Parser;

/// Messages per `sendmmsg` call, as the server's send path.
const MESSAGES: usize = 32;
/// An RTP header without CSRCs.
const RTP_HEADER: usize = 12;
/// The AES-GCM tag SRTP appends.
const TAG: usize = 16;
/// Largest datagram sent (a GSO run's segments must fit a 64 KiB buffer).
const MAX_SIZE: usize = 1400;
/// Most datagrams to one destination in a burst.
const MAX_PER_DESTINATION: usize = 32;
/// Most receiving sockets.
const MAX_DESTINATIONS: usize = 1000;
/// Most patterns.
const MAX_PATTERNS: usize = 8;
/// Socket buffers, as the server's.
const SOCKET_BUFFER: libc::c_int = 4 * 1024 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "sendfloor",
    version,
    about = "What the kernel and the cipher alone cost for a forwarding pattern's output"
)]
struct Args {
    /// A burst `DESTINATIONSxDATAGRAMSxBYTES@RATE`: DATAGRAMS datagrams of BYTES bytes (RTP
    /// header, payload and tag) to each of the first DESTINATIONS receivers, RATE times a second.
    /// Repeat for a mix (audio and video to the same viewers); the receivers are as many as the
    /// largest pattern's destinations.
    #[arg(long = "pattern", default_value = "69x1x120@500")]
    patterns: Vec<Pattern>,
    /// Send each datagram as its own message, without GSO.
    #[arg(long)]
    no_gso: bool,
    /// Leave the datagrams unsealed, to show the cipher's share.
    #[arg(long)]
    no_seal: bool,
    /// Measured time, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time sent before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Core of the sending thread (none: not pinned).
    #[arg(long)]
    sender_cpu: Option<usize>,
    /// Core of the receiving thread (none: not pinned).
    #[arg(long)]
    receiver_cpu: Option<usize>,
    /// How the receivers wait: `spin` reads the sockets in a loop and never sleeps, so no
    /// datagram has anyone to wake (the floor); `wake` waits in epoll as a bot's runtime does, so
    /// a datagram that finds the receiving thread asleep wakes it, in the sender's time.
    #[arg(long, value_enum, default_value_t = Receivers::Spin)]
    receivers: Receivers,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Receivers {
    Spin,
    Wake,
}

/// One repeated burst.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pattern {
    destinations: usize,
    per_destination: usize,
    size: usize,
    rate: f64,
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("{s:?} is not DESTINATIONSxDATAGRAMSxBYTES@RATE, as 69x1x120@500");
        let (counts, rate) = s.split_once('@').ok_or_else(usage)?;
        let counts: Vec<usize> = counts
            .split('x')
            .map(|n| n.parse().map_err(|_| usage()))
            .collect::<Result<_, _>>()?;
        let [destinations, per_destination, size] = counts[..] else {
            return Err(usage());
        };
        let rate: f64 = rate.parse().map_err(|_| usage())?;
        if !(1..=MAX_DESTINATIONS).contains(&destinations) {
            return Err(format!("destinations must be 1 to {MAX_DESTINATIONS}"));
        }
        if !(1..=MAX_PER_DESTINATION).contains(&per_destination) {
            return Err(format!("datagrams must be 1 to {MAX_PER_DESTINATION}"));
        }
        if !(RTP_HEADER + TAG..=MAX_SIZE).contains(&size) {
            return Err(format!("bytes must be {} to {MAX_SIZE}", RTP_HEADER + TAG));
        }
        if !(rate > 0.0 && rate <= 100_000.0) {
            return Err("the rate must be above 0 and at most 100000".into());
        }
        Ok(Pattern {
            destinations,
            per_destination,
            size,
            rate,
        })
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("sendfloor: {e}");
        std::process::exit(2);
    }
}

fn run(args: &Args) -> io::Result<()> {
    if args.patterns.len() > MAX_PATTERNS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_PATTERNS} patterns"),
        ));
    }
    let receivers = args.patterns.iter().map(|p| p.destinations).max();
    let received = Arc::new(AtomicU64::new(0));
    let destinations = start_receivers(args, receivers.unwrap_or(1), received.clone())?;
    if let Some(cpu) = args.sender_cpu {
        pin(cpu)?;
    }
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    set_int(&socket, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER)?;
    let key = (!args.no_seal).then(|| {
        let unbound = UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("a 32-byte key");
        LessSafeKey::new(unbound)
    });
    let mut senders: Vec<Sender> = args
        .patterns
        .iter()
        .map(|p| Sender::new(p, &destinations, !args.no_gso))
        .collect();

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut next: Vec<Instant> = vec![start; senders.len()];
    let mut window: Option<(Instant, Duration, Totals, u64)> = None;
    loop {
        let (i, at) = next
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(_, t)| t)
            .expect("at least one pattern");
        let now = Instant::now();
        // A sender that cannot keep up stops at the end too; the rate it reached is printed.
        if at >= end || now >= end {
            break;
        }
        if at > now {
            std::thread::sleep(at - now);
        }
        if window.is_none() && at >= measure_from {
            let bytes = received.load(Ordering::Relaxed);
            window = Some((Instant::now(), thread_cpu(), totals(&senders), bytes));
        }
        senders[i].burst(&socket, key.as_ref())?;
        next[i] += Duration::from_secs_f64(1.0 / args.patterns[i].rate);
    }
    let Some((at, cpu0, sent0, bytes0)) = window else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no burst fell in the measured window: make --duration longer",
        ));
    };
    let (cpu, wall) = (thread_cpu() - cpu0, at.elapsed());
    let sent = totals(&senders) - sent0;
    // Let the receivers take what is still queued for them.
    std::thread::sleep(Duration::from_millis(200));
    let got = received.load(Ordering::Relaxed) - bytes0;
    for (p, s) in args.patterns.iter().zip(&senders) {
        println!(
            "{} destinations x {} datagrams of {} bytes, {} bursts/s, {}",
            p.destinations,
            p.per_destination,
            p.size,
            p.rate,
            if s.gso {
                "GSO"
            } else {
                "a message per datagram"
            },
        );
    }
    println!(
        "sent {} datagrams in {:.1} s ({:.0}/s, {}), received {:.1} % of the bytes, sender CPU {:.1} % of a core",
        sent.datagrams,
        wall.as_secs_f64(),
        sent.datagrams as f64 / wall.as_secs_f64(),
        if args.no_seal { "unsealed" } else { "sealed" },
        got as f64 * 100.0 / sent.bytes.max(1) as f64,
        cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
    );
    let per = cpu.as_secs_f64() * 1e6 / sent.datagrams.max(1) as f64;
    println!("us_per_datagram {per:.3}");
    Ok(())
}

/// Datagrams and bytes sent.
#[derive(Clone, Copy, Default, Debug)]
struct Totals {
    datagrams: u64,
    bytes: u64,
}

impl std::ops::Sub for Totals {
    type Output = Totals;
    fn sub(self, o: Totals) -> Totals {
        Totals {
            datagrams: self.datagrams - o.datagrams,
            bytes: self.bytes - o.bytes,
        }
    }
}

fn totals(senders: &[Sender]) -> Totals {
    senders.iter().fold(Totals::default(), |t, s| Totals {
        datagrams: t.datagrams + s.sent.datagrams,
        bytes: t.bytes + s.sent.bytes,
    })
}

/// One pattern's datagrams, sealed again before each send, and the messages that carry them.
struct Sender {
    /// `destinations × per_destination` datagrams, destination-major.
    datagrams: Vec<Vec<u8>>,
    names: Vec<libc::sockaddr_in>,
    per_destination: usize,
    gso: bool,
    seq: u16,
    sent: Totals,
}

impl Sender {
    fn new(pattern: &Pattern, destinations: &[SocketAddrV4], gso: bool) -> Self {
        let per = pattern.per_destination;
        let datagrams = (0..pattern.destinations * per)
            .map(|i| {
                let mut d = vec![0u8; pattern.size];
                d[0] = 0x80;
                d[1] = 111;
                d[8..12].copy_from_slice(&((i / per) as u32).to_be_bytes());
                d
            })
            .collect();
        let names = destinations[..pattern.destinations]
            .iter()
            .map(|a| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            })
            .collect();
        Sender {
            datagrams,
            names,
            per_destination: per,
            gso: gso && per > 1,
            seq: 0,
            sent: Totals::default(),
        }
    }

    /// Seals every datagram (a fresh sequence number each) and sends them all.
    fn burst(&mut self, socket: &UdpSocket, key: Option<&LessSafeKey>) -> io::Result<()> {
        for d in &mut self.datagrams {
            self.seq = self.seq.wrapping_add(1);
            d[2..4].copy_from_slice(&self.seq.to_be_bytes());
            if let Some(key) = key {
                let mut nonce = [0u8; 12];
                nonce[2..6].copy_from_slice(&d[8..12]);
                nonce[10..12].copy_from_slice(&self.seq.to_be_bytes());
                let (header, rest) = d.split_at_mut(RTP_HEADER);
                let (payload, tag_out) = rest.split_at_mut(rest.len() - TAG);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&*header),
                        payload,
                    )
                    .map_err(|_| io::Error::other("sealing failed"))?;
                tag_out.copy_from_slice(tag.as_ref());
            }
        }
        // One message per destination with GSO, else one per datagram.
        let per_message = if self.gso { self.per_destination } else { 1 };
        let messages = self.datagrams.len() / per_message;
        let size = self.datagrams[0].len() as u64;
        let mut first = 0;
        while first < messages {
            let n = (messages - first).min(MESSAGES);
            let sent = self.send(socket, first, n, per_message)?;
            self.sent.datagrams += (sent * per_message) as u64;
            self.sent.bytes += (sent * per_message) as u64 * size;
            first += sent;
        }
        Ok(())
    }

    /// Sends messages `first..first + n` in one call; returns how many the kernel took.
    fn send(
        &self,
        socket: &UdpSocket,
        first: usize,
        n: usize,
        per_message: usize,
    ) -> io::Result<usize> {
        // SAFETY: all-zero is a valid value of these plain C structs (null pointers, zero sizes).
        let mut headers: [libc::mmsghdr; MESSAGES] = unsafe { mem::zeroed() };
        let mut iovecs: [libc::iovec; MESSAGES * MAX_PER_DESTINATION] = unsafe { mem::zeroed() };
        let mut controls = [[0u64; 4]; MESSAGES];
        let datagrams = &self.datagrams[first * per_message..(first + n) * per_message];
        for (iovec, d) in iovecs.iter_mut().zip(datagrams) {
            *iovec = libc::iovec {
                // The kernel only reads through it.
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
        }
        let iov = iovecs.as_mut_ptr();
        for k in 0..n {
            let m = first + k;
            let h = &mut headers[k].msg_hdr;
            let destination = m * per_message / self.per_destination;
            h.msg_name = (&self.names[destination] as *const libc::sockaddr_in)
                .cast_mut()
                .cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: k * per_message + per_message <= n * per_message, within the array.
            h.msg_iov = unsafe { iov.add(k * per_message) };
            h.msg_iovlen = per_message;
            if per_message > 1 {
                let control = &mut controls[k];
                // SAFETY: the buffer holds one cmsg with a u16 (8-byte aligned, 32 bytes); the
                // CMSG macros stay within the length given in the header.
                unsafe {
                    h.msg_control = control.as_mut_ptr().cast();
                    h.msg_controllen = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize;
                    let size = self.datagrams[0].len() as u16;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
                }
            }
        }
        loop {
            // SAFETY: `n` headers, each pointing at live iovecs, names and controls above.
            let r =
                unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), n as u32, 0) };
            if r > 0 {
                return Ok(r as usize);
            }
            if r == 0 {
                return Err(io::Error::other("sendmmsg took no message"));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Binds the receiving sockets and reads them on a thread of their own, counting the bytes that
/// arrive.
fn start_receivers(
    args: &Args,
    count: usize,
    received: Arc<AtomicU64>,
) -> io::Result<Vec<SocketAddrV4>> {
    let mut sockets = Vec::with_capacity(count);
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        set_int(&s, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER)?;
        // As the bots: a GSO run arrives whole, as a network card would hand it on.
        set_int(&s, libc::SOL_UDP, libc::UDP_GRO, 1)?;
        s.set_nonblocking(true)?;
        match s.local_addr()? {
            SocketAddr::V4(a) => addrs.push(a),
            SocketAddr::V6(_) => return Err(io::Error::other("an IPv6 receiver")),
        }
        sockets.push(s);
    }
    let (cpu, mode) = (args.receiver_cpu, args.receivers);
    std::thread::Builder::new()
        .name("receivers".into())
        .spawn(move || {
            if let Some(cpu) = cpu {
                if let Err(e) = pin(cpu) {
                    eprintln!("sendfloor: receivers not pinned: {e}");
                }
            }
            match mode {
                Receivers::Spin => spin(&sockets, &received),
                Receivers::Wake => wait(sockets, received),
            }
        })?;
    Ok(addrs)
}

/// Reads every socket in turn until the process ends, never sleeping.
fn spin(sockets: &[UdpSocket], received: &AtomicU64) {
    let mut buf = vec![0u8; 65536];
    loop {
        let mut any = false;
        for s in sockets {
            while let Ok(n) = s.recv(&mut buf) {
                received.fetch_add(n as u64, Ordering::Relaxed);
                any = true;
            }
        }
        if !any {
            std::hint::spin_loop();
        }
    }
}

/// Reads the sockets from a single-threaded runtime, as a bot's, until the process ends.
fn wait(sockets: Vec<UdpSocket>, received: Arc<AtomicU64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(sockets.len());
        for s in sockets {
            let s = tokio::net::UdpSocket::from_std(s).expect("a tokio socket");
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.recv(&mut buf).await {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn set_int(
    socket: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid socket and a pointer to an int with its size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling thread to one core.
fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it for cpu < CPU_SETSIZE.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no core {cpu}"),
            ));
        }
        let mut set: libc::cpu_set_t = mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPU time of the calling thread (user and system, softirqs run in its context included).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
