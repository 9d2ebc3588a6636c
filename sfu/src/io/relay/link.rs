//! One relay connection: a str0m connection with two data channels (events, reliable and
//! ordered; media and NACKs, unordered and never retransmitted by SCTP, repaired by
//! `core::shard_repair`), and the pairs of workers of its two nodes it joins.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Outgoing, Relay, Route, LABEL, MEDIA_LABEL, RELAY_MTU};
use crate::core::shard::Relayed;
use crate::core::shard_repair::{RepairReceiver, RepairSender, MAX_MISSING};
use crate::core::{shard_wire, ShardId, ShardMessage};
use crate::io::handle::Command;

/// Messages a link queues from the local workers before it drops them.
const LINK_QUEUE: usize = 4096;
/// How often a link checks which local workers hold its room.
const LINK_TICK: Duration = Duration::from_millis(100);
/// A link that is not connected after this long is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A link that hears nothing for this long is dead (the other end sends something every
/// [`KEEPALIVE`] at least).
const SILENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// A link with nothing else to send sends an empty frame this often.
const KEEPALIVE: Duration = Duration::from_millis(500);
/// Bytes of packets a media frame gathers: a frame fits one datagram of [`RELAY_MTU`] (less
/// str0m's allowances for DTLS (48 bytes) and SCTP (40) and the frame's header), so that losing
/// one datagram loses one frame, and a repeat needs one datagram to arrive. A larger packet goes
/// alone.
const FRAME_BYTES: usize = RELAY_MTU - 48 - 40 - FRAME_HEADER;
/// Kind, number, sending and receiving worker, the `Media` message's tag and count.
const FRAME_HEADER: usize = 1 + 4 + 2 + 2 + 3;
/// Bytes a link's media channel may have queued before media for it is dropped.
const MAX_BUFFERED: usize = 2 * 1024 * 1024;
/// Bytes of sent media frames a link keeps to send again when the other end asks.
const MAX_KEPT: usize = 2 * 1024 * 1024;

/// The most workers the other node may say hold a room (each becomes a shard id here, linked
/// with every local worker of the room); a longer list is a malformed frame.
const MAX_REMOTE_WORKERS: usize = 256;
/// Frame kinds on the data channel.
const FRAME_WORKERS: u8 = 0;
const FRAME_SHARD: u8 = 1;
const FRAME_KEEPALIVE: u8 = 2;
/// A numbered media frame: `u32` number, sending and receiving worker, the `Media` message.
const FRAME_MEDIA: u8 = 3;
/// The numbers of media frames the sender of this frame asks for again (`u32` each).
const FRAME_NACK: u8 = 4;

/// One relay connection: a str0m connection with one data channel, its UDP socket, and the
/// pairs of workers it joins.
pub(super) struct Link {
    relay: Arc<Relay>,
    room: String,
    node: String,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    closed: Arc<AtomicBool>,
    serial: u64,
    /// The local workers' queue into the link.
    tx: mpsc::Sender<Outgoing>,
    rx: mpsc::Receiver<Outgoing>,
    /// The reliable, ordered channel: workers, events, feedback, keepalives.
    channel: Option<ChannelId>,
    /// The unordered channel without retransmission: media frames and NACKs.
    media: Option<ChannelId>,
    /// Numbers media frames and keeps them for a repeat.
    sender: RepairSender,
    /// Which media frames arrived and which to ask for.
    receiver: RepairReceiver,
    /// Local workers holding the room, as last told to the other end.
    local_workers: Vec<u16>,
    /// The other node's workers holding the room -> the shard id they have here.
    remote_workers: Vec<(u16, ShardId)>,
    started: Instant,
    last_heard: Instant,
    connected: bool,
    /// When the link last wrote a frame.
    last_sent: Instant,
    /// An event could not be written: the link ends.
    failed: bool,
    /// `sfu_relay_packets_total`, looked up once.
    packets_in: metrics::Counter,
    packets_out: metrics::Counter,
    buf: Vec<u8>,
    nacks: Vec<u32>,
}

/// What a link starts from.
pub(super) struct LinkSpec {
    pub(super) room: String,
    pub(super) node: String,
    pub(super) rtc: Rtc,
    /// Taken when the link starts on its thread.
    pub(super) socket: Option<std::net::UdpSocket>,
    pub(super) local: SocketAddr,
    pub(super) closed: Arc<AtomicBool>,
    pub(super) serial: u64,
}

impl Link {
    pub(super) fn new(relay: &Arc<Relay>, spec: LinkSpec, socket: UdpSocket) -> Link {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let now = Instant::now();
        Link {
            relay: Arc::clone(relay),
            room: spec.room,
            node: spec.node,
            rtc: spec.rtc,
            socket,
            local: spec.local,
            closed: spec.closed,
            serial: spec.serial,
            tx,
            rx,
            channel: None,
            media: None,
            sender: RepairSender::new(MAX_KEPT),
            receiver: RepairReceiver::default(),
            local_workers: Vec::new(),
            remote_workers: Vec::new(),
            started: now,
            last_heard: now,
            connected: false,
            last_sent: now,
            failed: false,
            packets_in: metrics::counter!("sfu_relay_packets_total", "direction" => "in"),
            packets_out: metrics::counter!("sfu_relay_packets_total", "direction" => "out"),
            buf: Vec::with_capacity(16 * 1024),
            nacks: Vec::new(),
        }
    }

    pub(super) async fn run(mut self) {
        let why = self.serve().await;
        info!(room = %self.room, node = %self.node, "relay closed: {why}");
        self.unlink_all();
        self.relay.forget(&self.room, &self.node, self.serial);
    }

    async fn serve(&mut self) -> String {
        let mut datagram = vec![0u8; 2048];
        let mut tick = tokio::time::interval(LINK_TICK);
        loop {
            let deadline = match self.drain().await {
                Ok(t) => t,
                Err(e) => return e,
            };
            let deadline = self
                .receiver
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline));
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                r = self.socket.recv_from(&mut datagram) => {
                    let (n, source) = match r {
                        Ok(x) => x,
                        Err(e) => return format!("socket: {e}"),
                    };
                    let now = Instant::now();
                    if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &datagram[..n]) {
                        if self.rtc.handle_input(Input::Receive(now, r)).is_ok() {
                            self.last_heard = now;
                        }
                    }
                }
                first = self.rx.recv() => {
                    // Never None: the link holds a sender itself.
                    if let Some(first) = first {
                        self.send(first);
                        for _ in 0..256 {
                            match self.rx.try_recv() {
                                Ok(m) => self.send(m),
                                Err(_) => break,
                            }
                        }
                    }
                }
                () = sleep => {
                    let now = Instant::now();
                    self.ask_again(now);
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                        return format!("connection: {e}");
                    }
                }
                _ = tick.tick() => {
                    if let Some(why) = self.check() {
                        return why;
                    }
                }
            }
        }
    }

    /// The periodic checks: closed, timed out, the room's local workers.
    fn check(&mut self) -> Option<String> {
        if self.closed.load(Ordering::Relaxed) {
            return Some("replaced".into());
        }
        if self.failed {
            return Some("an event did not fit in the connection's buffer".into());
        }
        let now = Instant::now();
        if !self.connected && now.duration_since(self.started) > CONNECT_TIMEOUT {
            return Some("not connected in time".into());
        }
        if self.connected && now.duration_since(self.last_heard) > SILENCE_TIMEOUT {
            return Some("the other node went silent".into());
        }
        let workers = self.room_workers();
        if workers.is_empty() {
            return Some("the room has nobody here".into());
        }
        if workers != self.local_workers && self.channel.is_some() {
            self.set_local_workers(workers);
        }
        if self.channel.is_some() && now.duration_since(self.last_sent) >= KEEPALIVE {
            let _ = self.write(&[FRAME_KEEPALIVE]);
        }
        None
    }

    /// Polls the connection until it asks to be woken; sends what it transmits.
    async fn drain(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Ok(t),
                Ok(Output::Transmit(t)) => {
                    // A failed send is a lost datagram: ICE and SCTP recover or time out.
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => self.event(e)?,
                Err(e) => return Err(format!("connection: {e}")),
            }
        }
    }

    fn event(&mut self, e: Event) -> Result<(), String> {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err("ICE disconnected".into());
            }
            Event::ChannelOpen(id, label) if label == MEDIA_LABEL => self.media = Some(id),
            Event::ChannelOpen(id, label) if label == LABEL => {
                self.channel = Some(id);
                self.connected = true;
                self.relay
                    .links
                    .lock()
                    .entry((self.room.clone(), self.node.clone()))
                    .and_modify(|l| {
                        if l.serial == self.serial {
                            l.offering = false;
                        }
                    });
                info!(room = %self.room, node = %self.node, "relay open");
                let workers = self.room_workers();
                self.set_local_workers(workers);
            }
            Event::ChannelData(d) => self.receive(&d.data),
            Event::ChannelClose(_) => return Err("the other node closed it".into()),
            _ => {}
        }
        Ok(())
    }

    /// The local workers holding the room now.
    fn room_workers(&self) -> Vec<u16> {
        self.relay
            .placement
            .lock()
            .room_workers(&self.room)
            .unwrap_or_default()
            .into_iter()
            .map(|w| w as u16)
            .collect()
    }

    /// Tells the other end which local workers hold the room, and links or unlinks them with
    /// the other end's workers.
    fn set_local_workers(&mut self, workers: Vec<u16>) {
        let old = std::mem::replace(&mut self.local_workers, workers);
        for &(_, id) in &self.remote_workers {
            for &w in old.iter().filter(|w| !self.local_workers.contains(w)) {
                self.pair(w, id, false);
            }
            for &w in self.local_workers.iter().filter(|w| !old.contains(w)) {
                self.pair(w, id, true);
            }
        }
        let mut frame = vec![FRAME_WORKERS];
        for w in &self.local_workers {
            frame.extend_from_slice(&w.to_be_bytes());
        }
        if !self.write(&frame) {
            self.failed = true;
        }
    }

    /// Links (or unlinks) local worker `worker` with the other node's worker known here as `id`.
    fn pair(&self, worker: u16, id: ShardId, link: bool) {
        let (room, peer) = (self.room.clone(), id as usize);
        let cmd = if link {
            Command::LinkRoom { room, peer }
        } else {
            Command::UnlinkRoom { room, peer }
        };
        self.command(worker, cmd);
    }

    fn command(&self, worker: u16, cmd: Command) {
        let Some(tx) = self.relay.workers.get(worker as usize) else {
            return;
        };
        if tx.try_send(cmd).is_err() {
            metrics::counter!("sfu_relay_dropped_total", "reason" => "worker_busy").increment(1);
            warn!(room = %self.room, worker, "relay: command for a worker dropped: its queue is full");
        }
    }

    /// One frame from the other end.
    fn receive(&mut self, frame: &[u8]) {
        match frame.split_first() {
            Some((&FRAME_WORKERS, rest)) => match parse_workers(rest) {
                Some(workers) => self.set_remote_workers(&workers),
                None => malformed(),
            },
            Some((&FRAME_SHARD, rest)) if rest.len() >= 4 => self.deliver(rest),
            Some((&FRAME_MEDIA, rest)) if rest.len() >= 8 => {
                let number = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let now = Instant::now();
                // A repeat that already arrived, or a frame too old to place, is dropped.
                if self.receiver.arrived(now, number) {
                    self.deliver(&rest[4..]);
                    self.ask_again(now);
                }
            }
            Some((&FRAME_NACK, rest)) => match parse_nack(rest) {
                Some(numbers) => self.send_again(numbers),
                None => malformed(),
            },
            Some((&FRAME_KEEPALIVE, [])) => {}
            _ => malformed(),
        }
    }

    /// A message from a worker over there (`from`, `to`, the message) to a local worker.
    fn deliver(&mut self, rest: &[u8]) {
        let from = u16::from_be_bytes([rest[0], rest[1]]);
        let to = u16::from_be_bytes([rest[2], rest[3]]);
        let Some(&(_, id)) = self.remote_workers.iter().find(|(r, _)| *r == from) else {
            return;
        };
        if !self.local_workers.contains(&to) {
            return;
        }
        match shard_wire::decode(&rest[4..], Instant::now()) {
            Ok(msg) => {
                if let ShardMessage::Media(ref batch) = msg {
                    self.packets_in.increment(batch.len() as u64);
                }
                let cmd = Command::Shard {
                    from: id as usize,
                    msg,
                };
                if self.relay.workers[to as usize].try_send(cmd).is_err() {
                    metrics::counter!("sfu_relay_dropped_total", "reason" => "worker_busy")
                        .increment(1);
                }
            }
            Err(e) => {
                malformed();
                debug!(room = %self.room, node = %self.node, "relay frame not read: {e}");
            }
        }
    }

    /// Asks the other end again for the media frames missing now.
    fn ask_again(&mut self, now: Instant) {
        self.nacks.clear();
        self.receiver.poll_nacks(now, &mut self.nacks);
        if self.nacks.is_empty() {
            return;
        }
        metrics::counter!("sfu_relay_nacks_total", "direction" => "out")
            .increment(self.nacks.len() as u64);
        let mut frame = Vec::with_capacity(1 + 4 * self.nacks.len());
        frame.push(FRAME_NACK);
        for n in &self.nacks {
            frame.extend_from_slice(&n.to_be_bytes());
        }
        // On the media channel: a NACK lost on the way is not retransmitted but asked again
        // (ASK_AGAIN_AFTER), and one NACK never waits behind another's retransmission, as it
        // would on the ordered channel. One that does not fit is lost like the frame it asks
        // for.
        let _ = write_to(&mut self.rtc, self.media, &frame);
    }

    /// Sends again the media frames the other end asks for, those still kept.
    fn send_again(&mut self, numbers: impl Iterator<Item = u32>) {
        let now = Instant::now();
        for n in numbers {
            metrics::counter!("sfu_relay_nacks_total", "direction" => "in").increment(1);
            if self.media_backlog() > MAX_BUFFERED {
                return;
            }
            if let Some(frame) = self.sender.get(now, n) {
                if write_to(&mut self.rtc, self.media, frame) {
                    metrics::counter!("sfu_relay_resent_total").increment(1);
                }
            }
        }
    }

    /// Bytes queued on the media channel.
    fn media_backlog(&mut self) -> usize {
        self.media
            .and_then(|id| self.rtc.channel(id))
            .map_or(0, |mut c| c.buffered_amount())
    }

    /// The other end's workers holding the room are now `workers`.
    fn set_remote_workers(&mut self, workers: &[u16]) {
        let gone: Vec<(u16, ShardId)> = self
            .remote_workers
            .iter()
            .filter(|(r, _)| !workers.contains(r))
            .copied()
            .collect();
        for (r, id) in gone {
            for &w in &self.local_workers {
                self.pair(w, id, false);
            }
            self.relay.routes.routes.write().remove(&id);
            self.relay.ids.lock().free.push(id);
            self.remote_workers.retain(|(x, _)| *x != r);
        }
        for &r in workers {
            if self.remote_workers.iter().any(|(x, _)| *x == r) {
                continue;
            }
            let Some(id) = self.relay.ids.lock().take() else {
                warn!(room = %self.room, "relay: no shard id left");
                return;
            };
            self.relay.routes.routes.write().insert(
                id,
                Route {
                    tx: self.tx.clone(),
                    remote_worker: r,
                },
            );
            self.remote_workers.push((r, id));
            for &w in &self.local_workers {
                self.pair(w, id, true);
            }
        }
    }

    /// A local worker's message: onto a data channel (packets in numbered frames of a few).
    fn send(&mut self, out: Outgoing) {
        if self.channel.is_none() || !self.remote_workers.iter().any(|(r, _)| *r == out.to) {
            return;
        }
        match out.msg {
            ShardMessage::Media(mut batch) => {
                if self.media.is_none() || self.media_backlog() > MAX_BUFFERED {
                    metrics::counter!("sfu_relay_dropped_total", "reason" => "backlog")
                        .increment(1);
                    return;
                }
                self.packets_out.increment(batch.len() as u64);
                let now = Instant::now();
                while !batch.is_empty() {
                    let rest = batch.split_off(frame_length(&batch));
                    let msg = ShardMessage::Media(batch);
                    let frame = self.sender.frame(now, |number, buf| {
                        buf.push(FRAME_MEDIA);
                        buf.extend_from_slice(&number.to_be_bytes());
                        buf.extend_from_slice(&out.from.to_be_bytes());
                        buf.extend_from_slice(&out.to.to_be_bytes());
                        shard_wire::encode(&msg, buf);
                    });
                    // A frame the channel does not take is lost, as on any network, and may
                    // still be asked for again.
                    if !write_to(&mut self.rtc, self.media, frame) {
                        metrics::counter!("sfu_relay_dropped_total", "reason" => "backlog")
                            .increment(1);
                    }
                    batch = rest;
                }
                self.last_sent = now;
            }
            msg => {
                if !self.frame(out.from, out.to, &msg) {
                    self.failed = true;
                }
            }
        }
    }

    /// Writes one message on the events channel; false if the connection did not take it.
    fn frame(&mut self, from: u16, to: u16, msg: &ShardMessage) -> bool {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.push(FRAME_SHARD);
        buf.extend_from_slice(&from.to_be_bytes());
        buf.extend_from_slice(&to.to_be_bytes());
        shard_wire::encode(msg, &mut buf);
        let written = self.write(&buf);
        self.buf = buf;
        written
    }

    /// Writes one frame on the events channel; false if the connection did not take it
    /// (counted).
    fn write(&mut self, frame: &[u8]) -> bool {
        let written = write_to(&mut self.rtc, self.channel, frame);
        if !written {
            metrics::counter!("sfu_relay_dropped_total", "reason" => "backlog").increment(1);
        }
        self.last_sent = Instant::now();
        written
    }

    /// The link is over: every local worker forgets the other end's workers.
    fn unlink_all(&mut self) {
        self.set_remote_workers(&[]);
    }
}

/// How many of the first packets of `batch` one frame takes (at least one).
fn frame_length(batch: &[Relayed]) -> usize {
    let mut bytes = 0;
    for (i, r) in batch.iter().enumerate() {
        bytes += shard_wire::media_packet_len(r);
        if bytes > FRAME_BYTES {
            return i.max(1);
        }
    }
    batch.len()
}

/// Writes `frame` on channel `id` of `rtc`; false if there is no such channel or it did not
/// take the frame.
fn write_to(rtc: &mut Rtc, id: Option<ChannelId>, frame: &[u8]) -> bool {
    let Some(mut channel) = id.and_then(|id| rtc.channel(id)) else {
        return false;
    };
    matches!(channel.write(true, frame), Ok(true))
}

fn malformed() {
    metrics::counter!("sfu_relay_refused_total", "reason" => "malformed").increment(1);
}

/// The numbers a NACK frame lists (big-endian u32 each); `None` if it is empty, cut or longer
/// than the receiver ever asks for.
fn parse_nack(rest: &[u8]) -> Option<impl Iterator<Item = u32> + '_> {
    if rest.is_empty() || !rest.len().is_multiple_of(4) || rest.len() / 4 > MAX_MISSING {
        return None;
    }
    Some(
        rest.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
    )
}

/// The workers a workers frame lists (big-endian u16 each); `None` if it is cut or too long.
fn parse_workers(rest: &[u8]) -> Option<Vec<u16>> {
    if !rest.len().is_multiple_of(2) || rest.len() / 2 > MAX_REMOTE_WORKERS {
        return None;
    }
    Some(
        rest.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(payload: usize) -> Relayed {
        Relayed {
            track: 1,
            layer: 0,
            packet: crate::core::Packet {
                seq_no: 1.into(),
                header: Default::default(),
                payload: vec![0; payload].into(),
                timestamp: Instant::now(),
            },
        }
    }

    #[test]
    fn a_media_frame_fits_one_datagram_but_a_larger_packet_goes_alone() {
        // A browser's video packet, with its headers, fits one datagram: one per frame.
        let video: Vec<Relayed> = (0..3).map(|_| packet(1180)).collect();
        assert_eq!(frame_length(&video), 1);
        let mut message = Vec::new();
        shard_wire::encode(&ShardMessage::Media(vec![packet(1180)]), &mut message);
        let frame = 1 + 4 + 2 + 2 + message.len();
        assert!(frame + 48 + 40 <= RELAY_MTU, "{frame}");
        // Audio packets share one.
        let audio: Vec<Relayed> = (0..20).map(|_| packet(100)).collect();
        assert_eq!(frame_length(&audio), FRAME_BYTES / (28 + 2 + 100));
        // Too big for one datagram: alone, whatever follows.
        let big = vec![packet(1400), packet(10)];
        assert_eq!(frame_length(&big), 1);
        assert_eq!(frame_length(&[packet(10), packet(1400)]), 1);
        assert_eq!(frame_length(&[packet(10), packet(10)]), 2);
    }

    #[test]
    fn a_nack_frame_is_bounded() {
        let numbers = |rest: &[u8]| parse_nack(rest).map(|n| n.collect::<Vec<u32>>());
        assert_eq!(
            numbers(&[0, 0, 1, 0, 255, 255, 255, 255]),
            Some(vec![256, u32::MAX])
        );
        assert_eq!(numbers(&[]), None, "empty");
        assert_eq!(numbers(&[0, 0, 1]), None, "cut");
        let most = vec![0u8; 4 * MAX_MISSING];
        assert_eq!(numbers(&most).map(|n| n.len()), Some(MAX_MISSING));
        let over = vec![0u8; 4 * MAX_MISSING + 4];
        assert_eq!(
            numbers(&over),
            None,
            "more than a receiver asks for at once"
        );
    }

    #[test]
    fn a_workers_frame_is_bounded() {
        assert_eq!(parse_workers(&[]), Some(vec![]));
        assert_eq!(parse_workers(&[0, 1, 1, 0]), Some(vec![1, 256]));
        assert_eq!(parse_workers(&[0, 1, 1]), None, "cut");
        let most = vec![0u8; 2 * MAX_REMOTE_WORKERS];
        assert_eq!(
            parse_workers(&most).map(|w| w.len()),
            Some(MAX_REMOTE_WORKERS)
        );
        let over = vec![0u8; 2 * MAX_REMOTE_WORKERS + 2];
        assert_eq!(
            parse_workers(&over),
            None,
            "more workers than a node may have"
        );
    }
}
