//! ICE over TCP (RFC 6544) with RFC 4571 framing: each packet is preceded by its length as a
//! 16-bit big-endian number. Clients whose UDP is blocked connect to the worker's passive TCP
//! candidate; their STUN, DTLS, RTP and RTCP then flow over that one connection.
//!
//! Each connection has a reader task (frames go to the worker through one bounded queue, so a
//! fast sender is slowed down by TCP itself rather than growing memory) and a writer task fed by a
//! bounded queue (a frame for a connection that cannot keep up is dropped, as a congested UDP path
//! would drop it; the congestion controller then backs off).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
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
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);

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
    writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    /// Frames dropped because a connection's write queue was full or it was gone.
    pub dropped: u64,
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
            writers: HashMap::new(),
            dropped: 0,
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
                        self.writers.remove(&remote);
                        return TcpEvent::Closed(remote);
                    }
                },
            }
        }
    }

    /// Queue `data` for the connection from `destination`, framed. Never waits.
    pub fn send(&mut self, destination: SocketAddr, data: &[u8]) {
        let Ok(len) = u16::try_from(data.len()) else {
            self.dropped += 1;
            return;
        };
        let Some(tx) = self.writers.get(&destination) else {
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
        if self.writers.len() >= MAX_CONNECTIONS {
            debug!(%remote, "tcp: too many connections");
            return;
        }
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        self.writers.insert(remote, tx);
        let inbound = self.inbound_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; u16::MAX as usize];
            loop {
                let read = async {
                    let len = reader.read_u16().await? as usize;
                    reader.read_exact(&mut buf[..len]).await?;
                    io::Result::Ok(len)
                };
                match tokio::time::timeout(IDLE, read).await {
                    Ok(Ok(len)) => {
                        let packet = Inbound::Packet(remote, local, buf[..len].to_vec());
                        if inbound.send(packet).await.is_err() {
                            return;
                        }
                    }
                    _ => break,
                }
            }
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
}
