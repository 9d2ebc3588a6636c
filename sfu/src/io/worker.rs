//! A worker: one OS thread with its own single-threaded runtime, its own UDP socket and one
//! [`Engine`] that owns whole rooms. Forwarding inside a room never leaves the thread: no lock and
//! no channel per packet.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use str0m::net::{Protocol, Transmit};
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

use signal::protocol::{ErrorCode, ResumeTicket, ServerMessage, SignalError};

use super::handle::{send_unlinks, Command, Placement};
use super::metrics::WorkerMetrics;
use super::overload::{media_age, rtp_ssrc, Age, LoadControl};
use super::relay::{Outgoing, Routes};
use super::sessions::{self, Sessions};
use super::tcp::{TcpEvent, TcpMedia};
use super::udp::MediaSocket;
use super::webhook::Webhooks;
use super::wire::{self, Wire};
use crate::core::{Engine, EngineConfig, Event, LeaveReason, ShardId, ShardMessage, Transport};

/// Receive batches handled before the worker looks at commands and timers again.
const MAX_BATCHES_PER_WAKE: usize = 16;
/// Commands queued per worker before joins and signals are refused as busy.
pub const COMMAND_QUEUE: usize = 1024;

/// Where a worker's messages for the other engines of its rooms go.
pub type Peers = Arc<PeerSet>;

/// The command queues of all the workers of the server, by index (a worker hands another the
/// events and packets of a room they share through it; set once every worker has started), and
/// the routes to the workers of other nodes (shard ids after the local workers', see
/// `io::relay`).
#[derive(Debug, Default)]
pub struct PeerSet {
    workers: OnceLock<Vec<mpsc::Sender<Command>>>,
    /// Shard ids of other nodes' workers.
    pub remote: Arc<Routes>,
}

impl PeerSet {
    /// Sets the workers' queues (once).
    pub fn set(&self, workers: Vec<mpsc::Sender<Command>>) {
        let _ = self.workers.set(workers);
    }

    /// The workers' queues, once set.
    pub fn get(&self) -> Option<&Vec<mpsc::Sender<Command>>> {
        self.workers.get()
    }
}

/// How a worker is set up.
pub struct WorkerSpec {
    /// Worker number (for logs).
    pub index: usize,
    /// The address its socket binds to.
    pub bind: SocketAddr,
    /// The IPs advertised in candidates; the port is the socket's.
    pub candidate_ips: Vec<IpAddr>,
    /// Engine settings (the candidate addresses are filled in from the above).
    pub engine: EngineConfig,
    /// Also accept ICE over TCP on the same port number as the UDP socket.
    pub ice_tcp: bool,
    /// The candidate IPs are this machine's own addresses: replies leave from the address the
    /// client sent to (false behind 1:1 NAT, where the candidate is not a local address).
    pub pin_source: bool,
    /// Where participant and track events go.
    pub webhooks: Webhooks,
    /// How long a participant whose socket dropped may resume (zero: it leaves at once).
    pub resume_grace: Duration,
    /// RTP that waited longer than this in the socket is dropped unread (zero: never).
    pub max_input_age: Duration,
    /// Every worker's command queue (for rooms shared between workers).
    pub peers: Peers,
}

/// A running worker.
pub struct Worker {
    /// Its command queue.
    pub commands: mpsc::Sender<Command>,
    /// The port its socket is bound to.
    pub port: u16,
    /// Its runtime (tasks spawned there run on the worker's thread).
    pub runtime: tokio::runtime::Handle,
    /// The thread.
    pub thread: JoinHandle<()>,
}

/// With a free port (`udp_port = 0`) the system picks the UDP port, and the ICE-TCP listener
/// takes the same number, which another program may hold: then another UDP port is tried.
const FREE_PORT_ATTEMPTS: usize = 16;

/// Binds the worker's UDP socket and, with ICE-TCP, a TCP listener on the same port number.
async fn bind_media(spec: &WorkerSpec) -> io::Result<(MediaSocket, Option<TcpMedia>)> {
    let attempts = if spec.bind.port() == 0 {
        FREE_PORT_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        let socket = MediaSocket::bind(spec.bind)?;
        if !spec.ice_tcp {
            return Ok((socket, None));
        }
        let port = socket.local_port();
        match TcpMedia::bind(SocketAddr::new(spec.bind.ip(), port)).await {
            Ok(t) => return Ok((socket, Some(t))),
            Err(e) => {
                last = Some(io::Error::new(
                    e.kind(),
                    format!("ICE-TCP on port {port}: {e}"),
                ));
                if e.kind() != io::ErrorKind::AddrInUse {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port")))
}

/// Start a worker thread; returns once its socket is bound.
pub fn spawn(spec: WorkerSpec, placement: Arc<Mutex<Placement>>) -> io::Result<Worker> {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let index = spec.index;
    let thread = std::thread::Builder::new()
        .name(format!("sfu-worker-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let handle = rt.handle().clone();
            rt.block_on(async move {
                let (socket, tcp) = match bind_media(&spec).await {
                    Ok(pair) => pair,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let port = socket.local_port();
                let mut engine_config = spec.engine;
                engine_config.candidate_addrs = spec
                    .candidate_ips
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect();
                if tcp.is_some() {
                    engine_config.tcp_candidate_addrs = engine_config.candidate_addrs.clone();
                }
                let _ = ready_tx.send(Ok((port, handle)));
                let span = info_span!("worker", index);
                WorkerLoop {
                    wire: Wire::new(spec.webhooks),
                    engine: Engine::new(engine_config),
                    socket,
                    tcp,
                    pin_source: spec.pin_source,
                    commands: rx,
                    sessions: Sessions::new(spec.resume_grace),
                    placement,
                    out: Vec::with_capacity(1024),
                    kick: Vec::new(),
                    detached: Vec::new(),
                    metrics: WorkerMetrics::new(index),
                    load: LoadControl::default(),
                    max_input_age: spec.max_input_age,
                    index,
                    peers: spec.peers,
                }
                .run()
                .instrument(span)
                .await;
            });
        })?;
    let (port, runtime) = ready_rx
        .recv()
        .map_err(|_| io::Error::other("worker thread died while starting"))??;
    Ok(Worker {
        commands: tx,
        port,
        runtime,
        thread,
    })
}

struct WorkerLoop {
    engine: Engine,
    socket: MediaSocket,
    /// ICE-TCP connections, when enabled.
    tcp: Option<TcpMedia>,
    /// See [`WorkerSpec::pin_source`].
    pin_source: bool,
    commands: mpsc::Receiver<Command>,
    /// Event queues of the participants on this worker.
    sessions: Sessions,
    placement: Arc<Mutex<Placement>>,
    out: Vec<Transmit>,
    /// Participants to remove after delivering messages (queue full or closed).
    kick: Vec<(String, LeaveReason)>,
    /// Participants found detached while delivering: the others are told after the batch.
    detached: Vec<String>,
    /// Published once a second.
    metrics: WorkerMetrics,
    /// The engine's events into messages, webhooks and metrics.
    wire: Wire,
    /// Whether the worker keeps up with its input (see [`super::overload`]).
    load: LoadControl,
    /// See [`WorkerSpec::max_input_age`].
    max_input_age: Duration,
    /// Its index.
    index: usize,
    /// See [`WorkerSpec::peers`].
    peers: Peers,
}

impl WorkerLoop {
    async fn run(mut self) {
        info!(port = self.socket.local_port(), "worker started");
        loop {
            let deadline = self.engine.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => break,
                },
                r = self.socket.readable() => {
                    if let Err(e) = r {
                        warn!("socket: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    self.receive().await;
                }
                _ = sleep => self.engine.handle_timeout(Instant::now()),
                ev = async {
                    match self.tcp.as_mut() {
                        Some(t) => t.next().await,
                        None => std::future::pending().await,
                    }
                } => self.handle_tcp(ev),
                _ = self.metrics.tick() => {
                    let now = Instant::now();
                    if let Some(factor) = self.load.tick(now) {
                        self.engine.set_load_factor(now, factor);
                    }
                    self.metrics.publish(
                        &self.engine,
                        self.sessions.ids(),
                        self.socket.send_cpu(),
                    );
                    let oldest = self.engine.oldest_queued(now);
                    self.metrics.publish_load(&self.load, oldest);
                    self.end_grace_periods();
                }
            }
            self.deliver_events();
            self.send().await;
            self.metrics.end_turn(self.engine.stats());
        }
        info!("worker stopped");
    }

    /// Read what the socket holds, a batch at a time, and send what each batch produced before
    /// reading the next. str0m stamps each packet's send time (for the subscriber's transport
    /// feedback) with the batch's `now`: sending at once keeps that stamp within one batch's
    /// work of the real send, where holding the output of many batches to the end of the wake
    /// would make an overloaded worker's own lateness look like a congested path to every
    /// subscriber's delay-based estimate.
    async fn receive(&mut self) {
        self.metrics.start_turn(self.engine.stats());
        let port = self.socket.local_port();
        let fallback = self.engine.candidate_addrs()[0];
        for _ in 0..MAX_BATCHES_PER_WAKE {
            let now = Instant::now();
            let mut factor = None;
            let WorkerLoop {
                engine,
                socket,
                load,
                max_input_age,
                ..
            } = self;
            let r = socket.recv_batch(|d| {
                if let Some(waited) = d.waited {
                    factor = load.observe(now, waited).or(factor);
                    let stale = match media_age(d.data, waited, *max_input_age) {
                        Age::Fresh => false,
                        Age::OldUnlessAudio => !rtp_ssrc(d.data)
                            .is_some_and(|ssrc| engine.is_audio_from(d.source, ssrc)),
                        Age::Stale => true,
                    };
                    if stale {
                        engine.count_stale_input();
                        return;
                    }
                }
                let destination = d
                    .destination_ip
                    .map_or(fallback, |ip| SocketAddr::new(ip, port));
                engine.handle_datagram(now, d.source, destination, d.data);
            });
            if let Some(factor) = factor {
                self.engine.set_load_factor(now, factor);
            }
            match r {
                Ok(0) => break,
                Ok(_) => {
                    self.engine.flush(now);
                    self.send().await;
                }
                Err(e) => {
                    // ICMP errors from a gone peer surface here; they are not fatal.
                    debug!("recv: {e}");
                    break;
                }
            }
        }
    }

    fn handle_tcp(&mut self, ev: TcpEvent) {
        if let TcpEvent::Packet {
            source,
            local,
            data,
        } = ev
        {
            let now = Instant::now();
            self.engine.handle_tcp_packet(now, source, local, &data);
            self.engine.flush(now);
            if let Some(tcp) = &self.tcp {
                tcp.set_claimed(source, self.engine.knows_address(Transport::Tcp, source));
            }
        }
    }

    async fn send(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            match (t.proto, self.tcp.as_mut()) {
                (Protocol::Tcp, Some(tcp)) => tcp.send(t.destination, &t.contents),
                (Protocol::Tcp, None) => {}
                _ => self.out.push(t),
            }
        }
        if !self.out.is_empty() {
            if let Err(e) = self.socket.send_all(&mut self.out, self.pin_source).await {
                warn!("send: {e}");
                self.out.clear();
            }
        }
        self.send_shards();
    }

    /// Hand the other workers what the engine has for them (rooms they share): one message per
    /// worker for the packets of a receive batch (or of a turn without input). A full queue
    /// drops the message (counted).
    fn send_shards(&mut self) {
        let Some(peers) = self.peers.get() else {
            return;
        };
        while let Some((to, msg)) = self.engine.poll_shard() {
            let media = matches!(msg, ShardMessage::Media(_));
            let sent = match peers.get(to as usize) {
                Some(peer) => peer
                    .try_send(Command::Shard {
                        from: self.index,
                        msg,
                    })
                    .is_ok(),
                None => match self.peers.remote.get(to) {
                    Some(route) => route
                        .tx
                        .try_send(Outgoing {
                            from: self.index as u16,
                            to: route.remote_worker,
                            msg,
                        })
                        .is_ok(),
                    None => continue,
                },
            };
            if !sent {
                self.engine.count_shard_dropped();
                if !media {
                    warn!(
                        worker = to,
                        "room event for another worker dropped: its queue is full"
                    );
                }
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join {
                spec,
                room_metadata,
                ice_servers,
                events,
                reply,
            } => {
                let (id, room) = (spec.id.clone(), spec.room.clone());
                let secret = sessions::new_secret();
                let grace = self.sessions.grace();
                let ticket = (!grace.is_zero()).then(|| ResumeTicket {
                    secret: secret.clone(),
                    grace_seconds: grace.as_secs().try_into().unwrap_or(u32::MAX),
                });
                self.sessions.insert(&id, events, secret);
                self.wire.expect_join(&id, ice_servers, ticket);
                let r = self.engine.join(now, spec);
                match &r {
                    Ok(()) => {
                        // `joined` first, then the room's metadata.
                        self.deliver_events();
                        if !room_metadata.is_empty() {
                            let msg = ServerMessage::RoomUpdated {
                                room,
                                metadata: room_metadata,
                            };
                            self.deliver(&id, msg);
                        }
                    }
                    Err(_) => {
                        self.sessions.remove(&id);
                        self.wire.join_refused(&id);
                    }
                }
                let _ = reply.send(r.map_err(|e| wire::signal_error(&e)));
            }
            Command::Signal { id, signal } => {
                self.engine.handle_request(now, &id, wire::request(signal))
            }
            Command::Leave { id, reason } => self.engine.leave(now, &id, reason),
            Command::Detach { id } => match self.sessions.detach(now, &id) {
                Ok(true) => self.announce(&id, true),
                Ok(false) => {}
                Err(reason) => self.engine.leave(now, &id, reason),
            },
            Command::Resume {
                id,
                secret,
                events,
                reply,
            } => {
                let r = match self.sessions.resume(&id, &secret, events) {
                    Ok(was_detached) => {
                        debug!(participant = %id, was_detached, "resumed");
                        if was_detached {
                            self.announce(&id, false);
                        }
                        Ok(())
                    }
                    Err(why) => {
                        debug!(participant = %id, ?why, "resume refused");
                        Err(SignalError::new(
                            ErrorCode::ResumeFailed,
                            "no such session; join again",
                        ))
                    }
                };
                let _ = reply.send(r);
            }
            Command::CloseRoom {
                room,
                reason,
                reply,
            } => {
                for id in self.engine.room_participants(&room) {
                    self.engine.leave(now, &id, reason);
                }
                // Deliver the `left`s (and their webhooks) before answering.
                self.deliver_events();
                let _ = reply.send(());
            }
            Command::ListParticipants { room, reply } => {
                let list = self.engine.participants_of(&room);
                let _ = reply.send(list.into_iter().map(wire::participant_info).collect());
            }
            Command::RemoveParticipant { id, reason, reply } => {
                let r = match self.engine.participant_room(&id) {
                    Some(_) => {
                        self.engine.leave(now, &id, reason);
                        self.deliver_events();
                        Ok(())
                    }
                    None => Err(wire::rest_error(&crate::core::Error::UnknownParticipant)),
                };
                let _ = reply.send(r);
            }
            Command::MuteTrack {
                id,
                track_id,
                muted,
                reply,
            } => {
                let r = self
                    .engine
                    .set_track_muted(now, &id, &track_id, muted)
                    .and_then(|()| {
                        self.engine
                            .participant(&id)
                            .and_then(|p| p.tracks.into_iter().find(|t| t.id == track_id))
                            .ok_or(crate::core::Error::UnknownTrack)
                    });
                let _ = reply.send(r.map(wire::track_info).map_err(|e| wire::rest_error(&e)));
            }
            Command::UpdateParticipant {
                id,
                name,
                metadata,
                reply,
            } => {
                let r = self
                    .engine
                    .update_participant(&id, name, metadata)
                    .and_then(|()| {
                        self.engine
                            .participant(&id)
                            .ok_or(crate::core::Error::UnknownParticipant)
                    });
                let _ = reply.send(
                    r.map(wire::participant_info)
                        .map_err(|e| wire::rest_error(&e)),
                );
            }
            Command::ShuttingDown { drain_seconds } => {
                self.deliver_events();
                let ids: Vec<String> = self.sessions.ids().cloned().collect();
                for id in ids {
                    self.deliver(&id, ServerMessage::ShuttingDown { drain_seconds });
                }
            }
            Command::RemoveAll { reason, reply } => {
                let ids: Vec<String> = self.sessions.ids().cloned().collect();
                for id in ids {
                    self.engine.leave(now, &id, reason);
                }
                self.deliver_events();
                let _ = reply.send(());
            }
            Command::LinkRoom { room, peer } => self.engine.link_shard(&room, peer as ShardId),
            Command::UnlinkRoom { room, peer } => {
                self.engine.unlink_shard(now, &room, peer as ShardId);
                self.engine.flush(now);
            }
            Command::Shard { from, msg } => {
                self.engine.handle_shard(now, from as ShardId, msg);
                self.engine.flush(now);
            }
            Command::UpdateRoom {
                room,
                metadata,
                video_codecs,
            } => {
                if let Some(codecs) = video_codecs {
                    self.engine.set_video_codecs(&room, codecs);
                }
                if let Some(metadata) = metadata {
                    self.deliver_events();
                    let members = self.wire.members(&room).to_vec();
                    for id in members {
                        let msg = ServerMessage::RoomUpdated {
                            room: room.clone(),
                            metadata: metadata.clone(),
                        };
                        self.deliver(&id, msg);
                    }
                }
            }
        }
    }

    /// Translate the engine's events and hand the messages to the participants' queues. A
    /// participant whose queue is full (not reading) is removed; one whose socket is gone is
    /// detached.
    fn deliver_events(&mut self) {
        loop {
            let now = Instant::now();
            while let Some(event) = self.engine.poll_event() {
                let gone = match &event {
                    Event::Left { participant, .. } => Some(participant.id.clone()),
                    _ => None,
                };
                let WorkerLoop {
                    wire,
                    sessions,
                    kick,
                    detached,
                    ..
                } = self;
                wire.translate(
                    now,
                    event,
                    &mut |id, msg| match sessions.send(now, id, msg) {
                        Ok(true) => detached.push(id.to_owned()),
                        Ok(false) => {}
                        Err(reason) => kick.push((id.to_owned(), reason)),
                    },
                );
                if let Some(id) = gone {
                    self.sessions.remove(&id);
                    let mut placement = self.placement.lock();
                    if let Some(u) = placement.release(&id, now) {
                        // The last of its room here: this worker and the room's others stop
                        // sharing it (queued under the lock, like the links of joins).
                        if let Some(peers) = self.peers.get() {
                            send_unlinks(peers, &u);
                        }
                    }
                }
            }
            for id in std::mem::take(&mut self.detached) {
                self.announce(&id, true);
            }
            if self.kick.is_empty() {
                break;
            }
            for (id, reason) in std::mem::take(&mut self.kick) {
                self.engine.leave(now, &id, reason);
            }
        }
    }

    /// Hand one message to participant `id` (after everything the engine has for it).
    fn deliver(&mut self, id: &str, msg: ServerMessage) {
        match self.sessions.send(Instant::now(), id, msg) {
            Ok(true) => self.detached.push(id.to_owned()),
            Ok(false) => {}
            Err(reason) => self.kick.push((id.to_owned(), reason)),
        }
        self.deliver_events();
    }

    /// Tell the others in `id`'s room that it is reconnecting (or back).
    fn announce(&mut self, id: &str, reconnecting: bool) {
        let Some(room) = self.engine.participant_room(id).map(str::to_owned) else {
            return;
        };
        let now = Instant::now();
        // The engine tells the room (on every worker it is on) with `Event::Reconnecting`.
        if reconnecting {
            info!(participant = id, %room, "signalling dropped; held for resume");
            metrics::counter!("sfu_sessions_detached_total").increment(1);
            // Its media may have dropped with the socket (a network change): it may stay silent
            // until the grace period ends.
            let until = now + self.sessions.grace();
            self.engine.hold(now, id, Some(until));
        } else {
            self.engine.hold(now, id, None);
        }
        self.deliver_events();
    }

    /// Detached participants whose grace period passed leave.
    fn end_grace_periods(&mut self) {
        let now = Instant::now();
        let expired = self.sessions.expired(now);
        if expired.is_empty() {
            return;
        }
        for id in expired {
            debug!(participant = %id, "not resumed in time");
            self.engine.leave(now, &id, LeaveReason::Disconnected);
        }
        self.deliver_events();
    }
}
