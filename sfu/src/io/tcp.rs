//! ICE over TCP (RFC 6544) with RFC 4571 framing: each packet is preceded by its length as a
//! 16-bit big-endian number. Clients whose UDP is blocked connect to the worker's passive TCP
//! candidate; their STUN, DTLS, RTP and RTCP then flow over that one connection.
//!
//! A connection must belong to a participant: the worker marks it [claimed](TcpMedia::set_claimed)
//! while the engine knows its address, which happens only after a STUN request signed with that
//! participant's ICE password. A connection that is not claimed for [`CLAIM_TIMEOUT`] (since it
//! opened, or since its participant left) is closed whatever it sends, and one remote IP may hold
//! at most [`MAX_CONNECTIONS_PER_IP`] connections.
//!
//! Each connection has a reader task (frames go to the worker through one bounded queue, so a
//! fast sender is slowed down by TCP itself rather than growing memory) and a writer task fed by a
//! bounded queue (a frame for a connection that cannot keep up is dropped, as a congested UDP path
//! would drop it; the congestion controller then backs off).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::debug;

/// Connections one worker accepts at most.
pub const MAX_CONNECTIONS: usize = 4096;
/// Frames waiting to be written per connection.
const WRITE_QUEUE: usize = 512;
/// Frames read from all connections waiting for the worker.
const READ_QUEUE: usize = 1024;
/// Connections one remote IP may hold at a worker. A client uses one per candidate pair it tries.
pub const MAX_CONNECTIONS_PER_IP: usize = 16;
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// A connection that belongs to no participant for this long is closed.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened on the TCP side.
pub enum TcpEvent {
    /// A packet from `source`, sent to our `local` address.
    Packet {
        /// The remote address.
        source: SocketAddr,
        /// Our address on that connection.
        local: SocketAddr,
        /// The packet.
        data: Vec<u8>,
    },
    /// A connection closed.
    Closed(SocketAddr),
}

enum Inbound {
    Packet(SocketAddr, SocketAddr, Vec<u8>),
    Closed(SocketAddr),
}

/// The passive ICE-TCP side of one worker.
pub struct TcpMedia {
    listener: TcpListener,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound_rx: mpsc::Receiver<Inbound>,
    conns: HashMap<SocketAddr, Conn>,
    /// Open connections per remote IP.
    per_ip: HashMap<IpAddr, usize>,
    /// Frames dropped because a connection's write queue was full or it was gone.
    pub dropped: u64,
    /// Connections refused at accept (over a cap).
    pub refused: u64,
}

/// One open connection, as the worker sees it.
struct Conn {
    writer: mpsc::Sender<Vec<u8>>,
    /// Set while a participant owns the connection's address; its reader closes it otherwise.
    claimed: Arc<AtomicBool>,
}

impl TcpMedia {
    /// Listen on `addr`. Must be called inside a tokio runtime.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let (inbound_tx, inbound_rx) = mpsc::channel(READ_QUEUE);
        Ok(TcpMedia {
            listener,
            inbound_tx,
            inbound_rx,
            conns: HashMap::new(),
            per_ip: HashMap::new(),
            dropped: 0,
            refused: 0,
        })
    }

    /// The port listened on.
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    /// The next packet or closed connection. Accepts new connections meanwhile. Cancel-safe.
    pub async fn next(&mut self) -> TcpEvent {
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, remote)) => self.start(stream, remote),
                    Err(e) => {
                        debug!("tcp accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(inbound) = self.inbound_rx.recv() => match inbound {
                    Inbound::Packet(source, local, data) => {
                        return TcpEvent::Packet { source, local, data };
                    }
                    Inbound::Closed(remote) => {
                        if self.conns.remove(&remote).is_some() {
                            if let Some(n) = self.per_ip.get_mut(&remote.ip()) {
                                *n -= 1;
                                if *n == 0 {
                                    self.per_ip.remove(&remote.ip());
                                }
                            }
                        }
                        return TcpEvent::Closed(remote);
                    }
                },
            }
        }
    }

    /// Whether a participant owns the connection from `remote` now. Cheap when unchanged.
    pub fn set_claimed(&self, remote: SocketAddr, claimed: bool) {
        if let Some(c) = self.conns.get(&remote) {
            if c.claimed.load(Ordering::Relaxed) != claimed {
                c.claimed.store(claimed, Ordering::Relaxed);
            }
        }
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Queue `data` for the connection from `destination`, framed. Never waits.
    pub fn send(&mut self, destination: SocketAddr, data: &[u8]) {
        let Ok(len) = u16::try_from(data.len()) else {
            self.dropped += 1;
            return;
        };
        let Some(tx) = self.conns.get(&destination).map(|c| &c.writer) else {
            self.dropped += 1;
            return;
        };
        let mut frame = Vec::with_capacity(2 + data.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(data);
        if tx.try_send(frame).is_err() {
            self.dropped += 1;
        }
    }

    fn start(&mut self, stream: TcpStream, remote: SocketAddr) {
        let from_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
        if self.conns.len() >= MAX_CONNECTIONS || from_ip >= MAX_CONNECTIONS_PER_IP {
            self.refused += 1;
            debug!(%remote, "tcp: over the connection limit");
            return;
        }
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let (reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let claimed = Arc::new(AtomicBool::new(false));
        self.conns.insert(
            remote,
            Conn {
                writer: tx,
                claimed: Arc::clone(&claimed),
            },
        );
        *self.per_ip.entry(remote.ip()).or_default() += 1;
        let inbound = self.inbound_tx.clone();
        tokio::spawn(async move {
            read_frames(reader, remote, local, claimed, &inbound).await;
            let _ = inbound.send(Inbound::Closed(remote)).await;
        });
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Reads frames until the connection fails, goes idle, or stays unclaimed for
/// [`CLAIM_TIMEOUT`]. The buffer grows to the largest frame seen, not to the largest possible.
async fn read_frames(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    remote: SocketAddr,
    local: SocketAddr,
    claimed: Arc<AtomicBool>,
    inbound: &mpsc::Sender<Inbound>,
) {
    let mut buf = Vec::new();
    let mut unclaimed_since = Some(tokio::time::Instant::now());
    loop {
        let now = tokio::time::Instant::now();
        if claimed.load(Ordering::Relaxed) {
            unclaimed_since = None;
        } else if unclaimed_since.is_none() {
            unclaimed_since = Some(now);
        }
        let limit = match unclaimed_since {
            Some(since) => match (since + CLAIM_TIMEOUT).checked_duration_since(now) {
                Some(left) if !left.is_zero() => left.min(IDLE),
                _ => {
                    debug!(%remote, "tcp: no participant owns this connection; closing");
                    return;
                }
            },
            None => IDLE,
        };
        let read = async {
            let len = reader.read_u16().await? as usize;
            buf.resize(len, 0);
            reader.read_exact(&mut buf[..len]).await?;
            io::Result::Ok(len)
        };
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(len)) => {
                let packet = Inbound::Packet(remote, local, buf[..len].to_vec());
                if inbound.send(packet).await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_go_both_ways_and_closing_is_reported() {
        let mut media = TcpMedia::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = media.local_port().unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let me = client.local_addr().unwrap();
        client
            .write_all(&[0, 3, 1, 2, 3, 0, 0, 0, 1, 9])
            .await
            .unwrap();
        let wait = Duration::from_secs(5);
        for want in [vec![1u8, 2, 3], vec![], vec![9]] {
            match tokio::time::timeout(wait, media.next()).await.unwrap() {
                TcpEvent::Packet { source, data, .. } => {
                    assert_eq!(source, me);
                    assert_eq!(data, want);
                }
                TcpEvent::Closed(_) => panic!("closed too early"),
            }
        }
        media.send(me, &[7, 7]);
        let mut back = [0u8; 4];
        tokio::time::timeout(wait, client.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, [0, 2, 7, 7]);
        // Sending to nobody counts a drop and does nothing else.
        media.send("127.0.0.1:9".parse().unwrap(), &[1]);
        assert_eq!(media.dropped, 1);
        drop(client);
        match tokio::time::timeout(wait, media.next()).await.unwrap() {
            TcpEvent::Closed(a) => assert_eq!(a, me),
            TcpEvent::Packet { .. } => panic!("no more packets"),
        }
    }

    /// Sends an empty frame every second (virtual time) for `secs` seconds, or until the
    /// server closes; returns whether it closed.
    async fn drip(client: &mut TcpStream, secs: u32) -> bool {
        for _ in 0..secs {
            if client.write_all(&[0, 0]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        false
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_no_participant_owns_is_closed_however_much_it_sends() {
        let mut media = TcpMedia::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = media.local_port().unwrap();
        let mut stranger = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut owned = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (s, o) = (stranger.local_addr().unwrap(), owned.local_addr().unwrap());
        let started = tokio::time::Instant::now();
        let worker = async {
            let mut closed = Vec::new();
            for _ in 0..200 {
                match media.next().await {
                    // The worker's engine knows `owned` (it sent a signed STUN request).
                    TcpEvent::Packet { source, .. } => media.set_claimed(source, source == o),
                    TcpEvent::Closed(a) => {
                        closed.push(a);
                        if a == s {
                            break;
                        }
                    }
                }
            }
            (closed, started.elapsed())
        };
        let clients = async { tokio::join!(drip(&mut stranger, 30), drip(&mut owned, 30)) };
        let ((closed, after), (stranger_closed, owned_closed)) = tokio::join!(worker, clients);
        assert_eq!(closed, vec![s], "only the stranger is closed");
        assert!(stranger_closed && !owned_closed);
        assert!(
            after >= CLAIM_TIMEOUT && after < CLAIM_TIMEOUT + Duration::from_secs(3),
            "{after:?}"
        );
        assert_eq!(media.connection_count(), 1);
    }

    #[tokio::test]
    async fn one_address_holds_a_bounded_number_of_connections() {
        let mut media = TcpMedia::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = media.local_port().unwrap();
        let mut clients = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_IP + 1 {
            clients.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        // Let the listener accept them all; nothing is sent, so `next` never returns.
        let _ = tokio::time::timeout(Duration::from_millis(500), media.next()).await;
        assert_eq!(media.connection_count(), MAX_CONNECTIONS_PER_IP);
        assert_eq!(media.refused, 1);
        // The refused one was closed: reading it ends at once.
        let mut last = clients.pop().unwrap();
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), last.read(&mut b))
            .await
            .expect("closed, not left hanging");
        assert!(matches!(n, Ok(0) | Err(_)));
    }
}
